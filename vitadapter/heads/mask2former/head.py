"""Mask2Former head on the encoder's pyramid: a multi-scale deformable pixel decoder, a masked-attention
transformer decoder, and class + mask predictions per query.

Cheng et al., "Masked-attention Mask Transformer for Universal Image Segmentation", CVPR 2022. The building
blocks are Hugging Face transformers' (`Mask2FormerPixelDecoder`, `Mask2FormerTransformerModule`, their weight
initialisation): the pixel decoder runs 6 deformable-attention layers over the stride 8/16/32 levels and adds the
stride-4 level FPN-style for the mask features; the decoder's 9 layers attend round-robin to the 32, 16 and 8
levels, each restricted to its query's mask predicted by the layer before. transformers is imported when a head
is built, not when this module is.

As a segmentation head it returns per-class scores at stride 4 (`semantic_scores`), which sliding windows and
test-time augmentation average without a softmax (`outputs_scores`); it trains with its own loss
(`segmentation_loss`: one mask per class present in the label map). Instance and panoptic tasks read the query
predictions (`predict_queries`) and combine them with `vitadapter.heads.mask2former.postprocess`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from vitadapter.heads.conv_module import select_levels
from vitadapter.heads.mask2former.loss import MaskClassificationLoss
from vitadapter.heads.mask2former.postprocess import semantic_scores
from vitadapter.heads.mask2former.targets import UNLABELLED_MODES, MaskTargets, semantic_targets

DEFAULT_KEYS = ("s4", "s8", "s16", "s32")
LOSS_DEFAULTS: dict[str, Any] = {
    "class_weight": 2.0,
    "mask_weight": 5.0,
    "dice_weight": 5.0,
    "no_object_weight": 0.1,
    "train_num_points": 12544,
    "oversample_ratio": 3.0,
    "importance_sample_ratio": 0.75,
    "deep_supervision": True,
    "unlabelled": "exclude",
}


class QueryPredictions(NamedTuple):
    """Every decoder layer's predictions, the last one final (the first is made before any decoder layer).

    Attributes:
        class_logits: per layer B×Q×(K+1) (the last column is "no object").
        mask_logits: per layer B×Q×h×w at the finest level's resolution (stride 4).
    """

    class_logits: list[Tensor]
    mask_logits: list[Tensor]


PIXEL_DECODER_NORMS = ("gn", "bn")


@contextmanager
def pixel_decoder_norms(module: ModuleType, norm: str) -> Iterator[None]:
    """While `module` builds layers, its `nn.GroupNorm(32, C)` becomes GroupNorm(gcd(32, C), C) (`norm="gn"`) or
    BatchNorm2d(C) (`norm="bn"`).

    transformers' pixel decoder hard-codes 32 groups, which needs C divisible by 32; with gcd(32, C) groups (the
    rule of `heads/conv_module.py`) the paper's widths build the same layers and narrower ones (tests, CPU demos)
    build too. BatchNorm learns faster from scratch (the CPU demos' random ViT).
    """

    class TorchNN:
        def __getattr__(self, name: str) -> Any:
            return getattr(nn, name)

        @staticmethod
        def GroupNorm(num_groups: int, num_channels: int, *args: Any, **kwargs: Any) -> nn.Module:  # noqa: N802
            if norm == "bn":
                return nn.BatchNorm2d(num_channels)
            return nn.GroupNorm(math.gcd(num_groups, num_channels), num_channels, *args, **kwargs)

    original = module.nn
    module.nn = TorchNN()
    try:
        yield
    finally:
        module.nn = original


class Mask2FormerHead(nn.Module):
    """Mask2Former on a 4-level pyramid (strides 4, 8, 16, 32), all levels of `in_channels`.

    Args:
        in_channels: channels of every pyramid level.
        num_classes: number of classes K.
        channels: width of the pixel decoder, the mask features and the transformer decoder (paper: 256; a
            multiple of the heads).
        num_queries: object queries (paper: 100; 200 for panoptic COCO with large backbones).
        decoder_layers: masked-attention decoder layers (paper: 9, three rounds over the 3 levels).
        pixel_decoder_layers: deformable-attention layers of the pixel decoder (paper: 6).
        heads: attention heads of both decoders (paper: 8).
        decoder_feedforward: hidden width of the decoder's feed-forward layers (paper: 2048).
        pixel_decoder_feedforward: hidden width of the pixel decoder's feed-forward layers (paper: 1024).
        pre_norm: LayerNorm before each decoder sublayer instead of after (paper: false).
        pixel_decoder_norm: "gn" (the paper's GroupNorm) or "bn" (BatchNorm, faster to learn from scratch) after the
            pixel decoder's convolutions.
        in_keys: the pyramid's four levels, finest first.
        loss: settings of the training loss, any of `LOSS_DEFAULTS`: the loss weights (class 2, mask 5, dice 5),
            `no_object_weight` 0.1, `train_num_points` 12544 (null: every pixel of the stride-4 masks),
            `oversample_ratio` 3, `importance_sample_ratio` 0.75, `deep_supervision` (every layer's
            predictions trained, not only the last), `unlabelled` ("exclude": unlabelled pixels neither trained on
            nor costed; "background": background of every mask, as Mask2Former's own semantic training).
    """

    outputs_scores = True
    """Its forward gives per-class scores, averaged as they are (no softmax) by sliding windows and TTA."""

    onnx_export_refusal = (
        "ONNX export with dynamic height and width is not supported: transformers' Mask2Former pixel decoder and "
        "decoder compute the level sizes as Python numbers (position embeddings cached per shape, reference points, "
        "level offsets), so torch.export specialises the graph to the example's size; evaluate or predict with "
        "eval.py / predict.py, or serve it with MultiTaskModel")
    """Why scripts/export_onnx.py refuses this head."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        num_queries: int = 100,
        decoder_layers: int = 9,
        pixel_decoder_layers: int = 6,
        heads: int = 8,
        decoder_feedforward: int = 2048,
        pixel_decoder_feedforward: int = 1024,
        pre_norm: bool = False,
        pixel_decoder_norm: str = "gn",
        in_keys: Sequence[str] = DEFAULT_KEYS,
        loss: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if len(in_keys) != 4:
            raise ValueError(f"model.head.in_keys must name 4 pyramid levels at strides 4, 8, 16, 32, got {list(in_keys)}")
        if channels % heads:
            raise ValueError(f"model.head.channels={channels} must be a multiple of model.head.heads={heads}")
        if decoder_layers < 1 or pixel_decoder_layers < 0 or num_queries < 1:
            raise ValueError("model.head needs decoder_layers >= 1, pixel_decoder_layers >= 0 and num_queries >= 1")
        if pixel_decoder_norm not in PIXEL_DECODER_NORMS:
            raise ValueError(f"model.head.pixel_decoder_norm={pixel_decoder_norm!r}; expected one of {PIXEL_DECODER_NORMS}")
        unknown = sorted(set(loss or {}) - set(LOSS_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown model.head.loss key(s) {unknown}; allowed: {sorted(LOSS_DEFAULTS)}")
        settings = {**LOSS_DEFAULTS, **dict(loss or {})}
        self.num_classes = num_classes
        self.in_keys = tuple(in_keys)
        self.deep_supervision = bool(settings["deep_supervision"])
        if settings["unlabelled"] not in UNLABELLED_MODES:
            raise ValueError(f"model.head.loss.unlabelled={settings['unlabelled']!r}; expected one of {UNLABELLED_MODES}")
        self.unlabelled = settings["unlabelled"]

        from transformers import Mask2FormerConfig
        from transformers.models.mask2former import modeling_mask2former as m2f

        config = Mask2FormerConfig(
            num_labels=num_classes, feature_size=channels, mask_feature_size=channels, hidden_dim=channels,
            num_queries=num_queries, decoder_layers=decoder_layers + 1,  # transformers counts the first prediction
            encoder_layers=pixel_decoder_layers, num_attention_heads=heads, dim_feedforward=decoder_feedforward,
            encoder_feedforward_dim=pixel_decoder_feedforward, pre_norm=pre_norm, dropout=0.0, common_stride=4,
            feature_strides=[4, 8, 16, 32],
        )
        with pixel_decoder_norms(m2f, pixel_decoder_norm):
            self.pixel_decoder = m2f.Mask2FormerPixelDecoder(config, feature_channels=[in_channels] * 4)
        self.transformer = m2f.Mask2FormerTransformerModule(in_features=channels, config=config)
        self.class_predictor = nn.Linear(channels, num_classes + 1)
        # transformers' own initialisation (it visits children before parents, as `apply` does), but BatchNorm as
        # torch starts it (transformers draws its scales around 0, for its backbones' BatchNorms)
        self.apply(m2f.Mask2FormerPreTrainedModel(config)._init_weights)
        for batch_norm in (m for m in self.modules() if isinstance(m, nn.BatchNorm2d)):
            batch_norm.reset_parameters()
        self.criterion = MaskClassificationLoss(
            num_classes, settings["class_weight"], settings["mask_weight"], settings["dice_weight"],
            settings["no_object_weight"], settings["train_num_points"], settings["oversample_ratio"],
            settings["importance_sample_ratio"])

    def predict_queries(self, pyramid: Mapping[str, Tensor]) -> QueryPredictions:
        """Class and mask logits of every query after each decoder layer.

        Args:
            pyramid: `{key: B×in_channels×h_k×w_k}` containing `in_keys`.
        """
        decoded = self.pixel_decoder(select_levels(pyramid, self.in_keys))
        decoder = self.transformer(multi_scale_features=list(decoded.multi_scale_features),
                                   mask_features=decoded.mask_features)
        class_logits = [self.class_predictor(hidden.transpose(0, 1)) for hidden in decoder.intermediate_hidden_states]
        return QueryPredictions(class_logits, list(decoder.masks_queries_logits))

    def forward(self, pyramid: Mapping[str, Tensor]) -> Tensor:
        """Semantic scores B×K×h_0×w_0 (the finest level's size) of the final layer's queries."""
        queries = self.predict_queries(pyramid)
        return semantic_scores(queries.class_logits[-1], queries.mask_logits[-1])

    def loss(self, queries: QueryPredictions, targets: Sequence[MaskTargets]) -> dict[str, Tensor]:
        """The criterion's losses (`loss` and the final layer's `loss_class`, `loss_mask`, `loss_dice`)."""
        layers = range(len(queries.class_logits)) if self.deep_supervision else [len(queries.class_logits) - 1]
        return self.criterion([queries.class_logits[i] for i in layers], [queries.mask_logits[i] for i in layers],
                              targets)

    def segmentation_loss(self, pyramid: Mapping[str, Tensor], label_maps: Tensor,
                          ignore_index: int = 255) -> dict[str, Tensor]:
        """The loss of semantic segmentation: per image one mask per class present (`semantic_targets`).

        Args:
            pyramid: the encoder's pyramid of a batch.
            label_maps: B×H×W int64 labels (any H, W: the masks are compared on points in normalised coordinates).
            ignore_index: the label of unlabelled pixels.

        Returns:
            As `loss`; 0 with zero gradient for a batch without a labelled pixel.
        """
        targets = semantic_targets(label_maps, self.num_classes, ignore_index, self.unlabelled)
        return self.loss(self.predict_queries(pyramid), targets)


__all__ = ["DEFAULT_KEYS", "LOSS_DEFAULTS", "PIXEL_DECODER_NORMS", "Mask2FormerHead", "QueryPredictions",
           "pixel_decoder_norms"]
