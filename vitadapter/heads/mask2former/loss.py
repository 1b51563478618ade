"""Mask2Former's training loss: Hungarian matching, then class cross-entropy and mask cross-entropy + dice on
points, for every decoder layer's predictions (deep supervision).

Cheng et al., CVPR 2022: L = λ_cls·L_cls + λ_ce·L_ce + λ_dice·L_dice with λ = 2, 5, 5; the "no object" class weighs
0.1 in L_cls; the mask terms are averaged over the ground-truth masks. Two normalisations are global, as one
process on the whole batch computes them:

- the number of masks (transformers all-reduces it only under `accelerate`; under Lightning's DDP each rank would
  divide by its own count), and
- the total class weight (a weighted cross-entropy's mean divides by it; per rank, the ranks' means would not
  average to the batch's).

Both are summed over the processes (one all-reduce per step) and divided by their number: DDP averages the
ranks' gradients, so a 2-process step trains exactly as one process on the global batch
(tests/heads/test_mask2former_ddp.py). Images without a labelled pixel add nothing, so a batch of them has loss 0
and zero gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from vitadapter.heads.mask2former.matching import (hungarian_match, importance_points, mask_losses, pixel_centres,
                                                   sample_at)
from vitadapter.heads.mask2former.targets import MaskTargets


def world_sum(values: Tensor) -> tuple[Tensor, int]:
    """`values` summed over the processes of the default process group (as they are without one), and their number."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values)
        return values, dist.get_world_size()
    return values, 1


