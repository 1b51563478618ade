"""No autograd through frozen blocks: a frozen trunk saves nothing for backward, blocks before a method's first trained
block save nothing, gradient checkpointing keeps only the trained blocks' inputs, and outputs and gradients equal,
bit for bit, those of every block running with gradients on (the encoder's loop before it made this explicit)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch

from vitadapter.adapters import BottleneckAdapter, build_method
from vitadapter.adapters.fusion import AdapterFusion
from vitadapter.adapters.residual_adapter import AdaptedBranch
from vitadapter.backbone import ViTBackbone
from vitadapter.cost import SavedTensorCounter
from vitadapter.encoder import Encoder
from vitadapter.necks import MultiLevelNeck, ViTAdapterNeck

MULTILEVEL = partial(MultiLevelNeck, out_channels=8)
SIDE = partial(ViTAdapterNeck, inject=False)
IMAGE_SIZE = (32, 48)  # test_vit (width 64, depth 6, patch 16): a 2×3 grid + the class token = 7 tokens
TOKENS_BYTES = 2 * 7 * 64 * 4  # the tokens of a batch of 2, float32


def _encoder(method: str = "none", neck: Callable = MULTILEVEL, checkpointing: bool = False, **fields) -> Encoder:
    torch.manual_seed(0)
    encoder = Encoder(ViTBackbone("test_vit", out_indices=[1, 3, 4, 5], grad_checkpointing=checkpointing), neck,
                      build_method(method, **fields))
    with torch.no_grad():  # move zero-initialised factors (LoRA's B, adapters' up) so every gradient is informative
        for param in encoder.method_parameters():
            param.add_(0.01)
    return encoder.train()


def _saved_bytes(encoder: Encoder, image: torch.Tensor) -> tuple[int, list[int]]:
    """Bytes autograd keeps for backward in the embedding and in each block, through the encoder's own loop."""
    exclude = {p.untyped_storage().data_ptr() for p in encoder.parameters()}

    def counted(run: Callable[[], object]) -> tuple[object, int]:
        counter = SavedTensorCounter(exclude)
        counter.start()
        try:
            return run(), counter.total_bytes
        finally:
            counter.stop()

    tokens, embedded = counted(lambda: encoder.embed(image))
    per_block = []
    for index in range(encoder.backbone.used_depth):
        tokens, saved = counted(lambda: encoder.run_blocks(tokens, range(index, index + 1)))
        per_block.append(saved)
    return embedded, per_block


def _grad_modes(encoder: Encoder, image: torch.Tensor) -> list[bool]:
    """Whether each block ran with gradients on, in a whole forward of the encoder."""
    modes: list[bool] = []
    handles = [block.register_forward_pre_hook(lambda module, args: modes.append(torch.is_grad_enabled()))
               for block in encoder.backbone.vit.blocks]
    encoder(image)
    for handle in handles:
        handle.remove()
    return modes


