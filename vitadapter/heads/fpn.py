"""Semantic FPN decode head.

Kirillov et al., "Panoptic Feature Pyramid Networks", CVPR 2019 (the semantic segmentation
branch): every pyramid level goes through repeated 3x3 conv-norm-ReLU + 2x upsampling until it
reaches stride 4; the levels are summed and classified. As in mmsegmentation's ``FPNHead``, the
stride-4 level gets one conv and no upsampling.

With `grad_checkpointing` each level's branch and the classifier keep only their inputs and run again in
the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn

from vitadapter.heads.conv_module import ConvNormAct, SegClassifier, resize_to, select_levels
from vitadapter.utils.checkpointing import checkpointed, checkpointing_applies

DEFAULT_KEYS = ("s4", "s8", "s16", "s32")


class SemanticFPNHead(nn.Module):
    """Panoptic FPN semantic branch, logits at the finest level's resolution.

    Level ``i`` (0 = finest) gets ``max(1, i)`` convs and ``i`` upsampling steps. Each step
    resizes to the size of the next finer pyramid level rather than by exactly 2, so odd sizes work.

    Args:
        in_channels: Channels of every pyramid level.
        num_classes: Number of classes K.
        channels: Width of the per-level branches.
        dropout: Dropout2d before the classifier.
        norm: ``"gn"`` (as in the paper), ``"bn"`` or ``"none"``.
        in_keys: Pyramid keys to use, finest first, each level twice the stride of the previous.
        grad_checkpointing: Recompute each branch and the classifier in the backward pass instead of keeping
            their activations (training only; outputs, gradients and BatchNorm statistics unchanged).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 128,
        dropout: float = 0.1,
        norm: str = "gn",
        *,
        in_keys: Sequence[str] = DEFAULT_KEYS,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if len(in_keys) < 1:
            raise ValueError("in_keys must name at least one pyramid level")
        self.num_classes = num_classes
        self.in_keys = tuple(in_keys)
        self.grad_checkpointing = grad_checkpointing
        self.branches = nn.ModuleList(
            nn.ModuleList(
                ConvNormAct(in_channels if k == 0 else channels, channels, 3, norm=norm)
                for k in range(max(1, i))
            )
            for i in range(len(self.in_keys))
        )
        self.classifier = SegClassifier(channels, num_classes, dropout)

    def _branch(self, level: int, x: Tensor, sizes: Sequence[Sequence[int]]) -> Tensor:
        for k, conv in enumerate(self.branches[level]):
            x = conv(x)
            if level > 0:
                # Step k brings level i to the size of level i - k - 1.
                x = resize_to(x, sizes[level - k - 1])
        return x

    def forward(self, pyramid: Mapping[str, Tensor]) -> Tensor:
        """Decode the pyramid.

        Args:
            pyramid: ``{key: N x in_channels x h_k x w_k}`` containing ``in_keys``.

        Returns:
            N x num_classes x h_0 x w_0 logits (size of the finest level).
        """
        feats = select_levels(pyramid, self.in_keys)
        sizes = [f.shape[-2:] for f in feats]
        out = self._stage(self._branch, 0, feats[0], sizes)
        for i in range(1, len(feats)):
            out = out + self._stage(self._branch, i, feats[i], sizes)
        return self._stage(self.classifier, out)

    def _stage(self, function: Callable[..., Tensor], *args: object) -> Tensor:
        if checkpointing_applies(self, self.grad_checkpointing):
            return checkpointed(function, *args, state=self)
        return function(*args)
