"""Bad data files: the error that names them, image reading that raises it, and skipping them.

A corrupt or truncated image or label, a label whose size differs from its image, a label value outside
the classes, or a COCO image whose size differs from its annotation is a problem of one file, found when
its sample is read: the dataset raises `BadSampleError`, which names the file, what is wrong and what to
do. With `data.skip_bad_samples=true` the datamodules give their datasets a skipping policy instead:

- "replace" (training): the next index that reads cleanly stands in, with the requested sample's
  augmentation seed, so batches keep their size, DDP ranks stay in lockstep, and the substitute is a
  function of the sample key alone (runs stay reproducible and resumable);
- "drop" (evaluation): the image is left out of its batch, so it is neither scored as an image without
  predictions nor forgotten: the batch lists it.

Either way the sample carries the skipped files under `SKIPPED` through the loader's collate function
(`CollateWithSkips`), out of the worker processes, to `BadSampleReport`
(`vitadapter.data.bad_samples.bad_sample_report`), which warns, gathers them from every rank and puts them in metrics.json.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import default_collate

SKIPPED = "skipped"
POLICIES: tuple[str, ...] = ("raise", "replace", "drop")
_SKIP_HINT = "or set data.skip_bad_samples=true to skip bad files (they are listed in metrics.json)"


class BadSampleError(ValueError):
    """One data file cannot be used: corrupt, truncated, of the wrong size, or with labels outside the classes.

    Args:
        message: the full message (file, what is wrong, what to do).
        file: the bad file's path.
        reason: what is wrong with it, in a few words.
    """

    def __init__(self, message: str, file: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.reason = reason


class SkippedFile(NamedTuple):
    """A bad file that a skipping policy passed over, and why."""

    file: str
    reason: str


def bad_sample(file: str | Path, reason: str, fix: str) -> BadSampleError:
    """The `BadSampleError` for `file`: `reason` says what is wrong, `fix` what to do about the file."""
    return BadSampleError(f"bad data file {file}: {reason}. {fix}; {_SKIP_HINT}.", file=str(file), reason=reason)


def skip_policy(skip_bad_samples: bool, training: bool) -> str:
    """The dataset policy of a split: "raise" unless skipping; then "replace" for training, "drop" for evaluation."""
    if not skip_bad_samples:
        return "raise"
    return "replace" if training else "drop"


def check_policy(policy: str) -> str:
    """`policy` if it is one of `POLICIES`, else a ValueError listing them."""
    if policy not in POLICIES:
        raise ValueError(f"on_bad_sample must be one of {POLICIES}, got {policy!r}")
    return policy


def open_image(path: Path, what: str) -> Image.Image:
    """Opens and fully decodes the image file `path` (so a truncated file fails here, not in a transform).

    Args:
        path: the file.
        what: what it is, for the message ("image", "label").

    Returns:
        The decoded PIL image.
    """
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError as err:  # listed when the dataset was built: the folder changed, not the data
        raise FileNotFoundError(
            f"{what} {path} disappeared after the dataset was listed; was the folder moved or rewritten?"
        ) from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # PIL's decoders raise all of these
        detail = "not an image format PIL can identify" if isinstance(err, UnidentifiedImageError) else str(err)
        raise bad_sample(path, f"cannot decode the {what}: {detail}",
                         "The file is corrupt, truncated or not an image: re-download or remove it") from err
    return img


def read_rgb(path: Path) -> np.ndarray:
    """The image file `path` as an H×W×3 uint8 RGB array (grayscale, palette and RGBA are converted)."""
    img = open_image(path, "image")
    return np.array(img if img.mode == "RGB" else img.convert("RGB"))  # a writable copy


def read_or_skip(read: Callable[[int], dict[str, Any]], index: int, size: int, policy: str,
                 reseed: Callable[[], Any]) -> dict[str, Any]:
    """Item `index` of a dataset, or under a skipping policy what stands in for it when a file is bad.

    Args:
        read: reads and checks one item by index; raises `BadSampleError` for a bad file.
        index: the item asked for.
        size: the dataset's length (replacements wrap around to index 0).
        policy: "raise"; "replace": the next index that reads cleanly; "drop": an item that holds only
            `SKIPPED`.
        reseed: restores the requested sample's augmentation seed before a replacement is read.

    Returns:
        The item; when files were skipped, `SKIPPED` lists them (`SkippedFile`s).
    """
    skipped: list[SkippedFile] = []
    for offset in range(size):
        if skipped:
            reseed()
        try:
            item = read((index + offset) % size)
        except BadSampleError as err:
            if policy == "raise":
                raise
            skipped.append(SkippedFile(str(err.file), str(err.reason)))
            if policy == "drop":
                return {SKIPPED: skipped}
            continue
        if skipped:
            item[SKIPPED] = skipped
        return item
    raise BadSampleError(
        f"all {size} samples are bad, nothing is left to train on (e.g. {skipped[0].file}: {skipped[0].reason}). "
        "Check the dataset folder and data.root.", file=skipped[0].file, reason=skipped[0].reason)


class CollateWithSkips:
    """Collates the items that hold an image and lists every file they skipped in `batch[SKIPPED]`.

    A dropped item ("drop" policy) contributes only its record, so an evaluation batch may hold fewer
    images than it drew, or none; the wrapped collate function must accept an empty list then.

    Args:
        collate_fn: what assembles the kept items (None: torch's `default_collate`).
    """

    def __init__(self, collate_fn: Callable[[list[Any]], Mapping[str, Any]] | None = None) -> None:
        self.collate_fn = collate_fn or default_collate

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        skipped = [record for sample in samples for record in sample.get(SKIPPED, ())]
        kept = [{k: v for k, v in sample.items() if k != SKIPPED} for sample in samples if set(sample) != {SKIPPED}]
        return {**self.collate_fn(kept), SKIPPED: skipped}