@pytest.mark.parametrize("neck", [MULTILEVEL, SIDE], ids=["multilevel", "vit_adapter_side"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_frozen_trunk_runs_without_gradients_and_saves_nothing(neck: Callable, checkpointing: bool) -> None:
    encoder = _encoder("none", neck, checkpointing)
    image = torch.randn(2, 3, *IMAGE_SIZE)
    assert _saved_bytes(encoder, image) == (0, [0] * 6)
    assert _grad_modes(encoder, image) == [False] * 6
    # the neck still trains: everything it saves is its own
    sum(level.square().mean() for level in encoder(image).values()).backward()
    assert all(p.grad is not None for p in encoder.neck.parameters())
    assert all(p.grad is None for p in encoder.backbone.parameters())


def test_blocks_before_the_first_trained_block_save_nothing() -> None:
    encoder = _encoder("lora", layers=[3])
    image = torch.randn(2, 3, *IMAGE_SIZE)
    embedded, per_block = _saved_bytes(encoder, image)
    assert embedded == 0 and per_block[:3] == [0, 0, 0]
    assert all(saved > 5 * TOKENS_BYTES for saved in per_block[3:])  # norms, attention, MLP: many token maps
    assert _grad_modes(encoder, image) == [False] * 3 + [True] * 3


def test_checkpointing_keeps_only_each_trained_blocks_input() -> None:
    encoder = _encoder("lora", checkpointing=True, layers=[3])
    assert _saved_bytes(encoder, torch.randn(2, 3, *IMAGE_SIZE)) == (0, [0, 0, 0] + [TOKENS_BYTES] * 3)


def test_deep_prompts_start_the_graph_at_their_first_block() -> None:
    encoder = _encoder("vpt", layers=[2, 4], dropout=0.0)
    image = torch.randn(2, 3, *IMAGE_SIZE)
    embedded, per_block = _saved_bytes(encoder, image)
    assert embedded == 0 and per_block[:2] == [0, 0] and all(saved > 0 for saved in per_block[2:])
    assert _grad_modes(encoder, image) == [False] * 2 + [True] * 4


def test_an_image_that_needs_a_gradient_gets_it_through_the_frozen_trunk() -> None:
    encoder = _encoder("none")
    image = torch.randn(2, 3, *IMAGE_SIZE, requires_grad=True)
    assert _grad_modes(encoder, image) == [True] * 6
    sum(level.sum() for level in encoder(image).values()).backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def _with_fusion_in_block_3(encoder: Encoder) -> Encoder:
    """AdapterFusion over two frozen bottleneck sources on block 3's MLP branch (as `model/adapter=fusion` places it,
    without the source checkpoints)."""
    block = encoder.backbone.vit.blocks[3]
    sources = [BottleneckAdapter(64, 8) for _ in range(2)]
    for source in sources:
        torch.nn.init.normal_(source.up.weight, std=0.02)
    fusion = AdapterFusion(sources, ["sequential", "sequential"], 64, 16)
    block.drop_path2 = AdaptedBranch(block.drop_path2, block.mlp, fusion, "both")
    return encoder.train()


CASES = {
    "none+multilevel": ("none", MULTILEVEL, {}),
    "none+vit_adapter_side": ("none", SIDE, {}),
    "none+vit_adapter": ("none", ViTAdapterNeck, {}),
    "lora@3": ("lora", MULTILEVEL, {"layers": [3]}),
    "lora@3+vit_adapter": ("lora", ViTAdapterNeck, {"layers": [3]}),
    "bottleneck>=3": ("bottleneck", MULTILEVEL, {"drop_below": 3}),
    "convpass>=2": ("convpass", MULTILEVEL, {"drop_below": 2}),
    "ssf@4": ("ssf", MULTILEVEL, {"layers": [4], "embedding": False}),
    "vpt_deep@2,4": ("vpt", MULTILEVEL, {"layers": [2, 4], "dropout": 0.0}),
    "vpt_shallow@3": ("vpt", MULTILEVEL, {"layers": [3], "deep": False, "dropout": 0.0}),
    "bitfit": ("bitfit", MULTILEVEL, {}),
    "norm>=1": ("norm", MULTILEVEL, {"drop_below": 1}),
    "full": ("full", MULTILEVEL, {}),
    "fusion@3": ("none", MULTILEVEL, {}),
}


def _step(encoder: Encoder, image: torch.Tensor) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    encoder.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same drop-path draws in ViT-Adapter's extractors
    pyramid = encoder(image)
    sum(level.square().mean() for level in pyramid.values()).backward()
    return list(pyramid.values()), {n: p.grad for n, p in encoder.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_and_gradients_equal_every_block_recording_its_graph(case: str, checkpointing: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    method, neck, fields = CASES[case]
    encoder = _encoder(method, neck, checkpointing, **fields)
    if case.startswith("fusion"):
        encoder = _with_fusion_in_block_3(encoder)
    image = torch.randn(2, 3, *IMAGE_SIZE)
    pyramid, grads = _step(encoder, image)
    # every trainable tensor gets a gradient: DDP (find_unused_parameters=false) needs each one every step
    assert [name for name, grad in grads.items() if grad is None] == []
    # the loop as it ran before: every block (and the embedding) with gradients on
    monkeypatch.setattr(encoder, "block_records_graph", lambda index, tokens: torch.is_grad_enabled())
    monkeypatch.setattr(encoder, "embedding_trains", lambda: True)
    reference_pyramid, reference_grads = _step(encoder, image)
    assert all(torch.equal(a, b) for a, b in zip(pyramid, reference_pyramid))
    assert grads.keys() == reference_grads.keys()
    assert [name for name in grads if not torch.equal(grads[name], reference_grads[name])] == []
