"""vitadapter: adapt a frozen pretrained Vision Transformer to dense prediction."""

__version__ = "0.1.0"
