"""The COCO panoptic format: segment ids in RGB PNGs, and predictions written and read in the results format.

A panoptic PNG holds one segment id per pixel as id = R + 256·G + 256²·B (0: void, no segment); the json
beside it lists each segment's ``id`` and ``category_id`` per image (``segments_info``). Predictions use the
same layout (the format cocodataset.org takes for submissions and panopticapi's ``pq_compute`` reads)::

    <name>.json     {"annotations": [{"image_id", "file_name", "segments_info": [{"id", "category_id",
                    "isthing", "area", "bbox"}]}]}   (original category ids; bbox = [x, y, width, height])
    <name>/<file_name>                               one RGB PNG per image

panopticapi is not a maintained package (no release on PyPI), so the encoding and the checks are written here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vitadapter.data.bad_samples import bad_sample, open_image
from vitadapter.data.coco_dataset import _few

MAX_SEGMENT_ID = 256**3 - 1  # three 8-bit channels


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids of an H×W×3 uint8 panoptic PNG: R + 256·G + 256²·B, as H×W int64."""
    rgb = np.asarray(rgb, dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray | Tensor) -> np.ndarray:
    """H×W×3 uint8 colours of H×W segment ids (the inverse of `rgb_to_id`); ids must lie in 0..256³-1."""
    ids = np.asarray(ids.cpu() if isinstance(ids, Tensor) else ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_SEGMENT_ID):
        raise ValueError(f"segment ids must lie in 0..{MAX_SEGMENT_ID} to fit a PNG's RGB channels, "
                         f"got {int(ids.min())}..{int(ids.max())}")
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def read_panoptic_png(path: Path) -> np.ndarray:
    """The H×W int64 segment-id map of the panoptic PNG `path`.

    Raises:
        BadSampleError: the file cannot be decoded or is not an RGB PNG.
    """
    img = open_image(path, "panoptic PNG")
    if img.mode != "RGB":
        raise bad_sample(path, f"a panoptic PNG must be RGB (segment id = R + 256 G + 256^2 B), got mode {img.mode}",
                         "Re-extract the annotation zip, or write the ids with id_to_rgb")
    return rgb_to_id(np.asarray(img))


def write_panoptic_png(path: Path, ids: np.ndarray | Tensor) -> None:
    """Writes an H×W segment-id map as an RGB panoptic PNG."""
    Image.fromarray(id_to_rgb(ids)).save(path)


def segment_id_mismatch(ids_in_png: Sequence[int], listed_ids: Sequence[int]) -> str | None:
    """What differs between the non-void ids of a PNG and the ids its json lists (None: they agree)."""
    in_png, listed = set(int(i) for i in ids_in_png) - {0}, set(int(i) for i in listed_ids)
    problems = []
    if in_png - listed:
        problems.append(f"segment ids {_few(sorted(in_png - listed))} are in the PNG but not in segments_info")
    if listed - in_png:
        problems.append(f"segment ids {_few(sorted(listed - in_png))} are in segments_info but not in the PNG")
    return "; ".join(problems) or None


def segment_areas_and_boxes(ids: np.ndarray, segment_ids: Sequence[int]) -> tuple[list[int], list[list[int]]]:
    """Pixel area and COCO box [x, y, width, height] (integer pixel edges) of each segment of an id map."""
    areas, boxes = [], []
    for segment_id in segment_ids:
        ys, xs = np.nonzero(ids == segment_id)
        areas.append(int(len(ys)))
        if len(ys):
            boxes.append([int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)])
        else:
            boxes.append([0, 0, 0, 0])
    return areas, boxes


