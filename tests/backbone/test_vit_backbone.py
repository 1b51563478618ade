"""The frozen timm ViT wrapper: taps, freezing, eval mode, fingerprints, any input size."""

from functools import partial

import pytest
import torch

from vitadapter.adapters import AdaptedBranch, BottleneckAdapterConfig
from vitadapter.backbone import ViTBackbone, evenly_spaced_taps, resolve_taps, state_fingerprint
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck


def tap_maps(backbone: ViTBackbone, image: torch.Tensor, method=None) -> list[torch.Tensor]:
    encoder = Encoder(backbone, partial(MultiLevelNeck, out_channels=8), method)
    return [t.patch_map() for t in encoder.tokens(image)]


def test_evenly_spaced_taps() -> None:
    assert evenly_spaced_taps(12) == [2, 5, 8, 11]
    assert evenly_spaced_taps(24) == [5, 11, 17, 23]
    assert evenly_spaced_taps(4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="depth 3"):
        evenly_spaced_taps(3)


@pytest.mark.parametrize("size", [(64, 64), (70, 50), (17, 33)])
def test_taps_are_nchw_maps_for_any_size(size: tuple[int, int]) -> None:
    backbone = ViTBackbone("test_vit")
    maps = tap_maps(backbone, torch.randn(2, 3, *size))
    grid = tuple(-(-s // backbone.patch_size) for s in size)  # padded up to whole patches
    assert len(maps) == 4
    assert all(m.shape == (2, backbone.embed_dim, *grid) for m in maps)


def test_patch14_backbone_is_supported() -> None:
    backbone = ViTBackbone("vit_small_patch14_dinov2", model_kwargs={"depth": 4, "embed_dim": 48, "num_heads": 2})
    assert backbone.patch_size == 14
    maps = tap_maps(backbone, torch.randn(1, 3, 56, 70))
    assert maps[-1].shape == (1, 48, 4, 5)


def test_all_own_parameters_frozen_and_kept_in_eval_mode() -> None:
    backbone = ViTBackbone("test_vit")
    Encoder(backbone, partial(MultiLevelNeck, out_channels=8), BottleneckAdapterConfig(bottleneck_dim=4, dropout=0.1))
    backbone.train()
    frozen = [m for name, m in backbone.vit.named_modules() if "adapter" not in name and "drop_path" not in name]
    assert all(not m.training for m in frozen)
    adapters = [m for m in backbone.vit.modules() if isinstance(m, AdaptedBranch)]
    assert len(adapters) == 12 and all(a.adapter.training and not a.branch.training for a in adapters)
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable and all(".adapter." in n for n in trainable)


def test_seeded_random_init_is_reproducible_and_seed_dependent() -> None:
    a, b, c = ViTBackbone("test_vit", seed=1), ViTBackbone("test_vit", seed=1), ViTBackbone("test_vit", seed=2)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.fingerprint == state_fingerprint(b.vit)


def test_random_init_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        ViTBackbone("test_vit")
    assert "RANDOM weights" in caplog.text


def test_local_checkpoint_is_loaded_through_timm(tmp_path) -> None:
    source = ViTBackbone("test_vit", seed=7)
    weights = tmp_path / "weights.pth"
    torch.save(source.vit.state_dict(), weights)
    loaded = ViTBackbone("test_vit", checkpoint=str(weights), seed=0)
    assert loaded.fingerprint == source.fingerprint


def test_missing_checkpoint_and_unknown_name_are_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="model.backbone.checkpoint"):
        ViTBackbone("test_vit", checkpoint=str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="not a timm model"):
        ViTBackbone("vit_does_not_exist")


def test_out_indices_out_of_range() -> None:
    with pytest.raises(ValueError, match="out_indices"):
        ViTBackbone("test_vit", out_indices=[1, 2, 3, 6])


def test_fingerprint_and_weights_do_not_depend_on_the_input_size() -> None:
    """Built once at timm's size: the same seed gives the same network for a 64 px or a 1024 px task."""
    backbone = ViTBackbone("test_vit", seed=3)
    fingerprint = backbone.fingerprint
    for size in [(64, 64), (96, 160)]:
        tap_maps(backbone, torch.randn(1, 3, *size))
    assert state_fingerprint(backbone.vit) == fingerprint == ViTBackbone("test_vit", seed=3).fingerprint


def test_resampled_position_embedding_matches_timm() -> None:
    """At a new size the encoder computes what timm's own dynamic-size forward computes."""
    backbone = ViTBackbone("test_vit")
    image = torch.randn(1, 3, 80, 112)
    reference = backbone.vit.forward_intermediates(image, indices=backbone.out_indices, intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(reference, tap_maps(backbone, image)))


def test_out_indices_even4_is_resolved_from_the_depth() -> None:
    assert resolve_taps("even4", 24) == [5, 11, 17, 23]  # DINOv3's code: [4, 11, 17, 23] for ViT-L only
    assert resolve_taps("even4", 40) == [9, 19, 29, 39] == resolve_taps(None, 40)
    assert resolve_taps("even2", 12) == [5, 11] and resolve_taps([-1, 0], 6) == [5, 0]
    assert ViTBackbone("test_vit", out_indices="even4").out_indices == ViTBackbone("test_vit").out_indices == [0, 2, 3, 5]
    with pytest.raises(ValueError, match="'even4'"):
        resolve_taps("every4", 12)
