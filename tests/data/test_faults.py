"""Nothing lost, nothing half-written: ``prepare --out`` never replaces what gliomagen did not
write, nor a folder in or around the inputs; a damaged store is an error naming the file (and
rebuilt by ``prepare``); a failed write (a full disk) is one line and keeps the old store.

Tables (manifests, ``--labels``, ``index.csv``) are in ``test_faults_tables.py``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from data_cli import one_error, run
from synth_brats import Synth

from gliomagen.data.store import open_store
from gliomagen.errors import GliomagenError


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (links not followed) with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """Three BraTS 2023 cases (two GLI, one SSA) in ``tmp_path/cohort``."""
    for i, c in enumerate(["GLI", "GLI", "SSA"]):
        Synth.case(tmp_path / "cohort", f"BraTS-{c}-{i:05d}-000", seed=i)
    return tmp_path / "cohort"


@pytest.fixture
def store(cohort: Path, tmp_path: Path) -> Path:
    out = tmp_path / "S"
    code, _, stderr = run("prepare", cohort, "--out", out, "--size", "16", "--qc", "1")
    assert code == 0, stderr
    return out


def prepare_again(cohort: Path, out: Path, *more: str | Path) -> tuple[int, str, str]:
    """Prepare with another seed, so that an existing store at ``out`` would be rebuilt."""
    return run("prepare", cohort, "--out", out, "--size", "16", "--qc", "1", "--seed", "1", *more)


# -- defect 1: --out replaces only a store gliomagen wrote ------------------------------------
@pytest.mark.parametrize("as_input", [True, False], ids=["same-folder", "other-input"])
def test_a_raw_cohort_holding_a_meta_json_is_never_replaced(
    cohort: Path, tmp_path: Path, as_input: bool
) -> None:
    (cohort / "meta.json").write_text('{"site": "Lagos", "scanner": "1.5T"}')
    before = tree(cohort)
    other = tmp_path / "other"
    Synth.case(other, "BraTS-GLI-00009-000", seed=9)
    code, _, stderr = run("prepare", cohort if as_input else other, "--out", cohort, "--size", "16")
    why = f"is the input folder {cohort.resolve()}" if as_input else "is not a gliomagen store"
    one_error(code, stderr, f"--out {cohort}: {why}")
    assert tree(cohort) == before and not list(tmp_path.glob(".cohort.*"))


OTHER_OUTPUTS = {
    "generate": {"manifest.json": b"{}", "clinical.csv": b"case_id\nSYN-00000\n",
                 "SYN-00000/SYN-00000-t1n.nii.gz": b"\x1f\x8b synthetic"},
    "evaluate": {"metrics.json": b"{}", "index.html": b"<html>", "figures/fid.png": b"\x89PNG"},
    "train": {"config.yaml": b"model: {}\n", "log.txt": b"step 10\n",
              "checkpoints/step-000010.pt": b"weights"},
    "user": {"notes.txt": b"scanner changed on 2023-04-01"},
}  # fmt: skip


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "made-before-markers"])
@pytest.mark.parametrize("kind", sorted(OTHER_OUTPUTS))
def test_files_other_commands_or_users_put_in_a_store_are_kept(
    cohort: Path, store: Path, kind: str, sealed: bool
) -> None:
    if not sealed:
        (store / ".gliomagen-store").unlink(missing_ok=True)  # as a store made by older code
    for name, data in OTHER_OUTPUTS[kind].items():
        (store / name).parent.mkdir(parents=True, exist_ok=True)
        (store / name).write_bytes(data)
    before = tree(store)
    code, _, stderr = prepare_again(cohort, store)
    one_error(
        code, stderr, f"--out {store}:", "holds files gliomagen did not write", "not overwriting it"
    )
    assert tree(store) == before


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "made-before-markers"])
def test_a_store_gliomagen_wrote_is_replaced(cohort: Path, store: Path, sealed: bool) -> None:
    if not sealed:
        (store / ".gliomagen-store").unlink(missing_ok=True)
    (store / ".DS_Store").write_bytes(b"finder")  # a file browser's clutter does not count
    code, _, stderr = prepare_again(cohort, store)
    assert code == 0, stderr
    assert open_store(store).meta["options"]["seed"] == 1 and (store / ".gliomagen-store").is_file()


def test_an_up_to_date_store_is_left_alone_whatever_else_it_holds(
    cohort: Path, store: Path
) -> None:
    (store / "notes.txt").write_text("mine")
    code, _, stderr = run("prepare", cohort, "--out", store, "--size", "16", "--qc", "1")
    assert code == 0 and "up to date with its inputs; nothing to do" in stderr, stderr
    assert (store / "notes.txt").read_text() == "mine"


def test_out_inside_an_input_is_refused(cohort: Path) -> None:
    code, _, stderr = run("prepare", cohort, "--out", cohort / "store", "--size", "16")
    one_error(
        code, stderr, f"--out {cohort / 'store'}: is inside the input folder {cohort.resolve()}"
    )
    assert not (cohort / "store").exists() and not list(cohort.glob(".store.*"))


def test_out_holding_an_input_is_refused(cohort: Path, store: Path) -> None:
    shutil.copytree(cohort, store / "cohort")  # the inputs moved into the store folder
    before = tree(store)
    code, _, stderr = prepare_again(store / "cohort", store)
    one_error(code, stderr, f"--out {store}: holds the input folder {(store / 'cohort').resolve()}")
    assert tree(store) == before


@pytest.mark.parametrize("target", ["cohort", "cohort/derived"])
def test_out_through_a_link_into_an_input_is_refused(
    cohort: Path, tmp_path: Path, target: str
) -> None:
    (tmp_path / "cohort" / "derived").mkdir()
    link = tmp_path / "elsewhere" / "S"
    link.parent.mkdir()
    link.symlink_to(tmp_path / target)
    before = tree(cohort)
    code, _, stderr = run("prepare", cohort, "--out", link, "--size", "16")
    one_error(code, stderr, f"--out {link}:")
    assert "input folder" in stderr or "not a gliomagen store" in stderr
    assert tree(cohort) == before and link.is_symlink()


def test_out_equal_to_the_folder_of_an_input_table_is_refused(cohort: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"  # labels and a meta.json of the user's own
    project.mkdir()
    (project / "clinical.csv").write_text("case_id,age\nBraTS-GLI-00000-000,61\n")
    (project / "meta.json").write_text('{"format_version": 1, "schema": {}}')
    before = tree(project)
    code, _, stderr = run(
        "prepare", cohort, "--labels", project / "clinical.csv", "--out", project, "--size", "16"
    )
    one_error(code, stderr, f"--out {project}:")
    assert tree(project) == before


def test_an_old_store_set_aside_by_a_killed_run_is_put_back(
    cohort: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    aside = store.parent / f".S.old-{int(dead.stdout)}"  # killed between its two renames
    before = tree(store)
    store.rename(aside)
    _full_disk(monkeypatch)
    code, _, stderr = prepare_again(cohort, store)
    one_error(code, stderr, "No space left on device")
    assert tree(store) == before and not aside.exists()


# -- defect 6: a damaged store is an error naming the file; prepare rebuilds it ---------------
@pytest.mark.parametrize("name", ["images.npy", "masks.npy"])
def test_a_truncated_array_is_reported_and_rebuilt(cohort: Path, store: Path, name: str) -> None:
    os.truncate(store / name, (store / name).stat().st_size - 1000)
    with pytest.raises(GliomagenError, match=f"{name}: .* bytes, but its header"):
        open_store(store)
    code, _, stderr = run("inspect", store)
    one_error(code, stderr, str(store / name), "truncated or damaged")
    code, _, stderr = run("prepare", cohort, "--out", store, "--size", "16", "--qc", "1")
    assert code == 0 and "nothing to do" not in stderr, stderr
    assert "warning: " in stderr and "damaged" in stderr
    assert len(open_store(store)) == 3


def test_a_truncated_array_stops_train_with_one_line(store: Path, tmp_path: Path) -> None:
    os.truncate(store / "images.npy", 4096)
    code, _, stderr = run("train", store, "--run", tmp_path / "run", "--preset", "demo-cpu",
                          "--set", "data.size=null", "--set", "train.steps=1")  # fmt: skip
    one_error(code, stderr, str(store / "images.npy"))


def test_damaged_content_of_a_sealed_array_is_detected(store: Path) -> None:
    with open(store / "images.npy", "r+b") as fh:
        fh.seek(200)
        byte = fh.read(1)
        fh.seek(200)
        fh.write(bytes([byte[0] ^ 0xFF]))  # same size, one byte flipped
    with pytest.raises(
        GliomagenError, match="images.npy: its content is not what gliomagen prepare wrote"
    ):
        open_store(store)


def test_store_fingerprint_is_recorded_and_changes_with_the_data(cohort: Path, store: Path) -> None:
    from gliomagen.data.fingerprint import store_fingerprint  # what train --resume compares

    first = store_fingerprint(store)
    assert first == json.loads((store / ".gliomagen-store").read_text())["fingerprint"]
    assert store_fingerprint(store) == first
    code, _, stderr = run("prepare", cohort, "--out", store, "--size", "32", "--qc", "1")
    assert code == 0, stderr  # other data (another grid): another fingerprint
    assert store_fingerprint(store) != first
    assert store_fingerprint(store) == json.loads((store / ".gliomagen-store").read_text())["fingerprint"]


# -- defect 8: a failed write is one line; nothing half-written, the old store kept -----------
class _FullFile:
    """A file on a full disk: writing fails with ENOSPC, everything else goes to the real file."""

    def __init__(self, fh: object) -> None:
        self.fh = fh

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> object:
        return getattr(self.fh, name)


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's arrays land on a full disk from their first item on."""
    from gliomagen.data.store_output import NpyWriter  # the streamed array writer

    real = NpyWriter.write

    def write(self: NpyWriter, i: int, item: object) -> None:
        self.fh = _FullFile(self.fh)
        real(self, i, item)

    monkeypatch.setattr(NpyWriter, "write", write)


