"""``gliomagen export generator``: a sampling-only checkpoint that samples what the original does."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from generation_fixtures import case_file
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.errors import GliomagenError
from gliomagen.export.generator import export_generator
from gliomagen.generation import generate_cohort


def _t1c(cohort: Path) -> np.ndarray:
    return np.asarray(nib.load(case_file(cohort, 0, "t1c.nii.gz")).dataobj, dtype=np.float32)


def test_float32_export_samples_exactly_what_the_checkpoint_does(
    checkpoint: Path, tmp_path: Path
) -> None:
    rec = export_generator(checkpoint, tmp_path / "g32.pt", dtype="float32", note="tiny test model")
    ckpt = torch.load(tmp_path / "g32.pt", weights_only=True)
    assert {"G", "D", "opt_G", "opt_D", "rng"}.isdisjoint(ckpt)
    assert ckpt["exported"]["note"] == "tiny test model" and rec["dtype"] == "float32"
    assert ckpt["exported"]["from_sha256"] == rec["from_sha256"] and len(rec["from_sha256"]) == 64
    a = generate_cohort(checkpoint, tmp_path / "a", n=1, seed=3, progress=False, id_prefix="X")
    b = generate_cohort(
        tmp_path / "g32.pt", tmp_path / "b", n=1, seed=3, progress=False, id_prefix="X"
    )
    np.testing.assert_array_equal(_t1c(a), _t1c(b))


def test_float16_export_halves_the_weights_and_samples_nearly_the_same(
    checkpoint: Path, tmp_path: Path
) -> None:
    export_generator(checkpoint, tmp_path / "g16.pt")
    full = torch.load(checkpoint, weights_only=True)["G_ema"]
    half = torch.load(tmp_path / "g16.pt", weights_only=True)["G_ema"]
    assert half.keys() == full.keys()
    for k, v in full.items():
        assert half[k].dtype == (torch.float16 if v.is_floating_point() else v.dtype), k
    a = generate_cohort(checkpoint, tmp_path / "a", n=1, seed=3, progress=False, id_prefix="X")
    b = generate_cohort(
        tmp_path / "g16.pt", tmp_path / "b", n=1, seed=3, progress=False, id_prefix="X"
    )
    x, y = _t1c(a), _t1c(b)
    assert np.abs(x - y).max() <= 0.02 * (x.max() - x.min()) + 1e-6


def test_export_refuses_to_overwrite_a_foreign_file_and_a_bad_dtype(
    checkpoint: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "notes.pt"
    mine.write_text("my notes")
    with pytest.raises(GliomagenError, match="not a generator gliomagen exported"):
        export_generator(checkpoint, mine)
    assert mine.read_text() == "my notes"
    with pytest.raises(GliomagenError, match="--dtype 'int8'"):
        export_generator(checkpoint, tmp_path / "x.pt", dtype="int8")
    assert not (tmp_path / "x.pt").exists()
    export_generator(checkpoint, tmp_path / "again.pt")
    export_generator(
        checkpoint, tmp_path / "again.pt", dtype="float32"
    )  # an earlier export is replaced
    assert torch.load(tmp_path / "again.pt", weights_only=True)["exported"]["dtype"] == "float32"


def test_cli_writes_into_a_folder_and_init_refuses_the_export(
    checkpoint: Path, tmp_path: Path
) -> None:
    res = CliRunner().invoke(
        app, ["export", "generator", str(checkpoint), "-o", str(tmp_path / "share")]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "share" / "generator.pt").is_file() and "float16" in res.output
    res = CliRunner().invoke(
        app, ["export", "generator", str(checkpoint), "--dtype", "int8", "-o", str(tmp_path / "s2")]
    )
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1].startswith(
        "error: --dtype 'int8'"
    )
    from gliomagen.training.init_from import read_parent

    with pytest.raises(GliomagenError, match="not a training checkpoint .a sampling-only"):
        read_parent(tmp_path / "share" / "generator.pt")
