"""AdapterFusion: reduces exactly to one source, follows its attention formula, trains and stores only the fusion,
refuses sources of another backbone, placement or method, and changed sources (also through the CLI)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException

from tests.helpers import evaluate_in_process, tiny_seg_overrides, train_in_process
from vitadapter.adapters import BottleneckAdapter
from vitadapter.adapters.fusion import AdapterFusion, AdapterFusionConfig, FusionSourceError
from vitadapter.checkpoint import TrainedCheckpoint
from vitadapter.export.merged import load_trained_task
from vitadapter.run.build import build_datamodule_and_task
from vitadapter.utils.params import parameter_counts


def _ckpt(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


def _fusion_task(target_ckpt: Path, sources: list[Path], **backbone: object) -> torch.nn.Module:
    """A fresh task with the target checkpoint's config (its data, neck, head), fusing `sources`."""
    config = TrainedCheckpoint.read(target_ckpt).config()
    config.model.adapter = {"_target_": "vitadapter.adapters.build_method", "name": "fusion",
                            "sources": [str(s) for s in sources]}
    config.model.backbone.update(backbone)
    return build_datamodule_and_task(config)[1]


def _rewrite(source: Path, copy: Path, edit) -> Path:
    """A copy of a checkpoint, changed by `edit(checkpoint)`."""
    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    edit(checkpoint)
    torch.save(checkpoint, copy)
    return copy


def _nudge_an_adapter(checkpoint: dict) -> None:
    key = next(k for k in checkpoint["state_dict"] if k.endswith(".adapter.up.bias"))
    checkpoint["state_dict"][key] = checkpoint["state_dict"][key] + 0.01


def _refused(match: str) -> AbstractContextManager:
    """The build refuses: Hydra's instantiate wraps the method's error, keeping its message."""
    return pytest.raises((FusionSourceError, InstantiationException), match=match)


def test_one_source_computes_its_adapters_features_bit_for_bit(seg_demo_run: Path) -> None:
    """Softmax over one source is exactly 1 and V starts at the identity, so the fused delta is the source's delta;
    identity matmul and the one-term sum are exact in IEEE arithmetic, hence torch.equal, in fp32 and bf16."""
    source = load_trained_task(_ckpt(seg_demo_run))
    assert any(p.abs().max() > 0 for n, p in source.named_parameters() if n.endswith("adapter.up.weight"))
    fusion = _fusion_task(_ckpt(seg_demo_run), [_ckpt(seg_demo_run)]).eval()
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for dtype in (torch.float32, torch.bfloat16):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            expected, fused = source.encoder.tokens(image), fusion.encoder.tokens(image)
        assert all(torch.equal(a.x, b.x) for a, b in zip(expected, fused, strict=True))


def test_attention_over_sources_follows_the_formula() -> None:
    torch.manual_seed(0)
    sources = [BottleneckAdapter(8, 4), BottleneckAdapter(8, 4)]
    for adapter in sources:
        torch.nn.init.normal_(adapter.up.weight)
    fusion = AdapterFusion(sources, ["sequential", "parallel"], dim=8, attention_dim=4, temperature=2.0)
    h, u = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    d = torch.stack([sources[0](h), sources[1](u)], dim=-2)
    # at init: query zero -> equal weights; value identity -> the mean of the deltas
    assert torch.allclose(fusion(h, u), d.mean(dim=-2), atol=1e-6)
    same = AdapterFusion([sources[0], sources[0]], ["sequential"] * 2, dim=8, attention_dim=4)
    assert torch.equal(same(h, u), sources[0](h))  # 0.5 d + 0.5 d == d exactly
    with torch.no_grad():
        for linear in (fusion.query, fusion.key, fusion.value):
            torch.nn.init.normal_(linear.weight)
            torch.nn.init.normal_(linear.bias)
    q, k = fusion.query(h), fusion.key(h.unsqueeze(-2) + d)
    alpha = torch.softmax(torch.einsum("bla,blna->bln", q, k) / (math.sqrt(4) * 2.0), dim=-1)
    expected = torch.einsum("bln,blnd->bld", alpha, d) @ fusion.value.weight.T + fusion.value.bias
    assert torch.allclose(fusion(h, u), expected, atol=1e-5)
    assert not torch.allclose(alpha, torch.full_like(alpha, 0.5), atol=1e-2)
    assert not any(p.requires_grad for p in fusion.sources.parameters())


