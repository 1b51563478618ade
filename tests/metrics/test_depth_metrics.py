"""DepthMetrics vs hand values and a per-image NumPy evaluation written from the metric definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vitadapter.metrics import DepthMetrics, flatten_depth_results, format_depth_table
from vitadapter.metrics.depth import METRICS

MIN, MAX = 1e-3, 10.0


def numpy_image_errors(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The standard NYU metrics of one image's valid pixels (BTS's compute_errors, by its definitions)."""
    ratio = np.maximum(gt / pred, pred / gt)
    err = np.log(pred) - np.log(gt)
    return {
        "AbsRel": np.mean(np.abs(gt - pred) / gt),
        "SqRel": np.mean((gt - pred) ** 2 / gt),
        "RMSE": np.sqrt(np.mean((gt - pred) ** 2)),
        "RMSElog": np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2)),
        "log10": np.mean(np.abs(np.log10(gt) - np.log10(pred))),
        "SILog": 100 * np.sqrt(np.mean(err**2) - np.mean(err) ** 2),
        "delta1": np.mean(ratio < 1.25),
        "delta2": np.mean(ratio < 1.25**2),
        "delta3": np.mean(ratio < 1.25**3),
    }


def numpy_evaluation(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Valid = MIN < gt < MAX, prediction clipped, metrics per image, then the mean over images with a valid pixel."""
    per_image = []
    for pred, gt in pairs:
        gt_np, pred_np = gt.double().numpy(), np.clip(pred.double().numpy(), MIN, MAX)
        valid = (gt_np > MIN) & (gt_np < MAX)
        if valid.any():
            per_image.append(numpy_image_errors(gt_np[valid], pred_np[valid]))
    return {key: float(np.mean([errors[key] for errors in per_image])) for key in METRICS}


def _assert_close(results: dict[str, torch.Tensor], expected: dict[str, float]) -> None:
    for key in METRICS:
        assert results[key].dtype == torch.float64
        assert float(results[key]) == pytest.approx(expected[key], rel=1e-12, abs=1e-12), key


def test_hand_example() -> None:
    # valid: gt 1, 2, 4 (0 and 10 = max_depth are invalid); ratios 1.1, 1.5, 2
    metric = DepthMetrics(MIN, MAX)
    metric.update(torch.tensor([[1.1, 3.0, 2.0, 5.0, 7.0]]), torch.tensor([[1.0, 2.0, 4.0, 0.0, 10.0]]))
    results = metric.compute()
    assert float(results["AbsRel"]) == pytest.approx((0.1 + 0.5 + 0.5) / 3)
    assert float(results["SqRel"]) == pytest.approx((0.01 / 1 + 1 / 2 + 4 / 4) / 3)
    assert float(results["RMSE"]) == pytest.approx(math.sqrt((0.01 + 1 + 4) / 3))
    logs = [math.log(1.1), math.log(1.5), -math.log(2)]
    mean, mean_sq = sum(logs) / 3, sum(v * v for v in logs) / 3
    assert float(results["RMSElog"]) == pytest.approx(math.sqrt(mean_sq))
    assert float(results["SILog"]) == pytest.approx(100 * math.sqrt(mean_sq - mean**2))
    assert float(results["log10"]) == pytest.approx(sum(abs(v) for v in logs) / math.log(10) / 3)
    assert [float(results[f"delta{k}"]) for k in (1, 2, 3)] == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert int(results["num_images"]) == 1 and int(results["num_images_without_valid"]) == 0


def test_metrics_are_per_image_means_not_pixel_means() -> None:
    # image 1: one valid pixel, AbsRel 1; image 2: three perfect pixels -> mean over images 0.5 (pixels: 0.25)
    metric = DepthMetrics(MIN, MAX)
    metric.update(torch.tensor([[2.0, 5.0]]), torch.tensor([[1.0, 0.0]]))
    metric.update(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 2.0, 3.0]]))
    results = metric.compute()
    assert float(results["AbsRel"]) == pytest.approx(0.5)
    assert float(results["delta1"]) == pytest.approx(0.5)


def test_random_images_match_the_numpy_evaluation() -> None:
    generator = torch.Generator().manual_seed(0)
    pairs = []
    for height, width in ((7, 9), (12, 5), (4, 4)):
        gt = torch.rand(height, width, generator=generator) * 12  # some beyond max_depth
        gt[torch.rand(height, width, generator=generator) < 0.2] = 0
        pred = gt * torch.exp(0.3 * torch.randn(height, width, generator=generator)) + 0.05
        pred[0, 0], pred[0, 1] = 0.0, 50.0  # clipped to min_depth / max_depth
        pairs.append((pred.float(), gt.float()))
    metric = DepthMetrics(MIN, MAX)
    for pred, gt in pairs:
        metric.update(pred, gt)
    _assert_close(metric.compute(), numpy_evaluation(pairs))


def test_predictions_are_clipped_and_non_finite_ones_replaced_as_bts_does() -> None:
    gt = torch.tensor([[2.0, 2.0, 2.0, 2.0]])
    metric = DepthMetrics(MIN, MAX)
    metric.update(torch.tensor([[-1.0, 20.0, float("nan"), float("inf")]]), gt)
    expected = numpy_evaluation([(torch.tensor([[MIN, MAX, MIN, MAX]], dtype=torch.float64), gt)])
    _assert_close(metric.compute(), expected)


def test_images_without_valid_pixel_are_counted_and_left_out() -> None:
    metric = DepthMetrics(MIN, MAX)
    metric.update(torch.ones(3, 3), torch.zeros(3, 3))
    results = metric.compute()
    assert all(math.isnan(float(results[key])) for key in METRICS)
    metric.update(torch.tensor([[2.0]]), torch.tensor([[1.0]]))
    metric.update(torch.ones(1, 2, 2), torch.full((1, 2, 2), 10.0))  # only max_depth: invalid
    results = metric.compute()
    assert float(results["AbsRel"]) == pytest.approx(1.0)
    assert int(results["num_images"]) == 3 and int(results["num_images_without_valid"]) == 2


def test_eigen_crop_scores_only_the_crop() -> None:
    gt = torch.full((480, 640), 3.0)
    pred = gt.clone()
    pred[:45] = pred[471:] = 9.0  # wrong only outside the crop
    pred[:, :41] = pred[:, 601:] = 9.0
    cropped = DepthMetrics(MIN, MAX, eval_crop="eigen")
    cropped.update(pred, gt)
    assert float(cropped.compute()["AbsRel"]) == 0.0
    pred[45, 41] = pred[470, 600] = 6.0  # the crop's corners count
    cropped.reset()
    cropped.update(pred, gt)
    assert float(cropped.compute()["AbsRel"]) == pytest.approx(2 / (426 * 560))
    whole = DepthMetrics(MIN, MAX)
    whole.update(pred, gt)
    assert float(whole.compute()["AbsRel"]) > 0.1


def test_eigen_crop_refuses_another_size() -> None:
    metric = DepthMetrics(MIN, MAX, eval_crop="eigen")
    with pytest.raises(ValueError, match=r"481x640.*data\.eval_crop=null"):
        metric.update(torch.ones(481, 640), torch.ones(481, 640))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        DepthMetrics(10.0, 1.0)
    with pytest.raises(ValueError, match="eval_crop='garg'"):
        DepthMetrics(MIN, MAX, eval_crop="garg")
    with pytest.raises(ValueError, match="same shape"):
        DepthMetrics(MIN, MAX).update(torch.ones(2, 3), torch.ones(3, 2))
    with pytest.raises(ValueError, match="one H×W map"):
        DepthMetrics(MIN, MAX).update(torch.ones(2, 3, 3), torch.ones(2, 3, 3))


def test_merged_states_equal_one_process() -> None:
    generator = torch.Generator().manual_seed(1)
    pairs = [(torch.rand(5, 6, generator=generator) * 9 + 0.1, torch.rand(5, 6, generator=generator) * 9 + 0.1)
             for _ in range(4)]
    single, rank0, rank1 = (DepthMetrics(MIN, MAX) for _ in range(3))
    for k, (pred, gt) in enumerate(pairs):
        single.update(pred, gt)
        (rank0 if k % 2 else rank1).update(pred, gt)
    # every state is a sum across processes (what DDP's sync applies; merge_state applies the same reduction)
    assert {name: fx.__name__ for name, fx in rank0._reductions.items()} == dict.fromkeys(
        ("sums", "num_images", "num_images_without_valid"), "dim_zero_sum")
    rank0.merge_state(rank1)
    merged, expected = rank0.compute(), single.compute()
    assert all(torch.allclose(merged[key], expected[key], rtol=1e-14) for key in METRICS)
    assert int(merged["num_images"]) == 4


def test_flatten_and_table() -> None:
    metric = DepthMetrics(MIN, MAX)
    metric.update(torch.tensor([[2.0, 1.0]]), torch.tensor([[1.0, 1.0]]))
    metric.update(torch.ones(2, 2), torch.zeros(2, 2))
    results = metric.compute()
    flat = flatten_depth_results(results, prefix="test/")
    assert flat["test/AbsRel"] == pytest.approx(0.5) and flat["test/delta1"] == pytest.approx(0.5)
    assert flat["test/num_images"] == 2.0 and flat["test/num_images_without_valid"] == 1.0
    assert set(flat) == {f"test/{key}" for key in (*METRICS, "num_images", "num_images_without_valid")}
    table = format_depth_table(results)
    header, _, row = table.splitlines()[1:4]
    assert header.split("|")[1].strip() == "AbsRel" and row.split("|")[1].strip() == "0.5000"
    assert "1 images scored (1 without a valid pixel, left out)" in table
