"""What the entry points run: train.py, eval.py and predict.py (through `vitadapter.cli`) each call one function here.

`train.run_training`, `evaluate.run_evaluation` and `predict.run_prediction` are the runs; `build` turns a
composed config into the datamodule, task and trainer; `launch_checks` refuses launches that cannot work
before anything is built; `trackers` builds the MLflow logger and sends pictures to the active trackers;
`run_files` writes metrics.json and the training curves. The remaining modules are the checkpoint steps of
a run: which checkpoint to resume, warm start, rebuilding a trained model, atomic checkpoint files.
"""