class PanopticResultWriter:
    """Writes panoptic predictions in the COCO panoptic results format: a PNG per image now, the json at `write`.

    Args:
        json_path: The results json; the PNGs go to the folder of the same name without ``.json``.
        contiguous_to_category_id: Model class (0..K-1) -> original category id.
        isthing: Per class, whether it is a thing (written as each segment's ``isthing``).
    """

    def __init__(self, json_path: str | Path, contiguous_to_category_id: Mapping[int, int],
                 isthing: Sequence[bool]) -> None:
        self.json_path = Path(json_path)
        self.png_dir = self.json_path.with_suffix("")
        self.contiguous_to_category_id = {int(k): int(v) for k, v in contiguous_to_category_id.items()}
        self.isthing = [bool(t) for t in isthing]
        self.annotations: list[dict[str, Any]] = []
        self.png_dir.mkdir(parents=True, exist_ok=True)

    def add(self, image_id: int, file_name: str, panoptic: np.ndarray | Tensor,
            segments_info: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Writes one image's PNG and keeps its annotation.

        Args:
            image_id: The dataset's image id.
            file_name: The PNG's file name (the ground truth's ``file_name``, e.g. "000000000139.png").
            panoptic: H×W segment ids at the original image size (0: void).
            segments_info: One ``{"id", "category_id"}`` per segment, category as a model class (0..K-1).

        Returns:
            The annotation written to the json.
        """
        ids = np.asarray(panoptic.cpu() if isinstance(panoptic, Tensor) else panoptic, dtype=np.int64)
        listed = [int(s["id"]) for s in segments_info]
        where = f"prediction for image {image_id} ({file_name})"
        if len(set(listed)) != len(listed) or 0 in listed:
            raise ValueError(f"{where}: segment ids must be unique and non-zero (0 is void), got {listed}")
        problem = segment_id_mismatch(np.unique(ids).tolist(), listed)
        if problem:
            raise ValueError(f"{where}: {problem}")
        areas, boxes = segment_areas_and_boxes(ids, listed)
        segments = []
        for segment, area, box in zip(segments_info, areas, boxes):
            label = int(segment["category_id"])
            if label not in self.contiguous_to_category_id:
                raise ValueError(f"{where}: class {label} is outside 0..{len(self.isthing) - 1}")
            segments.append({"id": int(segment["id"]), "category_id": self.contiguous_to_category_id[label],
                             "isthing": int(self.isthing[label]), "area": area, "bbox": box})
        write_panoptic_png(self.png_dir / file_name, ids)
        annotation = {"image_id": int(image_id), "file_name": str(file_name), "segments_info": segments}
        self.annotations.append(annotation)
        return annotation

    def write(self, annotations: Sequence[Mapping[str, Any]] | None = None) -> Path:
        """Writes the json (sorted by image id): these annotations, or those `add` kept (e.g. gathered from ranks)."""
        kept = list(self.annotations if annotations is None else annotations)
        document = {"annotations": sorted(kept, key=lambda a: int(a["image_id"]))}
        self.json_path.write_text(json.dumps(document, separators=(",", ":")))
        return self.json_path


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"panoptic json not found: {path}")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"cannot parse panoptic json {path}: {err}. Re-download or rewrite it.") from err
    if not isinstance(document, dict) or not isinstance(document.get("annotations"), list):
        raise ValueError(f"{path} is not a COCO panoptic file: it needs an 'annotations' list")
    return document


def load_panoptic_annotations(json_path: str | Path) -> list[dict[str, Any]]:
    """The ``annotations`` of a COCO panoptic json (predictions or ground truth), without reading any PNG."""
    return _json(Path(json_path))["annotations"]


def decode_panoptic_annotation(annotation: Mapping[str, Any], png_dir: str | Path,
                               category_id_to_contiguous: Mapping[int, int], source: str | Path) -> dict[str, Any]:
    """One annotation with its PNG decoded and its categories mapped to model classes.

    Args:
        annotation: ``{"image_id", "file_name", "segments_info"}`` of a panoptic json.
        png_dir: Folder of the PNG.
        category_id_to_contiguous: Original category id -> model class (0..K-1).
        source: The json it comes from (for messages).

    Returns:
        ``{"image_id", "file_name", "panoptic": H×W int64 tensor, "segments_info": [{"id", "category_id"
        (contiguous), "iscrowd"}]}``.

    Raises:
        ValueError: A category id outside the mapping, or ids that differ between the PNG and its segments_info.
        FileNotFoundError: The PNG is missing.
    """
    file_name = str(annotation["file_name"])
    png = Path(png_dir) / file_name
    if not png.is_file():
        raise FileNotFoundError(f"{source} lists {file_name}, which is not in {png_dir}")
    ids = read_panoptic_png(png)
    segments = []
    for segment in annotation["segments_info"]:
        category = int(segment["category_id"])
        if category not in category_id_to_contiguous:
            raise ValueError(f"{source}: segment {segment['id']} of {file_name} has category_id {category}, "
                             f"which is not among the categories (ids {_few(sorted(category_id_to_contiguous))})")
        segments.append({"id": int(segment["id"]), "category_id": int(category_id_to_contiguous[category]),
                         "iscrowd": int(segment.get("iscrowd", 0))})
    problem = segment_id_mismatch(np.unique(ids).tolist(), [s["id"] for s in segments])
    if problem:
        raise ValueError(f"{png} does not match {source}: {problem}")
    return {"image_id": int(annotation["image_id"]), "file_name": file_name, "panoptic": torch.from_numpy(ids),
            "segments_info": segments}


def read_panoptic_results(
    json_path: str | Path, category_id_to_contiguous: Mapping[int, int], png_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Reads COCO panoptic annotations (predictions or ground truth) with their PNGs, all into memory.

    Args:
        json_path: A json with an ``annotations`` list (a results file, or a ground-truth panoptic json).
        category_id_to_contiguous: Original category id -> model class (0..K-1).
        png_dir: Folder of the PNGs; None: the json's path without ``.json`` (panopticapi's convention).

    Returns:
        Per annotation, in file order, what ``decode_panoptic_annotation`` returns.
    """
    json_path = Path(json_path)
    png_dir = json_path.with_suffix("") if png_dir is None else Path(png_dir)
    return [decode_panoptic_annotation(a, png_dir, category_id_to_contiguous, json_path)
            for a in load_panoptic_annotations(json_path)]
