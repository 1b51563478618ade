"""Mask2Former's loss and matching: equal to transformers' Mask2FormerLoss on the same inputs and random draws;
the every-pixel mode equal to a brute-force matching with transformers' whole-mask losses; unlabelled pixels
leave the loss as if they were cropped away; a batch without labels trains nothing; NaN still shows."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from vitadapter.heads.mask2former import MaskClassificationLoss, MaskTargets, semantic_targets
from vitadapter.heads.mask2former.loss import world_sum

K = 4
WEIGHTS = {"loss_cross_entropy": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}


def _predictions(batch: int, queries: int, size: tuple[int, int], layers: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    classes = [torch.randn(batch, queries, K + 1, generator=generator, requires_grad=True) for _ in range(layers)]
    masks = [(2 * torch.randn(batch, queries, *size, generator=generator)).requires_grad_() for _ in range(layers)]
    return classes, masks


def _label_maps(batch: int, size: tuple[int, int], seed: int = 1) -> torch.Tensor:
    """Blocky label maps (classes in 4×4 cells) so that masks have regions, not noise."""
    generator = torch.Generator().manual_seed(seed)
    cells = torch.randint(0, K, (batch, size[0] // 4, size[1] // 4), generator=generator)
    return cells.repeat_interleave(4, 1).repeat_interleave(4, 2)


def _transformers_total(classes, masks, targets, points: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    from transformers import Mask2FormerConfig
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss

    config = Mask2FormerConfig(num_labels=K, train_num_points=points, oversample_ratio=3.0,
                               importance_sample_ratio=0.75, no_object_weight=0.1)
    reference = Mask2FormerLoss(config, weight_dict=WEIGHTS)
    losses = reference(masks_queries_logits=masks[-1], class_queries_logits=classes[-1],
                       mask_labels=[t.masks.float() for t in targets], class_labels=[t.labels for t in targets],
                       auxiliary_predictions=[{"masks_queries_logits": m, "class_queries_logits": c}
                                              for c, m in zip(classes[:-1], masks[:-1])])
    total = sum(WEIGHTS[next(k for k in WEIGHTS if key.startswith(k))] * value for key, value in losses.items())
    return total, losses


@pytest.mark.parametrize("with_valid_map", [False, True], ids=["no_valid_map", "all_valid_map"])
def test_point_sampled_loss_equals_transformers_loss(with_valid_map: bool) -> None:
    classes, masks = _predictions(batch=3, queries=6, size=(8, 10), layers=3)
    labels = _label_maps(3, (32, 40))
    targets = semantic_targets(labels, K)
    # an image without objects but with every pixel known (instance data): all its queries are "no object"
    targets[2] = MaskTargets(torch.zeros(0, dtype=torch.int64), torch.zeros(0, 32, 40, dtype=torch.bool))
    if not with_valid_map:
        targets = [MaskTargets(t.labels, t.masks) for t in targets]
    torch.manual_seed(7)
    expected, reference = _transformers_total(classes, masks, targets, points=200)
    torch.manual_seed(7)
    ours = MaskClassificationLoss(K, num_points=200)(classes, masks, targets)
    assert torch.allclose(ours["loss"], expected, rtol=1e-5)
    for key, name in (("loss_class", "loss_cross_entropy"), ("loss_mask", "loss_mask"), ("loss_dice", "loss_dice")):
        assert torch.allclose(ours[key], reference[name], rtol=1e-5), key
    grads = torch.autograd.grad(ours["loss"], [*classes, *masks])
    expected_grads = torch.autograd.grad(expected, [*classes, *masks])
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(grads, expected_grads))


def _brute_force_total(classes, masks, targets) -> torch.Tensor:
    """Every-pixel loss with the best of all query assignments, from transformers' whole-mask loss functions."""
    from transformers.models.mask2former.modeling_mask2former import (dice_loss, pair_wise_dice_loss,
                                                                      pair_wise_sigmoid_cross_entropy_loss,
                                                                      sigmoid_cross_entropy_loss)

    num_masks = sum(len(t.labels) for t in targets)
    queries = classes.shape[1]
    wanted = torch.full(classes.shape[:2], K)
    matched_masks, matched_truth = [], []
    for index, target in enumerate(targets):
        predicted, truth = masks[index].flatten(1), target.masks.flatten(1).float()
        cost = (5 * pair_wise_sigmoid_cross_entropy_loss(predicted, truth) + 5 * pair_wise_dice_loss(predicted, truth)
                - 2 * classes[index].softmax(-1)[:, target.labels])
        best = min(itertools.permutations(range(queries), len(target.labels)),
                   key=lambda rows: sum(cost[row, col].item() for col, row in enumerate(rows)))
        wanted[index, list(best)] = target.labels
        matched_masks.append(predicted[list(best)])
        matched_truth.append(truth)
    weight = torch.ones(K + 1)
    weight[K] = 0.1
    class_loss = F.cross_entropy(classes.transpose(1, 2), wanted, weight=weight)
    predicted, truth = torch.cat(matched_masks), torch.cat(matched_truth)
    return (2 * class_loss + 5 * sigmoid_cross_entropy_loss(predicted, truth, num_masks)
            + 5 * dice_loss(predicted, truth, num_masks))


