"""``make demo`` (scripts/demo.sh) never deletes a folder it did not write."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "mine.txt").write_text("a user's file")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh"), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {out}: exists and was not written by make demo; choose another DEMO=folder"
    ]
    assert (out / "mine.txt").read_text() == "a user's file"
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_make_clean_leaves_a_folder_the_demo_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "mine.txt").write_text("a user's file")
    done = subprocess.run(
        ["make", "-s", "clean", f"DEMO={out}"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (out / "mine.txt").read_text() == "a user's file"
