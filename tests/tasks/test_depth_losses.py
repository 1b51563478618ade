"""Depth losses: SigLoss vs the toolbox's formula, the gradient loss vs hand values and a per-image loop, and
their behaviour without valid pixels, with one, and with non-finite predictions."""

from __future__ import annotations

import math

import pytest
import torch

from vitadapter.tasks.depth_losses import gradient_loss, scale_invariant_log_loss

LOSSES = {"sigloss": scale_invariant_log_loss, "gradient": gradient_loss}


def _batch(seed: int = 0, shape: tuple[int, ...] = (2, 9, 11)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=generator) * 9 + 0.5
    target[torch.rand(shape, generator=generator) < 0.3] = 0
    pred = target.clamp_min(1.0) * torch.exp(0.2 * torch.randn(shape, generator=generator))
    return pred, target, target > 0


@pytest.mark.parametrize("warm_up", [False, True])
def test_sigloss_is_the_toolboxs_formula_value_and_gradient(warm_up: bool) -> None:
    pred, target, valid = _batch()
    ours, reference = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    loss = scale_invariant_log_loss(ours, target, valid, warm_up=warm_up)
    # the toolbox/DINOv2 SigLoss: g over the batch's valid pixels, unbiased torch.var
    g = torch.log(reference[valid] + 1e-3) - torch.log(target[valid] + 1e-3)
    expected = torch.sqrt(0.15 * g.mean() ** 2) if warm_up else torch.sqrt(torch.var(g) + 0.15 * g.mean() ** 2)
    loss.backward()
    expected.backward()
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(ours.grad, reference.grad, rtol=1e-4, atol=1e-7)
    assert ours.grad[~valid].count_nonzero() == 0


def test_sigloss_is_scale_invariant_up_to_its_mean_term() -> None:
    pred, target, valid = _batch(1)
    loss = scale_invariant_log_loss(pred * 2, target, valid, eps=0.0)
    g = torch.log(pred[valid]) - torch.log(target[valid])
    assert loss.item() == pytest.approx(math.sqrt(torch.var(g).item() + 0.15 * (g.mean().item() + math.log(2)) ** 2),
                                        rel=1e-5)


def test_gradient_loss_hand_values() -> None:
    target = torch.ones(1, 3, 3)
    pred = target.clone()
    pred[0, 0, 0] = math.e  # log ratio 1 at the corner, 0 elsewhere
    valid = torch.ones(1, 3, 3, dtype=torch.bool)
    # scale 1: |R(0,0) - R(2,0)| + |R(0,0) - R(0,2)| = 2 over 9 valid pixels; coarser scales have < 3 rows
    assert gradient_loss(pred, target, valid, eps=0.0).item() == pytest.approx(2 / 9)
    valid[0, 2, 0] = False  # breaks the vertical pair
    assert gradient_loss(pred, target, valid, eps=0.0).item() == pytest.approx(1 / 8)


def _gradient_loss_loop(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, scales: int) -> float:
    """MegaDepth's GradientLoss per image and nested ::2 scale, averaged over images with a valid pixel."""
    losses = []
    for p, t, v in zip(pred, target, valid):
        if not v.any():
            continue
        total = 0.0
        for _ in range(scales):
            d = torch.where(v, torch.log(p + 1e-3) - torch.log(t + 1e-3), 0.0)
            m = v.float()
            vertical = ((d[:-2] - d[2:]).abs() * m[:-2] * m[2:]).sum()
            horizontal = ((d[:, :-2] - d[:, 2:]).abs() * m[:, :-2] * m[:, 2:]).sum()
            total += float(vertical + horizontal) / max(float(m.sum()), 1.0)
            p, t, v = p[::2, ::2], t[::2, ::2], v[::2, ::2]
        losses.append(total)
    return sum(losses) / len(losses)


def test_gradient_loss_matches_a_per_image_loop_and_takes_a_channel_dim() -> None:
    pred, target, valid = _batch(2, (3, 37, 29))
    valid[1] = False  # an image without valid pixels is left out of the mean
    expected = _gradient_loss_loop(pred, target, valid, scales=4)
    assert gradient_loss(pred, target, valid).item() == pytest.approx(expected, rel=1e-5)
    four_d = gradient_loss(pred[:, None], target[:, None], valid[:, None])
    assert four_d.item() == pytest.approx(expected, rel=1e-5)
    assert gradient_loss(pred, target, valid, scales=1).item() < expected


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_no_valid_pixel_gives_exactly_zero_with_zero_gradient(name: str) -> None:
    pred, target, _ = _batch(3)
    pred.requires_grad_()
    loss = LOSSES[name](pred, target, torch.zeros_like(target, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert pred.grad is not None and pred.grad.count_nonzero() == 0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_one_valid_pixel_and_a_perfect_prediction_stay_finite(name: str) -> None:
    pred, target, _ = _batch(4)
    valid = torch.zeros_like(target, dtype=torch.bool)
    valid[0, 3, 4] = True
    target[0, 3, 4] = 2.0
    pred = pred.clone().requires_grad_()
    loss = LOSSES[name](pred, target, valid)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    if name == "sigloss":  # var of one pixel is 0: sqrt(0.15 g^2)
        g = math.log(pred[0, 3, 4].item() + 1e-3) - math.log(2.0 + 1e-3)
        assert loss.item() == pytest.approx(math.sqrt(0.15) * abs(g), rel=1e-5)
    perfect = target.clone().clamp_min(1.0).requires_grad_()
    loss = LOSSES[name](perfect, perfect.detach(), perfect.detach() > 0)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(perfect.grad).all()


@pytest.mark.parametrize("with_valid", [False, True])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_non_finite_prediction_makes_the_loss_non_finite(name: str, with_valid: bool) -> None:
    pred, target, valid = _batch(5)
    valid = valid if with_valid else torch.zeros_like(valid)
    pred[1, 0, 0] = float("nan")
    assert not torch.isfinite(LOSSES[name](pred, target, valid))
