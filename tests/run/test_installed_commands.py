"""The installed commands work from a directory outside the repository and write under it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from PIL import Image

from tests.helpers import ROOT, cli_env, tiny_seg_overrides


def _command(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    executable = shutil.which(name)
    assert executable, f"{name} is not on PATH: install the project (pip install -e .) first"
    env = cli_env()
    env.pop("PROJECT_ROOT", None)
    proc = subprocess.run([executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_train_eval_and_predict_commands_run_outside_the_repository(tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert not work.resolve().is_relative_to(ROOT)
    # no data.root: the synthetic set goes to the default data folder, under the current directory
    overrides = [o for o in tiny_seg_overrides(Path("unused")) if not o.startswith("data.root")]
    _command("vitadapter-train", "experiment=demo_seg", *overrides, cwd=work)

    runs = list((work / "outputs" / "train" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "train.log").is_file()
    assert (work / "data" / "synthetic_ade20k" / "images" / "training").is_dir()
    trained = json.loads((runs[0] / "metrics.json").read_text())
    checkpoint = runs[0] / "checkpoints" / "last.ckpt"

    _command("vitadapter-eval", f"ckpt_path={checkpoint}", "hydra.run.dir=evaluated", cwd=work)
    evaluated = json.loads((work / "evaluated" / "metrics.json").read_text())
    assert evaluated["val/mIoU"] == trained["val/mIoU"]

    image = sorted((work / "data" / "synthetic_ade20k" / "images" / "validation").glob("*.jpg"))[0]
    _command("vitadapter-predict", f"ckpt_path={checkpoint}", f"input={image}", "output=drawn",
             "hydra.run.dir=predicted", cwd=work)
    assert Image.open(work / "drawn" / f"{image.stem}.png").height >= Image.open(image).height
