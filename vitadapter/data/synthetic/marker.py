"""The `synthetic.json` marker: which parameters a synthetic set was written with, and whether it finished."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METADATA_FILE = "synthetic.json"


def read_marker(root: Path) -> dict[str, Any] | None:
    """The marker's content; None when there is none, {} when it is there but unreadable."""
    path = root / METADATA_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # ours (the name says so) but unreadable: treat as an interrupted write


def write_marker(root: Path, params: dict[str, Any], complete: bool) -> None:
    """Writes the marker atomically; writers set `complete=False` first and `True` when done."""
    path = root / METADATA_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**params, "complete": complete}, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def marker_complete(root: Path, params: dict[str, Any]) -> bool:
    """True if `root` holds a finished write with exactly these parameters."""
    meta = read_marker(root)
    if not meta or not meta.get("complete"):
        return False
    return {k: v for k, v in meta.items() if k != "complete"} == params