def test_every_pixel_loss_equals_brute_force_matching_with_whole_mask_losses() -> None:
    (classes,), (masks,) = _predictions(batch=2, queries=4, size=(8, 8), layers=1, seed=3)
    targets = semantic_targets(_label_maps(2, (8, 8), seed=4), K)
    ours = MaskClassificationLoss(K, num_points=None)([classes], [masks], targets)
    assert torch.allclose(ours["loss"], _brute_force_total(classes, masks, targets), rtol=1e-5)


def test_unlabelled_pixels_count_as_if_cropped_away() -> None:
    classes, masks = _predictions(batch=2, queries=5, size=(8, 8), layers=2, seed=5)
    labels = _label_maps(2, (8, 8), seed=6)
    ignored = labels.clone()
    ignored[..., 4:] = 255  # the right half unlabelled: whatever the masks predict there must not matter
    loss = MaskClassificationLoss(K, num_points=None)
    full = loss(classes, masks, semantic_targets(ignored, K))
    cropped = loss(classes, [m[..., :4] for m in masks], semantic_targets(labels[..., :4], K))
    assert torch.allclose(full["loss"], cropped["loss"], rtol=1e-6)
    # as a background: the same half labelled with a class of its own changes the loss
    labelled = labels.clone()
    labelled[..., 4:] = K - 1
    assert not torch.allclose(loss(classes, masks, semantic_targets(labelled, K))["loss"], full["loss"], rtol=1e-3)


@pytest.mark.parametrize("points", [None, 50], ids=["every_pixel", "points"])
def test_batch_without_labelled_pixel_has_loss_zero_and_zero_gradient(points: int | None) -> None:
    classes, masks = _predictions(batch=2, queries=3, size=(6, 6), layers=2)
    targets = semantic_targets(torch.full((2, 24, 24), 255), K)
    losses = MaskClassificationLoss(K, num_points=points)(classes, masks, targets)
    assert losses["loss"].item() == 0.0 and losses["loss"].requires_grad
    losses["loss"].backward()
    assert all(t.grad is not None and not t.grad.count_nonzero() for t in [*classes, *masks])


@pytest.mark.parametrize("where", ["class", "mask"])
def test_non_finite_predictions_make_the_loss_nan_even_without_labels(where: str) -> None:
    classes, masks = _predictions(batch=1, queries=3, size=(6, 6), layers=1)
    with torch.no_grad():
        (classes if where == "class" else masks)[0][0, 0, 0] = float("nan")
    targets = semantic_targets(torch.full((1, 6, 6), 255), K)
    assert torch.isnan(MaskClassificationLoss(K, num_points=None)(classes, masks, targets)["loss"])


def test_bad_settings_and_labels_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="train_num_points"):
        MaskClassificationLoss(K, num_points=0)
    with pytest.raises(ValueError, match="importance_sample_ratio"):
        MaskClassificationLoss(K, importance_sample_ratio=1.5)
    with pytest.raises(ValueError, match=r"label values \[7\].*ignore_index 255"):
        semantic_targets(torch.tensor([[[0, 7], [255, 1]]]), K)


def test_without_a_process_group_the_sums_are_local() -> None:
    values = torch.tensor([3.0, 1.5])
    summed, world = world_sum(values)
    assert world == 1 and torch.equal(summed, values)


def test_unlabelled_pixels_as_background_train_masks_to_stay_off_them() -> None:
    labels = _label_maps(2, (8, 8), seed=6)
    labels[0, :, 4:] = 255
    labels[1] = 255  # no labelled pixel: left out either way
    excluded = semantic_targets(labels, K)
    background = semantic_targets(labels, K, unlabelled="background")
    assert torch.equal(excluded[0].valid, labels[0] != 255) and background[0].valid is None
    assert [t.labels.tolist() for t in background] == [t.labels.tolist() for t in excluded]
    assert not background[1].has_valid_pixels and not excluded[1].has_valid_pixels
    # background: the same loss as the unlabelled half labelled with a class nobody predicts (no mask of its own)
    classes, masks = _predictions(batch=1, queries=5, size=(8, 8), layers=2, seed=5)
    loss = MaskClassificationLoss(K, num_points=None)
    as_background = loss(classes, masks, background[:1])["loss"]
    explicit = MaskTargets(excluded[0].labels, excluded[0].masks)
    assert torch.allclose(as_background, loss(classes, masks, [explicit])["loss"], rtol=1e-6)
    with pytest.raises(ValueError, match="unlabelled='ignore'"):
        semantic_targets(labels, K, unlabelled="ignore")
