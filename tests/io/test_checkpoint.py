"""gliomagen.io.checkpoint: atomic saves, the last K kept, best.pt, safe loading, RNG states."""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gliomagen
from gliomagen.errors import GliomagenError
from gliomagen.io import checkpoint as ck
from gliomagen.io.atomic import atomic_path
from gliomagen.io.checkpoint import (
    BEST_NAME,
    CHECKPOINT_DIR,
    FORMAT_VERSION,
    WriteError,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    load_resumable,
    remove_partial_writes,
    resolve_checkpoint,
    rng_state,
    save_best,
    save_checkpoint,
    set_aside,
    set_rng_state,
)


def _state(step: int) -> dict:
    return {"format_version": FORMAT_VERSION, "step": step, "w": torch.full((3,), float(step))}


def test_save_keeps_the_last_k_and_never_best(tmp_path: Path) -> None:
    save_best(_state(1), tmp_path)
    for step in (1, 2, 10, 3):
        path = save_checkpoint(_state(step), tmp_path, keep=2)
        assert path == checkpoint_path(tmp_path, step) and path.name == f"step-{step:07d}.pt"
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000003.pt", "step-0000010.pt"]
    assert (tmp_path / CHECKPOINT_DIR / BEST_NAME).is_file()  # never pruned
    assert not list((tmp_path / CHECKPOINT_DIR).glob(".*"))  # no temp files left
    assert load_checkpoint(tmp_path)["step"] == 10  # a run folder: its newest checkpoint
    assert load_checkpoint(tmp_path / CHECKPOINT_DIR / BEST_NAME)["step"] == 1


