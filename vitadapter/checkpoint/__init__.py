"""Trained checkpoints: the one place that reads them (safely), knows the `vitadapter` entry train.py writes
into them and places their keys in the parts of a task.

    from vitadapter.checkpoint import TrainedCheckpoint

    checkpoint = TrainedCheckpoint.read("outputs/train/runs/<date>/checkpoints/last.ckpt")
"""

from vitadapter.checkpoint.atomic_save import atomic_torch_save
from vitadapter.checkpoint.format import FORMAT_VERSION, META_KEY, upgrade_run_config, vitadapter_entry
from vitadapter.checkpoint.keys import PARTS, StateKey, classify_key
from vitadapter.checkpoint.safe_load import UnsafeCheckpointError, load_checkpoint_file, refusing_unsafe
from vitadapter.checkpoint.trained import TrainedCheckpoint

__all__ = ["FORMAT_VERSION", "META_KEY", "PARTS", "StateKey", "TrainedCheckpoint", "UnsafeCheckpointError",
           "atomic_torch_save", "classify_key", "load_checkpoint_file", "refusing_unsafe", "upgrade_run_config", "vitadapter_entry"]
