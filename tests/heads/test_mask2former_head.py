"""The Mask2Former head: shapes on every pyramid neck, every parameter trained, widths that are not multiples of 32,
config errors, and transformers imported only when a head is built."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from tests.helpers import ROOT, tiny_seg_overrides
from vitadapter.heads.mask2former import Mask2FormerHead, semantic_scores
from vitadapter.run.build import build_datamodule_and_task

PYRAMID_NECKS = ["multilevel", "simple_pyramid", "vit_adapter"]


def _pyramid(channels: int, height: int, width: int, batch: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {f"s{s}": torch.randn(batch, channels, -(-height // s), -(-width // s), generator=generator)
            for s in (4, 8, 16, 32)}


@pytest.mark.parametrize("neck", PYRAMID_NECKS)
def test_shapes_on_every_pyramid_neck(neck: str, compose_config, tmp_path, seg_data_root) -> None:
    overrides = ["experiment=demo_seg_m2f", *tiny_seg_overrides(seg_data_root, neck)]
    _, task = build_datamodule_and_task(compose_config("train", overrides, tmp_path))
    head = task.head
    assert isinstance(head, Mask2FormerHead) and head.num_classes == task.num_classes == 8
    image = torch.randn(2, 3, 72, 40)  # odd level sizes: 18×10, 9×5, 5×3, 3×2
    with torch.no_grad():
        scores = task.eval()(image)
        queries = head.predict_queries(task.encoder(image))
    assert scores.shape == (2, 8, 18, 10)
    assert len(queries.class_logits) == len(queries.mask_logits) == 3 + 1  # decoder_layers + the first prediction
    assert all(c.shape == (2, 16, 9) for c in queries.class_logits)
    assert all(m.shape == (2, 16, 18, 10) for m in queries.mask_logits)
    assert torch.equal(scores, semantic_scores(queries.class_logits[-1], queries.mask_logits[-1]))


def test_every_parameter_trains_and_the_pyramid_gets_gradients() -> None:
    torch.manual_seed(0)
    head = Mask2FormerHead(16, 5, channels=32, num_queries=6, decoder_layers=3, pixel_decoder_layers=2,
                           heads=4, decoder_feedforward=32, pixel_decoder_feedforward=32).train()
    pyramid = {k: v.requires_grad_() for k, v in _pyramid(16, 40, 36).items()}
    labels = torch.randint(0, 5, (2, 40, 36))
    labels[0, :, :10] = 255
    head.segmentation_loss(pyramid, labels)["loss"].backward()
    assert [n for n, p in head.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()] == []
    assert all(level.grad is not None and level.grad.abs().sum() > 0 for level in pyramid.values())
    head.eval()
    with torch.no_grad():
        assert torch.equal(head(pyramid), head(pyramid))


@pytest.mark.parametrize(("channels", "groups"), [(16, 16), (48, 16), (64, 32)])
def test_group_norms_fit_any_width(channels: int, groups: int) -> None:
    from transformers.models.mask2former import modeling_mask2former

    head = Mask2FormerHead(8, 3, channels=channels, num_queries=4, decoder_layers=1, pixel_decoder_layers=1,
                           heads=4, decoder_feedforward=16, pixel_decoder_feedforward=16)
    norms = [m for m in head.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 5 and all(m.num_groups == groups and m.num_channels == channels for m in norms)
    assert modeling_mask2former.nn is nn  # transformers' module sees torch.nn again
    assert head(_pyramid(8, 32, 32)).shape == (2, 3, 8, 8)


def test_batch_norm_in_the_pixel_decoder_starts_as_torch_starts_it() -> None:
    head = Mask2FormerHead(8, 3, channels=16, num_queries=4, decoder_layers=1, pixel_decoder_layers=1, heads=4,
                           decoder_feedforward=16, pixel_decoder_feedforward=16, pixel_decoder_norm="bn")
    norms = [m for m in head.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert len(norms) == 5 and all(isinstance(m, nn.BatchNorm2d) for m in norms)
    assert all(torch.equal(m.weight, torch.ones(16)) and not m.bias.any() for m in norms)


def test_paper_sizes_by_default() -> None:
    head = Mask2FormerHead(64, 150)
    assert head.transformer.queries_features.num_embeddings == 100
    assert len(head.transformer.decoder.layers) == 9 and len(head.pixel_decoder.encoder.layers) == 6
    assert head.transformer.decoder.layers[0].fc1.out_features == 2048
    assert head.pixel_decoder.encoder.layers[0].fc1.out_features == 1024
    assert head.class_predictor.out_features == 151 and head.criterion.num_points == 12544
    assert (head.criterion.class_weight, head.criterion.mask_weight, head.criterion.dice_weight) == (2.0, 5.0, 5.0)
    assert head.criterion.no_object_weight == 0.1


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="4 pyramid levels"):
        Mask2FormerHead(8, 3, in_keys=["s4", "s8", "s16"])
    with pytest.raises(ValueError, match="channels=20 must be a multiple of model.head.heads=8"):
        Mask2FormerHead(8, 3, channels=20)
    with pytest.raises(ValueError, match="pixel_decoder_norm='ln'"):
        Mask2FormerHead(8, 3, channels=16, pixel_decoder_norm="ln")
    with pytest.raises(ValueError, match=r"unknown model.head.loss key\(s\) \['dice'\]"):
        Mask2FormerHead(8, 3, channels=16, loss={"dice": 1.0})
    head = Mask2FormerHead(8, 3, channels=16, num_queries=2, decoder_layers=1, pixel_decoder_layers=0,
                           decoder_feedforward=16, pixel_decoder_feedforward=16)
    pyramid = _pyramid(8, 32, 32)
    del pyramid["s32"]
    with pytest.raises(KeyError, match="s32"):
        head(pyramid)


def test_transformers_is_imported_when_a_head_is_built() -> None:
    code = ("import sys, vitadapter.heads, vitadapter.heads.mask2former; "
            "print('transformers' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
