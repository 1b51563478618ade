"""The encoder: frozen ViT + PEFT method + spatial module, image -> pyramid."""

from vitadapter.encoder.encoder import Encoder

__all__ = ["Encoder"]
