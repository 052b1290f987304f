"""An in-memory stand-in for ``gliomagen.data.store.StoreDataset`` (same attributes, same items).

Cases are ellipsoid "brains" with one spherical tumour whose structure depends on the ``grade``
condition: HGG = necrotic core (1) inside an enhancing shell (3, bright on T1Gd) inside edema (2);
LGG = non-enhancing core (1) inside edema (2), no label 3.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gliomagen import MODALITIES
from gliomagen.config import Config, preset
from gliomagen.data.conditions import ConditionField, ConditionSchema

# mean intensity per class (bg-brain, ncr, ed, et) and modality (t1n, t1c, t2w, t2f), in [-1, 1]
_CLASS_INTENSITY = np.array(
    [
        [0.0, 0.0, -0.2, -0.1],  # normal brain
        [-0.6, -0.5, 0.7, 0.2],  # core
        [-0.2, -0.2, 0.5, 0.7],  # edema
        [-0.1, 0.8, 0.2, 0.3],  # enhancing
    ],
    dtype=np.float32,
)


def make_case(
    size: tuple[int, ...], grade: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One case: ``(images float32 [4, *S] in [-1, 1], mask uint8 [*S])``."""
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in size], indexing="ij")
    brain = sum(g**2 / 0.8**2 for g in grids) <= 1.0
    centre = rng.uniform(-0.3, 0.3, len(size))
    r = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)))
    r_tumour = rng.uniform(0.3, 0.4)
    mask = np.zeros(size, np.uint8)
    mask[(r < r_tumour) & brain] = 2
    if grade == "HGG":
        mask[(r < 0.7 * r_tumour) & brain] = 3
        mask[(r < 0.4 * r_tumour) & brain] = 1
    else:
        mask[(r < 0.6 * r_tumour) & brain] = 1
    images = np.full((4, *size), -1.0, np.float32)
    for m in range(4):
        vals = _CLASS_INTENSITY[mask, m] + 0.05 * rng.standard_normal(size).astype(np.float32)
        images[m][brain] = np.clip(vals[brain], -1, 1)
    mask[~brain] = 0
    return images, mask


