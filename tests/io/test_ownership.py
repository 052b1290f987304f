"""Ownership markers: which files a gliomagen command wrote, with cheap digests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gliomagen.io.atomic import replace_dir
from gliomagen.io.ownership import entries, foreign_entries, quick_digest, read_marker, write_marker


def test_quick_digest_sees_size_and_both_ends_of_a_big_file(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 40000)  # ~10 MB
    first = quick_digest(big, chunk=1 << 20)
    with open(big, "r+b") as fh:
        fh.seek(5_000_000)
        fh.write(b"x")  # the middle is not read
    assert quick_digest(big) == first
    for offset in (0, big.stat().st_size - 1):
        data = bytearray(big.read_bytes())
        data[offset] ^= 1
        (tmp_path / "d.bin").write_bytes(bytes(data))
        assert quick_digest(tmp_path / "d.bin") != first
    os.truncate(big, big.stat().st_size - 1)
    assert quick_digest(big) != first


def test_marker_lists_what_was_written_and_foreign_entries_what_was_not(tmp_path: Path) -> None:
    (tmp_path / "qc").mkdir()
    (tmp_path / "qc" / "a.png").write_bytes(b"png")
    (tmp_path / "meta.json").write_text("{}")
    write_marker(tmp_path, "store", 1, fingerprint="abc")
    marker = read_marker(tmp_path, "store")
    assert marker is not None and sorted(marker["files"]) == ["meta.json", "qc/a.png"]
    assert marker["fingerprint"] == "abc" and marker["created_by"].startswith("gliomagen ")
    assert foreign_entries(tmp_path, marker) == []
    (tmp_path / ".DS_Store").write_bytes(b"")  # a file browser's clutter
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "link").symlink_to(tmp_path / "qc")
    assert foreign_entries(tmp_path, marker) == ["link", "notes.txt"]
    assert "link" in entries(tmp_path) and "qc/a.png" in entries(tmp_path)
    assert read_marker(tmp_path, "run") is None
    (tmp_path / ".gliomagen-run").write_text('{"kind": "store", "files": {}}')
    with pytest.raises(ValueError, match="not a gliomagen run marker"):
        read_marker(tmp_path, "run")


def test_replace_dir_puts_the_old_folder_back_when_the_swap_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep").write_text("1")
    (tmp_path / "new").mkdir()
    real_rename = os.rename

    def rename(src: object, dst: object) -> None:
        if Path(str(src)).name == "new":
            raise OSError(18, "Invalid cross-device link")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError):
        replace_dir(tmp_path / "new", tmp_path / "old")
    assert (tmp_path / "old" / "keep").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old"]
