"""A set of cases to evaluate: images in [-1, 1], masks, ids and raw labels, loaded lazily.

:class:`CaseSet` is what every metric of :mod:`gliomagen.evaluation` reads. It wraps either arrays
(``numpy`` arrays or memory maps, e.g. a store's ``images.npy``) or a store dataset
(:class:`gliomagen.data.store.StoreDataset`: ``ds[i] -> (image, mask, cond, case_id)``), so a
cohort of 128^3 volumes is never held in memory at once: metrics walk it in batches. The cases
may also be 2-D slices (a slice store, ``prepare --slices``): images ``[N, C, H, W]``, masks
``[N, H, W]``; every metric takes either.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gliomagen.data.conditions import is_missing
from gliomagen.errors import GliomagenError

NO_MASK = 255


@dataclass
class CaseSet:
    """Cases of one role (held-out real, training, synthetic).

    Args:
        name: where the cases come from (shown in the report), e.g. ``store:test``.
        case_ids: one id per case.
        labels: raw label values per case (``cohort``, ``grade``, ...; missing = ``None``).
        shape: ``(C, D, H, W)`` of every image (``(C, H, W)`` for slices).
        images: ``[N, C, D, H, W]`` (``[N, C, H, W]``) array in [-1, 1] (float16/float32, may be a
            memory map), or ``None`` when ``dataset`` is given.
        masks: ``[N, D, H, W]`` (``[N, H, W]``) uint8 labels 0..3, 255 where a case has no mask;
            ``None`` = no masks.
        dataset: a store dataset used instead of arrays.
        spacing_mm: voxel size of the grid (for tumour volumes in ml; for slices, the pixel
            size and the slab thickness, one voxel of the cubic grid they were cut from).
        categorical: names of the categorical labels to break figures down by.
        derived: names of labels measured from the case's own mask (tumour volume, hemisphere...),
            which are no condition anyone asked for.
        indices: rows of ``images`` / ``dataset`` that hold the cases (default: all, in order).
    """

    name: str
    case_ids: list[str]
    labels: list[dict[str, Any]]
    shape: tuple[int, ...]
    images: np.ndarray | None = None
    masks: np.ndarray | None = None
    dataset: Any = None
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    categorical: list[str] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)
    indices: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.case_ids)
        if len(self.labels) != n:
            raise GliomagenError(f"{self.name}: {n} case ids but {len(self.labels)} label rows")
        if self.images is None and self.dataset is None:
            raise GliomagenError(f"{self.name}: no images")
        if self.indices is None:
            self.indices = np.arange(n)
        if self.images is not None:
            total = self.images.shape[0]
            if self.images.ndim not in (4, 5) or tuple(self.images.shape[1:]) != tuple(self.shape):
                raise GliomagenError(
                    f"{self.name}: images must be [N, C, D, H, W] or [N, C, H, W], got {tuple(self.images.shape)}"
                )
            if self.masks is not None and (
                self.masks.shape[0] != total or self.masks.shape[1:] != self.images.shape[2:]
            ):
                raise GliomagenError(
                    f"{self.name}: masks {tuple(self.masks.shape)} do not match images {tuple(self.images.shape)}"
                )
        if len(self.indices) != n:
            raise GliomagenError(f"{self.name}: {n} case ids but {len(self.indices)} indices")

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray | torch.Tensor,
        masks: np.ndarray | torch.Tensor | None = None,
        *,
        case_ids: Sequence[str] | None = None,
        labels: Sequence[Mapping[str, Any]] | None = None,
        name: str = "arrays",
        spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
        categorical: Sequence[str] | None = None,
    ) -> CaseSet:
        """Wrap in-memory arrays (images ``[N, C, D, H, W]`` or ``[N, C, H, W]`` in [-1, 1], masks
        ``[N, D, H, W]`` or ``[N, H, W]``)."""
        imgs = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        msk = (
            None
            if masks is None
            else (masks.numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks))
        )
        n = imgs.shape[0]
        ids = list(case_ids) if case_ids is not None else [f"{name}-{i:05d}" for i in range(n)]
        rows = [dict(r) for r in labels] if labels is not None else [{} for _ in range(n)]
        if categorical is None:
            categorical = sorted({k for r in rows for k, v in r.items() if isinstance(v, str)})
        return cls(
            name=name,
            case_ids=ids,
            labels=rows,
            shape=tuple(int(s) for s in imgs.shape[1:]),
            images=imgs,
            masks=msk,
            spacing_mm=(float(spacing_mm[0]), float(spacing_mm[1]), float(spacing_mm[2])),
            categorical=list(categorical),
        )

    # -- access ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.case_ids)

    @property
    def spatial(self) -> tuple[int, ...]:
        """The grid: ``(D, H, W)``, or ``(H, W)`` for slices."""
        return tuple(self.shape[1:])

    def subset(self, which: Sequence[int] | np.ndarray, name: str | None = None) -> CaseSet:
        """The cases at positions ``which`` (a view; nothing is loaded)."""
        sel = np.asarray(which, dtype=np.int64).reshape(-1)
        assert self.indices is not None
        return CaseSet(
            name=name or self.name, case_ids=[self.case_ids[i] for i in sel], labels=[self.labels[i] for i in sel],
            shape=self.shape, images=self.images, masks=self.masks, dataset=self.dataset,
            spacing_mm=self.spacing_mm, categorical=list(self.categorical), derived=list(self.derived),
            indices=self.indices[sel],
        )  # fmt: skip

    def load(self, which: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[B, C, *S]`` float32 and masks ``[B, *S]`` int64 (255 = no mask)."""
        assert self.indices is not None
        rows = self.indices[np.asarray(which, dtype=np.int64).reshape(-1)]
        if self.images is not None:
            order = np.argsort(rows)
            imgs = np.asarray(self.images[rows[order]], dtype=np.float32)[np.argsort(order)]
            if self.masks is not None:
                msk = np.asarray(self.masks[rows[order]], dtype=np.int64)[np.argsort(order)]
            else:
                msk = np.full((len(rows), *self.spatial), NO_MASK, dtype=np.int64)
            return torch.from_numpy(imgs), torch.from_numpy(msk)
        items = [self.dataset[int(r)] for r in rows]
        imgs_t = torch.stack([torch.as_tensor(it[0], dtype=torch.float32) for it in items])
        msk_t = torch.stack([torch.as_tensor(it[1], dtype=torch.int64) for it in items])
        return imgs_t, msk_t

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        """Walk the set: ``(positions, images, masks)`` per batch."""
        for start in range(0, len(self), batch_size):
            pos = np.arange(start, min(start + batch_size, len(self)))
            imgs, msk = self.load(pos)
            yield pos, imgs, msk

    # -- labels ---------------------------------------------------------------------------
    def label_values(self, name: str) -> list[Any]:
        """Raw value of label ``name`` per case (``None`` where missing)."""
        return [None if is_missing(r.get(name)) else r.get(name) for r in self.labels]

    def groups(
        self, fields: Sequence[str] | None = None, min_cases: int = 1
    ) -> dict[str, np.ndarray]:
        """Positions of the cases of each condition, e.g. ``{"cohort=GLI": [0, 3], "grade=LGG": [1]}``."""
        out: dict[str, np.ndarray] = {}
        for name in fields if fields is not None else self.categorical:
            values = self.label_values(name)
            for value in sorted({str(v) for v in values if v is not None}):
                pos = np.array(
                    [i for i, v in enumerate(values) if v is not None and str(v) == value],
                    dtype=np.int64,
                )
                if len(pos) >= min_cases:
                    out[f"{name}={value}"] = pos
        return out


def check_compatible(reference: CaseSet, other: CaseSet) -> None:
    """Raise a GliomagenError when two sets do not share channels and grid size."""
    if tuple(reference.shape) != tuple(other.shape):
        what = "volumes are" if len(other.shape) == 4 else "slices are"
        axes = "D, H, W" if len(other.shape) == 4 else "H, W"
        raise GliomagenError(
            f"{other.name}: {what} {list(other.shape)} (channels, {axes}) but {reference.name} has "
            f"{list(reference.shape)}; evaluate cases on one grid"
        )
