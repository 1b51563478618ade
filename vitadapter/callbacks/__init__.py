"""Lightning callbacks of vitadapter."""

from vitadapter.callbacks.segmentation_writer import SegmentationPredictionWriter

__all__ = ["SegmentationPredictionWriter"]
