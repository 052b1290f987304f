"""`train --resume` checks the store against the run's: content fingerprint, conditions, grid.

Also: a failed resume writes nothing (no TensorBoard file, no log line), an unreadable newest
checkpoint is skipped for the previous readable one (and kept aside), an old checkpoint without a
fingerprint resumes with one warning.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.data.fingerprint import dataset_fingerprint, store_fingerprint
from gliomagen.data.store import open_store
from gliomagen.io.checkpoint import list_checkpoints, load_checkpoint

TINY = ["data.size=null", "model.z_dim=8", "model.w_dim=16", "model.mapping_layers=2",
        "model.cond_embed_dim=8", "model.g_channels=4", "model.g_max_channels=8",
        "model.d_channels=4", "model.d_max_channels=8", "train.threads=1",
        "train.w_avg_samples=16", "train.samples_per_condition=1", "train.sample_every=1000",
        "train.log_every=1", "train.checkpoint_every=2"]  # fmt: skip


def _train(store: Path, run: Path, steps: int, *extra: str) -> object:
    sets = [a for s in [*TINY, f"train.steps={steps}"] for a in ("--set", s)]
    preset = [] if "--resume" in extra else ["--preset", "demo-cpu"]
    return CliRunner().invoke(
        app, ["train", str(store), "--run", str(run), *preset, "--quiet", *sets, *extra]
    )


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: ``{relative path: (size, mtime_ns)}``."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_error_line(res: object, exit_code: int = 2) -> str:
    assert res.exit_code == exit_code, res.output  # type: ignore[attr-defined]
    assert "Traceback" not in res.output  # type: ignore[attr-defined]
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]  # type: ignore[attr-defined]
    assert len(lines) == 1, res.output  # type: ignore[attr-defined]
    return lines[0]


@pytest.fixture
def stores(tmp_path: Path, disk_store):  # noqa: ANN001, ANN201
    """``(A, relabelled A, A without the cohort condition)``: same cases and grid."""
    a = disk_store(tmp_path / "A", n=6)
    b = disk_store(tmp_path / "B", n=6, grades=["LGG", "HGG"] * 3)  # same shape, other labels
    c = disk_store(tmp_path / "C", n=6, drop_condition="cohort")  # another schema
    return a, b, c


def test_fingerprint_is_content_not_place(tmp_path: Path, stores) -> None:  # noqa: ANN001
    a, b, c = stores
    fp = store_fingerprint(a)
    assert fp.startswith("sha256:") and len({fp, store_fingerprint(b), store_fingerprint(c)}) == 3
    moved = tmp_path / "elsewhere" / "A"
    shutil.copytree(a, moved)
    text = (moved / "index.csv").read_text().replace(str(a), "/somewhere/else")  # *_path columns
    (moved / "index.csv").write_text(text)
    os.utime(moved / "images.npy", (0, 0))
    assert store_fingerprint(moved) == fp
    assert dataset_fingerprint(open_store(moved, split="train")) == fp  # any split: the folder's
    with open(moved / "images.npy", "ab") as fh:  # the arrays' sizes count (no voxel is read)
        fh.write(b"\0" * 16)
    assert store_fingerprint(moved) != fp


def test_resume_refuses_another_store_in_one_line_and_writes_nothing(
    tmp_path: Path, stores  # noqa: ANN001
) -> None:
    a, b, c = stores
    run = tmp_path / "run"
    assert _train(a, run, 2).exit_code == 0  # type: ignore[attr-defined]
    before = _files(run)
    for other in (b, c):  # other labels, same shape; another schema
        res = _train(other, run, 4, "--resume")
        assert _files(run) == before  # no TensorBoard file, no log line, no config.yaml rewrite
        line = _one_error_line(res)
        assert str(a) in line and str(other) in line and "--allow-other-store" in line
    assert load_checkpoint(run)["store"] == {"path": str(a), "fingerprint": store_fingerprint(a)}


def test_allow_other_store_continues_and_logs_the_change(tmp_path: Path, stores) -> None:  # noqa: ANN001
    a, b, c = stores
    run = tmp_path / "run"
    assert _train(a, run, 2).exit_code == 0  # type: ignore[attr-defined]
    res = _train(b, run, 4, "--resume", "--allow-other-store")
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    assert "store changed on resume (--allow-other-store)" in (run / "log.txt").read_text()
    assert load_checkpoint(run)["store"]["fingerprint"] == store_fingerprint(b)
    # another schema cannot continue even when allowed: one line, not a traceback
    line = _one_error_line(_train(c, run, 6, "--resume", "--allow-other-store"))
    assert "has the conditions grade [HGG, LGG]; wt_volume_ml, the run trained on cohort" in line
    assert str(c) in line


def test_checkpoint_without_fingerprint_resumes_with_one_warning(
    tmp_path: Path, stores  # noqa: ANN001
) -> None:
    a, _, _ = stores
    run = tmp_path / "run"
    assert _train(a, run, 2).exit_code == 0  # type: ignore[attr-defined]
    path = list_checkpoints(run)[-1]
    old = torch.load(path, weights_only=True)
    del old["store"]  # as gliomagen wrote it before fingerprints
    torch.save(old, path)
    res = _train(a, run, 4, "--resume")
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]  # type: ignore[attr-defined]
    assert len(warnings) == 1 and "fingerprint" in warnings[0] and str(a) in warnings[0]
    assert load_checkpoint(run)["step"] == 4


def test_unreadable_newest_checkpoint_falls_back_and_is_kept(
    tmp_path: Path, stores  # noqa: ANN001
) -> None:
    a, _, _ = stores
    run, full = tmp_path / "run", tmp_path / "full"
    assert _train(a, full, 6).exit_code == 0  # type: ignore[attr-defined]
    assert _train(a, run, 4).exit_code == 0  # type: ignore[attr-defined]
    newest = list_checkpoints(run)[-1]
    assert newest.name == "step-0000004.pt"
    truncated = newest.read_bytes()[:1000]
    newest.write_bytes(truncated)
    res = _train(a, run, 6, "--resume")
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]  # type: ignore[attr-defined]
    assert len(warnings) == 1 and str(newest) in warnings[0] and "step-0000002.pt" in warnings[0]
    kept = newest.with_name("step-0000004.pt.unreadable")
    assert kept.read_bytes() == truncated  # kept, not deleted
    assert "resumed from step 2" in (run / "log.txt").read_text()
    a_ckpt, b_ckpt = load_checkpoint(full), load_checkpoint(run)
    for key in ("G", "G_ema", "D"):
        for k, v in a_ckpt[key].items():
            assert torch.equal(v, b_ckpt[key][k]), f"{key}.{k}"


def test_no_readable_checkpoint_is_one_line_and_writes_nothing(
    tmp_path: Path, stores  # noqa: ANN001
) -> None:
    a, _, _ = stores
    run = tmp_path / "run"
    assert _train(a, run, 4).exit_code == 0  # type: ignore[attr-defined]
    for p in list_checkpoints(run):
        p.write_bytes(b"garbage")
    before = _files(run)
    res = _train(a, run, 6, "--resume")
    assert _files(run) == before  # no empty TensorBoard file
    line = _one_error_line(res)
    assert "no readable checkpoint" in line and "step-0000004.pt" in line
