"""Which checkpoint a run resumes: ckpt_path=last finds the run directory's last.ckpt; a requeued SLURM job its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitadapter.run.resume import resume_checkpoint


def test_last_and_a_requeued_slurm_job_resume_from_the_run_directory(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """(The CLI path, ckpt_path=last with hydra.run.dir, runs in test_exact_resume.)"""
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"checkpoint")
    assert resume_checkpoint("last", tmp_path) == str(last)
    assert resume_checkpoint(None, tmp_path) is None  # a fresh run over an old directory does not resume
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # set by SLURM in a requeued job
    assert resume_checkpoint(None, tmp_path) == str(last)
    last.unlink()
    assert resume_checkpoint(None, tmp_path) is None  # requeued before its first checkpoint: starts at step 0


def test_last_without_a_checkpoint_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=last: .*checkpoints/last.ckpt does not exist"):
        resume_checkpoint("last", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ckpt_path='nowhere.ckpt' does not exist"):
        resume_checkpoint("nowhere.ckpt", tmp_path)
    assert resume_checkpoint(None, tmp_path) is None
