"""Building without a float32 copy: the meta-device construction replays timm's init bit for bit, and loaded weights
(safetensors, .pth, DINOv3's original key names, partial files) come from a memory map through timm's own loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from vitadapter.backbone import ViTBackbone, build_frozen_vit, state_fingerprint
from vitadapter.backbone.build import _build_classic, timm_arguments
from vitadapter.backbone.deferred_init import DeferredInit, NotDrawnError
from vitadapter.backbone.lazy_loading import MappedFile

DINOV3 = "vit_small_patch16_dinov3_qkvb"
DEPTH2 = {"depth": 2}
TAPS = [0, 1]


class _Initialised(nn.Module):
    """Init patterns beyond timm's usual ones: a random factory, a functional op on a meta tensor, writes to a
    slice, an overwrite after a construction-time init, a value read during construction."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(4, 6) * 0.5 + 1)
        self.conv = nn.Conv2d(3, 3, 3)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, :, 1, 1] = torch.eye(3)
            self.conv.weight.mul_(self.table.mean())  # reads a meta tensor's value mid-construction
        self.linear = nn.Linear(6, 5)
        nn.init.trunc_normal_(self.linear.weight, std=0.02)
        self.register_buffer("index", torch.arange(12).view(3, 4).t().contiguous())


def _eager_and_deferred(build, seed: int = 11) -> tuple[nn.Module, nn.Module, DeferredInit]:
    torch.manual_seed(seed)
    eager = build()
    torch.manual_seed(seed)
    with torch.device("meta"), DeferredInit() as init:
        meta = build()
    return eager, meta, init


def test_deferred_init_replays_each_tensor_as_the_eager_build() -> None:
    eager, meta, init = _eager_and_deferred(_Initialised)
    expected = {**dict(eager.named_parameters()), **dict(eager.named_buffers())}
    tensors = {**dict(meta.named_parameters()), **dict(meta.named_buffers())}
    assert all(t.is_meta for t in tensors.values())
    for name in reversed(sorted(tensors)):  # any order
        value = init.materialize(tensors[name])
        assert value.dtype == expected[name].dtype and torch.equal(value, expected[name]), name
    # the generator is left where the eager construction left it
    assert torch.equal(torch.rand(3), (torch.manual_seed(11), _Initialised(), torch.rand(3))[2])


def test_without_draws_only_tensors_made_without_randomness_materialise() -> None:
    with torch.device("meta"), DeferredInit(random_draws=False) as init:
        module = _Initialised()
    assert torch.equal(init.materialize(module.index), torch.arange(12).view(3, 4).t())
    with pytest.raises(NotDrawnError):
        init.materialize(module.linear.weight)


def test_meta_device_backbones_hold_no_values() -> None:
    backbone = ViTBackbone("vit_large_patch16_dinov3", device="meta", frozen_dtype="bfloat16")
    assert backbone.fingerprint is None and backbone.depth == 24
    assert all(t.is_meta for t in (*backbone.vit.parameters(), *backbone.vit.buffers()))


def test_meta_device_backbones_need_no_weights(tmp_path: Path) -> None:
    # the structure of a pretrained trunk whose weights are neither cached nor downloadable (no network here)
    missing = tmp_path / "absent.safetensors"
    backbone = ViTBackbone("vit_large_patch16_dinov3.lvd1689m", pretrained=True, checkpoint=str(missing), device="meta")
    assert backbone.depth == 24 and backbone.fingerprint is None


def test_meta_device_backbones_keep_the_dtypes_of_a_real_build() -> None:
    # memory estimates read the bytes of a meta build: each tensor must be in the dtype a real build keeps it in
    meta = ViTBackbone("test_vit", device="meta", frozen_dtype="bfloat16").vit.state_dict()
    real = ViTBackbone("test_vit", frozen_dtype="bfloat16").vit.state_dict()
    assert {k: v.dtype for k, v in meta.items()} == {k: v.dtype for k, v in real.items()}
    assert {v.dtype for v in meta.values()} == {torch.bfloat16, torch.float32}


