"""Parameter groups (no decay on norms/biases/scales) and the warm-up + poly schedule."""

import pytest
import torch
from torch import nn

from vitadapter.tasks import trainable_param_groups, warmup_poly_schedule


def test_groups_skip_frozen_and_split_decay() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    decay, no_decay = trainable_param_groups(model)
    assert [p.shape for p in decay["params"]] == [torch.Size([2, 4])]
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


def test_no_trainable_parameters_is_an_error() -> None:
    with pytest.raises(ValueError, match="no trainable"):
        trainable_param_groups(nn.Linear(2, 2).requires_grad_(False))


def test_warmup_then_poly_decay() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_poly_schedule(opt, total_steps=110, warmup_steps=10, warmup_ratio=0.0, power=1.0)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5) and lrs[109] == pytest.approx(0.01)


def test_method_lr_is_its_own_and_full_fine_tuning_decays_by_layer(compose_config, tmp_path, seg_data_root) -> None:
    from tests.helpers import tiny_seg_overrides
    from vitadapter.run.build import build_datamodule_and_task

    def groups(*overrides: str) -> tuple[object, list[dict]]:
        cfg = compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root), *overrides],
                             tmp_path)
        task = build_datamodule_and_task(cfg)[1]
        return task, trainable_param_groups(task, task.method_param_lr())

    task, lora = groups("model/adapter=lora", "model.adapter.lr=5e-3", "model.optimizer.lr=1e-4")
    lora_ids = {id(p) for p in task.encoder.method_parameters()}
    assert {g.get("lr") for g in lora if {id(p) for p in g["params"]} <= lora_ids} == {5e-3}
    assert all("lr" not in g for g in lora if not {id(p) for p in g["params"]} & lora_ids)  # neck, heads

    _, plain = groups("model/adapter=convpass")  # no own lr: one group per weight-decay setting
    assert len(plain) == 2 and all("lr" not in g for g in plain)

    task, full = groups("model/adapter=full", "model.adapter.lr=1e-3", "model.adapter.layer_decay=0.5")
    lr_of = {id(p): g["lr"] for g in full if "lr" in g for p in g["params"]}
    vit = task.backbone.vit  # depth 4 (the demo's architecture): block i -> 1e-3 * 0.5 ** (5 - (i + 1))
    assert lr_of[id(vit.blocks[3].attn.qkv.weight)] == pytest.approx(1e-3 * 0.5)
    assert lr_of[id(vit.blocks[0].mlp.fc1.weight)] == pytest.approx(1e-3 * 0.5**4)
    assert lr_of[id(vit.patch_embed.proj.weight)] == pytest.approx(1e-3 * 0.5**5)
