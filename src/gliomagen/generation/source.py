"""The generator a cohort comes from: a checkpoint loaded and checked, with its checksum.

Loading goes through :func:`gliomagen.models.loading.load_generator` (``torch.load`` with
``weights_only=True``: a checkpoint from a stranger cannot run code). Any failure becomes one
:class:`GliomagenError` line naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gliomagen import MODALITIES
from gliomagen.data.conditions import ConditionSchema
from gliomagen.errors import GliomagenError
from gliomagen.generation.writer import file_sha256
from gliomagen.io.checkpoint import resolve_checkpoint
from gliomagen.io.device import resolve_device
from gliomagen.models.loading import load_generator


@dataclass
class GeneratorSource:
    """A loaded generator and what came with it.

    Attributes:
        path: the checkpoint file.
        sha256: its checksum (hex).
        G: the generator (eval mode, no gradients needed).
        schema: its condition schema.
        config: the resolved training config (:class:`gliomagen.config.Config`).
        meta: the training store's meta (size, modalities, spacing_mm, template_geometry, ...).
    """

    path: Path
    sha256: str
    G: Any
    schema: ConditionSchema
    config: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def modalities(self) -> list[str]:
        """Channel names of the generated images, from the store meta (BraTS order by default)."""
        return list(self.meta.get("modalities") or MODALITIES)

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device


def load_source(checkpoint: Path | str, device: str | torch.device = "cpu") -> GeneratorSource:
    """Load the EMA generator of a gliomagen checkpoint.

    Args:
        checkpoint: a ``.pt`` file written by ``gliomagen train``, or a run folder (its newest).
        device: where to put the generator.

    Raises:
        GliomagenError: the file is missing or is not a gliomagen checkpoint.
    """
    given = Path(checkpoint)
    if not given.exists():
        raise GliomagenError(f"--checkpoint {given}: file not found")
    dev = resolve_device(device)
    try:
        path = resolve_checkpoint(given)  # a file, or a run folder's newest checkpoint
        G, schema, config, meta = load_generator(path, device=str(dev), ema=True)
    except GliomagenError as exc:
        msg = str(exc)
        raise GliomagenError(msg if str(given) in msg else f"--checkpoint {given}: {msg}") from None
    except Exception as exc:  # unpickling errors, wrong archive, missing keys, ...
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise GliomagenError(
            f"--checkpoint {path}: not a gliomagen checkpoint ({reason})"
        ) from None
    G.eval().requires_grad_(False)
    if not isinstance(schema, ConditionSchema):
        schema = ConditionSchema.from_dict(schema)
    return GeneratorSource(path, file_sha256(path), G, schema, config, dict(meta or {}))


LATENT_PRIORS = ("fitted", "normal")


def select_latent_prior(source: GeneratorSource, choice: str | None) -> str:
    """Apply ``--latent-prior`` to the loaded generator and return the prior in use.

    ``None`` keeps the checkpoint's (a fitted prior when it was trained with
    ``model.latent_prior=fitted``, else ``N(0, I)``); ``normal`` samples ``z ~ N(0, I)`` even from
    a fitted model; ``fitted`` insists on the checkpoint's fit.

    Raises:
        GliomagenError: an unknown choice, or ``fitted`` for a checkpoint without a fit.
    """
    mapping = source.G.mapping
    if choice is not None and choice not in LATENT_PRIORS:
        raise GliomagenError(f"--latent-prior {choice!r}: expected fitted or normal")
    if choice == "normal":
        mapping.reset_prior()
    elif choice == "fitted" and not mapping.prior_is_fitted:
        raise GliomagenError(
            f"--latent-prior fitted: {source.path} has no fitted latent prior "
            "(trained without model.latent_prior=fitted)"
        )
    return "fitted" if mapping.prior_is_fitted else "normal"
