"""Pretrained weights without internet: loaded from the local Hugging Face cache with no network call, or a
prompt error that names the weights and what to do; scripts/fetch_weights.py saves them for
`model.backbone.checkpoint=`."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants as hf_constants
from safetensors.torch import save_file

from tests.helpers import ROOT
from vitadapter.backbone import create_timm_vit, state_fingerprint
from vitadapter.backbone.weights import PretrainedWeightsUnavailable, pretrained_source

AUGREG = "vit_base_patch16_224.augreg_in21k"  # the configs' default; its timm cfg marks an .npz custom load
TINY = {"depth": 1, "embed_dim": 32, "num_heads": 2}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, torch.Tensor]]:
    """An empty Hugging Face cache in tmp (HF_HOME for subprocesses); calling it writes a timm model's random
    weights there in the hub's layout and returns them."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))

    def write(name: str, seed: int = 7, **kwargs: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        state = {k: v.contiguous() for k, v in timm.create_model(name, **kwargs).state_dict().items()}
        repo = timm.get_pretrained_cfg(name).hf_hub_id
        folder = tmp_path / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
        (folder / "snapshots" / "0123abcd").mkdir(parents=True)
        (folder / "refs").mkdir()
        (folder / "refs" / "main").write_text("0123abcd")
        save_file(state, str(folder / "snapshots" / "0123abcd" / "model.safetensors"))
        return state

    return write


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any name lookup or connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network call {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_cached_hub_weights_load_with_no_network(hub_cache: Callable[..., dict], no_network: None) -> None:
    cached = hub_cache(AUGREG, **TINY)
    vit = create_timm_vit(AUGREG, pretrained=True, model_kwargs=TINY)
    loaded = vit.state_dict()
    assert set(loaded) == set(cached) - {"head.weight", "head.bias"}  # headless (num_classes=0)
    assert all(torch.equal(loaded[k], cached[k]) for k in loaded)


@pytest.mark.parametrize("server", ["none", "silent"])  # connection refused / accepted but never answered
def test_uncached_weights_without_network_fail_within_seconds(hub_cache: Callable[..., dict], server: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    if server == "silent":
        silent.listen()
    url = f"http://127.0.0.1:{silent.getsockname()[1] if server == 'silent' else _closed_port()}"
    monkeypatch.setattr(hf_constants, "ENDPOINT", url)
    connects: list[object] = []
    connect = socket.socket.connect

    def counted_connect(sock: socket.socket, address: object) -> None:
        connects.append(address)
        connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", counted_connect)
    with pytest.raises(PretrainedWeightsUnavailable) as error:
        create_timm_vit(AUGREG, pretrained=True, model_kwargs=TINY)
    assert len(connects) == 1  # one probe with a 3 s timeout, never the hub's retries (about 70 s)
    message = str(error.value)
    assert f"timm model {AUGREG!r}: Hugging Face hub timm/{AUGREG}, file model.safetensors" in message
    assert f"{url} is unreachable" in message
    assert "model.backbone.checkpoint=/path/to/file" in message
    fetch = f"python scripts/fetch_weights.py model.backbone.name={AUGREG} output=weights/{AUGREG}.safetensors"
    assert fetch in message
    assert f"hf download timm/{AUGREG} model.safetensors" in message
    silent.close()


def test_hub_offline_mode_fails_without_probing(hub_cache: Callable[..., dict], no_network: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedWeightsUnavailable, match="HF_HUB_OFFLINE is set"):
        pretrained_source("test_vit")


def test_reachable_hub_is_left_to_timm(hub_cache: Callable[..., dict], monkeypatch: pytest.MonkeyPatch) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers 501
    threading.Thread(target=server.handle_request, daemon=True).start()
    monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    assert pretrained_source("test_vit") == {}  # not cached, but the hub answers: timm downloads
    server.server_close()


def test_fetch_weights_saves_a_checkpoint_that_builds_the_same_weights(tmp_path: Path,
                                                                       hub_cache: Callable[..., dict]) -> None:
    cached = hub_cache("test_vit", seed=3)
    output = tmp_path / "out" / "test_vit.safetensors"
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_weights.py"), "model.backbone.name=test_vit",
                           f"output={output}"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"model.backbone.checkpoint={output.resolve()}" in proc.stdout
    from_file = create_timm_vit("test_vit", checkpoint=str(output))
    from_cache = create_timm_vit("test_vit", pretrained=True)
    assert state_fingerprint(from_file) == state_fingerprint(from_cache)
    assert torch.equal(from_file.state_dict()["blocks.0.attn.qkv.weight"], cached["blocks.0.attn.qkv.weight"])
