"""Linear probe for depth: a 1x1 conv to depth-bin scores mixed into metres (DINOv2's linear depth protocol).

Oquab et al., "DINOv2", 2023 (linear depth: the patch tokens of 1 or 4 blocks with the class token concatenated,
upsampled ×4, a linear layer classifying each pixel into 256 uniform depth bins, the bins mixed into a depth by
the predicted distribution, after AdaBins). As DINOv2's `BNHead` with `classify=True`
(dinov2/eval/depth/models/decode_heads/linear_head.py, dinov2/hub/depthers.py) on the Monocular-Depth-Estimation-
Toolbox's `DepthBaseDecodeHead.depth_pred` (depth/models/decode_heads/decode_head.py): the inputs resized to
4× the first one's size and concatenated, a 1x1 conv, no BatchNorm (DINOv2's is commented out; `batch_norm=True`
adds one as its segmentation probe has).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from vitadapter.heads.linear import concat_levels

BIN_STRATEGIES = ("uniform",)
NORM_STRATEGIES = ("linear", "softmax", "sigmoid")
# added to the ReLU'd scores before normalising them (the toolbox's "linear" strategy), so every bin keeps some mass
LINEAR_EPS = 0.1


def bin_probabilities(logits: Tensor, norm: str) -> Tensor:
    """The distribution over bins (dim 1) from the conv's scores, as the toolbox's norm strategies make it.

    Args:
        logits: N × n_bins × h × w scores.
        norm: "linear" (relu(s) + 0.1, divided by its sum), "softmax", or "sigmoid" (divided by its sum).
    """
    if norm == "linear":
        weights = torch.relu(logits) + LINEAR_EPS
    elif norm == "sigmoid":
        weights = torch.sigmoid(logits)
    else:
        return torch.softmax(logits, dim=1)
    return weights / weights.sum(dim=1, keepdim=True)


class LinearDepthHead(nn.Module):
    """Depth as the expectation of bin centres under a per-pixel distribution from a 1x1 conv.

    Args:
        in_channels: channels of every level read.
        min_depth: the first bin centre (metres).
        max_depth: the last bin centre (metres); every output lies in [min_depth, max_depth].
        n_bins: number of bins (DINOv2: 256).
        upsample: integer bilinear upsampling of the features before the conv (DINOv2: 4).
        in_keys: the levels to read, the first setting the output size; None: the finest level only.
        bins: "uniform": centres evenly spaced from min_depth to max_depth (the toolbox's "UD"; its "SID"
            calls `torch.logspace(min_depth, max_depth)`, i.e. 10^min .. 10^max, and is not offered).
        norm: how scores become a distribution: "linear" (DINOv2), "softmax" or "sigmoid".
        batch_norm: BatchNorm before the conv (DINOv2's depth head has none).
        align_corners: used when resizing the levels.
    """

    def __init__(
        self,
        in_channels: int,
        min_depth: float,
        max_depth: float,
        n_bins: int = 256,
        upsample: int = 4,
        in_keys: Sequence[str] | None = None,
        bins: str = "uniform",
        norm: str = "linear",
        batch_norm: bool = False,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        if bins not in BIN_STRATEGIES:
            raise ValueError(f"model.head.bins={bins!r}: choose one of {BIN_STRATEGIES}")
        if norm not in NORM_STRATEGIES:
            raise ValueError(f"model.head.norm={norm!r}: choose one of {NORM_STRATEGIES}")
        if not 0 < min_depth < max_depth or n_bins < 2 or upsample < 1:
            raise ValueError(f"need 0 < min_depth < max_depth, n_bins >= 2 and upsample >= 1; got {min_depth}, "
                             f"{max_depth}, {n_bins} and {upsample}")
        if in_keys is not None and len(in_keys) < 1:
            raise ValueError("in_keys must name at least one pyramid level (or be null: the finest level)")
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.in_keys = tuple(in_keys) if in_keys is not None else None
        self.upsample, self.norm_strategy, self.align_corners = upsample, norm, align_corners
        channels = in_channels * (len(self.in_keys) if self.in_keys else 1)
        self.bn = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()
        self.conv_depth = nn.Conv2d(channels, n_bins, kernel_size=1)
        self.register_buffer("bin_centers", torch.linspace(min_depth, max_depth, n_bins), persistent=False)

    def forward(self, pyramid: Mapping[str, Tensor]) -> Tensor:
        """Predict depth.

        Args:
            pyramid: `{key: N × in_channels × h_k × w_k}` containing `in_keys`.

        Returns:
            N × 1 × (upsample · h_0) × (upsample · w_0) depths in metres.
        """
        features = concat_levels(pyramid, self.in_keys, self.align_corners, self.upsample)
        probabilities = bin_probabilities(self.conv_depth(self.bn(features)).float(), self.norm_strategy)
        # an elementwise product and sum stay in float32 under autocast (an einsum would run in bf16)
        return (probabilities * self.bin_centers[:, None, None]).sum(dim=1, keepdim=True)
