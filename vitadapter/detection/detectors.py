"""torchvision detectors on the ViT detection backbone: Mask R-CNN, Faster R-CNN, RetinaNet, FCOS.

He et al., "Mask R-CNN", ICCV 2017; Ren et al., "Faster R-CNN", NeurIPS 2015; Lin et al., "Focal Loss
for Dense Object Detection" (RetinaNet), ICCV 2017; Tian et al., "FCOS", ICCV 2019. Heads, losses,
anchors, RoIAlign and NMS are torchvision's; this module only wires them to the p2-p6 pyramid of
`DetectionBackbone` and swaps in `BatchOnlyTransform` (the datamodule resizes and normalises).

Every builder returns a `Detector`, which speaks contiguous labels 0..K-1 on both sides and hides
the R-CNN family's background class 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from vitadapter.detection.backbone import DetectionBackbone
from vitadapter.detection.transform import BatchOnlyTransform

ROI_LEVELS = 4  # RoIAlign pools from p2-p5, as in the FPN paper; p6 only feeds the RPN


class Detector(nn.Module):
    """A torchvision detector that takes and returns contiguous labels 0..K-1.

    Args:
        model: the torchvision detector (its `backbone` is a `DetectionBackbone`).
        num_classes: K, the number of object classes.
        label_offset: what torchvision's label of class k is minus k (1 for the R-CNN family, whose
            label 0 is background; 0 for RetinaNet and FCOS).
        predicts_masks: whether detections carry instance masks.
    """

    def __init__(self, model: nn.Module, num_classes: int, label_offset: int, predicts_masks: bool) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.label_offset = label_offset
        self.predicts_masks = predicts_masks

    @property
    def backbone(self) -> DetectionBackbone:
        """The detector's backbone (frozen ViT + adapters + neck + FPN)."""
        return self.model.backbone

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Training: the loss dict; evaluation: detections.

        Args:
            images: normalised 3×H×W images, already at the size the model should see.
            targets: per image, `boxes` (N×4 xyxy, input pixels), `labels` (N, 0..K-1) and, for Mask
                R-CNN, `masks` (N×H×W); required in training mode.

        Returns:
            In training mode torchvision's loss dict; otherwise per image `boxes` (xyxy, input pixels),
            `scores`, `labels` (0..K-1) and, for Mask R-CNN, `masks` (N×1×H×W probabilities).
        """
        if self.training:
            if targets is None:
                raise ValueError("a detector in training mode needs targets")
            shifted = [{**t, "labels": t["labels"] + self.label_offset} for t in targets]
            return self.model(images, shifted)
        detections = self.model(images)
        return [{**d, "labels": d["labels"] - self.label_offset} for d in detections]


def _per_level(values: Sequence[Any], backbone: DetectionBackbone, name: str) -> list[Any]:
    values = list(values)
    if len(values) != len(backbone.level_names):
        raise ValueError(
            f"{name} needs one entry per pyramid level {backbone.level_names}, got {len(values)}: {values}"
        )
    return values


def _finish(model: nn.Module, num_classes: int, label_offset: int, masks: bool, size_divisible: int) -> Detector:
    model.transform = BatchOnlyTransform(size_divisible)
    return Detector(model, num_classes, label_offset, masks)


def _rcnn_kwargs(
    backbone: DetectionBackbone,
    num_classes: int,
    anchor_sizes: Sequence[float],
    aspect_ratios: Sequence[float],
    box_head_dim: int,
    score_thresh: float,
    nms_thresh: float,
    detections_per_img: int,
) -> dict[str, Any]:
    """Anchors, RPN and box-branch modules shared by Faster and Mask R-CNN."""
    sizes = _per_level(anchor_sizes, backbone, "anchor_sizes")
    roi_levels = list(backbone.level_names[:ROI_LEVELS])
    pool = MultiScaleRoIAlign(featmap_names=roi_levels, output_size=7, sampling_ratio=2)
    return {
        "rpn_anchor_generator": AnchorGenerator(
            sizes=tuple((float(s),) for s in sizes),
            aspect_ratios=(tuple(float(r) for r in aspect_ratios),) * len(sizes),
        ),
        "box_roi_pool": pool,
        "box_head": TwoMLPHead(backbone.out_channels * 7 * 7, box_head_dim),
        "box_predictor": FastRCNNPredictor(box_head_dim, num_classes + 1),
        "box_score_thresh": score_thresh,
        "box_nms_thresh": nms_thresh,
        "box_detections_per_img": detections_per_img,
    }


def build_mask_rcnn(
    backbone: DetectionBackbone,
    num_classes: int,
    anchor_sizes: Sequence[float] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    box_head_dim: int = 1024,
    mask_head_channels: int = 256,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    size_divisible: int = 32,
    options: Mapping[str, Any] | None = None,
) -> Detector:
    """Mask R-CNN with an FPN RPN (one anchor size per level p2-p6) and RoIAlign over p2-p5.

    Args:
        backbone: the detection backbone.
        num_classes: object classes K (the background class is added here).
        anchor_sizes: RPN anchor side per level, p2 first (5 values).
        aspect_ratios: RPN anchor aspect ratios (height / width) at every level.
        box_head_dim: width of the two-layer box head.
        mask_head_channels: width of the four-conv mask head.
        score_thresh: detections below this score are dropped.
        nms_thresh: per-class NMS IoU threshold.
        detections_per_img: detections kept per image (COCO scores the top 100).
        size_divisible: the padded batch is a multiple of this.
        options: further `torchvision.models.detection.MaskRCNN` arguments (e.g. rpn_batch_size_per_image).

    Returns:
        The detector.
    """
    kwargs = _rcnn_kwargs(backbone, num_classes, anchor_sizes, aspect_ratios, box_head_dim, score_thresh,
                          nms_thresh, detections_per_img)
    mask_pool = MultiScaleRoIAlign(featmap_names=list(backbone.level_names[:ROI_LEVELS]), output_size=14,
                                   sampling_ratio=2)
    model = MaskRCNN(
        backbone,
        num_classes=None,
        mask_roi_pool=mask_pool,
        mask_head=MaskRCNNHeads(backbone.out_channels, [mask_head_channels] * 4, dilation=1),
        mask_predictor=MaskRCNNPredictor(mask_head_channels, mask_head_channels, num_classes + 1),
        **kwargs,
        **dict(options or {}),
    )
    return _finish(model, num_classes, label_offset=1, masks=True, size_divisible=size_divisible)


def build_faster_rcnn(
    backbone: DetectionBackbone,
    num_classes: int,
    anchor_sizes: Sequence[float] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    box_head_dim: int = 1024,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    size_divisible: int = 32,
    options: Mapping[str, Any] | None = None,
) -> Detector:
    """Faster R-CNN: Mask R-CNN without the mask branch (same arguments, boxes only)."""
    kwargs = _rcnn_kwargs(backbone, num_classes, anchor_sizes, aspect_ratios, box_head_dim, score_thresh,
                          nms_thresh, detections_per_img)
    model = FasterRCNN(backbone, num_classes=None, **kwargs, **dict(options or {}))
    return _finish(model, num_classes, label_offset=1, masks=False, size_divisible=size_divisible)


def build_retinanet(
    backbone: DetectionBackbone,
    num_classes: int,
    anchor_sizes: Sequence[float] = (32, 64, 128, 256, 512),
    scales_per_octave: int = 3,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    size_divisible: int = 32,
    options: Mapping[str, Any] | None = None,
) -> Detector:
    """RetinaNet (sigmoid focal loss, no background class) on p2-p6.

    Args:
        backbone: the detection backbone.
        num_classes: object classes K.
        anchor_sizes: base anchor side per level, p2 first (5 values).
        scales_per_octave: anchors per level at base × 2^(k / scales_per_octave), k = 0..n-1.
        aspect_ratios: anchor aspect ratios at every level.
        score_thresh: detections below this score are dropped.
        nms_thresh: per-class NMS IoU threshold.
        detections_per_img: detections kept per image.
        size_divisible: the padded batch is a multiple of this.
        options: further `torchvision.models.detection.RetinaNet` arguments.

    Returns:
        The detector.
    """
    sizes = _per_level(anchor_sizes, backbone, "anchor_sizes")
    anchors = AnchorGenerator(
        sizes=tuple(tuple(float(s) * 2 ** (k / scales_per_octave) for k in range(scales_per_octave)) for s in sizes),
        aspect_ratios=(tuple(float(r) for r in aspect_ratios),) * len(sizes),
    )
    model = RetinaNet(backbone, num_classes, anchor_generator=anchors, score_thresh=score_thresh,
                      nms_thresh=nms_thresh, detections_per_img=detections_per_img, **dict(options or {}))
    return _finish(model, num_classes, label_offset=0, masks=False, size_divisible=size_divisible)


def build_fcos(
    backbone: DetectionBackbone,
    num_classes: int,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.6,
    detections_per_img: int = 100,
    center_sampling_radius: float = 1.5,
    size_divisible: int = 32,
    options: Mapping[str, Any] | None = None,
) -> Detector:
    """FCOS (anchor-free) on p2-p6.

    torchvision's FCOS reads one square "anchor" per location as that level's stride: it scales the
    box regression and sets each level's object-size range (4-8 strides), so the anchors here are the
    backbone's strides.

    Args:
        backbone: the detection backbone (`out_channels` a multiple of 32: the head uses GroupNorm(32)).
        num_classes: object classes K.
        score_thresh: detections below this score are dropped.
        nms_thresh: per-class NMS IoU threshold.
        detections_per_img: detections kept per image.
        center_sampling_radius: positives lie within this many strides of a box centre.
        size_divisible: the padded batch is a multiple of this.
        options: further `torchvision.models.detection.FCOS` arguments.

    Returns:
        The detector.
    """
    if backbone.out_channels % 32:
        raise ValueError(f"FCOS's head uses GroupNorm(32, C): model.fpn_channels={backbone.out_channels} "
                         "must be a multiple of 32")
    anchors = AnchorGenerator(sizes=tuple((float(s),) for s in backbone.strides),
                              aspect_ratios=((1.0,),) * len(backbone.strides))
    model = FCOS(backbone, num_classes, anchor_generator=anchors, score_thresh=score_thresh, nms_thresh=nms_thresh,
                 detections_per_img=detections_per_img, center_sampling_radius=center_sampling_radius,
                 **dict(options or {}))
    return _finish(model, num_classes, label_offset=0, masks=False, size_divisible=size_divisible)