def test_a_write_error_is_one_line_and_keeps_the_old_store(
    cohort: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tree(store)
    _full_disk(monkeypatch)
    code, _, stderr = prepare_again(cohort, store)
    one_error(
        code, stderr, f"{store / 'images.npy'}: No space left on device", "old store is unchanged"
    )
    assert tree(store) == before and not list(store.parent.glob(".S.*"))


@pytest.fixture
def tiny_disk(tmpfs: Callable[[str], Path]) -> Path:
    """A 200k tmpfs (a real full disk; skipped where mounting is not allowed)."""
    return tmpfs("200k")


def test_a_real_full_disk(cohort: Path, tiny_disk: Path) -> None:
    out = tiny_disk / "S"
    code, _, stderr = run(
        "prepare", cohort / "BraTS-GLI-00000-000", "--out", out, "--size", "16", "--qc", "0"
    )
    assert code == 0, stderr  # one case at 16^3 fits
    before = tree(out)
    code, _, stderr = run("prepare", cohort, "--out", out, "--size", "32", "--qc", "0")
    one_error(code, stderr, "No space left on device", "old store is unchanged")
    assert tree(out) == before and sorted(p.name for p in tiny_disk.iterdir()) == ["S"]


# -- smaller: sizes train refuses, --qc 0 ---------------------------------------------------
@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--size", "8"], "every side must be in [16, 256]"),
        (["--size", "16,15,16"], "every side must be in [16, 256]"),
        (["--size", "100"], "does not halve to a start grid"),
        (["--slices", "--size", "8"], "every side must be in [16, 256]"),
    ],
)
def test_a_size_train_refuses_is_refused(
    cohort: Path, tmp_path: Path, args: list[str], why: str
) -> None:
    code, _, stderr = run("prepare", cohort, "--out", tmp_path / "S", *args)
    one_error(code, stderr, why)
    assert not (tmp_path / "S").exists()


def test_qc_0_prints_no_qc_folder(cohort: Path, tmp_path: Path) -> None:
    code, stdout, stderr = run(
        "prepare", cohort, "--out", tmp_path / "S", "--size", "16", "--qc", "0"
    )
    assert code == 0, stderr
    assert "qc " not in stdout and not (tmp_path / "S" / "qc").exists()
    code, stdout, _ = run("prepare", cohort, "--out", tmp_path / "T", "--size", "16", "--qc", "1")
    assert f"qc         {tmp_path / 'T' / 'qc'}" in stdout
