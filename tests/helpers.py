"""Helpers shared by the tests: the config folder, tiny-run overrides, a CLI runner and the same runs in process."""

from __future__ import annotations

import csv
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "vitadapter" / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))


# a 2-step fp32 CPU run that validates at its end, for every tiny experiment
_TINY_RUN_OVERRIDES = [
    "trainer=cpu",
    "trainer.precision=32-true",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "model.scheduler.warmup_steps=1",
    "callbacks.rich_progress_bar=null",
]


# the tests' tiny ViT; its name is set explicitly because experiments such as demo_seg name their own backbone in
# their body, which wins over the group
_TINY_BACKBONE = ["model/backbone=test_vit", "model.backbone.name=test_vit", "model.backbone.model_kwargs={}"]


# necks without a width of their own: ViT-Adapter's levels have the ViT's width, the tapped tokens are the ViT's
UNSIZED_NECKS = ("vit_adapter", "tokens")


def _neck_overrides(neck: str | None) -> list[str]:
    """`model/neck=NECK` (None: the experiment's own) at a tiny width where the neck has one."""
    width = [] if neck in UNSIZED_NECKS else ["model.neck.out_channels=16"]
    return ([f"model/neck={neck}"] if neck else []) + width


def experiment_neck(experiment: str) -> str | None:
    """The neck an experiment's file name implies (`*_vit_adapter`, `*_dinov3`: DINOv3's extractor-only ViT-Adapter;
    `ade20k_seg_m2f`: ViT-Adapter-B + Mask2Former; `*_linear`: the linear protocols read the tapped tokens), else
    None (its own)."""
    if experiment.endswith(("_vit_adapter", "_dinov3")) or experiment == "ade20k_seg_m2f":
        return "vit_adapter"
    return "tokens" if experiment.endswith("_linear") else None


def tiny_seg_overrides(data_root: Path, neck: str | None = None, synthetic: bool = True) -> list[str]:
    """Overrides that shrink any segmentation experiment to seconds on a CPU (with another neck if given);
    `synthetic=False` for a dataset already on disk (data configs without a synthetic writer)."""
    return [
        *_TINY_BACKBONE,
        # the tapped tokens (no spatial module) feed the linear probe, which has no width to shrink
        *(["model/head=linear", "model/aux_head=none"] if neck == "tokens" else ["model.head.channels=16"]),
        *_neck_overrides(neck),
        "model.inference.stride=43",
        f"data.root={data_root}",
        "data.crop_size=64",
        "data.train_scale=[256,64]",
        "data.test_scale=[256,64]",
        "data.batch_size=2",
        "data.val_batch_size=2",
        "data.num_workers=0",
        *(["data.synthetic={num_train:6,num_val:3,image_size:64,seed:0}"] if synthetic else []),
        *_TINY_RUN_OVERRIDES,
    ]


# per detector: the heads' widths and sampled RoIs, shrunk (the keys differ between detectors)
TINY_DETECTOR_OVERRIDES = {
    "mask_rcnn": ["model.detector.box_head_dim=32", "model.detector.mask_head_channels=8",
                  "++model.detector.options.box_batch_size_per_image=32"],
    "mask_rcnn_light": ["model.detector.box_head_dim=32", "model.detector.mask_head_channels=8",
                        "++model.detector.options.box_batch_size_per_image=32"],
    "faster_rcnn": ["model.detector.box_head_dim=32", "++model.detector.options.box_batch_size_per_image=32"],
    "retinanet": [],
    "fcos": [],
}


def _tiny_coco_data(data_root: Path, image_size: int = 96, num_train: int = 4) -> list[str]:
    """A COCO-layout datamodule (instances or panoptic) on a tiny synthetic set written into `data_root` on first
    use: images of `image_size` px, batches of 2, 3 validation images."""
    return [
        f"data.root={data_root}",
        f"data.image_size={image_size}",
        "data.scale_range=[0.75,1.25]",
        "data.batch_size=2",
        "data.val_batch_size=2",
        "data.num_workers=0",
        f"data.synthetic={{num_train:{num_train},num_val:3,image_size:{image_size},seed:0}}",
    ]


def tiny_det_overrides(data_root: Path, detector: str = "mask_rcnn", neck: str | None = None) -> list[str]:
    """Overrides that shrink a detection experiment (whose detector is `detector`) to seconds on a CPU
    (with another neck if given); a tiny synthetic COCO set is written into `data_root` on first use."""
    return [*_TINY_BACKBONE, *TINY_DETECTOR_OVERRIDES[detector], *_neck_overrides(neck), "model.fpn_channels=32",
            *_tiny_coco_data(data_root), *_TINY_RUN_OVERRIDES]


def tiny_mask_classification_overrides(data_root: Path, neck: str | None = None, panoptic: bool = True,
                                       synthetic: bool = True) -> list[str]:
    """Overrides that shrink a panoptic (`panoptic=True`, a synthetic COCO panoptic set of 64 px images) or
    Mask2Former instance experiment (a synthetic COCO instances set of 96 px images) to seconds on a CPU, with
    another neck if given; `synthetic=False` for a dataset already on disk. The head keeps the experiment's depth
    and queries at a width of 16."""
    data = _tiny_coco_data(data_root, *((64, 6) if panoptic else (96, 4)))
    return [*_TINY_BACKBONE, "model.head.channels=16", *_neck_overrides(neck),
            *(data if synthetic else [o for o in data if not o.startswith("data.synthetic=")]), *_TINY_RUN_OVERRIDES]


