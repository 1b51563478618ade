"""An image with no labelled pixel adds nothing to the dataset-level metrics: no NaN, no miscount."""

from __future__ import annotations

import math

import torch

from vitadapter.metrics import SegmentationMetrics

IGNORE = 255


def _pairs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    pairs = []
    for _ in range(3):
        target = torch.randint(0, 4, (9, 13), generator=generator)
        target[torch.rand(target.shape, generator=generator) < 0.5] = IGNORE
        pairs.append((torch.randint(0, 4, (9, 13), generator=generator), target))
    return pairs


def _compute(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    metric = SegmentationMetrics(4, IGNORE)
    for pred, target in pairs:
        metric.update(pred, target)
    return metric.compute()


def test_an_unlabelled_image_leaves_every_metric_unchanged() -> None:
    labelled = _pairs()
    unlabelled = (torch.randint(0, 4, (11, 7), generator=torch.Generator().manual_seed(1)),
                  torch.full((11, 7), IGNORE))
    with_it, without = _compute([labelled[0], unlabelled, *labelled[1:]]), _compute(labelled)
    assert with_it.keys() == without.keys()
    for key in with_it:
        torch.testing.assert_close(with_it[key], without[key], rtol=0, atol=0, equal_nan=True)
    assert all(math.isfinite(float(with_it[key])) for key in ("mIoU", "aAcc", "mAcc"))
    # its predictions are not counted either: every pixel counted is a labelled pixel of the three other images
    assert int(with_it["label_area"].sum()) == int(with_it["pred_area"].sum()) == sum(
        int((t != IGNORE).sum()) for _, t in labelled)


def test_a_batch_mixing_an_unlabelled_image_counts_like_the_images_one_by_one() -> None:
    pairs = _pairs()
    pairs[1] = (pairs[1][0], torch.full_like(pairs[1][1], IGNORE))
    batched = SegmentationMetrics(4, IGNORE)
    batched.update(torch.stack([p for p, _ in pairs]), torch.stack([t for _, t in pairs]))
    one_by_one = [_confmat_of(pair) for pair in pairs]
    assert one_by_one[1].count_nonzero() == 0
    assert torch.equal(batched.confmat, one_by_one[0] + one_by_one[1] + one_by_one[2])


def _confmat_of(pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    metric = SegmentationMetrics(4, IGNORE)
    metric.update(*pair)
    return metric.confmat


def test_only_unlabelled_images_leave_every_score_undefined_not_zero() -> None:
    """No labelled pixel in the whole set: nothing to score, so mIoU/aAcc/mAcc are NaN (reported as null), as
    mmseg's nanmean gives, rather than a misleading 0."""
    results = _compute([(torch.zeros(5, 6, dtype=torch.int64), torch.full((5, 6), IGNORE))])
    assert int(results["label_area"].sum()) == int(results["union"].sum()) == 0
    assert all(math.isnan(float(results[key])) for key in ("mIoU", "aAcc", "mAcc"))
