"""The optimiser's parameter groups: timm's weight-decay rules over the whole task, layer-wise lr decay,
a method's own lr, and frozen tensors left out."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from tests.helpers import tiny_seg_overrides
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.tasks import trainable_param_groups

VIT = "encoder.backbone.vit."
DEPTH = 4
# tiny versions of the real architectures (depth 4: the neck taps 4 blocks), merged into the demo's model_kwargs
TINY = "++model.backbone.model_kwargs={patch_size:%d,depth:4,embed_dim:32,num_heads:2,img_size:%d}"
# per family: (tensors before the blocks, tensors of each block) that get no weight decay under `full`
NO_DECAY = {
    "vit_small_patch14_reg4_dinov2": (
        {"cls_token", "reg_token", "pos_embed", "patch_embed.proj.bias"},
        {"norm1.weight", "norm1.bias", "attn.qkv.bias", "attn.proj.bias", "ls1.gamma", "norm2.weight",
         "norm2.bias", "mlp.fc1.bias", "mlp.fc2.bias", "ls2.gamma"},
    ),
    "eva02_tiny_patch14_224": (
        {"cls_token", "pos_embed", "patch_embed.proj.bias"},
        {"norm1.weight", "norm1.bias", "attn.q_bias", "attn.v_bias", "attn.proj.bias", "norm2.weight",
         "norm2.bias", "mlp.fc1.bias", "mlp.fc2.bias"},
    ),
    "beit_base_patch16_224": (  # no absolute position embedding; a relative-position table per block
        {"cls_token", "patch_embed.proj.bias"},
        {"gamma_1", "gamma_2", "norm1.weight", "norm1.bias", "attn.q_bias", "attn.v_bias",
         "attn.relative_position_bias_table", "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.bias",
         "mlp.fc2.bias"},
    ),
}
DECAY = ({"patch_embed.proj.weight"}, {"attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight"})
PATCH = {"vit_small_patch14_reg4_dinov2": 14, "eva02_tiny_patch14_224": 14, "beit_base_patch16_224": 16}


def _vit_names(top: set[str], block: set[str]) -> set[str]:
    return {VIT + n for n in top} | {f"{VIT}blocks.{i}.{n}" for i in range(DEPTH) for n in block}


def _optimizer(compose_config, tmp_path: Path, data_root: Path,
               *overrides: str) -> tuple[L.LightningModule, torch.optim.Optimizer]:
    """The demo_seg task (tiny) with `overrides` and the optimiser its `configure_optimizers` builds."""
    cfg = compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(data_root), *overrides], tmp_path)
    task = build_datamodule_and_task(cfg)[1]
    task.trainer = L.Trainer(max_steps=10, max_epochs=-1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False)
    return task, task.configure_optimizers()["optimizer"]


def _by_name(task: nn.Module, optimizer: torch.optim.Optimizer, key: str) -> dict[str, float]:
    """`key` ("weight_decay" or "initial_lr", the lr before the schedule) of every optimised tensor, by name."""
    name_of = {id(p): n for n, p in task.named_parameters()}
    return {name_of[id(p)]: group[key] for group in optimizer.param_groups for p in group["params"]}


def test_groups_skip_frozen_and_split_decay() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    no_decay, decay = trainable_param_groups(model, weight_decay=0.1)
    assert [p.shape for p in decay["params"]] == [torch.Size([2, 4])] and decay["weight_decay"] == 0.1
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


def test_no_trainable_parameters_is_an_error() -> None:
    with pytest.raises(ValueError, match="no trainable"):
        trainable_param_groups(nn.Linear(2, 2).requires_grad_(False), weight_decay=0.1)


@pytest.mark.parametrize("name", sorted(NO_DECAY))
def test_full_fine_tuning_decays_exactly_the_vit_weight_matrices(name: str, compose_config, tmp_path,
                                                                 seg_data_root) -> None:
    task, optimizer = _optimizer(compose_config, tmp_path, seg_data_root, "model/adapter=full",
                                 f"model.backbone.name={name}", TINY % (PATCH[name], 4 * PATCH[name]))
    decay = _by_name(task, optimizer, "weight_decay")
    in_vit = {n: wd for n, wd in decay.items() if n.startswith(VIT)}
    assert {n for n, wd in in_vit.items() if wd == 0.0} == _vit_names(*NO_DECAY[name])
    # the demo's weight decay on the weight matrices; the final norm (never run) is frozen and left out
    assert {n for n, wd in in_vit.items() if wd == 0.01} == _vit_names(*DECAY)
    assert set(in_vit.values()) == {0.0, 0.01}


def test_prompts_get_no_decay_and_the_methods_lr(compose_config, tmp_path, seg_data_root) -> None:
    task, optimizer = _optimizer(compose_config, tmp_path, seg_data_root, "model/adapter=vpt",
                                 "model.adapter.lr=5e-3", "model.optimizer.layer_decay=0.5")
    assert _by_name(task, optimizer, "weight_decay")["encoder.hooks.prompts"] == 0.0
    assert _by_name(task, optimizer, "initial_lr")["encoder.hooks.prompts"] == 5e-3  # outside the blocks: scale 1


@pytest.mark.parametrize(("method", "own_lr"), [("bottleneck", None), ("lora", 5e-3)])
def test_layer_decay_scales_a_methods_modules_by_their_block(method: str, own_lr: float | None, compose_config,
                                                             tmp_path, seg_data_root) -> None:
    # 6 blocks, the last 2 never run: layer ids are embeddings 0, block i -> i + 1, neck and heads 5 (scale 1)
    task, optimizer = _optimizer(compose_config, tmp_path, seg_data_root, f"model/adapter={method}",
                                 f"model.adapter.lr={own_lr if own_lr else 'null'}", "model.optimizer.lr=1e-3",
                                 "model.optimizer.layer_decay=0.5", "++model.backbone.model_kwargs.depth=6",
                                 "model.backbone.out_indices=[0,1,2,3]")
    lrs = _by_name(task, optimizer, "initial_lr")
    method_lr = own_lr or 1e-3
    in_blocks = {n: lr for n, lr in lrs.items() if n.startswith(VIT)}
    assert {int(re.match(rf"{VIT}blocks\.(\d)\.", n)[1]) for n in in_blocks} == {0, 1, 2, 3}
    for name, lr in in_blocks.items():
        block = int(re.match(rf"{VIT}blocks\.(\d)\.", name)[1])
        assert lr == pytest.approx(method_lr * 0.5 ** (4 - block), rel=1e-12), name
    assert {lr for n, lr in lrs.items() if not n.startswith(VIT)} == {1e-3}  # neck and heads


def test_full_fine_tuning_decays_by_layer_from_its_config(compose_config, tmp_path, seg_data_root) -> None:
    task, optimizer = _optimizer(compose_config, tmp_path, seg_data_root, "model/adapter=full")
    lrs = _by_name(task, optimizer, "initial_lr")
    # full.yaml: model.adapter.lr 1e-4, model.optimizer.layer_decay 0.65; the demo's ViT has 4 blocks
    assert lrs[VIT + "blocks.3.attn.qkv.weight"] == pytest.approx(1e-4 * 0.65, rel=1e-12)
    assert lrs[VIT + "blocks.0.mlp.fc1.weight"] == pytest.approx(1e-4 * 0.65**4, rel=1e-12)
    assert lrs[VIT + "cls_token"] == lrs[VIT + "patch_embed.proj.weight"] == pytest.approx(1e-4 * 0.65**5, rel=1e-12)
    assert {lr for n, lr in lrs.items() if not n.startswith(VIT)} == {1e-3}  # demo_seg's model.optimizer.lr


def test_without_layer_decay_a_methods_lr_is_its_own(compose_config, tmp_path, seg_data_root) -> None:
    task, optimizer = _optimizer(compose_config, tmp_path, seg_data_root, "model/adapter=lora",
                                 "model.adapter.lr=5e-3", "model.optimizer.lr=1e-4")
    lrs = _by_name(task, optimizer, "initial_lr")
    method = {id(p) for p in task.encoder.method_parameters()}
    name_of = {id(p): n for n, p in task.named_parameters()}
    assert {lrs[name_of[i]] for i in method} == {5e-3}
    assert {lr for n, lr in lrs.items() if n not in {name_of[i] for i in method}} == {1e-4}
    _, plain = _optimizer(compose_config, tmp_path, seg_data_root, "model/adapter=convpass")
    assert len(plain.param_groups) == 2  # no own lr: one group per weight-decay setting


def test_layer_decay_is_an_optimiser_setting(compose_config, tmp_path, seg_data_root) -> None:
    with pytest.raises(Exception, match=r"set model\.optimizer\.layer_decay=0\.5 instead"):
        _optimizer(compose_config, tmp_path, seg_data_root, "model/adapter=full", "model.adapter.layer_decay=0.5")
    with pytest.raises(ValueError, match=r"model\.optimizer\.layer_decay must be in \(0, 1\]"):
        _optimizer(compose_config, tmp_path, seg_data_root, "model.optimizer.layer_decay=1.5")