def _timm_load(name: str, path: Path, seed: int, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, num_classes=0, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_weights_file_loads_as_timm_loads_it(tmp_path: Path, suffix: str, dtype: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(5)
    source = timm.create_model(DINOV3, num_classes=0, **DEPTH2).state_dict()
    path = tmp_path / f"weights{suffix}"
    save_file(source, str(path)) if suffix == ".safetensors" else torch.save(source, path)
    loads = []
    original = torch.load
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: loads.append(kwargs) or original(*args, **kwargs))
    backbone = ViTBackbone(DINOV3, checkpoint=str(path), model_kwargs=DEPTH2, out_indices=TAPS, frozen_dtype=dtype)
    assert all(call.get("mmap") for call in loads) and len(loads) == (suffix == ".pth")
    reference = _timm_load(DINOV3, path, seed=0, **DEPTH2)
    assert backbone.fingerprint == state_fingerprint(reference)
    for key, tensor in reference.state_dict().items():
        kept = backbone.vit.state_dict()[key]
        assert torch.equal(kept, tensor.to(kept.dtype)) and kept.untyped_storage().nbytes() == kept.nbytes, key


def test_dinov3_original_checkpoint_names_are_adapted_by_timm(tmp_path: Path) -> None:
    torch.manual_seed(6)
    timm_state = timm.create_model(DINOV3, num_classes=0, **DEPTH2).state_dict()
    original = {"mask_token": torch.zeros(1, 384), "rope_embed.periods": torch.ones(24)}
    for key, tensor in timm_state.items():
        if key.endswith("v_bias"):
            continue
        key = key.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        if key.endswith("q_bias"):
            v_bias = timm_state[key.replace("q_bias", "v_bias")]
            key, tensor = key.replace("q_bias", "qkv.bias"), torch.cat([tensor, torch.zeros_like(tensor), v_bias])
        original[key] = tensor
    torch.save(original, tmp_path / "dinov3_vits16_pretrain.pth")
    backbone = ViTBackbone(DINOV3, checkpoint=str(tmp_path / "dinov3_vits16_pretrain.pth"), model_kwargs=DEPTH2,
                           out_indices=TAPS, frozen_dtype="bfloat16")
    built = backbone.vit.state_dict()
    assert all(torch.equal(built[k], v.to(built[k].dtype)) for k, v in timm_state.items())


def test_tensors_a_file_lacks_keep_the_seeds_init_as_in_timm(tmp_path: Path) -> None:
    state = timm.create_model("test_vit", num_classes=0).state_dict()
    del state["blocks.2.mlp.fc1.weight"]  # test_vit's pretrained cfg has a classifier: timm loads non-strictly
    save_file(state, str(tmp_path / "partial.safetensors"))
    built = build_frozen_vit("test_vit", checkpoint=str(tmp_path / "partial.safetensors"), seed=4,
                             frozen_dtype=torch.bfloat16)
    reference = _timm_load("test_vit", tmp_path / "partial.safetensors", seed=4)
    assert built.fingerprint == state_fingerprint(reference)
    expected = reference.state_dict()["blocks.2.mlp.fc1.weight"].to(torch.bfloat16)
    assert torch.equal(built.vit.state_dict()["blocks.2.mlp.fc1.weight"], expected)


def test_files_that_do_not_fit_are_refused_as_timm_refuses_them(tmp_path: Path) -> None:
    state = timm.create_model(DINOV3, num_classes=0, **DEPTH2).state_dict()
    del state["blocks.1.norm2.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(RuntimeError, match="Missing key.*blocks.1.norm2.weight"):
        ViTBackbone(DINOV3, checkpoint=str(tmp_path / "partial.pth"), model_kwargs=DEPTH2, out_indices=TAPS)
    state = timm.create_model(DINOV3, num_classes=0, depth=2, embed_dim=192, num_heads=3).state_dict()
    torch.save(state, tmp_path / "narrow.pth")
    with pytest.raises(RuntimeError, match="size mismatch for blocks.0.attn.proj.weight"):
        ViTBackbone(DINOV3, checkpoint=str(tmp_path / "narrow.pth"), model_kwargs=DEPTH2, out_indices=TAPS)


def test_legacy_torch_save_files_still_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = timm.create_model("test_vit", num_classes=0).state_dict()
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    with caplog.at_level("WARNING"):
        backbone = ViTBackbone("test_vit", checkpoint=str(tmp_path / "legacy.pth"), frozen_dtype="bfloat16")
    assert "cannot be memory-mapped" in caplog.text
    assert torch.equal(backbone.vit.state_dict()["pos_embed"], state["pos_embed"].to(torch.bfloat16))


def _resident_kib(low: int, high: int) -> int:
    """The resident size of this process's mapping [low, high) (from /proc/self/smaps)."""
    inside = False
    for line in open("/proc/self/smaps"):
        if "-" in line.split()[0]:
            inside = tuple(int(b, 16) for b in line.split()[0].split("-")) == (low, high)
        elif inside and line.startswith("Rss:"):
            return int(line.split()[1])
    raise AssertionError("mapping not found")


def test_copied_pages_of_a_mapped_file_are_given_back_and_nothing_else(tmp_path: Path) -> None:
    values = torch.randn(4, 1 << 16)  # 1 MiB: whole pages
    save_file({"w": values}, str(tmp_path / "w.safetensors"))
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as handle:
        mapped_tensor = handle.get_tensor("w")
        mapped = MappedFile(tmp_path / "w.safetensors")
        assert len(mapped.ranges) == 1 and torch.equal(mapped_tensor, values)
        assert _resident_kib(*mapped.ranges[0]) >= 1024
        anonymous = values.clone()
        mapped.release(anonymous)  # not in the file's mapping: left alone
        mapped.release(mapped_tensor)
        assert _resident_kib(*mapped.ranges[0]) <= 8  # at most the partly used first and last pages
        assert torch.equal(anonymous, values) and torch.equal(mapped_tensor, values)  # re-read from the file
    assert MappedFile(None).ranges == []


def test_models_that_load_their_weights_themselves_are_built_in_float32_then_cast(tmp_path: Path) -> None:
    save_file(timm.create_model("test_vit", num_classes=0).state_dict(), str(tmp_path / "w.safetensors"))
    _, kwargs = timm_arguments("test_vit", False, str(tmp_path / "w.safetensors"), None)
    classic = _build_classic("test_vit", 0, kwargs, torch.bfloat16, torch.device("cpu"))  # the .npz route
    streamed = build_frozen_vit("test_vit", checkpoint=str(tmp_path / "w.safetensors"), frozen_dtype=torch.bfloat16)
    assert classic.fingerprint == streamed.fingerprint
    assert all(torch.equal(a, b) and a.dtype == b.dtype
               for a, b in zip(classic.vit.state_dict().values(), streamed.vit.state_dict().values()))
