"""Several tasks on one frozen ViT: one copy of its tensors, outputs identical to each task alone, training a new
task leaves the others bit-identical, mismatched backbones and names are refused."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import run_cli, tiny_seg_overrides
from vitadapter.adapters import import_all_methods
from vitadapter.backbone import ViTBackbone
from vitadapter.inference.predictors import task_predictor
from vitadapter.multitask import MultiTaskModel, tensor_bytes
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.run.predict import read_rgb, task_drawer
from vitadapter.run.trained import load_trained
from vitadapter.tasks import BackboneMismatchError

# fusion needs trained source checkpoints; tests/adapters/test_fusion.py covers it
METHODS = sorted(set(import_all_methods()) - {"fusion"})


def _ckpt(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


def _build_seg(compose_config, root: Path, tmp_path: Path, method: str, seed: int = 0):
    """A fresh demo_seg task (test_vit) with `method`; its head initialised from `seed`."""
    cfg = compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(root), f"model/adapter={method}"],
                         tmp_path)
    torch.manual_seed(seed)
    return build_datamodule_and_task(cfg)


def _perturb_trainable(task: torch.nn.Module, seed: int) -> None:
    """Stands in for training, so that every trained tensor (many start at zero) matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in task.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))


def _image(seed: int = 3) -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _frozen_bytes(task: torch.nn.Module) -> int:
    return tensor_bytes(t for t in (*task.parameters(), *task.buffers()) if task.backbone.is_frozen_tensor(t))


@pytest.mark.parametrize("method", METHODS)
def test_second_task_costs_what_it_trained_and_computes_as_alone(method: str, compose_config, seg_data_root: Path,
                                                                 tmp_path: Path) -> None:
    _, first = _build_seg(compose_config, seg_data_root, tmp_path, "bottleneck", seed=1)
    _, second = _build_seg(compose_config, seg_data_root, tmp_path, method, seed=2)
    _perturb_trainable(first, 1)
    _perturb_trainable(second, 2)
    first.eval(), second.eval()
    image = _image()
    with torch.no_grad():
        alone = [first(image), second(image)]
    second_frozen = _frozen_bytes(second)
    second_all = tensor_bytes([*second.parameters(), *second.buffers()])

    model = MultiTaskModel()
    model.add_task(first, "first")
    one_task = model.memory_bytes()["total"]
    model.add_task(second, "second")
    memory = model.memory_bytes()

    # the second task adds exactly its own tensors: everything but the frozen ViT tensors it shares
    assert memory["total"] - one_task == second_all - second_frozen == memory["tasks"]["second"]
    vit_bytes = tensor_bytes(first.backbone.vit.parameters())
    if method == "full":
        assert memory["total"] - one_task > vit_bytes / 2  # it trains the ViT's tensors (all that run): its own ViT
    else:
        assert memory["total"] - one_task < vit_bytes / 2
    with torch.no_grad():
        assert torch.equal(model(image, task="first"), alone[0])
        assert torch.equal(model(image, task="second"), alone[1])
    # what trains in the second task (BitFit's biases, LayerNorms, the whole ViT for full) is its own
    shared = {id(t) for t in model._frozen.values()}
    assert not any(id(p) in shared for p in second.parameters() if p.requires_grad)

@pytest.mark.parametrize("method", ["bitfit", "full", "lora", "norm", "convpass_demo"])
def test_training_a_new_task_leaves_a_loaded_task_bit_identical(method: str, compose_config, seg_demo_run: Path,
                                                                seg_data_root: Path, tmp_path: Path) -> None:
    model = MultiTaskModel.from_checkpoints([_ckpt(seg_demo_run)])
    rgb = read_rgb(sorted((seg_data_root / "images" / "validation").glob("*.jpg"))[0])
    image = _image()
    with torch.no_grad():
        before = (model(image, task="demo_seg"), model.predict(rgb, task="demo_seg"))
    datamodule, new = _build_seg(compose_config, seg_data_root, tmp_path, method)
    model.add_task(new, "new_task")
    trained_before = {n: p.detach().clone() for n, p in new.named_parameters() if p.requires_grad}
    trainer = L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(new, datamodule=datamodule)

    changed = [n for n, p in new.named_parameters() if p.requires_grad and not torch.equal(p, trained_before[n])]
    assert changed, "the new task did not train"
    model.eval()
    with torch.no_grad():
        after = (model(image, task="demo_seg"), model.predict(rgb, task="demo_seg"))
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])
    shared = [t for t in model.task("demo_seg").parameters() if any(t is s for s in model._frozen.values())]
    assert shared and all(not t.requires_grad for t in shared)


