"""Multi-scale deformable attention against a naive loop-and-bilinear reference, its Deformable DETR
initialisation, bf16 autocast, input checks, grid reference points and gradients."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pytest
import torch
from torch import Tensor

from vitadapter.necks.deformable_attention import MultiScaleDeformableAttention, grid_reference_points, sample_levels

SHAPES = [(5, 7), (3, 2), (1, 4)]  # non-square levels, one a single row


# ----------------------------------------------------------------------------- naive reference


def naive_bilinear(level: Tensor, x: float, y: float) -> Tensor:
    """Bilinear sample of an H×W×C map at (x, y) in [0, 1] of its extent, neighbours outside read 0
    (align_corners=False: pixel centres at (i + 0.5) / W)."""
    h, w, channels = level.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    dx, dy = px - x0, py - y0
    out = torch.zeros(channels, dtype=torch.float64)
    for xi, wx in ((x0, 1 - dx), (x0 + 1, dx)):
        for yi, wy in ((y0, 1 - dy), (y0 + 1, dy)):
            if 0 <= xi < w and 0 <= yi < h:
                out += wx * wy * level[yi, xi]
    return out


def naive_sample_levels(value: Tensor, shapes: Sequence[tuple[int, int]], locations: Tensor, weights: Tensor) -> Tensor:
    """sample_levels with explicit loops: value B×N×M×C, locations B×Q×M×L×P×2, weights B×Q×M×L×P."""
    value, locations, weights = value.double(), locations.double(), weights.double()
    batch, _, heads, channels = value.shape
    queries, levels, points = locations.shape[1], locations.shape[3], locations.shape[4]
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(batch, queries, heads * channels, dtype=torch.float64)
    for b in range(batch):
        for l, (h, w) in enumerate(shapes):
            for m in range(heads):
                level = value[b, starts[l]:starts[l + 1], m].reshape(h, w, channels)  # row-major cells
                for q in range(queries):
                    for p in range(points):
                        x, y = locations[b, q, m, l, p].tolist()
                        sample = naive_bilinear(level, x, y)
                        out[b, q, m * channels:(m + 1) * channels] += weights[b, q, m, l, p].item() * sample
    return out


def naive_forward(module: MultiScaleDeformableAttention, query: Tensor, reference_points: Tensor, value: Tensor,
                  shapes: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor]:
    """The module's forward in float64 from its Linear layers' weights; returns (output, locations)."""

    def linear(layer: torch.nn.Linear, x: Tensor) -> Tensor:
        return x.double() @ layer.weight.double().T + layer.bias.double()

    heads, levels, points = module.heads, module.levels, module.points
    batch, queries, _ = query.shape
    projected = linear(module.value_proj, value)
    values = projected.view(batch, projected.shape[1], heads, projected.shape[2] // heads)
    raw_offsets, raw_weights = linear(module.sampling_offsets, query), linear(module.attention_weights, query)
    locations = torch.zeros(batch, queries, heads, levels, points, 2, dtype=torch.float64)
    weights = torch.zeros(batch, queries, heads, levels, points, dtype=torch.float64)
    for b in range(batch):
        for q in range(queries):
            for m in range(heads):
                logits = [raw_weights[b, q, (m * levels + l) * points + p].item()
                          for l in range(levels) for p in range(points)]
                top = max(logits)
                total = sum(math.exp(v - top) for v in logits)
                for l, (h, w) in enumerate(shapes):
                    ref = reference_points[q, l] if reference_points.dim() == 3 else reference_points[b, q, l]
                    for p in range(points):
                        index = ((m * levels + l) * points + p) * 2
                        locations[b, q, m, l, p, 0] = ref[0].item() + raw_offsets[b, q, index].item() / w
                        locations[b, q, m, l, p, 1] = ref[1].item() + raw_offsets[b, q, index + 1].item() / h
                        weights[b, q, m, l, p] = math.exp(logits[l * points + p] - top) / total
    sampled = naive_sample_levels(values, shapes, locations, weights)
    return linear(module.output_proj, sampled), locations


def randomised_module(dim: int = 16, heads: int = 2, levels: int = 3, points: int = 3, value_ratio: float = 1.0,
                      offset_scale: float = 1.5) -> MultiScaleDeformableAttention:
    """A module whose offsets reach several cells (some outside the maps), non-uniform attention, non-zero biases."""
    module = MultiScaleDeformableAttention(dim, heads=heads, levels=levels, points=points, value_ratio=value_ratio)
    with torch.no_grad():
        module.sampling_offsets.weight.normal_(0, offset_scale / math.sqrt(dim))
        module.sampling_offsets.bias.add_(torch.randn_like(module.sampling_offsets.bias) * offset_scale)
        module.attention_weights.weight.normal_(0, 1.0 / math.sqrt(dim))
        module.attention_weights.bias.normal_(0, 0.5)
        module.value_proj.bias.normal_(0, 0.1)
        module.output_proj.bias.normal_(0, 0.1)
    return module


def tokens(batch: int, shapes: Sequence[tuple[int, int]], dim: int) -> Tensor:
    return torch.randn(batch, sum(h * w for h, w in shapes), dim)


# ----------------------------------------------------------------------------- sampling


def test_naive_reference_and_sample_levels_give_hand_computed_bilinear_values() -> None:
    # one level 2×2 of one channel [[1, 2], [3, 4]]; cell centres at 0.25 and 0.75 of the extent
    value = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
    points = [(0.25, 0.25), (0.75, 0.75), (0.5, 0.5), (0.5, 0.25), (0.0, 0.25), (0.0, 0.0), (1.5, 0.5), (-0.25, 0.75)]
    expected = torch.tensor([1.0, 4.0, 2.5, 1.5, 0.5, 0.25, 0.0, 0.0], dtype=torch.float64)
    locations = torch.tensor(points).view(1, len(points), 1, 1, 1, 2)
    weights = torch.ones(1, len(points), 1, 1, 1)
    torch.testing.assert_close(naive_sample_levels(value, [(2, 2)], locations, weights)[0, :, 0], expected)
    torch.testing.assert_close(sample_levels(value, [(2, 2)], locations, weights)[0, :, 0].double(), expected)


def test_sample_levels_matches_naive_loops_inside_and_outside_the_maps() -> None:
    torch.manual_seed(0)
    batch, queries, heads, channels, points = 2, 4, 2, 3, 3
    value = tokens(batch, SHAPES, heads * channels).view(batch, -1, heads, channels)
    locations = torch.rand(batch, queries, heads, len(SHAPES), points, 2) * 1.6 - 0.3  # [-0.3, 1.3]
    weights = torch.rand(batch, queries, heads, len(SHAPES), points)
    outside = ((locations < 0) | (locations > 1)).any(-1)
    assert outside.any() and (~outside).any()
    got = sample_levels(value, SHAPES, locations, weights)
    assert got.shape == (batch, queries, heads * channels)
    torch.testing.assert_close(got.double(), naive_sample_levels(value, SHAPES, locations, weights),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("shared_reference", [False, True], ids=["per_batch_reference", "shared_reference"])
@pytest.mark.parametrize("value_ratio", [1.0, 0.5])
def test_forward_matches_naive_reference_with_points_outside_the_maps(shared_reference: bool,
                                                                       value_ratio: float) -> None:
    torch.manual_seed(1)
    batch, queries, dim = 2, 5, 16
    module = randomised_module(dim, heads=2, levels=len(SHAPES), points=3, value_ratio=value_ratio)
    query, value = torch.randn(batch, queries, dim), tokens(batch, SHAPES, dim)
    reference = torch.rand(queries, len(SHAPES), 2) if shared_reference else torch.rand(batch, queries, len(SHAPES), 2)
    with torch.no_grad():
        got = module(query, reference, value, SHAPES)
    expected, locations = naive_forward(module, query, reference, value, SHAPES)
    outside = ((locations < 0) | (locations > 1)).any(-1)
    assert outside.float().mean() > 0.1 and (~outside).float().mean() > 0.1  # both cases really exercised
    assert got.shape == (batch, queries, dim) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=0)
    if shared_reference:  # a shared Q×L×2 reference equals the same points repeated over the batch
        with torch.no_grad():
            repeated = module(query, reference.expand(batch, -1, -1, -1), value, SHAPES)
        torch.testing.assert_close(got, repeated, atol=0, rtol=0)


def test_forward_at_initialisation_matches_naive_reference() -> None:
    torch.manual_seed(2)
    module = MultiScaleDeformableAttention(16, heads=4, levels=len(SHAPES), points=2)
    query, value = torch.randn(1, 6, 16), tokens(1, SHAPES, 16)
    reference = torch.rand(1, 6, len(SHAPES), 2)
    with torch.no_grad():
        got = module(query, reference, value, SHAPES)
    torch.testing.assert_close(got.double(), naive_forward(module, query, reference, value, SHAPES)[0],
                               atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- initialisation


@pytest.mark.parametrize("heads", [4, 8])
def test_initialisation_fans_points_along_head_directions_with_uniform_attention(heads: int) -> None:
    levels, points, dim = 3, 4, 16
    module = MultiScaleDeformableAttention(dim, heads=heads, levels=levels, points=points)
    assert torch.count_nonzero(module.sampling_offsets.weight) == 0
    assert torch.count_nonzero(module.attention_weights.weight) == 0
    assert torch.count_nonzero(module.attention_weights.bias) == 0
    bias = module.sampling_offsets.bias.detach().view(heads, levels, points, 2)
    for m in range(heads):
        theta = 2 * math.pi * m / heads
        cos, sin = math.cos(theta), math.sin(theta)
        scale = max(abs(cos), abs(sin))
        for l in range(levels):
            for p in range(points):
                expected = torch.tensor([cos / scale * (p + 1), sin / scale * (p + 1)])
                torch.testing.assert_close(bias[m, l, p], expected, atol=1e-6, rtol=1e-6)
    # a few values by hand: head 0 along +x, head M/4 along +y, head M/2 along -x
    torch.testing.assert_close(bias[0, 1, 2], torch.tensor([3.0, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(bias[heads // 4, 0, 1], torch.tensor([0.0, 2.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(bias[heads // 2, 2, 0], torch.tensor([-1.0, 0.0]), atol=1e-6, rtol=0)
    if heads == 8:  # the diagonal head reaches (1, 1) per cell of distance, not (√½, √½)
        torch.testing.assert_close(bias[1, 0, 3], torch.tensor([4.0, 4.0]), atol=1e-6, rtol=0)
    logits = module.attention_weights(torch.randn(2, 5, dim)).view(2, 5, heads, levels * points)
    torch.testing.assert_close(logits.softmax(-1), torch.full_like(logits, 1 / (levels * points)))


# ----------------------------------------------------------------------------- autocast


def test_bf16_autocast_output_is_close_to_fp32() -> None:
    torch.manual_seed(3)
    module = randomised_module(32, heads=4, levels=len(SHAPES), points=4)
    query, value = torch.randn(2, 9, 32), tokens(2, SHAPES, 32)
    reference = torch.rand(9, len(SHAPES), 2)
    with torch.no_grad():
        full = module(query, reference, value, SHAPES)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = module(query, reference, value, SHAPES)
    assert half.shape == full.shape and torch.isfinite(half).all()
    error = (half.float() - full).abs().max() / full.abs().max()
    assert error < 2e-2, f"bf16 relative error {error:.3g}"


# ----------------------------------------------------------------------------- input checks


def test_value_token_count_not_matching_the_shapes_raises() -> None:
    module = MultiScaleDeformableAttention(16, heads=2, levels=len(SHAPES), points=2)
    value = torch.randn(1, sum(h * w for h, w in SHAPES) + 1, 16)
    with pytest.raises(ValueError, match=re.escape(str(SHAPES))):
        module(torch.randn(1, 3, 16), torch.rand(3, len(SHAPES), 2), value, SHAPES)


def test_level_count_not_matching_the_module_raises() -> None:
    module = MultiScaleDeformableAttention(16, heads=2, levels=len(SHAPES), points=2)
    shapes = SHAPES[:2]
    with pytest.raises(ValueError, match="3 levels got 2 shapes"):
        module(torch.randn(1, 3, 16), torch.rand(3, 2, 2), tokens(1, shapes, 16), shapes)


@pytest.mark.parametrize(("dim", "heads", "value_ratio"), [(16, 3, 1.0), (16, 4, 0.375), (10, 4, 1.0)])
def test_value_width_not_divisible_by_heads_raises_at_construction(dim: int, heads: int, value_ratio: float) -> None:
    with pytest.raises(ValueError, match="not divisible by"):
        MultiScaleDeformableAttention(dim, heads=heads, levels=2, points=2, value_ratio=value_ratio)


def test_value_ratio_sets_the_value_width() -> None:
    module = MultiScaleDeformableAttention(16, heads=4, levels=2, points=2, value_ratio=0.5)
    assert module.value_proj.out_features == 8 and module.output_proj.in_features == 8
    assert module.output_proj.out_features == 16


# ----------------------------------------------------------------------------- reference points


def test_grid_reference_points_are_cell_centres_when_extents_match() -> None:
    # query grid 2×3 of stride 16 (32×48 px); levels of the same 32×48 px extent at strides 8 and 16
    points = grid_reference_points((2, 3), 16, [(4, 6), (2, 3)], [8, 16])
    assert points.shape == (6, 2, 2)
    expected = torch.tensor([[(i + 0.5) / 3, (j + 0.5) / 2] for j in range(2) for i in range(3)])  # x fastest
    for level in range(2):
        torch.testing.assert_close(points[:, level], expected, atol=1e-7, rtol=0)


def test_grid_reference_points_normalise_by_each_levels_own_extent() -> None:
    # query grid 5×5 of stride 14 (70 px); level 0 is 9×10 cells of stride 8 (72 px high, 80 px wide),
    # level 1 is 5×5 of stride 14 (70 px); the query centre at pixel p maps to p / extent
    points = grid_reference_points((5, 5), 14, [(9, 10), (5, 5)], [8, 14])
    assert points.shape == (25, 2, 2)
    torch.testing.assert_close(points[0, 0], torch.tensor([7 / 80, 7 / 72]), atol=1e-7, rtol=0)
    # row 2, column 4 (index 2·5 + 4): centre at x = 63 px, y = 35 px
    torch.testing.assert_close(points[14, 0], torch.tensor([63 / 80, 35 / 72]), atol=1e-7, rtol=0)
    torch.testing.assert_close(points[14, 1], torch.tensor([63 / 70, 35 / 70]), atol=1e-7, rtol=0)
    # the last query (row 4, column 4): centre at 63 px in both axes
    torch.testing.assert_close(points[24, 0], torch.tensor([63 / 80, 63 / 72]), atol=1e-7, rtol=0)


# ----------------------------------------------------------------------------- gradients


def test_sample_levels_gradcheck_in_float64() -> None:
    torch.manual_seed(4)
    shapes = [(3, 4), (2, 3)]
    value = torch.randn(1, 18, 2, 2, dtype=torch.float64, requires_grad=True)
    locations = (torch.rand(1, 3, 2, 2, 2, 2, dtype=torch.float64) * 1.2 - 0.1).requires_grad_()
    weights = torch.rand(1, 3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, loc, w: sample_levels(v, shapes, loc, w), (value, locations, weights))


def test_module_gradients_match_finite_differences_of_the_naive_reference() -> None:
    torch.manual_seed(6)
    shapes = [(3, 4), (2, 3)]
    module = randomised_module(4, heads=2, levels=2, points=2, offset_scale=1.0)
    query = torch.randn(1, 3, 4, requires_grad=True)
    value = torch.randn(1, 18, 4, requires_grad=True)
    reference = torch.rand(3, 2, 2)
    cotangent = torch.randn(1, 3, 4, dtype=torch.float64)
    (module(query, reference, value, shapes).double() * cotangent).sum().backward()

    def loss(q: Tensor, v: Tensor) -> float:
        return (naive_forward(module, q, reference, v, shapes)[0] * cotangent).sum().item()

    inputs = [query.detach().double(), value.detach().double()]
    eps = 1e-4
    for which, grad in enumerate((query.grad, value.grad)):
        numerical = torch.zeros_like(inputs[which])
        for i in range(numerical.numel()):
            shifted = [[x.clone() for x in inputs] for _ in range(2)]
            shifted[0][which].view(-1)[i] += eps
            shifted[1][which].view(-1)[i] -= eps
            numerical.view(-1)[i] = (loss(*shifted[0]) - loss(*shifted[1])) / (2 * eps)
        assert numerical.abs().max() > 1e-2
        torch.testing.assert_close(grad.double(), numerical, atol=1e-4, rtol=1e-3)


def test_module_gradcheck_in_float64_wrt_query_and_value() -> None:
    torch.manual_seed(5)
    shapes = [(3, 4), (2, 3)]
    module = randomised_module(4, heads=2, levels=2, points=2, offset_scale=1.0).double()
    query = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    value = torch.randn(1, 18, 4, dtype=torch.float64, requires_grad=True)
    reference = torch.rand(3, 2, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda q, v: module(q, reference, v, shapes), (query, value))