def test_only_fusion_neck_and_head_train_and_checkpoints_name_the_sources(
    seg_demo_run: Path, det_demo_run: Path
) -> None:
    sources = [_ckpt(seg_demo_run), _ckpt(det_demo_run)]
    task = _fusion_task(sources[0], sources)
    task.train()
    trainable = [n for n, p in task.named_parameters() if p.requires_grad]
    in_vit = [n for n in trainable if ".backbone.vit." in n]
    # every block's attn and mlp branch: query, key, value (D x D each, with a bias) and nothing else in the ViT
    branches, width = 2 * task.backbone.depth, task.backbone.embed_dim
    assert {n.split(".adapter.")[1] for n in in_vit} == {f"{p}.{t}" for p in ("query", "key", "value")
                                                         for t in ("weight", "bias")}
    assert len(in_vit) == branches * 6
    assert parameter_counts(task)["params/trainable_adapter"] == branches * 3 * (width * width + width)
    frozen_sources = [m for n, m in task.named_modules() if n.endswith(".adapter.sources")]
    assert len(frozen_sources) == branches and all(len(m) == 2 and not m.training for m in frozen_sources)
    assert not any(p.requires_grad for m in frozen_sources for p in m.parameters())

    checkpoint = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(checkpoint)
    saved = checkpoint["state_dict"]
    assert not any(".sources." in k for k in saved) and not any(".blocks.0.attn." in k for k in saved)
    assert [k for k in saved if ".backbone.vit." in k] == in_vit
    assert checkpoint["vitadapter"]["method_record"]["fusion_sources"] == [
        {"path": str(s), "sha256": hashlib.sha256(s.read_bytes()).hexdigest()} for s in sources]
    fresh = _fusion_task(sources[0], sources)
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"], strict=True)


def test_sources_of_another_backbone_placement_or_method_are_refused(
    seg_demo_run: Path, det_demo_run: Path, tmp_path: Path
) -> None:
    seg, det = _ckpt(seg_demo_run), _ckpt(det_demo_run)
    with _refused(rf"fusion source {det} was trained on backbone 'test_vit' with "
                                                r"weights fingerprint \w{16}, but this model's backbone"):
        _fusion_task(seg, [det], seed=1)

    def drop(pattern: str):
        return lambda c: [c["state_dict"].pop(k) for k in [k for k in c["state_dict"] if pattern in k]]

    fewer_blocks = _rewrite(det, tmp_path / "fewer_blocks.ckpt", drop(".blocks.1.drop_path"))
    with _refused(rf"{fewer_blocks} adapts blocks \[0, 2, 3\] but {seg} adapts "
                                                r"\[0, 1, 2, 3\] \(model.adapter.layers"):
        _fusion_task(seg, [seg, fewer_blocks])
    attn_only = _rewrite(det, tmp_path / "attn_only.ckpt", drop(".drop_path2.adapter."))
    with _refused(rf"{attn_only} adapts branches \['attn'\] .*model.adapter.position"):
        _fusion_task(seg, [seg, attn_only])
    lora = _rewrite(det, tmp_path / "lora.ckpt", lambda c: c["vitadapter"]["config"]["model"].update(
        adapter={"name": "lora"}))
    with _refused(rf"{lora} was trained with model.adapter.name='lora'"):
        _fusion_task(seg, [seg, lora])
    with _refused(f"fusion source {tmp_path / 'none.ckpt'} does not exist"):
        _fusion_task(seg, [tmp_path / "none.ckpt"])
    with pytest.raises(ValueError, match="model.adapter.sources is empty"):
        AdapterFusionConfig(sources=[])
    with pytest.raises(ValueError, match="layers and drop_below do not apply"):
        AdapterFusionConfig(sources=[str(seg)], layers=[0])


def test_fusion_trains_and_evaluates_from_its_checkpoint_and_refuses_a_changed_source(
    seg_demo_run: Path, det_demo_run: Path, seg_data_root: Path, tmp_path: Path
) -> None:
    sources = [shutil.copy(_ckpt(seg_demo_run), tmp_path / "seg.ckpt"),
               shutil.copy(_ckpt(det_demo_run), tmp_path / "det.ckpt")]
    run = tmp_path / "fusion_run"
    # in process, as train.py and eval.py run it
    train_in_process(run, "experiment=demo_seg", *tiny_seg_overrides(seg_data_root), "model/adapter=fusion",
                     f"model.adapter.sources=['{sources[0]}','{sources[1]}']")
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["params/trainable_adapter"] == 4 * 2 * 3 * (64 * 64 + 64)  # demo_seg's test_vit: 4 blocks, width 64
    checkpoint = torch.load(_ckpt(run), map_location="cpu", weights_only=False)
    assert [s["path"] for s in checkpoint["vitadapter"]["method_record"]["fusion_sources"]] == [str(s) for s in sources]
    assert not any(".sources." in k for k in checkpoint["state_dict"])

    evaluated = evaluate_in_process(_ckpt(run), tmp_path / "eval")
    assert evaluated["val/mIoU"] == pytest.approx(trained["val/mIoU"], abs=1e-9)

    _rewrite(sources[1], sources[1], _nudge_an_adapter)
    with pytest.raises(FusionSourceError, match=rf"fusion source {sources[1]} changed since this fusion was trained"):
        load_trained_task(_ckpt(run))
