"""Every segmentation data config reads a fixture in its dataset's exact layout, trains, scores and writes
predictions in that dataset's own label values; folder_seg's errors name the file and what to do."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from tests.datasets.seg_layouts import (
    CITYSCAPES_LABEL_IDS,
    FOLDER_CLASSES,
    write_cityscapes,
    write_folder_seg,
    write_pascal_voc,
)
from tests.helpers import dataset_miou, tiny_seg_overrides
from vitadapter.data import SegmentationDataModule, read_classes_file
from vitadapter.data.bad_samples import BadSampleError
from vitadapter.run.build import build_datamodule_and_task

# config -> (fixture writer, classes, train images, val images, extra overrides)
LAYOUTS = {
    "folder_seg": (write_folder_seg, 3, 4, 2, []),
    # the Cityscapes recipe's rectangular crop and sliding window, scaled down
    "cityscapes": (write_cityscapes, 19, 4, 2, ["data.crop_size=[32,64]", "model.inference.mode=slide",
                                                 "model.inference.stride=[21,43]"]),
    "pascal_voc": (write_pascal_voc, 21, 4, 2, []),
    "pascal_voc_aug": (write_pascal_voc, 21, 6, 2, []),
}


def _paired(name: str, image: Path, label: Path) -> bool:
    if name == "cityscapes":
        return label.name == image.name.replace("_leftImg8bit", "_gtFine_labelTrainIds") and label.parent.name == image.parent.name
    return label.stem == image.stem


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_config_reads_its_layout_trains_scores_and_writes_its_labels(name, compose_config, tmp_path) -> None:
    write, num_classes, num_train, num_val, extra = LAYOUTS[name]
    root = write(tmp_path / "data")
    cfg = compose_config("train", [f"data={name}", *tiny_seg_overrides(root, synthetic=False), *extra], tmp_path)
    datamodule, task = build_datamodule_and_task(cfg)
    datamodule.check_data()
    assert task.num_classes == datamodule.num_classes == num_classes
    datamodule.setup("fit")
    train, val = datamodule.train_set, datamodule.val_set
    assert (len(train), len(val)) == (num_train, num_val)
    assert all(_paired(name, i, l) for ds in (train, val) for i, l in zip(ds.image_paths, ds.label_paths))
    for index in range(len(val)):  # labels as stored: class indices and 255, no shift
        raw = np.array(Image.open(val.label_paths[index]))
        assert np.array_equal(val.load_label(index), raw) and set(np.unique(raw)) - {255} <= set(range(num_classes))

    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(task, datamodule=datamodule)
    writer = task.prediction_writer(tmp_path / "predictions", datamodule)
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer],
              default_root_dir=tmp_path).validate(task, datamodule=datamodule, verbose=False)
    metrics = task.summary_metrics()
    assert len([k for k in metrics if k.startswith("val/IoU/")]) == num_classes
    pairs = []
    for key, label_path in zip(val.names, val.label_paths):
        written = np.array(Image.open(tmp_path / "predictions" / f"{key}.png"))
        label = np.array(Image.open(label_path))
        assert written.shape == label.shape
        assert written.max() < num_classes  # the dataset's own ids: class indices, no +1 (that is ADE20K's)
        pairs.append((written, label))
    # the logged mIoU is the one of the written prediction files against the label files
    assert metrics["val/mIoU"] == pytest.approx(dataset_miou(pairs, num_classes), abs=1e-4)


def test_cityscapes_predictions_as_label_ids(compose_config, tmp_path) -> None:
    root = write_cityscapes(tmp_path / "data")
    cfg = compose_config("train", ["data=cityscapes", *tiny_seg_overrides(root, synthetic=False),
                                   f"data.label_ids={CITYSCAPES_LABEL_IDS}"], tmp_path)
    datamodule, task = build_datamodule_and_task(cfg)
    writer = task.prediction_writer(tmp_path / "predictions", datamodule)
    preds = [torch.arange(19).reshape(1, 19).repeat(2, 1)]
    writer.on_validation_batch_end(None, task, {"preds": preds, "names": ["frankfurt/x"]}, None, 0)
    assert np.array_equal(np.array(Image.open(tmp_path / "predictions/frankfurt/x.png"))[0], CITYSCAPES_LABEL_IDS)


def _folder_dm(root: Path, **kwargs) -> SegmentationDataModule:
    args = {"root": str(root), "train_split": {"img_dir": "images/train", "ann_dir": "masks/train"},
            "val_split": {"img_dir": "images/val", "ann_dir": "masks/val"}, "classes_file": "classes.txt",
            "crop_size": 32, "train_scale": [64, 32], "test_scale": [64, 32], "num_workers": 0}
    return SegmentationDataModule(**{**args, **kwargs})


def test_classes_file_names_colours_and_errors(tmp_path) -> None:
    root = write_folder_seg(tmp_path / "data")
    datamodule = _folder_dm(root)
    assert datamodule.class_names == FOLDER_CLASSES
    assert datamodule.palette == [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
    (root / "classes.txt").write_text("road\nsky #12345\n")
    with pytest.raises(ValueError, match=r"classes.txt:2: '#12345' is not a #rrggbb colour"):
        _folder_dm(root)
    (root / "classes.txt").write_text("road\nsky\n")
    assert read_classes_file(root / "classes.txt") == (["road", "sky"], None)
    (root / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"class list not found: .*classes.txt\. Create it with one class"):
        _folder_dm(root)


def test_folder_seg_errors_name_the_file_and_the_fix(tmp_path) -> None:
    root = write_folder_seg(tmp_path / "data")
    (root / "masks" / "train" / "part_001.png").unlink()
    with pytest.raises(ValueError, match=r"image\(s\) without a label in .*masks/train: part_001.png\. Remove"):
        _folder_dm(root).setup("fit")

    root = write_folder_seg(tmp_path / "data2")
    Image.fromarray(np.full((48, 64), 7, np.uint8)).save(root / "masks" / "val" / "part_001.png")
    datamodule = _folder_dm(root)
    datamodule.setup("validate")
    with pytest.raises(BadSampleError, match=r"part_001\.png: label values 7 outside \[0, 3\).*Add the missing "
                                             r"classes to .*classes\.txt"):
        datamodule.val_set[1]

    for path in (root / "images" / "val").iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"no images .* in .*images/val: the val split is empty"):
        _folder_dm(root).setup("validate")
    with pytest.raises(FileNotFoundError, match=r"(?s)folder_seg root not found: .*nowhere.*Expected layout"):
        _folder_dm(tmp_path / "nowhere", dataset_name="folder_seg", layout_hint="Expected layout: ...")


def test_split_file_lists_missing_files(tmp_path) -> None:
    root = write_pascal_voc(tmp_path / "VOC2012")
    (root / "SegmentationClass" / "2007_000033.png").unlink()
    datamodule = SegmentationDataModule(
        str(root), {"img_dir": "JPEGImages", "ann_dir": "SegmentationClass", "split_file": "ImageSets/Segmentation/train.txt"},
        {"img_dir": "JPEGImages", "ann_dir": "SegmentationClass", "split_file": "ImageSets/Segmentation/val.txt"},
        img_suffix=".jpg", class_names=[str(i) for i in range(21)], num_workers=0)
    with pytest.raises(FileNotFoundError, match=r"1 file\(s\) listed in .*val\.txt do not exist: .*2007_000033\.png"):
        datamodule.setup("validate")


@pytest.mark.parametrize(("name", "hint"), [("cityscapes", "csCreateTrainIdLabelImgs"),
                                            ("pascal_voc", "VOCtrainval_11-May-2012.tar"),
                                            ("ade20k", "download_ade20k.sh")])
def test_missing_dataset_is_reported_with_preparation_notes(name, hint, compose_config, tmp_path) -> None:
    cfg = compose_config("train", [f"data={name}", f"data.root={tmp_path / 'nowhere'}"], tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"(?s)root not found: .*nowhere \(data.root\).*{hint}"):
        instantiate(cfg.data).check_data()
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(FileNotFoundError, match=r"(?s)(img_dir|split_file) not found: .*nowhere.*Expected layout"):
        instantiate(cfg.data).check_data()
