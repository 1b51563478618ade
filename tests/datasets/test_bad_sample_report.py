"""BadSampleReport: what reaches metrics.json from the batches' skip records, per split, over DDP ranks and resumes."""

from __future__ import annotations

import logging
import multiprocessing
import socket
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
import torch.distributed as dist

from vitadapter.data.bad_samples import SKIPPED, BadSampleError, SkippedFile
from vitadapter.data.bad_samples.bad_sample_report import BadSampleReport

TRUNCATED = "cannot decode the image: image file is truncated"


def seg_batch(names: list[str], *skipped: SkippedFile) -> dict[str, Any]:
    """An evaluation batch as CollateWithSkips builds it (the images themselves do not matter here)."""
    return {"image": [torch.zeros(3, 4, 4) for _ in names], "mask": [torch.zeros(4, 4) for _ in names],
            "name": names, SKIPPED: list(skipped)}


def validate(report: BadSampleReport, trainer: Any, *batches: dict[str, Any]) -> None:
    """Runs the report's hooks of one validation epoch over `batches`, as Lightning calls them."""
    report.on_validation_epoch_start(trainer, None)
    for index, batch in enumerate(batches):
        report.on_validation_batch_start(trainer, None, batch, index)
    report.on_validation_epoch_end(trainer, None)


@pytest.fixture()
def trainer() -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)


def test_training_files_accumulate_warn_once_and_survive_a_checkpoint(trainer: L.Trainer,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    report = BadSampleReport()
    a, b = SkippedFile("/d/a.jpg", TRUNCATED), SkippedFile("/d/b.png", "size mismatch")
    with caplog.at_level(logging.WARNING, logger="vitadapter.data.bad_samples.bad_sample_report"):
        for index, batch in enumerate([seg_batch(["x", "y"], a), seg_batch(["x", "z"], a, b), seg_batch(["w"])]):
            report.on_train_batch_start(trainer, None, batch, index)
    assert [r.getMessage() for r in caplog.records] == [f"skipped bad training file /d/a.jpg: {TRUNCATED}",
                                                        "skipped bad training file /d/b.png: size mismatch"]
    resumed = BadSampleReport()
    resumed.load_state_dict(report.state_dict())
    expected = {"data/skipped_train": 2, "data/skipped_train_files": {"/d/a.jpg": TRUNCATED, "/d/b.png": "size mismatch"}}
    assert {k: resumed.metrics()[k] for k in expected} == expected
    assert not {"data/skipped_train", "data/skipped_train_files"} & set(resumed.metrics(training=False))


def test_validation_counts_scored_images_per_validation_and_refuses_to_score_nothing(trainer: L.Trainer) -> None:
    report = BadSampleReport()
    c, d = SkippedFile("/d/c.jpg", TRUNCATED), SkippedFile("/d/d.jpg", TRUNCATED)
    validate(report, trainer, seg_batch(["v1", "v3"], c), seg_batch([], d), seg_batch(["v5"]))
    assert report.metrics(training=False) == {"val/num_images": 3, "data/skipped_val": 2,
                                              "data/skipped_val_files": {"/d/c.jpg": TRUNCATED, "/d/d.jpg": TRUNCATED}}
    validate(report, trainer, seg_batch(["v1", "v2"]))  # the next validation reports its own
    assert report.metrics(training=False) == {"val/num_images": 2, "data/skipped_val": 0, "data/skipped_val_files": {}}
    with pytest.raises(BadSampleError, match=r"every validation image was skipped as bad \(2 file\(s\), e\.g\. /d/c\.jpg"):
        validate(report, trainer, seg_batch([], c), {"images": [], "image_ids": [], SKIPPED: [d]})


def _rank(rank: int, port: int, results: Any) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        trainer = SimpleNamespace(sanity_checking=False, is_global_zero=rank == 0)
        report = BadSampleReport()
        own = SkippedFile(f"/d/rank{rank}.jpg", TRUNCATED)
        report.on_train_batch_start(trainer, None, seg_batch(["t"], own), 0)
        validate(report, trainer, seg_batch(["v"] * (rank + 1), own))
        results.put((rank, report.state_dict(), report.metrics()))
    finally:
        dist.destroy_process_group()


def test_two_ranks_report_the_union_of_their_files_and_the_sum_of_their_images() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_rank, args=(rank, port, results)) for rank in range(2)]
    for process in processes:
        process.start()
    outcome = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    both = {"/d/rank0.jpg": TRUNCATED, "/d/rank1.jpg": TRUNCATED}
    assert sorted(rank for rank, _, _ in outcome) == [0, 1]
    for _, state, metrics in outcome:  # rank 0's state is the one Lightning writes
        assert state == {"train_files": both}
        assert metrics == {"val/num_images": 3, "data/skipped_val": 2, "data/skipped_val_files": both,
                           "data/skipped_train": 2, "data/skipped_train_files": both}
