"""Shared fixtures: tiny sizes, fixed seeds, the optional real BraTS cases."""

from __future__ import annotations

import gc
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture
def real_data() -> Path:
    """``../shared/data/real`` beside the repo; the test is skipped where it is absent."""
    if not (REAL_DATA / "brats2021").is_dir():
        pytest.skip("real BraTS cases (../shared/data/real) not available")
    return REAL_DATA


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Every test starts from torch seed 0, whatever ran before it."""
    import torch

    torch.manual_seed(0)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``tmpfs("300k")`` mounts a tmpfs of that size under ``tmp_path`` (a real full disk).

    Needs the right to mount (root); the test is skipped where mounting fails. Every mount is
    undone afterwards (lazily when a failed run's traceback still holds a file open on it).
    """
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        mnt = tmp_path / f"tmpfs-{len(mounted)}"
        mnt.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(mnt)
        return mnt

    yield mount
    gc.collect()
    for mnt in mounted:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
