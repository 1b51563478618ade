"""Datasets, datamodules, transforms and synthetic data writers."""

from vitadapter.data.ade20k_classes import ADE20K_CLASSES
from vitadapter.data.ade20k_datamodule import ADE20KDataModule
from vitadapter.data.ade20k_dataset import ADE20KDataset
from vitadapter.data.seg_datamodule import SegmentationDataModule, collate_as_lists, read_classes_file
from vitadapter.data.seg_dataset import SegmentationDataset, reduce_zero_label, restore_zero_label
from vitadapter.data.seg_transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CatMaxRatioRandomCrop,
    RescaleToFit,
    build_train_transform,
    build_val_transform,
    photometric_distortion,
)
from vitadapter.data.synthetic import (
    SHAPE_CLASSES,
    SYNTHETIC_CLASS_NAMES,
    Instance,
    Scene,
    is_synthetic_ade20k_complete,
    render_scene,
    write_synthetic_ade20k,
)

__all__ = [
    "ADE20K_CLASSES",
    "ADE20KDataModule",
    "ADE20KDataset",
    "CatMaxRatioRandomCrop",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Instance",
    "RescaleToFit",
    "SHAPE_CLASSES",
    "SYNTHETIC_CLASS_NAMES",
    "Scene",
    "SegmentationDataModule",
    "SegmentationDataset",
    "build_train_transform",
    "build_val_transform",
    "collate_as_lists",
    "is_synthetic_ade20k_complete",
    "photometric_distortion",
    "read_classes_file",
    "reduce_zero_label",
    "render_scene",
    "restore_zero_label",
    "write_synthetic_ade20k",
]

# COCO detection / instance segmentation
from vitadapter.data.coco_datamodule import COCO_CATEGORIES, COCODataModule, collate_detection  # noqa: E402
from vitadapter.data.coco_dataset import COCODetectionDataset, decode_segmentation  # noqa: E402
from vitadapter.data.det_transforms import (  # noqa: E402
    DetectionTransform,
    RandomCropAtMost,
    ScaleLongestSide,
    build_det_train_transform,
    build_det_val_transform,
)
from vitadapter.data.synthetic.coco_writer import (  # noqa: E402
    SYNTHETIC_COCO_CATEGORY_IDS,
    is_synthetic_coco_complete,
    mask_to_polygons,
    write_synthetic_coco,
)

__all__ += [
    "COCO_CATEGORIES",
    "COCODataModule",
    "COCODetectionDataset",
    "DetectionTransform",
    "RandomCropAtMost",
    "SYNTHETIC_COCO_CATEGORY_IDS",
    "ScaleLongestSide",
    "build_det_train_transform",
    "build_det_val_transform",
    "collate_detection",
    "decode_segmentation",
    "is_synthetic_coco_complete",
    "mask_to_polygons",
    "write_synthetic_coco",
]

# Monocular depth
from vitadapter.data.depth_datamodule import DepthDataModule, collate_depth_as_lists  # noqa: E402
from vitadapter.data.depth_dataset import DepthDataset, read_depth  # noqa: E402
from vitadapter.data.depth_transforms import (  # noqa: E402
    build_depth_train_transform,
    build_depth_val_transform,
    colour_augmentation,
)
from vitadapter.data.synthetic.depth_scenes import DepthScene, render_depth_scene  # noqa: E402
from vitadapter.data.synthetic.depth_writer import is_synthetic_nyu_complete, write_synthetic_nyu  # noqa: E402

__all__ += [
    "DepthDataModule",
    "DepthDataset",
    "DepthScene",
    "build_depth_train_transform",
    "build_depth_val_transform",
    "collate_depth_as_lists",
    "colour_augmentation",
    "is_synthetic_nyu_complete",
    "read_depth",
    "render_depth_scene",
    "write_synthetic_nyu",
]

# COCO panoptic segmentation
from vitadapter.data.coco_panoptic_categories import COCO_PANOPTIC_CATEGORIES  # noqa: E402
from vitadapter.data.coco_panoptic_datamodule import COCOPanopticDataModule, collate_panoptic  # noqa: E402
from vitadapter.data.coco_panoptic_dataset import COCOPanopticDataset  # noqa: E402
from vitadapter.data.coco_panoptic_format import (  # noqa: E402
    PanopticResultWriter,
    id_to_rgb,
    read_panoptic_png,
    read_panoptic_results,
    rgb_to_id,
    write_panoptic_png,
)
from vitadapter.data.coco_panoptic_transforms import (  # noqa: E402
    PanopticTransform,
    build_panoptic_train_transform,
    build_panoptic_val_transform,
)
from vitadapter.data.synthetic.panoptic_scenes import PanopticScene, render_panoptic_scene  # noqa: E402
from vitadapter.data.synthetic.panoptic_writer import (  # noqa: E402
    SYNTHETIC_PANOPTIC_CATEGORY_IDS,
    is_synthetic_coco_panoptic_complete,
    write_synthetic_coco_panoptic,
)

__all__ += [
    "COCO_PANOPTIC_CATEGORIES",
    "COCOPanopticDataModule",
    "COCOPanopticDataset",
    "PanopticResultWriter",
    "PanopticScene",
    "PanopticTransform",
    "SYNTHETIC_PANOPTIC_CATEGORY_IDS",
    "build_panoptic_train_transform",
    "build_panoptic_val_transform",
    "collate_panoptic",
    "id_to_rgb",
    "is_synthetic_coco_panoptic_complete",
    "read_panoptic_png",
    "read_panoptic_results",
    "render_panoptic_scene",
    "rgb_to_id",
    "write_panoptic_png",
    "write_synthetic_coco_panoptic",
]