class MaskClassificationLoss(nn.Module):
    """Mask2Former's criterion on per-layer query predictions and per-image `MaskTargets`.

    Args:
        num_classes: K (class logits have K + 1 columns, the last "no object").
        class_weight: weight of the class cross-entropy (and of the class matching cost).
        mask_weight: weight of the mask sigmoid cross-entropy (and its matching cost).
        dice_weight: weight of the dice loss (and its matching cost).
        no_object_weight: class weight of "no object" in the cross-entropy.
        num_points: points per mask for the loss and per image for the matching; None: every pixel of the
            predicted masks (exact and deterministic; cheaper when the masks have fewer pixels than that).
        oversample_ratio: PointRend's candidates per kept point (loss only).
        importance_sample_ratio: share of the loss's points taken where the prediction is most uncertain.
    """

    def __init__(self, num_classes: int, class_weight: float = 2.0, mask_weight: float = 5.0,
                 dice_weight: float = 5.0, no_object_weight: float = 0.1, num_points: int | None = 12544,
                 oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75) -> None:
        super().__init__()
        if num_points is not None and num_points < 1:
            raise ValueError(f"train_num_points must be a positive number of points or null (every pixel), got "
                             f"{num_points}")
        if oversample_ratio < 1 or not 0 <= importance_sample_ratio <= 1:
            raise ValueError(f"need oversample_ratio >= 1 and importance_sample_ratio in [0, 1], got "
                             f"{oversample_ratio} and {importance_sample_ratio}")
        self.num_classes = num_classes
        self.class_weight, self.mask_weight, self.dice_weight = class_weight, mask_weight, dice_weight
        self.no_object_weight = no_object_weight
        self.num_points = num_points
        self.oversample_ratio, self.importance_sample_ratio = oversample_ratio, importance_sample_ratio

    def forward(self, class_logits: Sequence[Tensor], mask_logits: Sequence[Tensor],
                targets: Sequence[MaskTargets]) -> dict[str, Tensor]:
        """The total loss over the layers given and the final layer's terms.

        Args:
            class_logits: per layer B×Q×(K+1), the last one the final prediction.
            mask_logits: per layer B×Q×h×w.
            targets: one `MaskTargets` per image.

        Returns:
            `loss` (the weighted sum over every layer given), and the final layer's unweighted `loss_class`,
            `loss_mask` and `loss_dice`.
        """
        if len(class_logits) != len(mask_logits) or not class_logits:
            raise ValueError("need the class and mask logits of the same layers, at least one")
        if len(targets) != class_logits[-1].shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {class_logits[-1].shape[0]} images")
        num_masks, class_total = self._normalisers(targets, class_logits[-1].shape[1], class_logits[-1].device)
        total = class_logits[-1].new_zeros((), dtype=torch.float32)
        parts: dict[str, Tensor] = {}
        # the final layer first, then the others in order: transformers' order of random draws
        for layer in [len(class_logits) - 1, *range(len(class_logits) - 1)]:
            classes, masks = class_logits[layer].float(), mask_logits[layer].float()
            matches = hungarian_match(classes, masks, targets, self.class_weight, self.mask_weight,
                                      self.dice_weight, self.num_points)
            cross_entropy, dice = self._mask_terms(masks, targets, matches, num_masks)
            class_term = self._class_term(classes, targets, matches, class_total)
            total = total + self.class_weight * class_term + self.mask_weight * cross_entropy + self.dice_weight * dice
            # + 0 x the masks: exactly nothing when they are finite, but every mask parameter stays in the graph
            # when no image has a mask (DDP without find_unused_parameters) and a NaN still reaches the loss
            total = total + 0.0 * masks.sum()
            if layer == len(class_logits) - 1:
                parts = {"loss_class": class_term.detach(), "loss_mask": cross_entropy.detach(),
                         "loss_dice": dice.detach()}
        return {"loss": total, **parts}

    def _normalisers(self, targets: Sequence[MaskTargets], num_queries: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(masks per process, at least 1; class weight per process) over the whole batch of every process."""
        masks, class_weight = 0.0, 0.0
        for target in targets:
            count = len(target.labels)
            masks += count
            if target.has_valid_pixels:
                matched = min(count, num_queries)
                class_weight += matched + self.no_object_weight * (num_queries - matched)
        totals, world = world_sum(torch.tensor([masks, class_weight], dtype=torch.float32, device=device))
        totals = totals / world
        return totals[0].clamp_min(1.0), torch.where(totals[1] > 0, totals[1], torch.ones_like(totals[1]))

    def _class_term(self, class_logits: Tensor, targets: Sequence[MaskTargets],
                    matches: list[tuple[Tensor, Tensor]], class_total: Tensor) -> Tensor:
        batch, queries, _ = class_logits.shape
        wanted = torch.full((batch, queries), self.num_classes, dtype=torch.int64, device=class_logits.device)
        counted = torch.zeros(batch, device=class_logits.device)
        for index, (target, (rows, cols)) in enumerate(zip(targets, matches)):
            wanted[index, rows.to(wanted.device)] = target.labels[cols.to(target.labels.device)].to(wanted.device)
            counted[index] = float(target.has_valid_pixels)
        weight = torch.where(wanted == self.num_classes, self.no_object_weight, 1.0) * counted[:, None]
        cross_entropy = F.cross_entropy(class_logits.transpose(1, 2), wanted, reduction="none")
        return (weight * cross_entropy).sum() / class_total

    def _mask_terms(self, mask_logits: Tensor, targets: Sequence[MaskTargets],
                    matches: list[tuple[Tensor, Tensor]], num_masks: Tensor) -> tuple[Tensor, Tensor]:
        images = torch.cat([torch.full_like(rows, i) for i, (rows, _) in enumerate(matches)])
        if images.numel() == 0:
            empty = mask_logits.new_zeros(())
            return empty, empty
        predicted = mask_logits[images, torch.cat([rows for rows, _ in matches])]
        truth = torch.cat([t.masks[cols.to(t.masks.device)] for t, (_, cols) in zip(targets, matches)]).to(predicted)
        valid = (None if all(t.valid is None for t in targets) else torch.stack(
            [t.masks.new_ones(t.masks.shape[-2:]) if t.valid is None else t.valid for t in targets])[images].to(predicted))
        if self.num_points is None:
            points = pixel_centres(*predicted.shape[-2:], device=predicted.device).expand(len(predicted), -1, -1)
            logits = predicted.flatten(1)
        else:
            with torch.no_grad():
                points = importance_points(predicted, valid, self.num_points, self.oversample_ratio,
                                           self.importance_sample_ratio)
            logits = sample_at(predicted, points)
        with torch.no_grad():
            truth_points = sample_at(truth, points)
            weights = torch.ones_like(truth_points) if valid is None else sample_at(valid, points, "border")
        cross_entropy, dice = mask_losses(logits, truth_points, weights)
        return cross_entropy.sum() / num_masks, dice.sum() / num_masks


__all__ = ["MaskClassificationLoss", "world_sum"]
