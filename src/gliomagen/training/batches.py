"""What a training step reads: the store's cases and conditions, and the step's random draws.

:class:`TrainingData` checks a store against the configuration (grid size, condition names, cases
with masks) and selects the condition columns the model uses.

:class:`StepPlan` draws every random number of a step from a generator seeded by ``(seed, step)``
for the *global* batch (all workers, all accumulation rounds) and hands each worker its rows. So a
run does not depend on how its batch is split (one worker == N data-parallel workers), and resuming
at step ``s`` replays exactly what an uninterrupted run does at ``s``. Streams of a step: 0 and 1
the phases ``G`` and ``D``, 2 the encoder's reparameterisation noise (``model.encoder``), 3 and 4
the sub-volume corners and their augmentation of the phases ``G`` and ``D`` (``model.hierarchical``),
99 (with the epoch for the step) the order of the training cases.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from gliomagen.config import apply_grid_defaults, check_hierarchical, check_store_size
from gliomagen.data.conditions import ConditionSchema
from gliomagen.errors import GliomagenError
from gliomagen.models.augment import AugmentPipe
from gliomagen.models.grid import low_view, plan_grid

N_CLASSES = 4


class TrainingData:
    """A store seen through a configuration.

    Args:
        store: a :class:`gliomagen.data.store.StoreDataset` (or an object with the same attributes).
        cfg: the run configuration.
        name: how to name the store in messages (its path).

    Attributes:
        schema: the conditions the model uses (a subset of the store's, in store order).
        size: the volume grid.
        n_modalities: image channels.
        train_index: store rows used for training (cases with a mask).
        cat / cont: ``[N_store, n_cat]`` long / ``[N_store, n_cont]`` float condition codes.
        recon_excluded: ``(categorical column, code)`` pairs whose cases are no reconstruction
            targets (``loss.recon_exclude`` and ``loss.recon_scarce_ratio``).
        recon_note: the training log's line on ``loss.recon_scarce_ratio`` ("" when off).
    """

    def __init__(self, store: Any, cfg: Any, name: str = "store") -> None:
        self.store, self.name = store, name
        full: ConditionSchema = store.schema
        wanted = cfg.data.conditions if cfg.data.conditions is not None else full.names
        missing = [n for n in wanted if n not in full]
        if missing:
            raise GliomagenError(
                f"data.conditions: {missing[0]!r} is not a condition of {name}; it has: {', '.join(full.names) or 'none'}"
            )
        self.schema = ConditionSchema([f for f in full.fields if f.name in wanted])
        cat_names = [f.name for f in full.categorical]
        cont_names = [f.name for f in full.continuous]
        cat_cols = [cat_names.index(f.name) for f in self.schema.categorical]
        cont_cols = [cont_names.index(f.name) for f in self.schema.continuous]
        self.cat = torch.as_tensor(
            np.asarray(store.cond_cat)[:, cat_cols], dtype=torch.long
        ).reshape(len(store), len(cat_cols))
        self.cont = torch.as_tensor(
            np.asarray(store.cond_cont)[:, cont_cols], dtype=torch.float32
        ).reshape(len(store), len(cont_cols))
        self.size = tuple(int(s) for s in store.size)
        check_store_size(cfg, self.size, name)  # 2D/3D mismatch or a data.size not the store's
        self.grid_note = apply_grid_defaults(cfg, self.size)  # model.hierarchical_from
        self._low_cases: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # low_cases()
        if cfg.model.hierarchical:
            check_hierarchical(cfg, self.size)
        try:
            plan_grid(self.size)
        except ValueError as exc:
            raise GliomagenError(f"{name}: unsupported size: {exc}") from None
        self.n_modalities = len(store.modalities)
        self.train_index = np.flatnonzero(np.asarray(store.has_mask, dtype=bool))
        if len(self.train_index) == 0:
            raise GliomagenError(
                f"{name}: no case of this split has a tumour mask; training needs masks"
            )
        self.n_skipped = len(store) - len(self.train_index)
        self.recon_excluded = excluded_codes(self.schema, getattr(cfg.loss, "recon_exclude", []))
        scarce, self.recon_note = scarce_cohort_codes(
            self.schema, self.cat[self.train_index], getattr(cfg.loss, "recon_scarce_ratio", 0.0)
        )
        self.recon_excluded += [c for c in scarce if c not in self.recon_excluded]

    @property
    def meta(self) -> dict[str, Any]:
        """The store facts a checkpoint keeps (size, modalities, spacing_mm, template_geometry)."""
        meta = dict(getattr(self.store, "meta", {}) or {})
        return {
            "size": list(self.size),
            "modalities": list(self.store.modalities),
            "spacing_mm": [
                float(s)
                for s in meta.get("spacing_mm", getattr(self.store, "spacing_mm", []) or [])
            ],
            "template_geometry": meta.get("template_geometry", {}),
        }

    def collate_real(
        self, batch: list[Any] | StackedItems, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Dataset items (or their :func:`stack_items` pair) -> ``(images [n, C, *S], one-hot
        masks [n, 4, *S])`` on ``device``; from pinned memory the copy to a GPU is asynchronous."""
        img, mask = batch if isinstance(batch, StackedItems) else stack_items(batch)
        non_blocking = device.type == "cuda" and img.is_pinned()
        img = img.to(device, torch.float32, non_blocking=non_blocking)
        mask = mask.to(device, non_blocking=non_blocking)
        onehot = (
            F.one_hot(mask.clamp(0, N_CLASSES - 1), N_CLASSES).movedim(-1, 1).float()
        )  # [n, 4, *S]
        return img, onehot

    def low_cases(self, factor: int, batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """The training cases (``train_index``) at ``1 / factor`` of the grid, as a hierarchical
        model's encoder sees them (:func:`gliomagen.models.grid.low_view`, hard): ``(images [n, C,
        *S/f] float32, mask labels [n, *S/f] uint8)`` on the CPU.

        Built once per factor and kept (a 32^3 view of 1,251 cases is about 0.7 GB): the latent
        prior's refits encode every training case, and reading the full grid each time would
        read the whole store (tens of GB at 128^3) every ``train.latent_prior_every`` steps.
        """
        cache = self._low_cases
        if factor not in cache:
            imgs, labels = [], []
            rows = self.train_index
            for s in range(0, len(rows), batch):
                items = [self.store[int(i)] for i in rows[s : s + batch]]
                img, onehot = self.collate_real(items, torch.device("cpu"))
                low_img, low_mask = low_view(img, onehot, factor, hard=True)
                imgs.append(low_img)
                labels.append(low_mask.argmax(1).to(torch.uint8))
            cache[factor] = (torch.cat(imgs), torch.cat(labels))
        return cache[factor]


def excluded_codes(schema: ConditionSchema, items: list[str]) -> list[tuple[int, int]]:
    """``loss.recon_exclude``'s ``name=value`` items as ``(categorical column, code)`` pairs of
    ``schema`` (the model's conditions).

    Raises:
        GliomagenError: an item that is not ``name=value``, a name that is not a categorical
            condition of the model, or a value it does not have.
    """
    cats = [f.name for f in schema.categorical]
    out = []
    for item in items:
        name, sep, value = str(item).partition("=")
        if not sep or not name or not value:
            raise GliomagenError(
                f"loss.recon_exclude: {item!r}: expected name=value, e.g. cohort=SSA"
            )
        if name not in cats:
            raise GliomagenError(
                f"loss.recon_exclude: {name!r} is not a categorical condition of the model "
                f"(it has: {', '.join(cats) or 'none'})"
            )
        field = schema.categorical[cats.index(name)]
        if value not in field.categories:
            raise GliomagenError(
                f"loss.recon_exclude: {name}={value}: no such value (it has: {', '.join(map(str, field.categories))})"
            )
        out.append((cats.index(name), int(field.encode(value))))
    return out


def scarce_cohort_codes(
    schema: ConditionSchema, cat: torch.Tensor, ratio: float
) -> tuple[list[tuple[int, int]], str]:
    """``loss.recon_scarce_ratio``: the values of the ``cohort`` condition whose training cases
    number fewer than ``ratio`` x the largest cohort's, as ``(categorical column, code)`` pairs,
    and a line for the training log saying which cohorts are reconstruction targets ("" when
    the option is off or the model has no ``cohort`` condition).

    Args:
        schema: the model's conditions.
        cat: ``[n, n_cat]`` categorical codes of the training cases.
        ratio: the share (0: off).
    """
    cats = [f.name for f in schema.categorical]
    if ratio <= 0 or "cohort" not in cats:
        return [], ""
    col = cats.index("cohort")
    field = schema.categorical[col]
    counts = torch.bincount(cat[:, col].long(), minlength=len(field.categories)).tolist()
    largest = max(counts)
    out = [(col, code) for code, c in enumerate(counts) if 0 < c < ratio * largest]
    name = [f"{field.categories[k]} ({c} cases)" for k, c in enumerate(counts)]
    kept = [name[k] for k, c in enumerate(counts) if c and (col, k) not in out]
    if not out:
        return [], (
            f"loss.recon_scarce_ratio={ratio:g}: no cohort is scarce ({', '.join(kept)}); every "
            "cohort is a reconstruction target"
        )
    return out, (
        f"reconstruction targets: cohort {', '.join(kept)}; cohort {', '.join(name[k] for _, k in out)} "
        f"is learnt through D only (loss.recon_scarce_ratio={ratio:g}: fewer training cases than "
        f"{ratio:g} x the largest cohort's)"
    )


class StackedItems(NamedTuple):
    """A stacked batch of store items (a named tuple: the loader's pinning keeps its type)."""

    images: torch.Tensor
    masks: torch.Tensor


def stack_items(batch: list[Any]) -> StackedItems:
    """DataLoader ``collate_fn``: stack the items' images and masks, in the loader's worker, so
    that the loader can pin the stacked batch (``pin_memory``) before it reaches the GPU."""
    return StackedItems(torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch]))


