"""COCO 2017 detection / instance segmentation dataset (boxes, contiguous labels, instance masks).

Reads the official layout (also written by ``vitadapter.data.synthetic.coco_writer.write_synthetic_coco``)::

    root/annotations/instances_{train,val}2017.json
    root/{train,val}2017/*.jpg

The annotation file is parsed and indexed by ``pycocotools.coco.COCO``, checked once, and packed into
one byte buffer per dataset, so forked DataLoader workers do not copy hundreds of MB of Python dicts
as they touch them (the copy-on-read problem detectron2's ``DatasetFromList(serialize=True)`` solves).
Crowd annotations are left out of the targets (COCOeval reads them from the annotation file).
Problems of the annotation file are errors when the dataset is built; an image that cannot be decoded or
whose size differs from its annotation raises ``BadSampleError`` when it is read, or is skipped under a
skipping policy (see ``vitadapter.data.bad_samples``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from vitadapter.data.bad_samples import bad_sample, check_policy, read_or_skip, read_rgb
from vitadapter.data.resumable_loading import SampleKey, keyed_index

log = logging.getLogger(__name__)

EXPECTED_LAYOUT = """\
  <root>/                      e.g. data/coco
    annotations/instances_train2017.json
    annotations/instances_val2017.json
    train2017/*.jpg
    val2017/*.jpg"""
_HOW_TO_GET = (
    "Download it with `bash scripts/download_coco.sh data/coco` or point the config at an existing copy "
    "with `data.root=/path/to/coco`."
)
MIN_BOX_SIZE = 1.0  # pixels; narrower or shorter boxes (after clipping to the image) are dropped
_MAX_LISTED = 5


def annotation_file(root: str | Path, split: str) -> Path:
    """Path of the instances annotation file of ``split`` (e.g. "val2017") under ``root``."""
    return Path(root) / "annotations" / f"instances_{split}.json"


def _not_found(what: str, path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found: {path}\nExpected layout:\n{EXPECTED_LAYOUT}\n{_HOW_TO_GET}")


def split_paths(
    root: str | Path, split: str, ann_file: str | Path | None = None, img_dir: str | Path | None = None
) -> tuple[Path, Path]:
    """The annotation file and image folder of ``split``: ``root/annotations/instances_<split>.json`` and
    ``root/<split>``, or ``ann_file`` / ``img_dir`` when given (relative to ``root``, or absolute)."""
    root = Path(root)
    return (annotation_file(root, split) if ann_file is None else root / ann_file,
            root / (split if img_dir is None else img_dir))


def check_split_files(
    root: str | Path, split: str, ann_file: str | Path | None = None, img_dir: str | Path | None = None
) -> None:
    """Raises the dataset's own FileNotFoundError if the annotation file or the image folder of `split` (see
    ``split_paths``) is missing; reads neither (a check before anything else is built)."""
    annotations, images = split_paths(root, split, ann_file, img_dir)
    if not annotations.is_file():
        raise _not_found("COCO annotation file", annotations)
    if not images.is_dir():
        raise _not_found("COCO image folder", images)


def load_coco(path: str | Path) -> COCO:
    """Parse and index the COCO annotation json ``path`` with pycocotools, without its progress prints."""
    path = Path(path)
    if not path.is_file():
        raise _not_found("COCO annotation file", path)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except (ValueError, KeyError, TypeError, AssertionError) as err:  # json errors are ValueErrors
        raise ValueError(f"cannot parse COCO annotation file {path}: {err!r}. Re-download or fix it.") from err


def decode_segmentation(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """Decode a ``segmentation`` field (polygons, uncompressed or compressed RLE) to an H×W uint8 0/1 mask.

    Several polygons of one object are merged into one mask, as COCO defines them.
    """
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle)


def _few(values: list[Any]) -> str:
    shown = ", ".join(str(v) for v in values[:_MAX_LISTED])
    return shown + (f" and {len(values) - _MAX_LISTED} more" if len(values) > _MAX_LISTED else "")


class _Packed:
    """A list of picklable records stored in one numpy byte buffer."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        blobs = [np.frombuffer(pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8) for r in records]
        self._ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
        self._data = np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> dict[str, Any]:
        start = int(self._ends[index - 1]) if index > 0 else 0
        return pickle.loads(self._data[start : int(self._ends[index])].tobytes())


class COCODetectionDataset(Dataset):
    """Images with boxes, contiguous labels and instance masks of one COCO split.

    Args:
        root: Dataset root (the folder holding ``annotations/`` and the image folders).
        split: Image folder / annotation suffix, e.g. "train2017" or "val2017".
        transform: A ``DetectionTransform`` (see ``det_transforms``) called as
            ``transform(image, boxes, labels, masks)``; None returns the decoded pixels as float 0..255.
        skip_empty: Leave out images without a usable annotation (for training; evaluation keeps all).
        with_masks: Decode instance masks into the targets (evaluation does not need them).
        on_bad_sample: What an image that cannot be used does (see ``vitadapter.data.bad_samples``):
            "raise" a ``BadSampleError``; "replace" the sample by the next good one (training); "drop" it
            (evaluation).
        ann_file: Annotation file of any COCO-format dataset instead of
            ``annotations/instances_<split>.json`` (relative to ``root``, or absolute).
        img_dir: Image folder instead of ``<split>`` (relative to ``root``, or absolute).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "val2017",
        transform: Callable[..., dict[str, Any]] | None = None,
        skip_empty: bool = False,
        with_masks: bool = True,
        on_bad_sample: str = "raise",
        ann_file: str | Path | None = None,
        img_dir: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.skip_empty = skip_empty
        self.with_masks = with_masks
        self.on_bad_sample = check_policy(on_bad_sample)
        self.annotation_file, self.image_dir = split_paths(self.root, split, ann_file, img_dir)
        coco = load_coco(self.annotation_file)
        if not self.image_dir.is_dir():
            raise _not_found("COCO image folder", self.image_dir)
        self._check_files(coco)
        self.category_ids: list[int] = sorted(int(c) for c in coco.cats)
        if not self.category_ids:
            raise ValueError(f"{self.annotation_file} lists no categories; it is not a COCO instances file.")
        self.class_names: list[str] = [str(coco.cats[c]["name"]) for c in self.category_ids]
        self.contiguous_to_category_id: dict[int, int] = dict(enumerate(self.category_ids))
        self.category_id_to_contiguous: dict[int, int] = {c: i for i, c in enumerate(self.category_ids)}
        records = self._records(coco)
        if skip_empty:
            num_empty = sum(1 for r in records if not len(r["labels"]))
            records = [r for r in records if len(r["labels"])]
            log.info("%s: skipped %d image(s) without a usable annotation", self.annotation_file, num_empty)
        if not records:
            raise ValueError(f"{self.annotation_file} leaves no images to load (skip_empty={skip_empty}).")
        self.image_ids: list[int] = [r["image_id"] for r in records]
        self._records_packed = _Packed(records)

    def _check_files(self, coco: COCO) -> None:
        present = {entry.name for entry in os.scandir(self.image_dir)}
        missing = sorted(img["file_name"] for img in coco.imgs.values() if img["file_name"] not in present)
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image(s) listed in {self.annotation_file} are missing from {self.image_dir}: "
                f"{_few(missing)}. Re-download the split or restore them ({_HOW_TO_GET})"
            )

    def _records(self, coco: COCO) -> list[dict[str, Any]]:
        """Check every annotation and build one record per image (sorted by image id)."""
        per_image: dict[int, list[dict[str, Any]]] = {int(i): [] for i in coco.imgs}
        tiny: list[int] = []
        no_polygon: list[int] = []
        bad_parts = 0
        for ann in coco.dataset.get("annotations", []):
            ann_id = ann.get("id")
            cat = ann.get("category_id")
            if cat not in self.category_id_to_contiguous:
                raise ValueError(
                    f"{self.annotation_file}: annotation {ann_id} has category_id {cat!r}, which is not among the "
                    f"{len(self.category_ids)} 'categories' (ids {_few(self.category_ids)}). Fix the annotation "
                    "or add the category."
                )
            image = coco.imgs.get(ann.get("image_id"))
            if image is None:
                raise ValueError(
                    f"{self.annotation_file}: annotation {ann_id} refers to image_id {ann.get('image_id')!r}, "
                    "which is not in 'images'. Fix the annotation or add the image."
                )
            if ann.get("iscrowd", 0):
                continue  # kept in the json for COCOeval, which ignores detections matched to crowds
            box = self._clipped_box(ann, image)
            if box[2] - box[0] < MIN_BOX_SIZE or box[3] - box[1] < MIN_BOX_SIZE:
                tiny.append(ann_id)
                continue
            segm = None
            if self.with_masks:
                segm, dropped = self._checked_segmentation(ann, image)
                bad_parts += dropped
                if segm is None:
                    no_polygon.append(ann_id)
                    continue
            per_image[int(image["id"])].append(
                {"id": int(ann_id), "box": box, "label": self.category_id_to_contiguous[cat], "segm": segm}
            )
        self._warn_dropped(tiny, no_polygon, bad_parts)
        records = []
        for image_id in sorted(per_image):
            image, anns = coco.imgs[image_id], per_image[image_id]
            records.append(
                {
                    "image_id": image_id,
                    "file_name": image["file_name"],
                    "height": int(image["height"]),
                    "width": int(image["width"]),
                    "boxes": np.array([a["box"] for a in anns], dtype=np.float32).reshape(-1, 4),
                    "labels": np.array([a["label"] for a in anns], dtype=np.int64),
                    "segms": [a["segm"] for a in anns],
                    "ann_ids": [a["id"] for a in anns],
                }
            )
        return records

    def _clipped_box(self, ann: dict[str, Any], image: dict[str, Any]) -> list[float]:
        bbox = ann.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise ValueError(
                f"{self.annotation_file}: annotation {ann.get('id')} has bbox {bbox!r}; expected [x, y, width, height]."
            )
        x, y, w, h = (float(v) for v in bbox)
        width, height = float(image["width"]), float(image["height"])
        x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
        return [x0, y0, min(max(x + w, x0), width), min(max(y + h, y0), height)]

    def _checked_segmentation(self, ann: dict[str, Any], image: dict[str, Any]) -> tuple[list | dict | None, int]:
        """Drop polygon parts of fewer than 3 points; return what is left (None if nothing) and how many went."""
        segm = ann.get("segmentation")
        if isinstance(segm, list):
            # pycocotools would read a 4-number polygon as a box, so short parts must go before decoding
            parts = [p for p in segm if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
            return (parts or None), len(segm) - len(parts)
        if isinstance(segm, dict) and "counts" in segm and "size" in segm:
            if list(segm["size"]) != [image["height"], image["width"]]:
                raise ValueError(
                    f"{self.annotation_file}: annotation {ann.get('id')} has an RLE of size {segm['size']} but its "
                    f"image {image['file_name']} is {image['height']}x{image['width']} (HxW). Fix the annotation."
                )
            return segm, 0
        raise ValueError(
            f"{self.annotation_file}: annotation {ann.get('id')} has no usable 'segmentation' (polygons or RLE). "
            "For box-only annotations use with_masks=False."
        )

    def _warn_dropped(self, tiny: list[int], no_polygon: list[int], bad_parts: int) -> None:
        parts = []
        if tiny:
            parts.append(f"{len(tiny)} annotation(s) with a box under {MIN_BOX_SIZE:g} px wide or tall ({_few(tiny)})")
        if no_polygon:
            parts.append(f"{len(no_polygon)} annotation(s) without a polygon of >= 3 points ({_few(no_polygon)})")
        if bad_parts:
            parts.append(f"{bad_parts} polygon part(s) with fewer than 3 points")
        if parts:
            message = f"{self.annotation_file}: dropped " + "; ".join(parts) + " (annotation ids in brackets)."
            warnings.warn(message, stacklevel=4)  # points at the code that built the dataset

    def __len__(self) -> int:
        return len(self._records_packed)

    def record(self, index: int) -> dict[str, Any]:
        """The checked annotation record of item ``index`` (boxes clipped xyxy, contiguous labels, ids)."""
        return self._records_packed[index]

    def annotation_ids(self, index: int) -> list[int]:
        """COCO annotation ids of the target rows of item ``index`` (before any transform)."""
        return list(self.record(index)["ann_ids"])

    def load_image(self, index: int) -> np.ndarray:
        """Decode image ``index`` as H×W×3 uint8 RGB (grayscale, palette and RGBA are converted)."""
        rec = self.record(index)
        path = self.image_dir / rec["file_name"]
        rgb = read_rgb(path)
        if rgb.shape[:2] != (rec["height"], rec["width"]):
            raise bad_sample(
                path,
                f"the image is {rgb.shape[1]}x{rgb.shape[0]} (WxH) but {self.annotation_file} says "
                f"{rec['width']}x{rec['height']}, so its boxes and masks would not line up",
                "Restore the original image",
            )
        return rgb

    def load_masks(self, index: int) -> np.ndarray:
        """Decode the instance masks of item ``index`` as N×H×W uint8 0/1."""
        rec = self.record(index)
        h, w = rec["height"], rec["width"]
        if not rec["segms"] or not self.with_masks:
            return np.zeros((0, h, w), dtype=np.uint8)
        return np.stack([decode_segmentation(s, h, w) for s in rec["segms"]])

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        """Return ``{"image", "target": {"boxes", "labels"[, "masks"]}, "image_id", "orig_size", "scale"}`` for an
        item index (or a training sampler's (index, seed) key).

        Under a skipping policy, ``"skipped"`` lists the bad images passed over, and a dropped item holds
        nothing else (see ``vitadapter.data.bad_samples``).
        """
        index = keyed_index(key, self.transform)
        return read_or_skip(self._read, index, len(self), self.on_bad_sample, lambda: keyed_index(key, self.transform))

    def _read(self, index: int) -> dict[str, Any]:
        rec = self.record(index)
        image = self.load_image(index)
        masks = self.load_masks(index) if self.with_masks else None
        if self.transform is None:
            out = {
                "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float(),
                "boxes": torch.from_numpy(rec["boxes"]),
                "labels": torch.from_numpy(rec["labels"]),
                "masks": None if masks is None else torch.from_numpy(masks),
                "scale": 1.0,
            }
        else:
            out = self.transform(image=image, boxes=rec["boxes"], labels=rec["labels"], masks=masks)
        target = {"boxes": out["boxes"], "labels": out["labels"]}
        if out["masks"] is not None:
            target["masks"] = out["masks"]
        return {
            "image": out["image"],
            "target": target,
            "image_id": int(rec["image_id"]),
            "orig_size": (int(rec["height"]), int(rec["width"])),
            "scale": float(out["scale"]),
        }
