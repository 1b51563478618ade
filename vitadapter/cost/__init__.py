"""What a run costs: time per training step and peak memory, inference time per image, checkpoint size.

`TrainingCost` is the Lightning callback that measures training (`callbacks.training_cost` in the
config); `run_cost` gathers every `perf/*` and `ckpt/*` figure train.py writes to metrics.json;
`estimate_training_memory` predicts a run's peak memory from its config before it runs (a dry run on fake tensors).
"""

from vitadapter.cost.inference_cost import configured_inference, inference_ms_per_image, median_ms_per_image
from vitadapter.cost.live_bytes import LiveBytes
from vitadapter.cost.memory_estimate import MemoryEstimate, estimate_training_memory
from vitadapter.cost.run_cost import checkpoint_size_mb, run_cost
from vitadapter.cost.saved_bytes import SavedBytes
from vitadapter.cost.training_cost import (
    CUDA_KIND,
    ESTIMATE_KIND,
    MIB,
    SavedTensorCounter,
    TrainingCost,
    median_after_warmup,
)

__all__ = [
    "CUDA_KIND",
    "ESTIMATE_KIND",
    "LiveBytes",
    "MIB",
    "MemoryEstimate",
    "SavedBytes",
    "SavedTensorCounter",
    "TrainingCost",
    "checkpoint_size_mb",
    "configured_inference",
    "estimate_training_memory",
    "inference_ms_per_image",
    "median_after_warmup",
    "median_ms_per_image",
    "run_cost",
]
