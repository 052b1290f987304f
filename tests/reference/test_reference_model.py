"""The shipped reference model: a sampling-only generator trained on the built-in phantoms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from gliomagen.models.loading import load_generator
from gliomagen.reference import PHANTOMS_32


def test_reference_file_is_small_sampling_only_and_labelled_as_phantoms() -> None:
    assert PHANTOMS_32.is_file() and PHANTOMS_32.stat().st_size < 3_000_000
    ckpt = torch.load(PHANTOMS_32, weights_only=True)
    assert "D" not in ckpt and "opt_G" not in ckpt
    assert ckpt["exported"]["dtype"] == "float16" and "phantom" in ckpt["exported"]["note"]
    assert int(ckpt["step"]) == 15880
    card = (PHANTOMS_32.parent / "MODEL_CARD.md").read_text()
    assert "trained on the built-in phantoms" in card and "Sampling-only export" in card


def test_reference_rebuilds_at_32_cubed_with_every_label() -> None:
    G, schema, config, meta = load_generator(PHANTOMS_32)
    assert [f.name for f in schema.fields] == [
        "cohort", "grade", "age", "sex", "wt_volume_ml", "enhancing_fraction", "hemisphere"
    ]  # fmt: skip
    assert next(G.parameters()).dtype == torch.float32 and config.preset == "default"
    assert [int(s) for s in meta["size"]] == [32, 32, 32]


def test_python_m_prints_the_path() -> None:
    out = subprocess.run([sys.executable, "-m", "gliomagen.reference"], capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == PHANTOMS_32
