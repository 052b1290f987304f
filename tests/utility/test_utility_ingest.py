"""A synthetic cohort in the ``gliomagen generate`` layout is ingested on the real store's grid."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from gliomagen.data.phantoms import generate_cohort
from gliomagen.data.store import open_store
from gliomagen.errors import GliomagenError
from gliomagen.evaluation.utility import store_cases, synthetic_store
from gliomagen.evaluation.utility_report import synthetic_conditions


def _generated_layout(tmp: Path) -> Path:
    """Two phantom SSA cases renamed to SYN-0000k/SYN-0000k-{t1n,...,seg}.nii.gz + clinical.csv."""
    ph = generate_cohort(tmp / "ph", {"SSA": 2}, resolution=2, seed=3, progress=False)
    syn = tmp / "syn"
    syn.mkdir()
    with open(ph / "clinical.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out_rows = []
    for k, row in enumerate(rows):
        new = f"SYN-{k:05d}"
        (syn / new).mkdir()
        for f in (ph / row["case_id"]).iterdir():
            shutil.copy(f, syn / new / f.name.replace(row["case_id"], new))
        out_rows.append(
            {"case_id": new, "seed": 100 + k, "cohort": "SSA", "grade": ["HGG", "LGG"][k]}
        )
    with open(syn / "clinical.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["case_id", "seed", "cohort", "grade"])
        w.writeheader()
        w.writerows(out_rows)
    return syn


def test_generated_cohort_becomes_a_store_of_the_real_size(tmp_path: Path) -> None:
    syn = _generated_layout(tmp_path)
    path = synthetic_store(syn, (16, 16, 16), tmp_path / "cache")
    assert path.parent == tmp_path / "cache"
    ds = open_store(path)
    assert ds.size == (16, 16, 16)
    assert sorted(ds.case_ids) == ["SYN-00000", "SYN-00001"]
    image, mask, _, _ = ds[0]
    assert (
        image.shape == (4, 16, 16, 16) and float(image.min()) >= -1.0 and float(image.max()) <= 1.0
    )
    assert set(np.unique(mask.numpy())) <= {0, 1, 2, 3} and int((mask > 0).sum()) > 0
    built = (path / "images.npy").stat().st_mtime_ns
    assert synthetic_store(syn, (16, 16, 16), tmp_path / "cache") == path  # cached, not rebuilt
    assert (path / "images.npy").stat().st_mtime_ns == built
    cases = store_cases(ds)
    conds = synthetic_conditions(cases, syn / "clinical.csv")
    assert conds["SYN-00000"]["grade"] == "HGG" and conds["SYN-00001"]["grade"] == "LGG"
    assert conds["SYN-00000"]["cohort"] == "SSA"
    assert all("seed" not in c for c in conds.values())  # generator seeds are not conditions
    with pytest.raises(GliomagenError, match="store size \\[16, 16, 16\\] differs"):
        synthetic_store(path, (32, 32, 32), tmp_path / "cache")
