"""Helpers of the generation tests: a tiny real generator saved as a checkpoint, with a store meta
whose template geometry comes from preprocessing a small synthetic BraTS-like case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from gliomagen import MODALITIES
from gliomagen.config import Config, preset, to_dict
from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.io.checkpoint import FORMAT_VERSION, save_checkpoint
from gliomagen.models import Generator, build_generator

SIZE = (16, 16, 16)
REF_SHAPE = (40, 44, 30)
"""File grid of the synthetic reference case (LPS, 1 mm, like BraTS but small)."""


def tiny_schema() -> ConditionSchema:
    return ConditionSchema(
        [
            ConditionField("cohort", "categorical", categories=["GLI", "SSA"]),
            ConditionField("grade", "categorical", categories=["HGG", "LGG"]),
            ConditionField("age", "continuous", mean=55.0, std=12.0),
        ]
    )


def tiny_config() -> Config:
    """The demo-cpu preset shrunk to a 16^3 generator of a few thousand parameters."""
    cfg = preset("demo-cpu")
    m = cfg.model
    m.z_dim, m.w_dim, m.mapping_layers, m.mapping_lr_mul, m.cond_embed_dim = 8, 8, 2, 1.0, 4
    m.g_channels, m.g_max_channels, m.d_channels, m.d_max_channels = 4, 8, 4, 8
    cfg.data.size = list(SIZE)
    return cfg.validate()


def tiny_generator(schema: ConditionSchema, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = build_generator(tiny_config(), schema, SIZE)
    with torch.no_grad():  # noise strength starts at 0; make noise matter in the tests
        for name, p in G.named_parameters():
            if name.endswith("noise.strength"):
                p.fill_(0.5)
    return G.eval()


def reference_case(folder: Path) -> Any:
    """A small BraTS-like case on an LPS 1 mm grid (ellipsoid brain, a tumour), as a CaseRecord."""
    from gliomagen.data.layouts import CaseRecord

    folder.mkdir(parents=True, exist_ok=True)
    affine = np.array([[-1.0, 0, 0, 20.0], [0, -1.0, 0, 30.0], [0, 0, 1.0, -10.0], [0, 0, 0, 1]])
    x, y, z = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in REF_SHAPE], indexing="ij")
    r = ((x - 19) / 15) ** 2 + ((y - 22) / 18) ** 2 + ((z - 15) / 11) ** 2
    brain = r < 1.0
    images = {}
    for i, m in enumerate(MODALITIES):
        vol = np.where(brain, 300 + 100 * i + 200 * (1 - r), 0).astype(np.int16)
        images[m] = folder / f"REF-{m}.nii.gz"
        nib.save(nib.Nifti1Image(vol, affine), str(images[m]))
    seg = np.zeros(REF_SHAPE, np.uint8)
    seg[(x - 24) ** 2 + (y - 20) ** 2 + (z - 15) ** 2 < 16] = 2
    seg[(x - 24) ** 2 + (y - 20) ** 2 + (z - 15) ** 2 < 4] = 3
    nib.save(nib.Nifti1Image(seg, affine), str(folder / "REF-seg.nii.gz"))
    return CaseRecord("REF", images, folder / "REF-seg.nii.gz", layout="brats2023", folder=folder)


def store_meta(
    record: Any, size: tuple[int, int, int] = SIZE, schema: ConditionSchema | None = None
) -> dict[str, Any]:
    from gliomagen.data.preprocess import prepare_case, template_geometry

    case = prepare_case(record, size)
    geometry = template_geometry([case.geometry])
    return {
        "format_version": 1,
        "size": list(size),
        "modalities": list(MODALITIES),
        "schema": (schema or tiny_schema()).to_dict(),
        "spacing_mm": [geometry["spacing_mm"]] * 3,
        "canonical_orientation": "RAS",
        "template_geometry": geometry,
    }


def save_tiny_checkpoint(
    run_dir: Path, G: Generator, schema: ConditionSchema, meta: dict[str, Any]
) -> Path:
    """A real checkpoint (``gliomagen.io.checkpoint.save_checkpoint``) of a tiny generator."""
    state = {
        "format_version": FORMAT_VERSION,
        "step": 0,
        "images_seen": 0,
        "G": G.state_dict(),
        "G_ema": G.state_dict(),
        "config": to_dict(tiny_config()),
        "schema": schema.to_dict(),
        "store_meta": meta,
        "size": list(SIZE),
        "n_modalities": len(MODALITIES),
    }
    return save_checkpoint(state, run_dir)


def case_ids(cohort: Path) -> list[str]:
    """The case ids of a generated cohort, in order (from its manifest)."""
    import json

    return list(json.loads((Path(cohort) / "manifest.json").read_text())["case_ids"])


def case_file(cohort: Path, index: int, suffix: str) -> Path:
    """File ``suffix`` (e.g. ``t1c.nii.gz``) of case ``index`` of a generated cohort."""
    cid = case_ids(cohort)[index]
    return Path(cohort) / cid / f"{cid}-{suffix}"


def expected_id(checkpoint: Path, seed: int) -> str:
    """The default id of the case of ``seed`` generated from ``checkpoint`` (a .pt file)."""
    from gliomagen.generation.ids import case_id, default_prefix
    from gliomagen.generation.writer import file_sha256

    return case_id(default_prefix(file_sha256(checkpoint)), seed)
