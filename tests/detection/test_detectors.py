"""Every configured torchvision detector on the ViT detection backbone: train and eval forward, labels, transform."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.helpers import CONFIGS, TINY_DETECTOR_OVERRIDES
from vitadapter.adapters import BottleneckAdapterConfig
from vitadapter.backbone import ViTBackbone
from vitadapter.detection import BatchOnlyTransform, DetectionBackbone, Detector
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck

DETECTORS = sorted(p.stem for p in (CONFIGS / "model" / "detector").glob("*.yaml"))
NUM_CLASSES = 3


def _backbone() -> DetectionBackbone:
    encoder = Encoder(ViTBackbone("test_vit"), partial(MultiLevelNeck, out_channels=16),
                      BottleneckAdapterConfig(bottleneck_dim=4))
    return DetectionBackbone(encoder, fpn_channels=32)


def _detector(name: str) -> Detector:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", ["experiment=demo_det", f"model/detector={name}", *TINY_DETECTOR_OVERRIDES[name]])
    return instantiate(cfg.model.detector)(backbone=_backbone(), num_classes=NUM_CLASSES)


def _targets(size: int = 96) -> list[dict[str, torch.Tensor]]:
    masks = torch.zeros(2, size, size, dtype=torch.uint8)
    masks[0, 10:30, 10:40] = 1
    masks[1, 30:70, 50:70] = 1
    full = {"boxes": torch.tensor([[10.0, 10, 40, 30], [50, 30, 70, 70]]), "labels": torch.tensor([0, 2]),
            "masks": masks}
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, size, size, dtype=torch.uint8)}
    return [full, empty]


def test_backbone_gives_p2_to_p6() -> None:
    backbone = _backbone()
    pyramid = backbone(torch.randn(2, 3, 96, 64))
    assert list(pyramid) == ["p2", "p3", "p4", "p5", "p6"] and backbone.out_channels == 32
    assert [tuple(x.shape[-2:]) for x in pyramid.values()] == [(24, 16), (12, 8), (6, 4), (3, 2), (2, 1)]
    assert all(x.shape[:2] == (2, 32) for x in pyramid.values())


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_trains_and_predicts_contiguous_labels(name: str) -> None:
    torch.manual_seed(0)
    detector = _detector(name)
    assert isinstance(detector.model.transform, BatchOnlyTransform)
    assert detector.predicts_masks == name.startswith("mask_rcnn")
    detector.train()
    images = [torch.randn(3, 96, 96), torch.randn(3, 96, 96)]
    losses = detector(images, _targets())
    loss = sum(losses.values())
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    frozen = [p for p in detector.backbone.encoder.backbone.vit.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)
    trainable = [n for n, p in detector.named_parameters() if p.requires_grad and p.grad is not None]
    assert any(".adapter." in n for n in trainable) and any(".fpn." in n for n in trainable)

    detector.eval()
    with torch.no_grad():
        detections = detector([torch.randn(3, 96, 80), torch.randn(3, 64, 96)])
    for det, (h, w) in zip(detections, [(96, 80), (64, 96)]):
        assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) == len(det["labels"]) <= 100
        assert all(0 <= k < NUM_CLASSES for k in det["labels"].tolist())
        assert (det["boxes"][:, 2] <= w).all() and (det["boxes"][:, 3] <= h).all()
        if detector.predicts_masks:
            assert det["masks"].shape == (len(det["boxes"]), 1, h, w)


@pytest.mark.parametrize("name", ["mask_rcnn", "retinanet"])
def test_label_offset_reaches_torchvision(name: str) -> None:
    """R-CNN heads see class k as k + 1 (0 is background); RetinaNet/FCOS see k."""
    detector = _detector(name).train()
    seen: list[torch.Tensor] = []
    forward = detector.model.forward
    detector.model.forward = lambda images, targets=None: seen.append(targets[0]["labels"]) or forward(images, targets)
    detector([torch.randn(3, 96, 96), torch.randn(3, 96, 96)], _targets())
    assert seen[0].tolist() == ([1, 3] if name == "mask_rcnn" else [0, 2])


def test_batch_only_transform_neither_resizes_nor_normalises() -> None:
    transform = BatchOnlyTransform(size_divisible=32).eval()
    images = [torch.randn(3, 50, 70), torch.randn(3, 64, 33)]
    targets = [{"boxes": torch.tensor([[1.0, 2, 30, 40]]), "labels": torch.tensor([1])}, {"boxes": torch.zeros(0, 4),
                                                                                           "labels": torch.zeros(0)}]
    batch, out_targets = transform(images, targets)
    assert batch.tensors.shape == (2, 3, 64, 96) and batch.image_sizes == [(50, 70), (64, 33)]
    assert torch.equal(batch.tensors[0, :, :50, :70], images[0]) and batch.tensors[0, :, 50:].abs().sum() == 0
    assert torch.equal(out_targets[0]["boxes"], targets[0]["boxes"])
    detections = [{"boxes": torch.tensor([[1.5, 2.5, 30.0, 40.0]]), "scores": torch.ones(1), "labels": torch.ones(1)}]
    processed = transform.postprocess(detections, [(50, 70)], [(50, 70)])
    assert torch.equal(processed[0]["boxes"], torch.tensor([[1.5, 2.5, 30.0, 40.0]]))


def test_fcos_needs_groupnorm_compatible_channels() -> None:
    backbone = DetectionBackbone(Encoder(ViTBackbone("test_vit"), partial(MultiLevelNeck, out_channels=16)),
                                 fpn_channels=16)
    cfg = OmegaConf.load(CONFIGS / "model" / "detector" / "fcos.yaml")
    with pytest.raises(ValueError, match="multiple of 32"):
        instantiate(cfg)(backbone=backbone, num_classes=NUM_CLASSES)
