"""A full disk is one `error: <path>: <reason>` line (exit 2), and nothing is left half written.

Through the CLI: a checkpoint whose ``torch.save`` fails with ENOSPC (monkeypatched), and a run
folder on a real, small tmpfs that fills up (skipped where mounting is not allowed).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.io import checkpoint as ck
from gliomagen.io.atomic import atomic_path
from gliomagen.io.checkpoint import list_checkpoints, load_checkpoint

TINY = ["data.size=null", "model.z_dim=8", "model.w_dim=16", "model.mapping_layers=2",
        "model.cond_embed_dim=8", "model.g_channels=4", "model.g_max_channels=8",
        "model.d_channels=4", "model.d_max_channels=8", "train.threads=1",
        "train.w_avg_samples=16", "train.samples_per_condition=1", "train.sample_every=2",
        "train.log_every=1", "train.checkpoint_every=2"]  # fmt: skip
NO_SPACE = os.strerror(errno.ENOSPC)


def _train(store: Path, run: Path, steps: int, *extra: str):  # noqa: ANN202
    sets = [a for s in [*TINY, f"train.steps={steps}"] for a in ("--set", s)]
    preset = [] if "--resume" in extra else ["--preset", "demo-cpu"]
    return CliRunner().invoke(
        app, ["train", str(store), "--run", str(run), *preset, "--quiet", *sets, *extra]
    )


def _error_line(res) -> str:  # noqa: ANN001
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, OSError), res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], res.output
    return errors[0]


def _nothing_half_written(run: Path) -> None:
    left = [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert not left, f"half-written files left: {left}"
    for p in list_checkpoints(run):  # every checkpoint on disk is whole
        load_checkpoint(p)


def test_enospc_on_a_checkpoint_is_one_line_and_keeps_the_previous(
    tmp_path: Path, disk_store, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    store, run = disk_store(tmp_path / "store", n=6), tmp_path / "run"
    real_write = ck.write_bytes

    def full_at_step_4(path: Path, data: bytes) -> Path:
        if Path(path).name == "step-0000004.pt":
            with atomic_path(path) as tmp:  # the first bytes reach the disk, then it is full
                tmp.write_bytes(data[:15])
                raise OSError(errno.ENOSPC, NO_SPACE)
        return real_write(path, data)

    monkeypatch.setattr(ck, "write_bytes", full_at_step_4)
    line = _error_line(_train(store, run, 6))
    assert line == f"error: {run / 'checkpoints' / 'step-0000004.pt'}: {NO_SPACE}"
    assert [p.name for p in list_checkpoints(run)] == ["step-0000002.pt"]
    _nothing_half_written(run)
    assert load_checkpoint(run)["step"] == 2


@pytest.fixture
def small_tmpfs(tmpfs: Callable[[str], Path]) -> Path:
    """A 4m tmpfs (a real full disk; skipped where mounting is not allowed)."""
    return tmpfs("4m")


@pytest.mark.parametrize("slack_kib", [0, 4, 24])  # measured: the TensorBoard file, config.yaml,
# the checkpoint fail first
def test_a_real_full_disk_is_one_line_and_resumes_after(
    slack_kib: int, tmp_path: Path, disk_store, small_tmpfs: Path  # noqa: ANN001
) -> None:
    store, run = disk_store(tmp_path / "store", n=6), small_tmpfs / "run"
    assert _train(store, run, 2).exit_code == 0
    filler = small_tmpfs / "filler"
    free = os.statvfs(small_tmpfs).f_bavail * os.statvfs(small_tmpfs).f_frsize
    with open(filler, "wb") as fh:  # leave a few kilobytes: the next checkpoint cannot fit
        fh.write(b"\0" * max(0, free - slack_kib * 1024))
    line = _error_line(_train(store, run, 6, "--resume"))
    assert line.startswith(f"error: {run}") and line.endswith(f": {NO_SPACE}"), line
    _nothing_half_written(run)
    assert load_checkpoint(run)["step"] == 2
    assert all(p.stat().st_size > 0 for p in (run / "tensorboard").iterdir())  # no empty files
    filler.unlink()  # space again: the run goes on from its last checkpoint
    res = _train(store, run, 4, "--resume")
    assert res.exit_code == 0, res.output
    assert load_checkpoint(run)["step"] == 4