def test_keep_zero_keeps_everything(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        save_checkpoint(_state(step), tmp_path, keep=0)
    assert len(list_checkpoints(tmp_path)) == 3


def test_a_failed_save_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(_state(5), tmp_path)

    def broken_write(path: Path, data: bytes) -> Path:
        with atomic_path(path) as tmp:  # half of it reaches the disk
            tmp.write_bytes(data[: len(data) // 2])
            raise OSError("disk full")

    monkeypatch.setattr(ck, "write_bytes", broken_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({**_state(5), "w": torch.zeros(3)}, tmp_path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["w"], torch.full((3,), 5.0))
    assert [p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir()] == [path.name]


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO])
def test_failed_checkpoint_writes_are_one_line_write_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    """The bytes are made in memory (torch's file writer would hide the errno in a RuntimeError),
    so a failed file write keeps its errno and names the checkpoint; the older one is kept."""
    save_checkpoint(_state(1), tmp_path)

    def disk_fails(path: Path, data: bytes) -> Path:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data[:4])
            raise OSError(err, os.strerror(err))

    monkeypatch.setattr(ck, "write_bytes", disk_fails)
    with pytest.raises(WriteError) as info:
        save_checkpoint(_state(2), tmp_path)
    path = checkpoint_path(tmp_path, 2)
    assert str(info.value) == f"{path}: {os.strerror(err)}"
    assert isinstance(info.value, OSError) and isinstance(info.value, GliomagenError)
    assert info.value.errno == err
    assert [p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir()] == ["step-0000001.pt"]


def test_save_torch_writes_what_torch_load_reads(tmp_path: Path) -> None:
    state = {"w": torch.arange(6.0).reshape(2, 3), "step": 3}
    path = ck.save_torch(state, tmp_path / "x.pt")
    back = torch.load(path, weights_only=True)
    assert back["step"] == 3 and torch.equal(back["w"], state["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_load_resumable_skips_unreadable_newer_checkpoints(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        save_checkpoint(_state(step), tmp_path, keep=0)
    for step in (2, 3):
        checkpoint_path(tmp_path, step).write_bytes(b"truncated")
    ckpt, path, bad = load_resumable(tmp_path)
    assert ckpt["step"] == 1 and path == checkpoint_path(tmp_path, 1)
    assert [p for p, _ in bad] == [checkpoint_path(tmp_path, 3), checkpoint_path(tmp_path, 2)]
    assert "not a readable gliomagen checkpoint" in bad[0][1]
    kept = set_aside(bad[0][0])
    assert kept.name == "step-0000003.pt.unreadable" and kept.read_bytes() == b"truncated"
    assert checkpoint_path(tmp_path, 3) not in list_checkpoints(tmp_path)
    checkpoint_path(tmp_path, 1).write_bytes(b"truncated")
    with pytest.raises(GliomagenError, match="no readable checkpoint in .*step-0000002.pt"):
        load_resumable(tmp_path)
    with pytest.raises(GliomagenError, match="no checkpoints"):
        load_resumable(tmp_path / "empty")


def test_remove_partial_writes_takes_only_temporary_files(tmp_path: Path) -> None:
    save_checkpoint(_state(1), tmp_path)
    folder = tmp_path / CHECKPOINT_DIR
    (folder / ".step-0000002.pt.x1y2z3.tmp").write_bytes(b"half")
    (folder / "mine.tmp").write_bytes(b"a user's file")
    assert [p.name for p in remove_partial_writes(folder)] == [".step-0000002.pt.x1y2z3.tmp"]
    assert sorted(p.name for p in folder.iterdir()) == ["mine.tmp", "step-0000001.pt"]
    assert remove_partial_writes(tmp_path / "missing") == []


def test_resolve_checkpoint_file_run_folder_and_checkpoints_folder(tmp_path: Path) -> None:
    save_checkpoint(_state(1), tmp_path)
    newest = save_checkpoint(_state(2), tmp_path)
    assert resolve_checkpoint(newest) == newest
    assert resolve_checkpoint(tmp_path) == newest
    assert resolve_checkpoint(tmp_path / CHECKPOINT_DIR) == newest
    (tmp_path / "empty").mkdir()
    with pytest.raises(GliomagenError, match="no checkpoints"):
        resolve_checkpoint(tmp_path / "empty")
    with pytest.raises(GliomagenError, match="checkpoint or run folder not found"):
        resolve_checkpoint(tmp_path / "missing")


def test_weights_only_load_refuses_pickled_objects(tmp_path: Path) -> None:
    bad = tmp_path / "checkpoints" / "step-0000001.pt"
    bad.parent.mkdir(parents=True)
    torch.save({"format_version": 1, "obj": argparse.Namespace(x=1)}, bad)
    with pytest.raises(GliomagenError, match="not a readable gliomagen checkpoint"):
        load_checkpoint(tmp_path)
    torch.save({"format_version": 99}, bad)
    with pytest.raises(GliomagenError, match="newer than this gliomagen"):
        load_checkpoint(bad)


def test_foreign_and_truncated_files_are_one_line_errors(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(GliomagenError, match="no format_version"):
        load_checkpoint(foreign)
    good = save_checkpoint(_state(1), tmp_path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(GliomagenError, match="not a readable gliomagen checkpoint"):
        load_checkpoint(truncated)


def test_rng_state_survives_a_weights_only_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # a cached Gaussian in numpy's state
    save_checkpoint({**_state(1), "rng": rng_state()}, tmp_path)
    expected = (torch.rand(4), np.random.standard_normal(4), [random.random() for _ in range(4)])
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    set_rng_state(load_checkpoint(tmp_path)["rng"])
    got = (torch.rand(4), np.random.standard_normal(4), [random.random() for _ in range(4)])
    assert torch.equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]


def test_io_imports_no_higher_layer() -> None:
    src = str(Path(gliomagen.__file__).resolve().parents[1])  # this checkout, not an installed one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    code = (
        "import json, sys, gliomagen.io, gliomagen.io.atomic, gliomagen.io.checkpoint, "
        "gliomagen.io.device; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('gliomagen.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    loaded = json.loads(out.stdout)
    assert all(m.split(".")[1] in ("io", "errors") for m in loaded), loaded
