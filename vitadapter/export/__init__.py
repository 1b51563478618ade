"""Export: a trained model's ViT as a plain timm checkpoint, the PEFT method merged into its weights."""

from vitadapter.export.merged import (
    export_merged,
    load_trained_task,
    merged_vit_state_dict,
    save_state_dict,
    timm_create_call,
)

__all__ = ["export_merged", "load_trained_task", "merged_vit_state_dict", "save_state_dict", "timm_create_call"]
