"""torchvision's detector input transform without its resize and normalisation.

The COCO datamodule already rescales (large-scale jitter / longest side) and normalises with the
backbone's statistics, so doing either again inside the detector would distort the images and the
boxes. What remains of `GeneralizedRCNNTransform` is the part the detectors need: copying the
targets, recording each image's size and padding the batch (bottom/right, with zeros, which after
normalisation is the mean colour, as the datamodule's own padding) to a multiple of `size_divisible`.
"""

from __future__ import annotations

from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform


class BatchOnlyTransform(GeneralizedRCNNTransform):
    """Batches and pads already resized, normalised images; predictions stay in input pixels.

    Because nothing is resized, `postprocess` (inherited) maps boxes from the input size to the same
    size, an identity, and pastes the instance masks at the input size. Mapping back to the original
    image is the caller's job (it knows the datamodule's scale factor).

    Args:
        size_divisible: the padded batch's height and width are multiples of this.
    """

    def __init__(self, size_divisible: int = 32) -> None:
        # min_size/max_size/mean/std are never used: resize() and normalize() are identities
        super().__init__(min_size=1, max_size=1, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
                         size_divisible=size_divisible)

    def normalize(self, image: Tensor) -> Tensor:
        """Identity: the datamodule normalised the image already."""
        if not image.is_floating_point():
            raise TypeError(f"detector inputs must be normalised float images, got dtype {image.dtype}")
        return image

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Identity: the datamodule resized the image (and its targets) already."""
        return image, target

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(size_divisible={self.size_divisible}; no resize, no normalisation)"