TORCH_THREADS = int(os.environ.get("OMP_NUM_THREADS", "1"))
"""Torch threads of the test process and of the entry points it starts (the same, so that a run resumed in one
of them computes bit for bit what the other computes). One: the tiny test models gain nothing from a second
thread, and while anything else holds a core, spinning threads slow every op tens of times (measured: a training
step of the ADE20K recipe took 8 s with 2 threads and 0.1 s with 1 on a loaded 2-core machine)."""


def cli_env() -> dict[str, str]:
    """The environment of an entry point started by the tests (an explicit OMP_NUM_THREADS wins)."""
    return {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(TORCH_THREADS)}


def start_cli(script: str, *args: str, out: Path) -> subprocess.Popen:
    """Starts an entry point in a session of its own (its DDP ranks included), stdout and stderr going to `out`;
    stop it with os.killpg(proc.pid, signal)."""
    with open(out, "w") as f:
        return subprocess.Popen([sys.executable, str(ROOT / script), *args], cwd=ROOT, env=cli_env(), stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)


def run_cli(script: str, *args: str, cwd: Path = ROOT, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs an entry point (`train.py`, `eval.py`, ...) as a user would and returns the finished process; past
    `timeout` seconds it is killed with every process it started (DDP ranks, loader workers)."""
    argv = [sys.executable, str(ROOT / script), *args]
    with subprocess.Popen(argv, cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as started:
        try:
            stdout, stderr = started.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(started.pid, signal.SIGKILL)
            started.communicate()
            raise
    proc = subprocess.CompletedProcess(argv, started.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def last_logged(run_dir: Path, key: str) -> float | None:
    """The last value of `key` in a run's csv/metrics.csv (what the CSV logger recorded); None if never logged."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        values = [row[key] for row in csv.DictReader(handle) if row.get(key)]
    return float(values[-1]) if values else None


def dataset_miou(pairs: list[tuple["np.ndarray", "np.ndarray"]], num_classes: int, ignore_index: int = 255) -> float:
    """mIoU in percent the mmseg way, computed independently of vitadapter.metrics: per-class intersection and
    union summed over all (prediction, label) pairs, classes with no union left out."""
    import numpy as np

    intersection, union = np.zeros(num_classes), np.zeros(num_classes)
    for pred, label in pairs:
        valid = label != ignore_index
        pred, label = pred[valid].astype(np.int64), label[valid].astype(np.int64)
        hit = pred[pred == label]
        intersection += np.bincount(hit, minlength=num_classes)[:num_classes]
        union += (np.bincount(pred, minlength=num_classes)[:num_classes]
                  + np.bincount(label, minlength=num_classes)[:num_classes]
                  - np.bincount(hit, minlength=num_classes)[:num_classes])
    present = union > 0
    return float(100 * np.mean(intersection[present] / union[present]))


def eval_config(ckpt_path: Path, output_dir: Path, *overrides: str, config_name: str = "eval") -> DictConfig:
    """The config `eval.py ckpt_path=CKPT [overrides]` (or predict.py's) runs with: the checkpoint's own config
    restored as the entry point restores it, then the overrides."""
    from vitadapter.run.evaluate import register_restored_config

    register_restored_config([f"ckpt_path={ckpt_path}"])
    return compose_at(config_name, [f"ckpt_path={ckpt_path}", *overrides], output_dir)


def evaluate_in_process(ckpt_path: Path, output_dir: Path, *overrides: str) -> dict:
    """What `eval.py ckpt_path=CKPT [overrides]` computes, run in this process (the checkpoint's own config
    restored as eval.py restores it); returns the metrics it writes to `output_dir/metrics.json`."""
    from vitadapter.run.evaluate import run_evaluation

    return run_evaluation(eval_config(ckpt_path, output_dir, *overrides))


def predict_in_process(ckpt_path: Path, output_dir: Path, *overrides: str) -> list[Path]:
    """What `predict.py ckpt_path=CKPT [overrides]` draws, run in this process (the checkpoint's own config restored as
    predict.py restores it); the PNGs it wrote."""
    from vitadapter.run.predict import run_prediction

    return run_prediction(eval_config(ckpt_path, output_dir, *overrides, config_name="predict"))


def compose_at(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """The config `config_name` composed with `overrides` as its entry point composes it, writing to `output_dir`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def train_in_process(run_dir: Path, *overrides: str) -> dict[str, Any]:
    """What `train.py [overrides] hydra.run.dir=RUN_DIR` runs, in this process (for tests of what a run computes and
    writes, not of the command line itself; Hydra's own files, .hydra/ and train.log, are the CLI's); its metrics.

    Hydra's runtime config is set during the run as a Hydra job has it (the experiment chosen names the task)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from vitadapter.run.train import run_training

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        with open_dict(cfg):
            del cfg["hydra"]
            cfg.paths.output_dir = str(run_dir)
        return run_training(cfg)
    finally:
        HydraConfig.instance().cfg = None  # outside a Hydra job again


def run_script(script: str, *args: str) -> None:
    """`python scripts/SCRIPT.py [args]` in this process: the script's own `main(argv)`."""
    spec = importlib.util.spec_from_file_location(Path(script).stem, ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(list(args))


def pycocotools_bbox_ap(ground_truth: "COCO", results: list[dict]) -> float:
    """Box AP in percent of COCO-format `results` against `ground_truth`, scored by pycocotools directly (an
    independent reference for vitadapter's COCOEvaluator)."""
    from pycocotools.cocoeval import COCOeval

    evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return float(evaluation.stats[0]) * 100
