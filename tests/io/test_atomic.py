"""The one atomic writer: whole artefacts or nothing, never a half-written one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gliomagen.io.atomic import atomic_dir, atomic_path, replace_dir, write_json, write_text


def test_write_json_cleans_nan_and_numpy(tmp_path):
    p = write_json(tmp_path / "sub" / "a.json", {"x": float("nan"), "n": np.int64(3), "v": np.ones(2)})
    assert json.loads(p.read_text()) == {"x": None, "n": 3, "v": [1.0, 1.0]}
    assert [q.name for q in p.parent.iterdir()] == ["a.json"]


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = write_text(tmp_path / "f.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["f.txt"]


def test_atomic_dir_renames_whole_or_leaves_nothing(tmp_path):
    with atomic_dir(tmp_path / "cohort") as tmp:
        (tmp / "a").write_text("1")
        assert not (tmp_path / "cohort").exists()
    assert (tmp_path / "cohort" / "a").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "other") as tmp:
        (tmp / "a").write_text("1")
        raise RuntimeError("killed")
    assert sorted(q.name for q in tmp_path.iterdir()) == ["cohort"]


def test_atomic_dir_never_replaces_existing_folder(tmp_path):
    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "keep").write_text("mine")
    with pytest.raises(OSError), atomic_dir(tmp_path / "cohort") as tmp:
        (tmp / "a").write_text("1")
    assert (tmp_path / "cohort" / "keep").read_text() == "mine"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["cohort"]


def test_replace_dir_swaps_an_existing_folder(tmp_path):
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "old").write_text("0")
    new = tmp_path / ".case.new"
    new.mkdir()
    (new / "a").write_text("1")
    assert replace_dir(new, tmp_path / "case") == tmp_path / "case"
    assert [q.name for q in (tmp_path / "case").iterdir()] == ["a"]
    assert sorted(q.name for q in tmp_path.iterdir()) == ["case"]
    newer = tmp_path / ".other.new"
    newer.mkdir()
    replace_dir(newer, tmp_path / "other")  # nothing there yet: a plain rename
    assert sorted(q.name for q in tmp_path.iterdir()) == ["case", "other"]


def test_atomic_dir_replace_swaps_whole_or_keeps_old(tmp_path):
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "keep").write_text("mine")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "case", replace=True) as tmp:
        (tmp / "a").write_text("1")
        raise RuntimeError("killed")
    assert [q.name for q in (tmp_path / "case").iterdir()] == ["keep"]
    with atomic_dir(tmp_path / "case", replace=True) as tmp:
        (tmp / "a").write_text("1")
    assert [q.name for q in (tmp_path / "case").iterdir()] == ["a"]
    assert oct((tmp_path / "case").stat().st_mode & 0o777) == "0o755"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["case"]
