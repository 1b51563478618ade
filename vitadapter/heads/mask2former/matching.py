"""Point sampling, mask costs and Hungarian matching of Mask2Former's queries to ground-truth masks.

Mask2Former (Cheng et al., CVPR 2022, Sec. 3.3) computes the matching costs and the mask losses on sampled points
instead of whole masks: the same uniformly random points for every pair of one image when matching, and per
mask points chosen by importance sampling (PointRend: `oversample_ratio` x points drawn, the `importance_ratio`
most uncertain kept, the rest drawn uniformly) for the loss. transformers' `Mask2FormerHungarianMatcher` and
`Mask2FormerLoss` do exactly that, but treat every pixel as known: an unlabelled pixel (ignore_index, padding)
would count as background of every mask. The costs and losses here weigh each point by how labelled it is
(the valid map sampled like the masks), so unlabelled pixels neither cost nor train; with every pixel labelled
they are transformers' values (tests/heads/test_mask2former_loss.py), drawing the same random numbers in the same
order. `num_points=None` uses every pixel of the predicted masks instead (exact, no random draws).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vitadapter.heads.mask2former.targets import MaskTargets


def sample_at(maps: Tensor, points: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Bilinear values of N×h×w maps at N×P points (x, y in [0, 1]), as N×P.

    Masks are sampled as transformers samples them, zero outside (within half a pixel of the border a mask value
    fades); validity maps with `padding_mode="border"`, so that the border pixels count fully.
    """
    from transformers.models.mask2former.modeling_mask2former import sample_point

    return sample_point(maps[:, None], points.to(maps.dtype), align_corners=False, padding_mode=padding_mode)[:, 0]


def pixel_centres(height: int, width: int, device: torch.device) -> Tensor:
    """1×(h·w)×2 points (x, y in [0, 1]) at the centres of an h×w grid, row-major (the order of `flatten`)."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)[None]


def normalised(weights: Tensor) -> Tensor:
    """`weights` divided by their sum over the last dim (left at 0 where they sum to 0)."""
    total = weights.sum(-1, keepdim=True)
    return weights / torch.where(total > 0, total, torch.ones_like(total))


def pairwise_mask_costs(logits: Tensor, targets: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Sigmoid cross-entropy and dice cost of every (prediction, target) pair on shared points.

    Args:
        logits: Q×P mask logits at the points.
        targets: M×P target mask values at the points (0..1).
        weights: P weights of the points (1: labelled, 0: unlabelled).

    Returns:
        (Q×M weighted mean binary cross-entropy, Q×M dice cost 1 - (2·Σwpy + 1) / (Σwp + Σwy + 1)).
    """
    share = normalised(weights)
    positive = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none") * share
    negative = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none") * share
    cross_entropy = positive @ targets.T + negative @ (1 - targets).T
    probs = logits.sigmoid() * weights
    dice = 1 - (2 * probs @ targets.T + 1) / (probs.sum(-1)[:, None] + (targets * weights).sum(-1)[None] + 1)
    return cross_entropy, dice


def mask_losses(logits: Tensor, targets: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Per-mask sigmoid cross-entropy (weighted mean over points) and dice loss, each M values.

    Args:
        logits: M×P predicted mask logits at each mask's points.
        targets: M×P target values there (0..1).
        weights: M×P weights of the points (1: labelled, 0: unlabelled).
    """
    cross_entropy = (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * normalised(weights)).sum(1)
    probs = logits.sigmoid() * weights
    dice = 1 - (2 * (probs * targets).sum(1) + 1) / (probs.sum(1) + (targets * weights).sum(1) + 1)
    return cross_entropy, dice


def importance_points(logits: Tensor, valid: Tensor | None, num_points: int, oversample_ratio: float,
                      importance_ratio: float) -> Tensor:
    """PointRend's uncertainty sampling: N×num_points points per mask, most of them where |logit| is small.

    Args:
        logits: N×h×w mask logits.
        valid: N×H×W validity maps (float 0..1); points where it is 0 are the least uncertain (never preferred);
            None: every pixel is valid.
        num_points: points per mask.
        oversample_ratio: candidates drawn per point kept.
        importance_ratio: share of the points taken from the most uncertain candidates; the rest are uniform.

    Returns:
        N×num_points×2 points (x, y in [0, 1]).
    """
    count = logits.shape[0]
    candidates = torch.rand(count, int(num_points * oversample_ratio), 2, device=logits.device)
    uncertainty = -sample_at(logits, candidates).abs()
    if valid is not None:
        uncertainty = uncertainty.masked_fill(sample_at(valid, candidates, "border") <= 0, float("-inf"))
    kept = int(importance_ratio * num_points)
    index = uncertainty.topk(kept, dim=1).indices
    points = candidates.gather(1, index[..., None].expand(-1, -1, 2))
    if num_points > kept:
        points = torch.cat([points, torch.rand(count, num_points - kept, 2, device=logits.device)], dim=1)
    return points


@torch.no_grad()
def hungarian_match(class_logits: Tensor, mask_logits: Tensor, targets: Sequence[MaskTargets], cost_class: float,
                    cost_mask: float, cost_dice: float, num_points: int | None) -> list[tuple[Tensor, Tensor]]:
    """The one-to-one assignment of queries to targets with the lowest total cost, per image.

    Cost of (query, target): -cost_class · p(target class) + cost_mask · cross-entropy + cost_dice · dice, the mask
    terms on `num_points` random points shared by the image's pairs (None: every pixel of the predicted masks).

    Args:
        class_logits: B×Q×(K+1) class logits.
        mask_logits: B×Q×h×w mask logits.
        targets: one `MaskTargets` per image.
        cost_class: weight of the class cost.
        cost_mask: weight of the cross-entropy cost.
        cost_dice: weight of the dice cost.
        num_points: points sampled per image; None: every pixel.

    Returns:
        Per image (query indices, target indices), int64 on the CPU, min(Q, M) pairs.
    """
    from scipy.optimize import linear_sum_assignment

    matches = []
    for image_logits, image_masks, target in zip(class_logits, mask_logits, targets):
        image_masks = image_masks.float()
        if num_points is None:
            points = pixel_centres(*image_masks.shape[-2:], device=image_masks.device)
            predicted = image_masks.flatten(1)
        else:
            points = torch.rand(1, num_points, 2, device=image_masks.device)
            predicted = sample_at(image_masks, points.expand(image_masks.shape[0], -1, -1))
        masks = target.masks.to(predicted)
        truth = sample_at(masks, points.expand(masks.shape[0], -1, -1))
        weights = (torch.ones_like(points[0, :, 0]) if target.valid is None
                   else sample_at(target.valid[None].to(predicted), points, "border")[0])
        cross_entropy, dice = pairwise_mask_costs(predicted, truth, weights)
        probs = image_logits.float().softmax(-1)[:, target.labels]
        cost = cost_mask * cross_entropy - cost_class * probs + cost_dice * dice
        # a non-finite cost (diverging predictions) is assigned last instead of failing the assignment
        largest = torch.finfo(cost.dtype).max
        cost = torch.nan_to_num(cost, nan=largest, posinf=largest, neginf=largest)
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        matches.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return matches


__all__ = ["hungarian_match", "importance_points", "mask_losses", "pairwise_mask_costs", "pixel_centres",
           "sample_at"]
