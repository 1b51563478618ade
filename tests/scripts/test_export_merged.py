"""scripts/export_merged.py: a LoRA checkpoint from train.py -> a plain timm checkpoint that timm alone reproduces."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from tests.helpers import run_script, tiny_seg_overrides
from vitadapter.export import load_trained_task, merged_vit_state_dict, save_state_dict
from vitadapter.run.build import build_datamodule_and_task


def test_exported_file_loads_in_timm_and_reproduces_the_trained_encoder(lora_checkpoint: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "vit_lora_merged.safetensors"
    run_script("scripts/export_merged.py", f"ckpt_path={lora_checkpoint}", f"output={output}")
    assert output.is_file() and "timm.create_model('test_vit', pretrained=True, num_classes=0" in capsys.readouterr().out

    task = load_trained_task(lora_checkpoint)
    encoder = task.encoder
    vit = timm.create_model("test_vit", pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(output)},
                            **encoder.backbone.model_kwargs).eval()
    image = torch.randn(1, 3, *vit.patch_embed.img_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        unmerged = [tap.patch_map() for tap in encoder.tokens(image)]
    pretrained_qkv = encoder.backbone.vit.blocks[0].attn.qkv.base_layer.weight.detach().clone()
    encoder.merge()

    assert set(vit.state_dict()) == set(encoder.backbone.vit.state_dict())
    assert not torch.equal(vit.state_dict()["blocks.0.attn.qkv.weight"], pretrained_qkv)  # LoRA was merged in
    with torch.no_grad():
        assert torch.equal(vit.forward_features(image), encoder.backbone.vit.forward_features(image))
        maps = vit.forward_intermediates(image, indices=encoder.backbone.out_indices, intermediates_only=True)
    assert len(maps) == len(unmerged)
    for exported, trained in zip(maps, unmerged):
        torch.testing.assert_close(exported, trained, rtol=1e-5, atol=1e-5)


def test_torch_save_export_and_bad_suffix(lora_checkpoint: Path, tmp_path: Path) -> None:
    task = load_trained_task(lora_checkpoint)
    path = save_state_dict(merged_vit_state_dict(task.encoder), tmp_path / "vit.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert "blocks.0.attn.qkv.weight" in state and not any("lora_" in k or "base_layer" in k for k in state)
    with pytest.raises(ValueError, match=r"output=.*\.safetensors"):
        save_state_dict(state, tmp_path / "vit.ckpt")


@pytest.mark.parametrize("method, exportable", [("bitfit", True), ("bottleneck", False)])
def test_methods_without_merge(method: str, exportable: bool, compose_config, tmp_path: Path,
                               seg_data_root: Path) -> None:
    """BitFit trains the ViT's own biases (a plain timm model); bottleneck adapters add modules and are refused."""
    cfg = compose_config("train", ["experiment=demo_seg", *tiny_seg_overrides(seg_data_root),
                                   f"model/adapter={method}"], tmp_path)
    encoder = build_datamodule_and_task(cfg)[1].encoder
    if exportable:
        timm_vit = timm.create_model("test_vit", num_classes=0, **encoder.backbone.model_kwargs)
        assert set(merged_vit_state_dict(encoder)) == set(timm_vit.state_dict())
    else:
        with pytest.raises(ValueError, match="model.adapter.name='bottleneck' cannot be exported"):
            merged_vit_state_dict(encoder)
