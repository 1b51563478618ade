"""Mask2Former's three inference modes as pure functions of one forward's query predictions.

Cheng et al., "Masked-attention Mask Transformer for Universal Image Segmentation", CVPR 2022 (Sec. 3 and
Appendix A): every query predicts a class distribution over K classes + "no object" and a mask. The functions
take those logits and know nothing of tasks, datasets or files, so semantic, instance and panoptic tasks all
combine the same predictions:

- `semantic_scores`: per class, the queries' masks weighted by their class probability, summed;
- `instance_predictions`: the top-k (query, class) pairs, each scored by its class probability times the mean
  mask probability inside its binarised mask, with boxes around the masks (COCO's box AP needs them);
- `panoptic_predictions`: confident queries painted in order of their mask probability x class probability;
  a segment keeps only the pixels it wins and must keep `overlap_threshold` of its own mask; stuff queries of one
  class share one segment.

Class indices are contiguous (0..K-1, index K is "no object"); a dataset maps them to its own ids.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_queries(class_logits: Tensor, mask_logits: Tensor, batched: bool) -> None:
    dims = 3 if batched else 2
    shape = "B×Q×(K+1) and B×Q×h×w" if batched else "Q×(K+1) and Q×h×w"
    if class_logits.dim() != dims or mask_logits.dim() != dims + 1 or class_logits.shape[:-1] != mask_logits.shape[:-2]:
        raise ValueError(f"expected class and mask logits of shapes {shape}, got {tuple(class_logits.shape)} and "
                         f"{tuple(mask_logits.shape)}")
    if class_logits.shape[-1] < 2:
        raise ValueError(f"class logits need K >= 1 classes + 'no object', got {class_logits.shape[-1]} columns")


def _at_size(mask_logits: Tensor, output_size: tuple[int, int] | None) -> Tensor:
    """Q×h×w mask logits bilinearly resized to `output_size` (None: as they are)."""
    if output_size is None or tuple(mask_logits.shape[-2:]) == tuple(output_size):
        return mask_logits
    return F.interpolate(mask_logits[None], size=tuple(output_size), mode="bilinear", align_corners=False)[0]


def semantic_scores(class_logits: Tensor, mask_logits: Tensor) -> Tensor:
    """Per-class scores of every pixel: sum over queries of softmax(class)[k] x sigmoid(mask).

    Args:
        class_logits: B×Q×(K+1) class logits (the last column is "no object").
        mask_logits: B×Q×h×w mask logits.

    Returns:
        B×K×h×w float32 scores in [0, Q] (argmax over K gives the labels). They are not probabilities: average
        them as they are across windows and test-time augmentations (no softmax).
    """
    _check_queries(class_logits, mask_logits, batched=True)
    probs = class_logits.float().softmax(-1)[..., :-1]
    return torch.einsum("bqk,bqhw->bkhw", probs, mask_logits.float().sigmoid())


def mask_boxes(masks: Tensor) -> Tensor:
    """Boxes around N×H×W boolean masks: x1, y1, x2, y2 in pixels with x2, y2 exclusive (a one-pixel mask at
    (x, y) gives (x, y, x + 1, y + 1), the width pycocotools' toBbox gives); an empty mask gives zeros."""
    from torchvision.ops import masks_to_boxes

    boxes = masks_to_boxes(masks).float()  # inclusive last pixel; zeros for an empty mask
    nonempty = masks.flatten(1).any(1)
    boxes[nonempty, 2:] += 1
    return boxes


def instance_predictions(class_logits: Tensor, mask_logits: Tensor, top_k: int = 100,
                         thing_classes: Collection[int] | None = None,
                         output_size: tuple[int, int] | None = None) -> dict[str, Tensor]:
    """One image's instances: the top-k (query, class) pairs, scored with the mask's own confidence.

    Args:
        class_logits: Q×(K+1) class logits of one image (the last column is "no object").
        mask_logits: Q×h×w mask logits of the same image.
        top_k: how many (query, class) pairs to keep, by class probability (Mask2Former: 100).
        thing_classes: keep only these class indices (a panoptic dataset's "things"); None: every class.
        output_size: (H, W) to resize the mask logits to bilinearly before binarising them (the image's size);
            None: the masks' own size.

    Returns:
        `masks` N×H×W bool (logit > 0), `labels` N int64 class indices, `scores` N float32 (class probability x
        mean mask probability inside the mask), `boxes` N×4 float32 (`mask_boxes`), in the order of their class
        probabilities; N <= top_k (fewer when Q x K or the thing classes' pairs are fewer).
    """
    _check_queries(class_logits, mask_logits, batched=False)
    mask_logits = _at_size(mask_logits, output_size).float()
    num_queries, num_classes = class_logits.shape[0], class_logits.shape[1] - 1
    probs = class_logits.float().softmax(-1)[:, :-1]
    if thing_classes is not None:
        keep = torch.zeros(num_classes, dtype=torch.bool, device=probs.device)
        keep[list(thing_classes)] = True
        probs = probs.masked_fill(~keep, -1.0)  # below every probability: never in the top-k while others remain
    available = num_queries * (num_classes if thing_classes is None else len(set(thing_classes)))
    scores, flat = probs.flatten().topk(min(top_k, available))
    query, labels = flat // num_classes, flat % num_classes
    selected = mask_logits[query]
    masks = selected > 0
    inside = masks.flatten(1).float()
    mask_scores = (selected.sigmoid().flatten(1) * inside).sum(1) / (inside.sum(1) + 1e-6)
    return {"masks": masks, "labels": labels, "scores": scores * mask_scores, "boxes": mask_boxes(masks)}


def panoptic_predictions(class_logits: Tensor, mask_logits: Tensor, thing_classes: Collection[int],
                         object_mask_threshold: float = 0.8, overlap_threshold: float = 0.8,
                         output_size: tuple[int, int] | None = None) -> tuple[Tensor, list[dict[str, Any]]]:
    """One image's panoptic segmentation, Mask2Former's merge.

    Queries whose best class is "no object" or whose class probability is at most `object_mask_threshold` are
    dropped. Each pixel goes to the remaining query with the highest class probability x mask probability. A query
    becomes a segment of the pixels it wins where its own mask probability is at least 0.5, unless it wins fewer
    pixels than `overlap_threshold` x its mask's area (mask probability >= 0.5) or none of its mask; a stuff class's
    queries share one segment.

    Args:
        class_logits: Q×(K+1) class logits of one image (the last column is "no object").
        mask_logits: Q×h×w mask logits of the same image.
        thing_classes: the class indices that are things (countable objects); every other class is stuff.
        object_mask_threshold: class probability a query must exceed to be kept (Mask2Former: 0.8).
        overlap_threshold: fraction of its mask a query must keep after the pixel assignment (Mask2Former: 0.8).
        output_size: (H, W) to resize the mask logits to bilinearly first (the image's size); None: as they are.

    Returns:
        An H×W int64 map of segment ids (0: void, no segment) and one dict per segment in id order: `id` (1, 2,
        ...), `category_id` (the contiguous class index), `isthing` (bool) and `score` (the query's class
        probability; for a stuff segment the highest of its queries').
    """
    _check_queries(class_logits, mask_logits, batched=False)
    mask_probs = _at_size(mask_logits, output_size).float().sigmoid()
    scores, labels = class_logits.float().softmax(-1).max(-1)
    keep = (labels != class_logits.shape[-1] - 1) & (scores > object_mask_threshold)
    scores, labels, mask_probs = scores[keep], labels[keep], mask_probs[keep]
    segment_map = torch.zeros(mask_probs.shape[-2:], dtype=torch.int64, device=mask_probs.device)
    segments: list[dict[str, Any]] = []
    if labels.numel() == 0:
        return segment_map, segments
    owner = (scores[:, None, None] * mask_probs).argmax(0)
    things = {int(c) for c in thing_classes}
    stuff_segment: dict[int, dict[str, Any]] = {}
    for index, (score, label) in enumerate(zip(scores.tolist(), labels.tolist())):
        wins = owner == index
        own = mask_probs[index] >= 0.5
        won = wins & own
        if not bool(won.any()) or int(wins.sum()) < overlap_threshold * int(own.sum()):
            continue
        if label not in things and label in stuff_segment:
            segment = stuff_segment[label]
            segment["score"] = max(segment["score"], score)
            segment_map[won] = segment["id"]
            continue
        segment = {"id": len(segments) + 1, "category_id": label, "isthing": label in things, "score": score}
        segments.append(segment)
        if label not in things:
            stuff_segment[label] = segment
        segment_map[won] = segment["id"]
    return segment_map, segments


__all__ = ["instance_predictions", "mask_boxes", "panoptic_predictions", "semantic_scores"]