class FakeStore(torch.utils.data.Dataset):
    """Mimics ``StoreDataset``: ``.meta .schema .modalities .size .spacing_mm .case_ids .rows
    .has_mask .cond_cat .cond_cont``, items ``(image f32 [C, *S], mask i64 [*S], cond, case_id)``."""

    def __init__(
        self,
        n: int = 8,
        size: tuple[int, ...] = (16, 16, 16),
        seed: int = 0,
        n_without_mask: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.schema = ConditionSchema(
            [
                ConditionField("cohort", "categorical", categories=["GLI", "SSA"], source="id"),
                ConditionField(
                    "grade", "categorical", categories=["HGG", "LGG"], source="labels-csv"
                ),
                ConditionField("wt_volume_ml", "continuous", mean=20.0, std=5.0, source="mask"),
            ]
        )
        self.size = tuple(size)
        self.modalities = list(MODALITIES)
        self.spacing_mm = [240.0 / size[0]] * len(size)
        self.case_ids = [f"FAKE-{i:03d}" for i in range(n)]
        self.rows = [
            {
                "case_id": c,
                "cohort": ["GLI", "SSA"][i % 2],
                "grade": ["HGG", "LGG"][(i // 2) % 2],
                "wt_volume_ml": 15.0 + i,
            }
            for i, c in enumerate(self.case_ids)
        ]
        self.cond_cat, self.cond_cont = self.schema.encode_many(
            [{k: r[k] for k in ("cohort", "grade", "wt_volume_ml")} for r in self.rows]
        )
        cases = [make_case(self.size, r["grade"], rng) for r in self.rows]
        self.images = np.stack([c[0] for c in cases]).astype(np.float16)
        self.masks = np.stack([c[1] for c in cases])
        self.has_mask = np.ones(n, bool)
        for i in range(n_without_mask):
            self.masks[i] = 255
            self.has_mask[i] = False
        self.meta = {
            "format_version": 1,
            "size": list(self.size),
            "modalities": self.modalities,
            "schema": self.schema.to_dict(),
            "spacing_mm": self.spacing_mm,
            "template_geometry": {
                "reference_shape": [240, 240, 155],
                "reference_affine": np.eye(4).tolist(),
            },
            "n_cases": n,
        }

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(
        self, i: int
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], str]:
        return (
            torch.from_numpy(self.images[i].astype(np.float32)),
            torch.from_numpy(self.masks[i].astype(np.int64)),
            {
                "cat": torch.from_numpy(self.cond_cat[i]),
                "cont": torch.from_numpy(self.cond_cont[i]),
            },
            self.case_ids[i],
        )


@pytest.fixture
def fake_store() -> Callable[..., FakeStore]:
    """Factory of in-memory stores: ``fake_store(n=8, size=(16, 16, 16))``."""
    return FakeStore


def write_store(
    path: Path,
    n: int = 8,
    size: tuple[int, ...] = (16, 16, 16),
    seed: int = 0,
    splits: Sequence[str] | None = None,
    grades: Sequence[str] | None = None,
    drop_condition: str | None = None,
) -> Path:
    """Write a :class:`FakeStore` as a store folder (meta.json, images.npy, masks.npy, index.csv).

    Args:
        path: the folder.
        n, size, seed: as :class:`FakeStore`.
        splits: each case's split (default: all ``train``).
        grades: each case's ``grade`` label instead of FakeStore's (a relabelled store).
        drop_condition: leave this condition out of the schema and the index (another schema).
    """
    fake = FakeStore(n=n, size=size, seed=seed)
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "images.npy", fake.images)
    np.save(path / "masks.npy", fake.masks)
    schema = fake.schema.to_dict()
    schema["fields"] = [f for f in schema["fields"] if f["name"] != drop_condition]
    splits = list(splits) if splits is not None else ["train"] * n
    meta = {**fake.meta, "schema": schema, "splits": {s: splits.count(s) for s in set(splits)}}
    (path / "meta.json").write_text(json.dumps(meta))
    names = [f["name"] for f in schema["fields"]]
    with open(path / "index.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["case_id", "split", "has_mask", *names, "t1n_path"])
        w.writeheader()
        for i, row in enumerate(fake.rows):
            labels = {**row, **({"grade": grades[i]} if grades is not None else {})}
            w.writerow({"case_id": row["case_id"], "split": splits[i], "has_mask": 1,
                        **{k: labels[k] for k in names}, "t1n_path": f"{path}/{row['case_id']}.nii.gz"})  # fmt: skip
    return path


@pytest.fixture
def disk_store() -> Callable[..., Path]:
    """Factory of store folders: ``disk_store(tmp_path / "store", n=8, splits=[...])``."""
    return write_store


def tiny_config(**sections: dict[str, Any]) -> Config:
    """A ~50k-parameter demo-cpu configuration for 16^3 tests (1 thread, no files but checkpoints)."""
    cfg = preset("demo-cpu")
    cfg.data.size = None
    cfg.model.z_dim, cfg.model.w_dim, cfg.model.mapping_layers, cfg.model.cond_embed_dim = (
        8,
        16,
        2,
        8,
    )
    (
        cfg.model.g_channels,
        cfg.model.g_max_channels,
        cfg.model.d_channels,
        cfg.model.d_max_channels,
    ) = 4, 8, 4, 8
    cfg.train.batch_size, cfg.train.steps, cfg.train.threads = 4, 4, 1
    cfg.train.checkpoint_every, cfg.train.sample_every, cfg.train.log_every = 1000, 1000, 1
    cfg.train.w_avg_samples, cfg.train.samples_per_condition = 16, 1
    for section, values in sections.items():
        for k, v in values.items():
            setattr(getattr(cfg, section), k, v)
    return cfg.validate()


def assert_same_state(a: object, b: object, where: str = "checkpoint") -> None:
    """Every tensor and number of two (nested) checkpoint entries is equal, exactly."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: other keys"
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: other length"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture
def same_state() -> Callable[..., None]:
    """:func:`assert_same_state`: ``same_state(full["G"], resumed["G"], "G")``."""
    return assert_same_state


@pytest.fixture
def tiny_cfg() -> Callable[..., Config]:
    """Factory of tiny configurations: ``tiny_cfg(loss={"kind": "hinge"})``."""
    return tiny_config


def small_term(overrides: list[str], **tables: torch.Tensor | None) -> Any:
    """The one training term (:mod:`gliomagen.training.terms`) that ``overrides`` (``--set``
    strings, e.g. ``loss.presence_weight=1``) switch on in demo-cpu, built with ``tables``
    (``tumour_floor=``, ``focal_floor=``) instead of the training data's."""
    from gliomagen.config import resolve_config
    from gliomagen.training.terms import build_terms

    terms = build_terms(resolve_config("demo-cpu", overrides=overrides), tables=tables)
    assert len(terms) == 1
    return terms[0]


@pytest.fixture
def term_factory() -> Callable[..., Any]:
    """Factory of single terms: ``term_factory(["loss.presence_weight=1"], tumour_floor=t)``."""
    return small_term


def min_per_code(data: Any, value: Callable[[int], float]) -> torch.Tensor:
    """By hand, what ``MaskTables``' per-code floors compute: ``[n_cat, n_codes]`` holding the
    smallest ``value(i)`` over the training cases ``i`` with each categorical code (NaN: none)."""
    n_codes = int(data.cat.max()) + 1
    out = torch.full((data.cat.shape[1], n_codes), float("nan"))
    for j in range(data.cat.shape[1]):
        for code in range(n_codes):
            rows = [int(i) for i in data.train_index if int(data.cat[i, j]) == code]
            if rows:
                out[j, code] = min(value(i) for i in rows)
    return out


@pytest.fixture
def per_code_min() -> Callable[..., torch.Tensor]:
    """:func:`min_per_code`, for the tests (``import conftest`` could find another folder's)."""
    return min_per_code