def step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """A CPU generator for ``(seed, step, stream)`` (independent streams via numpy's SeedSequence)."""
    state = np.random.SeedSequence([int(seed), int(step), int(stream)]).generate_state(
        2, dtype=np.uint32
    )
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


@dataclass
class PhaseDraws:
    """One phase's global draws (``B`` rows)."""

    z: torch.Tensor
    cond_rows: torch.Tensor
    noise_seeds: torch.Tensor
    aug_fake: dict[str, torch.Tensor] | None
    aug_real: dict[str, torch.Tensor] | None
    mix_z: torch.Tensor | None
    mix_cutoff: torch.Tensor | None
    gp_alpha: torch.Tensor
    enc_eps: torch.Tensor | None = None
    corners: torch.Tensor | None = None
    aug_sub_fake: dict[str, torch.Tensor] | None = None
    aug_sub_real: dict[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class SubVolumePlan:
    """Where a hierarchical run's sub-volumes may lie: ``count`` boxes of ``side``^3 per step on
    the ``full``^3 grid, their corners on multiples of ``step`` (full side / ``model.low_res``)."""

    full: int
    side: int
    step: int
    count: int

    def corners(self, g: torch.Generator) -> torch.Tensor:
        """``[count, 3]`` long corners, uniform over the allowed positions."""
        positions = (self.full - self.side) // self.step + 1
        return torch.randint(positions, (self.count, 3), generator=g) * self.step


class StepPlan:
    """Random draws and row assignment of every step.

    Args:
        seed: run seed.
        n_train: number of training cases.
        batch: global batch per step.
        accum: accumulation rounds per step.
        world, rank: data-parallel layout.
        z_dim: latent width.
        num_ws: generator's number of ``w`` inputs (style mixing cutoffs).
        style_mixing: probability of mixing per sample.
        augment: the augmentation pipeline or ``None``.
        size: volume grid.
        encoder: whether G encodes the reals (phase ``G`` then draws the reparameterisation
            noise ``enc_eps``).
        sub_volumes: a hierarchical run's sub-volume plan (``size`` is then the low-resolution
            grid that D's augmentation sees), or ``None``.
    """

    def __init__(
        self,
        *,
        seed: int,
        n_train: int,
        batch: int,
        accum: int,
        world: int,
        rank: int,
        z_dim: int,
        num_ws: int,
        style_mixing: float,
        augment: AugmentPipe | None,
        size: tuple[int, ...],
        encoder: bool = False,
        sub_volumes: SubVolumePlan | None = None,
    ) -> None:
        if batch % (accum * world):
            raise GliomagenError(
                f"train.batch_size={batch} must be divisible by grad_accum x workers = {accum} x {world}"
            )
        self.seed, self.n_train, self.batch, self.accum, self.world, self.rank = (
            seed,
            n_train,
            batch,
            accum,
            world,
            rank,
        )
        self.micro = batch // (accum * world)
        self.z_dim, self.num_ws, self.style_mixing = z_dim, num_ws, style_mixing
        self.augment, self.size, self.encoder = augment, size, encoder
        self.sub_volumes = sub_volumes
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {
                epoch: torch.randperm(self.n_train, generator=step_generator(self.seed, epoch, 99))
            }
        return self._perms[epoch]

    def real_positions(self, step: int) -> list[int]:
        """Positions in the training list of this worker's real cases at ``step`` (all rounds)."""
        start = step * self.batch + self.rank * self.accum * self.micro
        out = []
        for g in range(start, start + self.accum * self.micro):
            out.append(int(self._perm(g // self.n_train)[g % self.n_train]))
        return out

    def local_rows(self, round_: int) -> slice:
        """Rows of the global draws this worker uses in accumulation round ``round_``."""
        first = (self.rank * self.accum + round_) * self.micro
        return slice(first, first + self.micro)

    def draw(self, step: int, phase: str, p: float) -> PhaseDraws:
        """The global draws of one phase (``"G"`` or ``"D"``) at ``step`` with augmentation ``p``."""
        g = step_generator(self.seed, step, 0 if phase == "G" else 1)
        b = self.batch
        z = torch.randn(b, self.z_dim, generator=g)
        rows = torch.randint(self.n_train, (b,), generator=g)
        seeds = torch.randint(0, 2**62, (b,), generator=g)
        mix_z = torch.randn(b, self.z_dim, generator=g)
        cut = torch.randint(1, self.num_ws, (b,), generator=g)
        mixed = torch.rand(b, generator=g) < self.style_mixing
        cutoff = torch.where(mixed, cut, torch.full_like(cut, self.num_ws))
        gp_alpha = torch.rand(b, generator=g)
        aug_fake = aug_real = None
        if self.augment is not None:
            aug_fake = self.augment.sample_params(b, p, self.size, g)
            aug_real = self.augment.sample_params(b, p, self.size, g)
        use_mix = self.style_mixing > 0
        enc_eps = None
        if self.encoder and phase == "G":  # its own stream: the other draws stay as they were
            enc_eps = torch.randn(b, self.z_dim, generator=step_generator(self.seed, step, 2))
        draws = PhaseDraws(
            z,
            rows,
            seeds,
            aug_fake,
            aug_real,
            mix_z if use_mix else None,
            cutoff if use_mix else None,
            gp_alpha,
            enc_eps,
        )
        sv = self.sub_volumes
        if sv is not None:  # its own stream: the other draws stay as they were
            gh = step_generator(self.seed, step, 3 if phase == "G" else 4)
            draws.corners = sv.corners(gh)
            if self.augment is not None:
                sub = (sv.side,) * 3
                draws.aug_sub_fake = self.augment.sample_params(b, p, sub, gh)
                draws.aug_sub_real = self.augment.sample_params(b, p, sub, gh)
        return draws


@dataclass
class MicroBatch:
    """Everything one phase on one micro-batch needs; all randomness drawn beforehand.

    Attributes:
        real_img: ``[n, C, *S]`` real images in [-1, 1].
        real_mask: ``[n, 4, *S]`` one-hot real masks.
        real_cat / real_cont: the real cases' conditions.
        z: ``[n, z_dim]`` latents; ``gen_cat`` / ``gen_cont``: their conditions.
        noise_seeds: one noise seed per generated sample.
        aug_real / aug_fake: augmentation parameters (``None`` = no augmentation).
        mix_z: ``[n, z_dim]`` second latents for style mixing; ``mix_cutoff``: ``[n]`` first layer
            taking ``mix_z`` (``num_ws`` = no mixing). ``None`` = no mixing.
        gp_alpha: ``[n]`` interpolation weights of the gradient penalty.
        enc_eps: ``[n, z_dim]`` standard-normal noise of the encoder's reparameterisation
            (``None``: drawn from the global generator, outside the training loop).
        step: the optimiser step (schedules such as the KL warm-up; ``None``: no schedule).
        corners: ``[K, 3]`` full-grid corners of the step's sub-volumes, shared by the
            micro-batch's samples (``model.hierarchical``; ``None`` otherwise).
        aug_sub_real / aug_sub_fake: the sub-volumes' augmentation parameters.
    """

    real_img: torch.Tensor
    real_mask: torch.Tensor
    real_cat: torch.Tensor
    real_cont: torch.Tensor
    z: torch.Tensor
    gen_cat: torch.Tensor
    gen_cont: torch.Tensor
    noise_seeds: list[int]
    aug_real: dict[str, torch.Tensor] | None = None
    aug_fake: dict[str, torch.Tensor] | None = None
    mix_z: torch.Tensor | None = None
    mix_cutoff: torch.Tensor | None = None
    gp_alpha: torch.Tensor | None = None
    step: int | None = None
    enc_eps: torch.Tensor | None = None
    corners: torch.Tensor | None = None
    aug_sub_real: dict[str, torch.Tensor] | None = None
    aug_sub_fake: dict[str, torch.Tensor] | None = None


def slice_params(
    params: dict[str, torch.Tensor] | None, rows: slice
) -> dict[str, torch.Tensor] | None:
    """Rows of augmentation parameters."""
    return None if params is None else {k: v[rows] for k, v in params.items()}


class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Store indices of this worker's real cases for steps ``start .. end-1`` (for a DataLoader)."""

    def __init__(self, plan: StepPlan, train_index: np.ndarray, start: int, end: int) -> None:
        self.plan, self.train_index, self.start, self.end = plan, train_index, start, end

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.end):
            yield [int(self.train_index[i]) for i in self.plan.real_positions(step)]

    def __len__(self) -> int:
        return max(0, self.end - self.start)
