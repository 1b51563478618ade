"""scripts/pretrain_backbone.py's run in process: timm-loadable weights, fingerprints, determinism, and the weights
loaded as the frozen backbone of every task."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import timm
import torch
from safetensors.torch import load_file

from tests.depth_data import tiny_depth_overrides
from tests.helpers import compose_at, run_cli, tiny_det_overrides, tiny_seg_overrides
from vitadapter.backbone import ViTBackbone
from vitadapter.pretrain import read_backbone_metadata
from vitadapter.pretrain.run import run_pretraining
from vitadapter.run.build import build_datamodule_and_task

# timm's test_vit (width 64) with the demos' model_kwargs (patch 8, 4 blocks, 128 px), as the tiny downstream
# overrides of tests/helpers.py build it
TINY_PRETRAINING = [
    "model.backbone.name=test_vit",
    "data.synthetic={num_train:6,num_val:2,image_size:48,max_objects:3,seed:0}",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "trainer.max_steps=3",
    "trainer.val_check_interval=3",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "pretrain.scheduler.warmup_steps=1",
]
DEMO_KWARGS = {"patch_size": 8, "depth": 4, "img_size": 128}


def pretrain(run_dir: Path, data_root: Path, *overrides: str) -> dict:
    """What `python scripts/pretrain_backbone.py TINY... OVERRIDES` computes, in this process; its metrics."""
    cfg = compose_at("pretrain", [f"data.root={data_root}", f"output={run_dir / 'vit.safetensors'}",
                                  *TINY_PRETRAINING, *overrides], run_dir)
    return run_pretraining(cfg)


@pytest.fixture(scope="module")
def upstream_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("upstream")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory, upstream_root: Path) -> dict:
    """One tiny pretraining run (bf16 autocast, as the real one); its metrics."""
    return pretrain(tmp_path_factory.mktemp("pretrain_run"), upstream_root)


def test_weights_load_in_timm_and_as_the_backbone_with_the_recorded_fingerprint(pretrained: dict) -> None:
    path = Path(pretrained["pretrain/weights"])
    state = load_file(path)
    assert not any(k.startswith("head") for k in state) and "blocks.3.mlp.fc2.weight" in state
    metadata = read_backbone_metadata(path)
    assert metadata["timm_name"] == "test_vit" and metadata["steps"] == pretrained["pretrain/steps"] == 3
    assert metadata["fingerprint"] == pretrained["pretrain/fingerprint"]

    vit = timm.create_model("test_vit", pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(path)},
                            **DEMO_KWARGS)
    assert vit.state_dict().keys() == state.keys()
    assert all(torch.equal(tensor, state[name]) for name, tensor in vit.state_dict().items())

    first, second = (ViTBackbone("test_vit", checkpoint=str(path), model_kwargs=DEMO_KWARGS) for _ in range(2))
    random = ViTBackbone("test_vit", pretrained=False, seed=0, model_kwargs=DEMO_KWARGS)
    assert first.fingerprint == second.fingerprint == pretrained["pretrain/fingerprint"]
    assert random.fingerprint != first.fingerprint
    # the run started from the seed-0 init (as the random demo backbone) and trained every block
    changed = {name.split(".")[1] for name, tensor in random.vit.state_dict().items()
               if name.startswith("blocks.") and not torch.equal(tensor, state[name])}
    assert changed == {"0", "1", "2", "3"}
    assert 0.0 <= pretrained["val/region_acc"] <= 1.0 and pretrained["val/loss"] > 0


def test_the_same_seed_writes_the_same_weights(pretrained: dict, upstream_root: Path, tmp_path: Path) -> None:
    again = pretrain(tmp_path / "again", upstream_root)
    first, second = load_file(pretrained["pretrain/weights"]), load_file(again["pretrain/weights"])
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert again["pretrain/fingerprint"] == pretrained["pretrain/fingerprint"]


def _downstream_overrides(task: str, root: Path) -> list[str]:
    if task == "segmentation":
        return ["experiment=demo_seg", *tiny_seg_overrides(root)]
    if task == "detection":
        return ["experiment=demo_det", *tiny_det_overrides(root, "mask_rcnn_light")]
    return ["experiment=demo_depth", *tiny_depth_overrides(root), "model.head.channels=16",
            "data.synthetic={num_train:4,num_val:2,height:40,width:56,seed:0}"]


@pytest.mark.parametrize("task", ["segmentation", "detection", "depth"])
def test_pretrained_weights_are_the_frozen_backbone_of_every_task(task: str, pretrained: dict, tmp_path: Path) -> None:
    path = pretrained["pretrain/weights"]
    overrides = [*_downstream_overrides(task, tmp_path / "data"), f"model.backbone.checkpoint={path}"]
    datamodule, model = build_datamodule_and_task(compose_at("train", overrides, tmp_path))
    assert model.backbone.fingerprint == pretrained["pretrain/fingerprint"]
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=datamodule)
    # the frozen ViT is the file, bit for bit, after the run; what trains has moved
    state = load_file(path)
    frozen = {name: tensor for name, _, _, tensor in model.backbone.frozen_tensor_slots()}
    assert frozen.keys() == state.keys() and all(torch.equal(frozen[name], state[name]) for name in state)
    assert any(not torch.equal(p, trained[n]) for n, p in model.named_parameters() if p.requires_grad)


def test_a_missing_weights_file_names_the_command_that_makes_it(seg_data_root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "none.safetensors"
    tiny = [o for o in tiny_seg_overrides(seg_data_root) if not o.startswith("model.backbone")
            and not o.startswith("model/backbone")]
    cfg = compose_at("train", ["experiment=demo_seg_pretrained", *tiny, f"model.backbone.checkpoint={missing}"],
                     tmp_path)
    with pytest.raises(Exception, match=r"none\.safetensors does not exist(.|\n)*python scripts/pretrain_backbone\.py"):
        build_datamodule_and_task(cfg)


def test_an_output_that_is_not_a_safetensors_file_is_refused_before_training(tmp_path: Path) -> None:
    cfg = compose_at("pretrain", [*TINY_PRETRAINING, "output=null", f"data.root={tmp_path}"], tmp_path)
    with pytest.raises(ValueError, match="output=None: .*ending in .safetensors"):
        run_pretraining(cfg)
    assert not (tmp_path / "images").exists()  # nothing written, nothing trained


def test_the_script_composes_the_pretrain_config() -> None:
    out = run_cli("scripts/pretrain_backbone.py", "--cfg", "job", "trainer.max_steps=7").stdout
    assert "_target_: vitadapter.pretrain.PretrainTask" in out and "max_steps: 7" in out
    assert "output: ${model.backbone.checkpoint}" in out and "vit_tiny_p8_upstream.safetensors" in out
