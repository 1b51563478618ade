"""Predictions in the COCO panoptic results format: the id encoding, written files read back equal the predictions,
and PQ from the files equals PQ from the predictions in memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.datasets.panoptic_layouts import perturbed_prediction
from vitadapter.data.coco_panoptic_dataset import COCOPanopticDataset
from vitadapter.data.coco_panoptic_format import (
    MAX_SEGMENT_ID,
    PanopticResultWriter,
    id_to_rgb,
    read_panoptic_results,
    rgb_to_id,
)
from vitadapter.data.synthetic.panoptic_writer import write_synthetic_coco_panoptic
from vitadapter.metrics import PanopticMetrics, evaluate_panoptic_files


def test_id_encoding_round_trip() -> None:
    ids = np.array([[0, 1, 255, 256], [65_535, 65_536, 5_000_000, MAX_SEGMENT_ID]])
    rgb = id_to_rgb(torch.from_numpy(ids))
    assert rgb.dtype == np.uint8 and rgb[0, 3].tolist() == [0, 1, 0] and rgb[1, 2].tolist() == [64, 75, 76]
    assert np.array_equal(rgb_to_id(rgb), ids)
    with pytest.raises(ValueError, match="must lie in 0..16777215"):
        id_to_rgb(np.array([[MAX_SEGMENT_ID + 1]]))


@pytest.fixture(scope="module")
def predictions(tmp_path_factory: pytest.TempPathFactory) -> tuple[COCOPanopticDataset, list[dict]]:
    root = write_synthetic_coco_panoptic(tmp_path_factory.mktemp("pan"), num_train=1, num_val=12, image_size=48,
                                         seed=4)
    dataset = COCOPanopticDataset(root, "val2017")
    rng = np.random.default_rng(1)
    out = []
    for index in range(len(dataset)):
        sample = dataset[index]
        ids, segments = perturbed_prediction(rng, sample["panoptic"].numpy(), sample["segments_info"],
                                             len(dataset.class_names))
        out.append({"sample": sample, "panoptic": torch.from_numpy(ids), "segments_info": segments})
    return dataset, out


def test_written_files_read_back_and_score_the_same(predictions, tmp_path: Path) -> None:
    dataset, preds = predictions
    writer = PanopticResultWriter(tmp_path / "panoptic_val2017_pred.json", dataset.contiguous_to_category_id,
                                  dataset.isthing)
    metric = PanopticMetrics(dataset.isthing, dataset.class_names)
    for pred in reversed(preds):  # any order in; the json is sorted by image id
        sample = pred["sample"]
        writer.add(sample["image_id"], sample["file_name"], pred["panoptic"], pred["segments_info"])
        metric.update(pred["panoptic"], pred["segments_info"], sample["panoptic"], sample["segments_info"])
    path = writer.write()
    document = json.loads(path.read_text())
    assert set(document) == {"annotations"} and [a["image_id"] for a in document["annotations"]] == list(range(1, 13))
    first = document["annotations"][0]["segments_info"][0]
    assert set(first) == {"id", "category_id", "isthing", "area", "bbox"}
    assert first["category_id"] in dataset.category_ids  # original ids, not contiguous
    ids = preds[0]["panoptic"].numpy()
    ys, xs = np.nonzero(ids == first["id"])
    assert first["area"] == len(ys) and first["bbox"] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]

    read = read_panoptic_results(path, dataset.category_id_to_contiguous)
    assert len(read) == len(preds)
    for back, pred in zip(read, preds):
        assert back["image_id"] == pred["sample"]["image_id"] and torch.equal(back["panoptic"], pred["panoptic"])
        kept = [{"id": s["id"], "category_id": s["category_id"]} for s in back["segments_info"]]
        assert kept == pred["segments_info"]

    from_files = evaluate_panoptic_files(dataset.annotation_file, path)
    in_memory = metric.compute()
    for key in ("iou_sum", "tp", "fp", "fn"):
        assert torch.equal(from_files[key], in_memory[key])
    assert float(from_files["PQ"]) == float(in_memory["PQ"]) and 0 < float(in_memory["PQ"]) < 100


def test_bad_predictions_and_files_are_named(predictions, tmp_path: Path) -> None:
    dataset, preds = predictions
    writer = PanopticResultWriter(tmp_path / "pred.json", dataset.contiguous_to_category_id, dataset.isthing)
    ids, segments = preds[0]["panoptic"], preds[0]["segments_info"]
    with pytest.raises(ValueError, match=r"image 1 \(a\.png\): segment ids .* are in the PNG but not in segments_info"):
        writer.add(1, "a.png", ids, segments[1:])
    with pytest.raises(ValueError, match="class 8 is outside 0..7"):
        writer.add(1, "a.png", ids, [{**segments[0], "category_id": 8}, *segments[1:]])
    writer.add(1, "a.png", ids, segments)
    writer.add(2, "b.png", preds[1]["panoptic"], preds[1]["segments_info"])
    path = writer.write()
    with pytest.raises(ValueError, match=r"has no prediction for image 3 \(000000000003.png\)"):
        evaluate_panoptic_files(dataset.annotation_file, path)
    (tmp_path / "pred" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"lists b\.png, which is not in"):
        read_panoptic_results(path, dataset.category_id_to_contiguous)
    with pytest.raises(ValueError, match="category_id 1, which is not among the categories"):
        read_panoptic_results(path, {3: 0})
