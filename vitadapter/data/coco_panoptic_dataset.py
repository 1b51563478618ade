"""COCO panoptic segmentation dataset: things and stuff as segments with contiguous labels.

Reads the official layout (also written by ``vitadapter.data.synthetic.panoptic_writer``)::

    root/annotations/panoptic_{train,val}2017.json     images, annotations (file_name, segments_info), categories
    root/annotations/panoptic_{train,val}2017/*.png    segment id = R + 256·G + 256²·B per pixel, 0 = void
    root/{train,val}2017/*.jpg

Category ids have gaps (COCO: 133 categories with ids 1..200); they are mapped to contiguous classes 0..K-1 in
id order, and the mapping is kept to write results back. The json is checked once when the dataset is built
(unknown categories, duplicate or zero segment ids, images without an annotation, missing files are errors
then); a PNG or image that cannot be decoded, has the wrong size, or whose segment ids differ from the json
raises ``BadSampleError`` when it is read, or is skipped under a skipping policy (see ``vitadapter.data.bad_samples``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vitadapter.data.bad_samples import bad_sample, check_policy, read_or_skip, read_rgb
from vitadapter.data.coco_dataset import _few, _Packed
from vitadapter.data.coco_panoptic_format import MAX_SEGMENT_ID, read_panoptic_png, segment_id_mismatch
from vitadapter.data.coco_panoptic_transforms import index_map, masks_from_index_map
from vitadapter.data.resumable_loading import SampleKey, keyed_index

EXPECTED_LAYOUT = """\
  <root>/                              e.g. data/coco
    annotations/panoptic_train2017.json
    annotations/panoptic_train2017/*.png
    annotations/panoptic_val2017.json
    annotations/panoptic_val2017/*.png
    train2017/*.jpg
    val2017/*.jpg"""
HOW_TO_GET = (
    "Get the images with `bash scripts/download_coco.sh data/coco` and the annotations from "
    "http://images.cocodataset.org/annotations/panoptic_annotations_trainval2017.zip (unzip it into data/coco, then "
    "unzip annotations/panoptic_{train,val}2017.zip inside annotations/), or point the config at an existing copy "
    "with `data.root=/path/to/coco` (see docs/data.md)."
)
_FIX = "Fix the annotation file or re-extract panoptic_annotations_trainval2017.zip"


def split_paths(root: str | Path, split: str, ann_file: str | Path | None = None, png_dir: str | Path | None = None,
                img_dir: str | Path | None = None) -> tuple[Path, Path, Path]:
    """The json, PNG folder and image folder of ``split``: ``annotations/panoptic_<split>.json``,
    ``annotations/panoptic_<split>/`` and ``<split>/`` under ``root``, or the given paths (relative to ``root``,
    or absolute; the PNG folder defaults to the json's path without ``.json``)."""
    root = Path(root)
    json_path = root / "annotations" / f"panoptic_{split}.json" if ann_file is None else root / ann_file
    return json_path, json_path.with_suffix("") if png_dir is None else root / png_dir, root / (
        split if img_dir is None else img_dir)


def _not_found(what: str, path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found: {path}\nExpected layout:\n{EXPECTED_LAYOUT}\n{HOW_TO_GET}")


def check_split_files(root: str | Path, split: str, **paths: str | Path | None) -> None:
    """Raises the dataset's FileNotFoundError (layout, how to get it) if the json, the PNG folder or the image
    folder of ``split`` is missing; reads none of them."""
    json_path, png_dir, image_dir = split_paths(root, split, **paths)
    for what, path, exists in (("COCO panoptic annotation file", json_path, json_path.is_file()),
                               ("COCO panoptic PNG folder", png_dir, png_dir.is_dir()),
                               ("COCO image folder", image_dir, image_dir.is_dir())):
        if not exists:
            raise _not_found(what, path)


def read_categories(json_path: Path, document: dict[str, Any]) -> list[dict[str, Any]]:
    """The checked ``categories`` of a panoptic json, sorted by id: ``{"id", "name", "isthing", "color"?}``."""
    categories = document.get("categories")
    if not isinstance(categories, list) or not categories:
        raise ValueError(f"{json_path} lists no 'categories'; it is not a COCO panoptic file.")
    out = []
    for cat in categories:
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or cat.get("isthing") not in (0, 1):
            raise ValueError(f"{json_path}: category {cat!r} needs an integer 'id', a 'name' and 'isthing' (0 or 1). "
                             f"{_FIX}.")
        out.append({"id": int(cat["id"]), "name": str(cat.get("name", cat["id"])), "isthing": bool(cat["isthing"]),
                    "color": cat.get("color")})
    ids = [c["id"] for c in out]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{json_path}: category ids repeat ({sorted(ids)}). {_FIX}.")
    return sorted(out, key=lambda c: c["id"])


class COCOPanopticDataset(Dataset):
    """Images with their panoptic segments (things and stuff) of one COCO-panoptic-format split.

    Args:
        root: Dataset root (holding ``annotations/`` and the image folders).
        split: Split name, e.g. "train2017" or "val2017".
        transform: A ``PanopticTransform`` (see ``coco_panoptic_transforms``); None returns the decoded pixels as
            float 0..255.
        training: True: per-segment binary masks after the transform (segments cropped away are dropped);
            False: the transformed image and the ground truth at the original size (for scoring).
        on_bad_sample: "raise" a ``BadSampleError``; "replace" by the next good sample (training); "drop" (evaluation).
        ann_file: Panoptic json instead of ``annotations/panoptic_<split>.json`` (relative to ``root``, or absolute).
        png_dir: PNG folder instead of the json's path without ``.json``.
        img_dir: Image folder instead of ``<split>``.
    """

    def __init__(self, root: str | Path, split: str = "val2017", transform: Callable[..., dict[str, Any]] | None = None,
                 training: bool = False, on_bad_sample: str = "raise", ann_file: str | Path | None = None,
                 png_dir: str | Path | None = None, img_dir: str | Path | None = None) -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.training = training
        self.on_bad_sample = check_policy(on_bad_sample)
        self.annotation_file, self.png_dir, self.image_dir = split_paths(self.root, split, ann_file, png_dir, img_dir)
        check_split_files(self.root, split, ann_file=ann_file, png_dir=png_dir, img_dir=img_dir)
        try:
            document = json.loads(self.annotation_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"cannot parse COCO panoptic file {self.annotation_file}: {err}. {_FIX}.") from err
        categories = read_categories(self.annotation_file, document)
        self.category_ids: list[int] = [c["id"] for c in categories]
        self.class_names: list[str] = [c["name"] for c in categories]
        self.isthing: list[bool] = [c["isthing"] for c in categories]
        colors = [c["color"] for c in categories]
        self.palette: list[tuple[int, int, int]] | None = (
            [tuple(int(v) for v in c) for c in colors] if all(c is not None for c in colors) else None)
        self.contiguous_to_category_id: dict[int, int] = dict(enumerate(self.category_ids))
        self.category_id_to_contiguous: dict[int, int] = {c: i for i, c in enumerate(self.category_ids)}
        records = self._records(document)
        if not records:
            raise ValueError(f"{self.annotation_file} lists no images.")
        self._check_files(records)
        self.image_ids: list[int] = [r["image_id"] for r in records]
        self._records_packed = _Packed(records)

    def _records(self, document: dict[str, Any]) -> list[dict[str, Any]]:
        """Check the images and annotations and build one record per image (sorted by image id)."""
        where = self.annotation_file
        images = {int(img["id"]): img for img in document.get("images", [])}
        by_image: dict[int, dict[str, Any]] = {}
        for ann in document.get("annotations", []):
            image_id = ann.get("image_id")
            if image_id not in images:
                raise ValueError(f"{where}: an annotation ({ann.get('file_name')}) refers to image_id {image_id!r}, "
                                 f"which is not in 'images'. {_FIX}.")
            if image_id in by_image:
                raise ValueError(f"{where}: image {image_id} has two annotations; a panoptic file has one per image.")
            by_image[image_id] = ann
        unannotated = sorted(set(images) - set(by_image))
        if unannotated:
            raise ValueError(f"{where}: {len(unannotated)} image(s) have no annotation (ids {_few(unannotated)}); "
                             f"a panoptic file has one per image (an empty segments_info for an image without "
                             f"segments). {_FIX}.")
        return [self._record(images[i], by_image[i]) for i in sorted(images)]

    def _record(self, image: dict[str, Any], ann: dict[str, Any]) -> dict[str, Any]:
        segments = ann.get("segments_info")
        if not isinstance(segments, list) or "file_name" not in ann:
            raise ValueError(f"{self.annotation_file}: the annotation of image {image['id']} needs 'file_name' and "
                             f"a 'segments_info' list. {_FIX}.")
        ids = [s.get("id") for s in segments]
        if any(not isinstance(i, int) or not 0 < i <= MAX_SEGMENT_ID for i in ids) or len(set(ids)) != len(ids):
            raise ValueError(f"{self.annotation_file}: {ann['file_name']} has segment ids {ids}; they must be unique "
                             f"integers in 1..{MAX_SEGMENT_ID} (0 is void). {_FIX}.")
        for segment in segments:
            if segment.get("category_id") not in self.category_id_to_contiguous:
                raise ValueError(
                    f"{self.annotation_file}: segment {segment['id']} of {ann['file_name']} has category_id "
                    f"{segment.get('category_id')!r}, which is not among the {len(self.category_ids)} 'categories' "
                    f"(ids {_few(self.category_ids)}). Fix the segment or add the category.")
        return {
            "image_id": int(image["id"]),
            "file_name": str(image["file_name"]),
            "png": str(ann["file_name"]),
            "height": int(image["height"]),
            "width": int(image["width"]),
            "segment_ids": np.array(ids, dtype=np.int64),
            "labels": np.array([self.category_id_to_contiguous[s["category_id"]] for s in segments], dtype=np.int64),
            "iscrowd": np.array([bool(s.get("iscrowd", 0)) for s in segments], dtype=bool),
        }

    def _check_files(self, records: list[dict[str, Any]]) -> None:
        for what, folder, key in (("image", self.image_dir, "file_name"), ("panoptic PNG", self.png_dir, "png")):
            present = {entry.name for entry in os.scandir(folder)}
            missing = sorted(r[key] for r in records if r[key] not in present)
            if missing:
                raise FileNotFoundError(f"{len(missing)} {what}(s) listed in {self.annotation_file} are missing from "
                                        f"{folder}: {_few(missing)}. Restore them. {HOW_TO_GET}")

    def __len__(self) -> int:
        return len(self._records_packed)

    def record(self, index: int) -> dict[str, Any]:
        """The checked record of item ``index``: ids, file names, size, segment ids, contiguous labels, iscrowd."""
        return self._records_packed[index]

    def load_image(self, index: int) -> np.ndarray:
        """Decode image ``index`` as H×W×3 uint8 RGB (grayscale, palette and RGBA are converted)."""
        rec = self.record(index)
        path = self.image_dir / rec["file_name"]
        rgb = read_rgb(path)
        if rgb.shape[:2] != (rec["height"], rec["width"]):
            raise bad_sample(path, f"the image is {rgb.shape[1]}x{rgb.shape[0]} (WxH) but {self.annotation_file} says "
                             f"{rec['width']}x{rec['height']}", "Restore the original image")
        return rgb

    def load_panoptic(self, index: int) -> np.ndarray:
        """Decode the H×W int64 segment-id map of item ``index`` (0 void), checked against the json."""
        rec = self.record(index)
        path = self.png_dir / rec["png"]
        ids = read_panoptic_png(path)
        if ids.shape != (rec["height"], rec["width"]):
            raise bad_sample(path, f"the panoptic PNG is {ids.shape[1]}x{ids.shape[0]} (WxH) but its image is "
                             f"{rec['width']}x{rec['height']}", "Re-extract the annotation zip")
        problem = segment_id_mismatch(np.unique(ids).tolist(), rec["segment_ids"].tolist())
        if problem:
            raise bad_sample(path, f"{problem} ({self.annotation_file})", _FIX)
        return ids

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        """One sample for an item index (or a training sampler's (index, seed) key).

        Training: ``{"image", "masks" (bool N×H×W), "labels" (int64 N), "iscrowd" (bool N), "name", "image_id",
        "scale"}``. Evaluation: ``{"image", "scale", "panoptic" (int64 H×W at the original size), "segments_info"
        ([{"id", "category_id" (contiguous), "iscrowd", "isthing"}]), "image_id", "file_name" (the PNG's),
        "orig_size", "name"}``. Under a skipping policy ``"skipped"`` lists the bad files passed over.
        """
        index = keyed_index(key, self.transform)
        return read_or_skip(self._read, index, len(self), self.on_bad_sample, lambda: keyed_index(key, self.transform))

    def _read(self, index: int) -> dict[str, Any]:
        rec = self.record(index)
        image, ids = self.load_image(index), self.load_panoptic(index)
        common = {"name": Path(rec["file_name"]).stem, "image_id": rec["image_id"]}
        if self.training:
            out = self._transform(image, index_map(ids, rec["segment_ids"]))
            kept = out["segments"].numpy()
            return {"image": out["image"], "masks": out["masks"], "labels": torch.from_numpy(rec["labels"][kept]),
                    "iscrowd": torch.from_numpy(rec["iscrowd"][kept]), "scale": out["scale"], **common}
        out = self._transform(image, None)
        segments = [{"id": int(s), "category_id": int(c), "iscrowd": int(z), "isthing": self.isthing[int(c)]}
                    for s, c, z in zip(rec["segment_ids"], rec["labels"], rec["iscrowd"])]
        return {"image": out["image"], "scale": out["scale"], "panoptic": torch.from_numpy(ids),
                "segments_info": segments, "file_name": rec["png"], "orig_size": (rec["height"], rec["width"]),
                **common}

    def _transform(self, image: np.ndarray, segments: np.ndarray | None) -> dict[str, Any]:
        if self.transform is not None:
            return self.transform(image, segments)
        out: dict[str, Any] = {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float(),
                               "scale": 1.0}
        if segments is not None:
            out["masks"], out["segments"] = masks_from_index_map(segments)
        return out
