"""The one atomic writer: whole artefacts or nothing, never a half-written one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gliomagen.io.atomic import atomic_dir, atomic_path, write_json, write_text


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
