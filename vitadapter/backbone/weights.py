"""Where a timm backbone's pretrained weights come from, decided before timm is asked to download them.

timm fetches weights from the Hugging Face hub (or a plain URL) and, on a machine without internet,
spends about a minute in huggingface_hub's retries before it fails with `LocalEntryNotFoundError`.
`pretrained_source` decides at once: weights in the local Hugging Face (or torch hub) cache load from
that file with no network call; weights not cached on a machine that cannot reach their server raise
`PretrainedWeightsUnavailable`, which names the weights and the ways to get them there; otherwise timm
downloads as usual.
"""

from __future__ import annotations

import os
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from timm.models._hub import check_cached_file, get_cache_dir, hf_split

PROBE_TIMEOUT_S = 3.0
SAFE_WEIGHTS = "model.safetensors"
TORCH_WEIGHTS = "pytorch_model.bin"
_SAFE_ALTERNATIVES = {TORCH_WEIGHTS: SAFE_WEIGHTS, "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}


class PretrainedWeightsUnavailable(RuntimeError):
    """A backbone's pretrained weights are neither cached here nor downloadable from here."""

    def __repr__(self) -> str:  # Hydra reports an instantiation error by its repr: keep the lines readable
        return f"{type(self).__name__}: {self}"


@dataclass(frozen=True)
class WeightsSource:
    """The pretrained weights timm would load for a model name.

    Attributes:
        name: the timm model name (with its pretrained tag, if given).
        hf_hub_id: the Hugging Face hub repository ("timm/<name>.<tag>"), or None.
        revision: the hub revision pinned in the name's cfg ("id@rev"), or None.
        filenames: the hub files timm tries, in order (a safetensors file first).
        url: the plain download URL (used when there is no hub id), or None.
    """

    name: str
    hf_hub_id: str | None
    revision: str | None
    filenames: tuple[str, ...]
    url: str | None

    def describe(self) -> str:
        """The weights in words: timm name, hub repository and file, or URL."""
        if self.hf_hub_id:
            return f"timm model {self.name!r}: Hugging Face hub {self.hf_hub_id}, file {' or '.join(self.filenames)}"
        return f"timm model {self.name!r}: {self.url}"


def weights_source(name: str) -> WeightsSource | None:
    """Resolves timm's pretrained cfg of `name` to the files it would download (None: timm has no weights)."""
    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        return None
    hub_id, revision = hf_split(cfg.hf_hub_id) if cfg.hf_hub_id else (None, None)
    filename = cfg.hf_hub_filename or TORCH_WEIGHTS  # timm's default, which it prefers as safetensors
    filenames: tuple[str, ...] = (filename,)
    if filename.endswith(".bin"):  # timm tries the safetensors twin first
        filenames = (_SAFE_ALTERNATIVES.get(filename, filename[: -len(".bin")] + ".safetensors"), filename)
    if not hub_id and not cfg.url:
        return None
    return WeightsSource(name, hub_id, revision, filenames, cfg.url or None)


def cached_weights_file(source: WeightsSource) -> Path | None:
    """The weights file already in the local Hugging Face cache (`HF_HOME`/`HF_HUB_CACHE`) or, for a
    URL-only model, in timm's torch hub cache; None if not there. No network call."""
    if source.hf_hub_id:
        for filename in source.filenames:
            path = try_to_load_from_cache(source.hf_hub_id, filename, revision=source.revision)
            if isinstance(path, str) and Path(path).is_file():
                return Path(path)
        return None
    if source.url and check_cached_file(source.url):
        return Path(get_cache_dir()) / Path(urlparse(source.url).path).name
    return None


def unreachable_reason(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why `url`'s server gives no HTTP answer within `timeout` seconds (through the environment's proxy,
    if any); None if it answers, whatever the status. One request, no retries; the name lookup counts
    against the timeout too (a resolver without a route can hang far longer). A TCP connect alone is not
    enough: some firewalls accept every connection and never answer."""
    outcome: list[str | None] = []

    def request() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            outcome.append(None)
        except urllib.error.HTTPError:  # the server answered
            outcome.append(None)
        except (urllib.error.URLError, OSError) as error:
            cause = getattr(error, "reason", error)
            answered = isinstance(cause, ssl.SSLCertVerificationError)  # a server showed its certificate
            outcome.append(None if answered else str(cause or type(cause).__name__))

    probe = threading.Thread(target=request, name="weights-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def _hub_offline() -> bool:
    return hf_constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def unavailable_message(source: WeightsSource, reason: str) -> str:
    """The error text: which weights, why not, and the ways forward."""
    out = f"weights/{source.name}.safetensors"
    lines = [
        f"Cannot load the pretrained weights of {source.describe()}.",
        f"They are not in the local cache ({hf_constants.HF_HUB_CACHE if source.hf_hub_id else get_cache_dir()}) "
        f"and {reason}.",
        "Ways forward:",
        "  1. Use a local weights file:  model.backbone.checkpoint=/path/to/file  (.safetensors/.pth/.bin);",
        "     make one on a machine with internet with",
        f"       python scripts/fetch_weights.py model.backbone.name={source.name} output={out}",
        "     and copy the file here.",
    ]
    if source.hf_hub_id:
        lines += [
            "  2. Or fill the Hugging Face cache on a machine with internet:",
            f"       hf download {source.hf_hub_id} {source.filenames[0]}"
            + (f" --revision {source.revision}" if source.revision else "")
            + "   (older huggingface_hub: huggingface-cli download ...)",
            "     then copy its HF_HOME (default ~/.cache/huggingface) here, or point HF_HOME at the copy;",
            "     cached weights load with no network call.",
        ]
    lines.append("  3. Or use random weights (their features carry no knowledge; demos only): "
                 "model.backbone.pretrained=false")
    return "\n".join(lines)


def pretrained_source(name: str) -> dict[str, Any]:
    """Decides where `timm.create_model(name, pretrained=True)` gets its weights, without waiting on a network.

    Args:
        name: a timm model name.

    Returns:
        The `pretrained_cfg_overlay` to pass to timm: `{"file": <cached path>, ...}` when the weights are
        in the local cache (loaded with no network call), `{}` when timm may download them itself (or
        has no weights to load, which timm reports).

    Raises:
        PretrainedWeightsUnavailable: the weights are not cached and `HF_HUB_OFFLINE` is set or their
            server does not answer within a few seconds; the message says what to do.
    """
    source = weights_source(name)
    if source is None:
        return {}
    cached = cached_weights_file(source)
    if cached is not None:
        return file_overlay(cached)
    endpoint = hf_constants.ENDPOINT if source.hf_hub_id else str(source.url)
    if source.hf_hub_id and _hub_offline():
        reason = "HF_HUB_OFFLINE is set, so the hub is not asked"
    else:
        reason = unreachable_reason(endpoint)
        reason = reason and f"{endpoint} is unreachable from this machine ({reason})"
    if reason:
        raise PretrainedWeightsUnavailable(unavailable_message(source, reason))
    return {}


def file_overlay(path: str | Path) -> dict[str, Any]:
    """The `pretrained_cfg_overlay` that makes timm load its pretrained weights from the file `path`.

    timm's cfgs of JAX-trained ViTs (e.g. `*.augreg_in21k`) mark their original `.npz` as a custom load;
    any other file is a state dict, which timm's generic loader adapts (head dropped, position
    embedding resampled).
    """
    return {"file": str(path), "custom_load": str(path).endswith(".npz")}