def test_checkpoints_served_together_predict_as_each_alone(seg_demo_run: Path, det_demo_run: Path,
                                                           det_data_root: Path) -> None:
    model = MultiTaskModel.from_checkpoints([_ckpt(seg_demo_run), _ckpt(det_demo_run)])
    assert model.task_names == ["demo_seg", "demo_det"]  # model.task_name defaults to the experiment
    rgb = read_rgb(sorted((det_data_root / "val2017").glob("*.jpg"))[0])
    vit_bytes = []
    for name, run in (("demo_seg", seg_demo_run), ("demo_det", det_demo_run)):
        datamodule, alone = load_trained(_ckpt(run))
        vit_bytes.append(_frozen_bytes(alone))  # the whole pretrained ViT: Convpass trains none of its tensors
        with torch.inference_mode():
            expected = task_predictor(alone, datamodule, torch.device("cpu"))(rgb)
        served = model.predict(rgb, task=name)
        if name == "demo_seg":
            assert served.shape == rgb.shape[:2] and torch.equal(served, expected)
        else:
            assert set(served) == set(expected) and all(torch.equal(served[k], expected[k]) for k in expected)
    memory = model.memory_bytes()
    assert memory["total"] == memory["shared"] + sum(memory["tasks"].values())
    assert memory["shared"] == vit_bytes[0] == vit_bytes[1]  # one ViT, not two


def test_other_frozen_weights_and_clashing_names_are_refused(seg_demo_run: Path, tmp_path: Path) -> None:
    checkpoint = torch.load(_ckpt(seg_demo_run), map_location="cpu", weights_only=False)
    backbone = checkpoint["vitadapter"]["config"]["model"]["backbone"]
    backbone["seed"] = 1  # as if trained on another random ViT
    checkpoint["vitadapter"]["backbone_fingerprint"] = ViTBackbone("test_vit", seed=1,
                                                                   model_kwargs=backbone["model_kwargs"]).fingerprint
    other = tmp_path / "seed1.ckpt"
    torch.save(checkpoint, other)
    assert MultiTaskModel.from_checkpoints([other]).task_names == ["demo_seg"]  # valid on its own backbone
    with pytest.raises(BackboneMismatchError, match=rf"seed1\.ckpt was trained on backbone 'test_vit' with weights "
                                                    r"fingerprint .* tasks loaded so far \(a\)"):
        MultiTaskModel.from_checkpoints([_ckpt(seg_demo_run), other], names=["a", "b"])
    with pytest.raises(ValueError, match=r"a task named 'demo_seg' \(.*last\.ckpt\) is already loaded"):
        MultiTaskModel.from_checkpoints([_ckpt(seg_demo_run), _ckpt(seg_demo_run)])
    named = MultiTaskModel.from_checkpoints([_ckpt(seg_demo_run), _ckpt(seg_demo_run)], names=["a", "b"])
    with pytest.raises(KeyError, match=r"no task named 'c'; the tasks are \['a', 'b'\]"):
        named(_image(), task="c")


def test_merging_a_method_into_shared_weights_is_refused(lora_checkpoint: Path) -> None:
    model = MultiTaskModel.from_checkpoints([lora_checkpoint])
    with pytest.raises(ValueError, match="shared with other tasks .* merging would change them for every task"):
        model.task("demo_seg").encoder.merge()


def test_predict_cli_draws_each_task_into_its_folder(seg_demo_run: Path, det_demo_run: Path, det_data_root: Path,
                                                     tmp_path: Path) -> None:
    inputs = sorted((det_data_root / "val2017").glob("*.jpg"))[:2]
    folder = tmp_path / "inputs"
    folder.mkdir()
    for image in inputs:
        (folder / image.name).write_bytes(image.read_bytes())
    run_cli("predict.py", f"ckpt_path=[{_ckpt(seg_demo_run)},{_ckpt(det_demo_run)}]", f"input={folder}",
            f"output={tmp_path / 'drawn'}", "score_threshold=0.0", f"hydra.run.dir={tmp_path / 'run'}")
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["demo_det", "demo_seg"]
    for name, run in (("demo_seg", seg_demo_run), ("demo_det", det_demo_run)):
        datamodule, alone = load_trained(_ckpt(run))
        draw = task_drawer(alone, datamodule, torch.device("cpu"), score_threshold=0.0, alpha=0.5)
        drawn = sorted((tmp_path / "drawn" / name).glob("*.png"))
        assert [p.stem for p in drawn] == [p.stem for p in inputs]
        with torch.inference_mode():
            expected = np.asarray(draw(read_rgb(inputs[0])))
        assert np.array_equal(np.asarray(Image.open(drawn[0]).convert("RGB")), expected)
    log = (tmp_path / "run" / "predict.log").read_text()
    assert "serving demo_seg, demo_det on one frozen ViT" in log
