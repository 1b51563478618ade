"""ViT-Adapter around the encoder's frozen ViT: sizes, block groups, exactness at initialisation, the
side-network mode, any patch and input size, and composition with PEFT methods."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from vitadapter.adapters import build_method
from vitadapter.backbone import ViTBackbone
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck, ViTAdapterNeck
from vitadapter.necks.vit_adapter import block_groups, heads_dividing, size_for_width

# the paper's Table 1: extra parameters of ViT-Adapter-T/S/B/L, in millions, and the tolerance the
# rounding of each figure allows (T is given to one decimal of 2.5)
PAPER_PARAMS = {"T": (192, 12, 2.5, 0.05), "S": (384, 12, 5.8, 0.03), "B": (768, 12, 14.0, 0.03),
                "L": (1024, 24, 23.7, 0.03)}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("size", sorted(PAPER_PARAMS))
def test_parameter_count_matches_the_paper(size: str) -> None:
    width, depth, millions, tolerance = PAPER_PARAMS[size]
    neck = ViTAdapterNeck(in_channels=width, patch_size=16, depth=depth)
    assert neck.size == size
    assert abs(_count(neck) / 1e6 - millions) <= tolerance * millions


def test_presets_follow_the_vit_width_and_heads_divide_other_widths() -> None:
    assert [size_for_width(w) for w in (192, 384, 768, 1024, 64, 1280)] == ["T", "S", "B", "L", "T", "L"]
    assert heads_dividing(64, 6) == 4 and heads_dividing(192, 6) == 6 and heads_dividing(384, 12) == 12
    neck = ViTAdapterNeck(in_channels=64, patch_size=16, depth=6)
    attention = neck.extractors[0].attention
    assert (attention.heads, attention.points, attention.value_proj.out_features) == (4, 4, 64)
    explicit = ViTAdapterNeck(in_channels=768, patch_size=16, depth=12, size="T")
    assert explicit.extractors[0].attention.heads == 6 and explicit.extractors[0].attention.value_proj.out_features == 768
    with pytest.raises(ValueError, match=r"model.neck.size='XL'"):
        ViTAdapterNeck(in_channels=64, patch_size=16, depth=6, size="XL")
    with pytest.raises(ValueError, match=r"model.neck.extra_extractors=-1: must be at least 0"):
        ViTAdapterNeck(in_channels=64, patch_size=16, depth=6, extra_extractors=-1)


def test_block_groups_of_the_paper_and_of_any_depth() -> None:
    assert [list(g) for g in block_groups(12)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert [(g.start, g.stop - 1) for g in block_groups(24)] == [(0, 5), (6, 11), (12, 17), (18, 23)]
    assert [list(g) for g in block_groups(6)] == [[0], [1, 2], [3], [4, 5]]
    assert [list(g) for g in block_groups(2)] == [[0], [1]]
    for depth in range(1, 31):
        groups = block_groups(depth)
        assert [i for g in groups for i in g] == list(range(depth))
        assert len(groups) == min(4, depth)
        assert max(map(len, groups)) - min(map(len, groups)) <= 1
    with pytest.raises(ValueError, match="at least one ViT block"):
        block_groups(0)


def test_one_injector_per_group_and_extra_extractors_after_the_last() -> None:
    neck = ViTAdapterNeck(in_channels=64, patch_size=16, depth=6, extra_extractors=2)
    assert len(neck.injectors) == 4 and len(neck.extractors) == 6
    assert ViTAdapterNeck(in_channels=64, patch_size=16, depth=6, inject=False).injectors is None


def _block_outputs(encoder: Encoder, image: torch.Tensor) -> list[torch.Tensor]:
    outputs: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda m, a, out: outputs.append(out)) for b in encoder.backbone.vit.blocks]
    encoder(image)
    for handle in handles:
        handle.remove()
    return outputs


@pytest.mark.parametrize("method", ["none", "lora"])
def test_at_initialisation_the_vit_computes_exactly_its_frozen_features(method: str) -> None:
    image = torch.randn(2, 3, 64, 80)
    plain = Encoder(ViTBackbone("test_vit"), partial(MultiLevelNeck, out_channels=8), build_method(method)).eval()
    adapted = Encoder(ViTBackbone("test_vit"), ViTAdapterNeck, build_method(method)).eval()
    with torch.no_grad():
        expected, got = _block_outputs(plain, image), _block_outputs(adapted, image)
    assert len(expected) == len(got) == 6
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    # once the injectors have trained (gamma != 0) the ViT's features change
    with torch.no_grad():
        for injector in adapted.neck.injectors:
            injector.gamma.fill_(0.5)
        moved = _block_outputs(adapted, image)
    assert not torch.allclose(moved[-1], expected[-1])


@pytest.mark.parametrize(("inject", "records"), [(False, False), (True, True)])
def test_without_injectors_no_frozen_block_records_an_autograd_graph(inject: bool, records: bool) -> None:
    encoder = Encoder(ViTBackbone("test_vit"), partial(ViTAdapterNeck, inject=inject), build_method("none")).train()
    recorded = _block_outputs(encoder, torch.randn(2, 3, 64, 64))
    assert [out.requires_grad for out in recorded] == [records] * 6
    assert all((out.grad_fn is not None) == records for out in recorded)


def test_gradients_reach_the_injectors_through_the_frozen_blocks_and_never_the_vit() -> None:
    encoder = Encoder(ViTBackbone("test_vit"), ViTAdapterNeck, build_method("none")).train()
    sum(level.square().mean() for level in encoder(torch.randn(2, 3, 64, 64)).values()).backward()
    assert all(p.grad is None for p in encoder.backbone.parameters())
    assert all(injector.gamma.grad.abs().sum() > 0 for injector in encoder.neck.injectors)
    # every neck tensor gets a gradient (DDP runs with find_unused_parameters=false)
    assert [n for n, p in encoder.neck.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("patch", [8, 14, 16])
@pytest.mark.parametrize("size", [(64, 64), (70, 98), (45, 31)])
def test_pyramid_sizes_for_any_patch_and_input_size(patch: int, size: tuple[int, int]) -> None:
    backbone = ViTBackbone("test_vit", model_kwargs={"patch_size": patch})
    encoder = Encoder(backbone, ViTAdapterNeck, build_method("none")).eval()
    with torch.no_grad():
        pyramid = encoder(torch.randn(2, 3, *size))
    assert list(pyramid) == ["s4", "s8", "s16", "s32"]
    for stride, level in zip(encoder.strides, pyramid.values()):
        assert level.shape == (2, 64, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
        assert torch.isfinite(level).all()


def test_prefix_tokens_are_not_injected_into() -> None:
    encoder = Encoder(ViTBackbone("test_vit", out_indices=[0]), ViTAdapterNeck, build_method("none")).eval()
    with torch.no_grad():
        encoder.neck.injectors[0].gamma.fill_(1.0)
    seen = []
    encoder.backbone.vit.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        encoder(image)
        embedded = encoder.embed(image).x
    assert torch.equal(seen[0][:, :1], embedded[:, :1])  # the class token
    assert not torch.allclose(seen[0][:, 1:], embedded[:, 1:])


def test_composes_with_a_peft_method_inside_the_vit() -> None:
    encoder = Encoder(ViTBackbone("test_vit"), ViTAdapterNeck, build_method("lora")).train()
    with torch.no_grad():
        for param in encoder.method_parameters():
            param.add_(0.01)
    sum(level.square().mean() for level in encoder(torch.randn(2, 3, 48, 48)).values()).backward()
    lora = list(encoder.method_parameters())
    assert lora and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)


def test_sync_batchnorm_conversion_keeps_every_activation() -> None:
    neck = ViTAdapterNeck(in_channels=64, patch_size=16, depth=6)
    relus = sum(isinstance(m, torch.nn.ReLU) for m in neck.modules())
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(neck)
    assert sum(isinstance(m, torch.nn.ReLU) for m in converted.modules()) == relus == 6
    assert not any(type(m) is torch.nn.BatchNorm2d for m in converted.modules())


def test_bf16_autocast_stays_close_to_fp32() -> None:
    torch.manual_seed(0)
    encoder = Encoder(ViTBackbone("test_vit"), ViTAdapterNeck, build_method("none")).eval()
    with torch.no_grad():
        for injector in encoder.neck.injectors:
            injector.gamma.fill_(0.1)
        image = torch.randn(1, 3, 64, 64)
        reference = encoder(image)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = encoder(image)
    for name, level in reference.items():
        error = (low[name].float() - level).abs().max() / level.abs().max()
        assert error < 5e-2, name
