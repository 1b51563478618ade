"""Mask2Former's post-processing on hand-built query predictions whose answers are worked out by hand: semantic
scores, instances (top-k, mask rescoring, boxes, thing classes) and the panoptic merge (thresholds, overlap, stuff
merging)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vitadapter.heads.mask2former import instance_predictions, mask_boxes, panoptic_predictions, semantic_scores


def _logits(*probabilities: float) -> list[float]:
    """Class logits whose softmax is exactly these probabilities."""
    assert math.isclose(sum(probabilities), 1.0)
    return [math.log(p) for p in probabilities]


def _logit(probability: float) -> float:
    return math.log(probability / (1 - probability))


def test_semantic_scores_sum_class_probability_times_mask_probability() -> None:
    classes = torch.tensor([[_logits(0.6, 0.3, 0.1), _logits(0.2, 0.2, 0.6)]])  # 1 image, 2 queries, K = 2
    masks = torch.tensor([[[[_logit(0.8), 0.0]], [[0.0, _logit(0.9)]]]])  # 1×2×1×2
    scores = semantic_scores(classes, masks)
    expected = torch.tensor([[[[0.6 * 0.8 + 0.2 * 0.5, 0.6 * 0.5 + 0.2 * 0.9]],
                              [[0.3 * 0.8 + 0.2 * 0.5, 0.3 * 0.5 + 0.2 * 0.9]]]])
    assert scores.shape == (1, 2, 1, 2) and scores.dtype == torch.float32
    assert torch.allclose(scores, expected, atol=1e-6)


def test_semantic_scores_reject_mismatched_queries() -> None:
    with pytest.raises(ValueError, match="B×Q×\\(K\\+1\\) and B×Q×h×w"):
        semantic_scores(torch.zeros(1, 3, 4), torch.zeros(1, 2, 5, 5))


def _instance_queries() -> tuple[torch.Tensor, torch.Tensor]:
    """3 queries, K = 2, 4×4 masks: q0 a 2×2 box at the top left (mask probability 0.8), q1 the bottom-right
    pixel (0.9), q2 nothing."""
    classes = torch.tensor([_logits(0.7, 0.2, 0.1), _logits(0.1, 0.5, 0.4), _logits(0.05, 0.05, 0.9)])
    masks = torch.full((3, 4, 4), -_logit(0.8))
    masks[0, :2, :2] = _logit(0.8)
    masks[1, 3, 3] = _logit(0.9)
    masks[2] = -3.0
    return classes, masks


def test_instances_are_the_top_k_pairs_rescored_by_their_masks() -> None:
    classes, masks = _instance_queries()
    found = instance_predictions(classes, masks, top_k=3)
    # pairs by class probability: (q0, 0) 0.7, (q1, 1) 0.5, (q0, 1) 0.2; scores x mean mask probability inside
    assert found["labels"].tolist() == [0, 1, 1]
    assert torch.allclose(found["scores"], torch.tensor([0.7 * 0.8, 0.5 * 0.9, 0.2 * 0.8]), atol=1e-5)
    assert found["masks"].dtype == torch.bool and found["masks"].shape == (3, 4, 4)
    assert torch.equal(found["masks"][0], masks[0] > 0) and torch.equal(found["masks"][1], masks[1] > 0)
    assert found["boxes"].tolist() == [[0, 0, 2, 2], [3, 3, 4, 4], [0, 0, 2, 2]]


def test_an_empty_mask_scores_zero_with_a_zero_box() -> None:
    classes, masks = _instance_queries()
    found = instance_predictions(classes, masks, top_k=100)  # only Q x K = 6 pairs exist
    assert len(found["labels"]) == 6
    empty = [i for i, box in enumerate(found["boxes"].tolist()) if box == [0, 0, 0, 0]]
    assert len(empty) == 2 and all(found["scores"][i] == 0 and not found["masks"][i].any() for i in empty)


def test_thing_classes_keep_only_things() -> None:
    classes, masks = _instance_queries()
    found = instance_predictions(classes, masks, top_k=2, thing_classes=[1])
    assert found["labels"].tolist() == [1, 1]
    assert torch.allclose(found["scores"], torch.tensor([0.5 * 0.9, 0.2 * 0.8]), atol=1e-5)
    assert len(instance_predictions(classes, masks, top_k=100, thing_classes=[1])["labels"]) == 3


def test_instance_masks_at_the_output_size() -> None:
    classes, masks = _instance_queries()
    found = instance_predictions(classes, masks, top_k=1, output_size=(8, 6))
    upsampled = F.interpolate(masks[None, :1], size=(8, 6), mode="bilinear", align_corners=False)[0]
    assert found["masks"].shape == (1, 8, 6) and torch.equal(found["masks"], upsampled > 0)


def test_mask_boxes_end_after_the_last_pixel() -> None:
    masks = torch.zeros(2, 5, 7, dtype=torch.bool)
    masks[0, 4, 6] = True
    assert mask_boxes(masks).tolist() == [[6, 4, 7, 5], [0, 0, 0, 0]]


def _panoptic_queries() -> tuple[torch.Tensor, torch.Tensor]:
    """4×4 image, K = 3 (thing 0, stuff 1 and 2), 6 queries:
    q0 thing 0 (0.9) on the left half (mask 0.9); q1 stuff 1 (0.95) top right; q2 stuff 1 (0.85) bottom right;
    q3 "no object" (0.9); q4 stuff 2 below the score threshold (0.7); q5 thing 0 (0.85) on the top two pixels of the
    left half with mask 0.99, which outbids q0 there (0.85 x 0.99 > 0.9 x 0.9), so q0 keeps 6 of its 8 pixels."""
    classes = torch.tensor([
        _logits(0.9, 0.04, 0.03, 0.03), _logits(0.02, 0.95, 0.02, 0.01), _logits(0.05, 0.85, 0.05, 0.05),
        _logits(0.03, 0.03, 0.04, 0.9), _logits(0.1, 0.1, 0.7, 0.1), _logits(0.85, 0.05, 0.05, 0.05)])
    masks = torch.full((6, 4, 4), -_logit(0.9))
    masks[0, :, :2] = _logit(0.9)
    masks[1, :2, 2:] = _logit(0.9)
    masks[2, 2:, 2:] = _logit(0.9)
    masks[3] = _logit(0.9)
    masks[4] = _logit(0.9)
    masks[5, 0, :2] = _logit(0.99)
    return classes, masks


def test_panoptic_merge_drops_queries_and_merges_stuff() -> None:
    segment_map, segments = panoptic_predictions(*_panoptic_queries(), thing_classes=[0])
    # q0 keeps 6 / 8 < 0.8 of its mask: dropped, its pixels void; q1 and q2 one stuff segment; q5 a thing
    assert segment_map.dtype == torch.int64
    assert segment_map.tolist() == [[2, 2, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]]
    assert [(s["id"], s["category_id"], s["isthing"]) for s in segments] == [(1, 1, False), (2, 0, True)]
    assert segments[0]["score"] == pytest.approx(0.95) and segments[1]["score"] == pytest.approx(0.85)


def test_panoptic_overlap_threshold_keeps_a_partly_covered_thing() -> None:
    segment_map, segments = panoptic_predictions(*_panoptic_queries(), thing_classes=[0], overlap_threshold=0.7)
    assert segment_map.tolist() == [[3, 3, 2, 2], [1, 1, 2, 2], [1, 1, 2, 2], [1, 1, 2, 2]]
    assert [(s["id"], s["category_id"], s["isthing"]) for s in segments] == [(1, 0, True), (2, 1, False), (3, 0, True)]


def test_panoptic_with_stuff_only_and_with_nothing_confident() -> None:
    classes, masks = _panoptic_queries()
    # every class stuff: q0 and q5 (class 0) share one segment (q0 kept: 6 / 8 >= 0.7), class 1 another
    segment_map, segments = panoptic_predictions(classes, masks, thing_classes=[], overlap_threshold=0.7)
    assert [(s["category_id"], s["isthing"]) for s in segments] == [(0, False), (1, False)]
    assert segment_map.tolist() == [[1, 1, 2, 2]] * 4
    assert segments[0]["score"] == pytest.approx(0.9)
    segment_map, segments = panoptic_predictions(classes, masks, thing_classes=[0], object_mask_threshold=0.99)
    assert segments == [] and not segment_map.any() and segment_map.shape == (4, 4)


def test_panoptic_at_the_output_size() -> None:
    segment_map, _ = panoptic_predictions(*_panoptic_queries(), thing_classes=[0], output_size=(8, 8))
    assert segment_map.shape == (8, 8) and set(segment_map.unique().tolist()) == {0, 1, 2}
