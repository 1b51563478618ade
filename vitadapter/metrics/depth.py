"""Monocular depth metrics (AbsRel, RMSE, delta < 1.25, ...), computed the way the NYU Depth v2 evaluations do.

Eigen et al., "Depth Map Prediction from a Single Image using a Multi-Scale Deep Network", NeurIPS 2014, defined
the metrics and the crop; BTS (`cleinc/bts`, pytorch/bts_eval.py: `compute_errors`, `eval`), AdaBins and the
Monocular-Depth-Estimation-Toolbox that DINOv2 used (`zhyever/Monocular-Depth-Estimation-Toolbox`,
depth/core/evaluation/metrics.py: `calculate`, `pre_eval_to_metrics`; depth/datasets/nyu.py: `eval_mask`) compute
them the same way:

- the valid pixels of an image are those with min_depth < gt < max_depth, inside the crop when one is set;
- the prediction is clipped to [min_depth, max_depth] (BTS: NaN -> min_depth, inf -> max_depth; the toolbox
  clamps the head's output to its depth range);
- every metric is computed per image over its valid pixels, then averaged over the images (not over all pixels
  of the dataset): the toolbox takes `np.nanmean` of the per-image values, BTS the mean of its per-image arrays.

An image without a valid pixel has no value (NaN in the toolbox, which `nanmean` skips): it is counted in
`num_images_without_valid` and left out of every mean. The state is per-metric sums over images and two counts,
all summed across processes (`dist_reduce_fx="sum"`), so the result under DDP is exactly the single-process one.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor
from torchmetrics import Metric

from vitadapter.metrics.segmentation import _markdown

METRICS = ("AbsRel", "SqRel", "RMSE", "RMSElog", "log10", "SILog", "delta1", "delta2", "delta3")
COUNTS = ("num_images", "num_images_without_valid")
# Eigen et al.'s crop of NYU's 480x640 maps: rows 45..470, columns 41..600 (BTS and the toolbox: [45:471, 41:601])
EIGEN_SIZE = (480, 640)
EIGEN_ROWS, EIGEN_COLS = slice(45, 471), slice(41, 601)
EVAL_CROPS = ("eigen",)


def image_errors(pred: Tensor, gt: Tensor) -> Tensor:
    """The nine metrics of one image over its valid pixels (float64, in `METRICS` order).

    Each follows the toolbox's `calculate` and BTS's `compute_errors` (per image, mean over its valid pixels):
    AbsRel = mean(|gt - pred| / gt); SqRel = mean((gt - pred)^2 / gt) (divided by gt, not gt^2, as both do);
    RMSE = sqrt(mean((gt - pred)^2)); RMSElog = sqrt(mean((log gt - log pred)^2));
    log10 = mean(|log10 gt - log10 pred|); SILog = 100 sqrt(mean(e^2) - mean(e)^2) with e = log pred - log gt
    (a tiny negative variance from rounding gives 0, as the toolbox's NaN -> 0); delta_k = the fraction with
    max(gt / pred, pred / gt) < 1.25^k (a fraction, not a percentage).

    Args:
        pred: the clipped predictions at the valid pixels (1-D, > 0).
        gt: the ground truth at the same pixels (1-D, > 0).
    """
    pred, gt = pred.double(), gt.double()
    diff = gt - pred
    log_error = torch.log(pred) - torch.log(gt)
    ratio = torch.maximum(gt / pred, pred / gt)
    silog = 100 * torch.sqrt((log_error.square().mean() - log_error.mean().square()).clamp_min(0))
    return torch.stack([
        (diff.abs() / gt).mean(),
        (diff.square() / gt).mean(),
        diff.square().mean().sqrt(),
        log_error.square().mean().sqrt(),
        (torch.log10(gt) - torch.log10(pred)).abs().mean(),
        silog,
        *((ratio < 1.25**k).double().mean() for k in (1, 2, 3)),
    ])


class DepthMetrics(Metric):
    """Per-image NYU depth metrics averaged over images.

    Args:
        min_depth: depths at or below it are invalid in the ground truth; predictions are clipped up to it.
        max_depth: depths at or above it are invalid in the ground truth; predictions are clipped down to it.
        eval_crop: "eigen" scores only Eigen et al.'s crop of a 480×640 map; None scores the whole map.
    """

    is_differentiable = False
    higher_is_better = None  # errors fall, delta accuracies rise
    full_state_update = False

    sums: Tensor
    num_images: Tensor
    num_images_without_valid: Tensor

    def __init__(self, min_depth: float, max_depth: float, eval_crop: str | None = None) -> None:
        super().__init__()
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
        if eval_crop is not None and eval_crop not in EVAL_CROPS:
            raise ValueError(f"eval_crop={eval_crop!r}: choose one of {EVAL_CROPS} or None (the whole map)")
        self.min_depth, self.max_depth, self.eval_crop = float(min_depth), float(max_depth), eval_crop
        self.add_state("sums", default=torch.zeros(len(METRICS), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_images", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("num_images_without_valid", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def _crop_mask(self, shape: tuple[int, int], device: torch.device) -> Tensor | None:
        if self.eval_crop is None:
            return None
        if shape != EIGEN_SIZE:
            raise ValueError(
                f"eval_crop='eigen' is Eigen et al.'s crop of NYU's {EIGEN_SIZE[0]}x{EIGEN_SIZE[1]} depth maps, but "
                f"this target is {shape[0]}x{shape[1]}; score the whole map with data.eval_crop=null"
            )
        mask = torch.zeros(shape, dtype=torch.bool, device=device)
        mask[EIGEN_ROWS, EIGEN_COLS] = True
        return mask

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Scores one image.

        Args:
            pred: predicted depth in metres, H×W (or 1×H×W).
            target: ground-truth depth in metres, same shape; 0 (or anything outside the depth range) = invalid.
        """
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape "
                             "(upsample the prediction to the ground truth first)")
        if pred.dim() == 3 and pred.shape[0] == 1:
            pred, target = pred[0], target[0]
        if pred.dim() != 2:
            raise ValueError(f"DepthMetrics.update takes one H×W map, got shape {tuple(pred.shape)}")
        valid = (target > self.min_depth) & (target < self.max_depth)
        crop = self._crop_mask((target.shape[0], target.shape[1]), target.device)
        if crop is not None:
            valid &= crop
        self.num_images += 1
        if not bool(valid.any()):
            self.num_images_without_valid += 1
            return
        pred = torch.nan_to_num(pred[valid].double(), nan=self.min_depth, posinf=self.max_depth,
                                neginf=self.min_depth).clamp(self.min_depth, self.max_depth)
        self.sums += image_errors(pred, target[valid]).to(self.sums.device)

    def compute(self) -> dict[str, Tensor]:
        """The means over images with a valid pixel.

        Returns:
            `METRICS` (0-dim float64; NaN when no image had a valid pixel) and the int64 counts `num_images`
            and `num_images_without_valid`.
        """
        scored = self.num_images - self.num_images_without_valid
        means = self.sums / scored if scored > 0 else torch.full_like(self.sums, float("nan"))
        results = {name: means[k] for k, name in enumerate(METRICS)}
        results["num_images"] = self.num_images.clone()
        results["num_images_without_valid"] = self.num_images_without_valid.clone()
        return results


def flatten_depth_results(results: Mapping[str, Tensor], prefix: str = "val/") -> dict[str, float]:
    """The results of `DepthMetrics.compute` as floats for loggers and JSON files.

    Args:
        results: output of `DepthMetrics.compute`.
        prefix: prepended to every key.

    Returns:
        `prefix` + each of `METRICS` and the two counts, mapped to Python floats.
    """
    return {f"{prefix}{key}": float(results[key]) for key in (*METRICS, *COUNTS)}


def format_depth_table(results: Mapping[str, Tensor]) -> str:
    """The metrics as a one-row summary table, as mmseg and the depth toolbox print it.

    Args:
        results: output of `DepthMetrics.compute`.

    Returns:
        A markdown table (also readable as plain text), 4 decimals, then the image counts.
    """
    row = ["nan" if torch.isnan(results[key]) else f"{float(results[key]):.4f}" for key in METRICS]
    images, without = int(results["num_images"]), int(results["num_images_without_valid"])
    lines = ["Summary:", *_markdown(list(METRICS), [row])]
    lines.append(f"{images - without} images scored ({without} without a valid pixel, left out)")
    return "\n".join(lines)
