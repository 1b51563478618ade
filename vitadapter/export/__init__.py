"""Export: a trained model's ViT as a plain timm checkpoint (the PEFT method merged into its weights), and a
segmentation or depth model as ONNX (`onnx_export`, `depth_onnx`; the `[onnx]` extra is needed only when it runs)."""

from vitadapter.export.merged import (
    export_merged,
    load_trained_task,
    merged_vit_state_dict,
    save_state_dict,
    timm_create_call,
)
from vitadapter.export.depth_onnx import DepthForExport, prepare_depth
from vitadapter.export.onnx_export import SegmentationForExport, export_onnx, prepare_segmentation

__all__ = ["DepthForExport", "SegmentationForExport", "export_merged", "export_onnx", "load_trained_task",
           "merged_vit_state_dict", "prepare_depth", "prepare_segmentation", "save_state_dict", "timm_create_call"]
