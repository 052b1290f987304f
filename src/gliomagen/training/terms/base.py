"""The interface of a training term, and the registry the loss builds its terms from.

A *term* is one extra objective of a phase beyond the adversarial and auxiliary losses: a penalty
on G's masks, the VAE-GAN reconstruction, label consistency. Each is a :class:`Term` subclass
that says

- ``name``: the term's name (and, with the phase, the prefix of its logged statistics);
- ``phase``: the pass it joins, ``"G"`` (generator step) or ``"D"`` (discriminator step);
- ``needs``: the per-condition tables it reads from the training masks (names of
  :class:`~gliomagen.training.terms.tables.MaskTables` methods);
- ``weight_of(cfg)``: its weight in the phase's loss (0 = off: the term is not built);
- ``loss(inputs)``: its value and its statistics for one micro-batch.

:func:`gliomagen.training.terms.registry.build_terms` returns the terms of a configuration whose
weight is positive; :class:`gliomagen.training.losses.StyleGANLoss` adds ``weight * value`` of each
to its phase's loss. A new term is a new module with one subclass, listed in the registry.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch

from gliomagen.errors import GliomagenError
from gliomagen.training.batches import MicroBatch


class GeneratorPasses(Protocol):
    """What a term may run of the networks (the loss provides it): G's mapping and synthesis (as
    the loss runs them, compiled or not), G's encoder (or ``None``), D's segmenter (or ``None``)
    and the autocast context."""

    num_ws: int
    mapping: Any
    synthesis: Any
    encoder: Any
    seg: Any  # D's segmenter (``loss.seg_weight``), or None
    autocast: Callable[[], contextlib.AbstractContextManager[Any]]


@dataclass
class TermInputs:
    """What a phase hands each of its terms for one micro-batch.

    Attributes:
        mb: the micro-batch (reals, conditions, draws; ``mb.step`` the optimiser step or ``None``).
        img: ``[n, C, *S]`` G's images of the micro-batch (no gradient in phase ``D``).
        probs: ``[n, 4, *S]`` G's soft mask probabilities (no gradient in phase ``D``).
        net: the networks' passes (:class:`GeneratorPasses`).
    """

    mb: MicroBatch
    img: torch.Tensor
    probs: torch.Tensor
    net: GeneratorPasses


class Term(ABC):
    """One training term (see the module docstring).

    Args:
        cfg: the run configuration.
        tables: the tables named in ``needs`` (``None`` where the data could give none).

    Raises:
        GliomagenError: a table the term needs is missing or empty (no categorical condition).
    """

    name: ClassVar[str]
    phase: ClassVar[str] = "G"
    needs: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()  # tables the term reads when the data gives them
    weight_key: ClassVar[str]  # the configuration key that switches the term on

    def __init__(self, cfg: Any, tables: Mapping[str, torch.Tensor | None] | None = None) -> None:
        self.weight = float(self.weight_of(cfg))
        self.tables: dict[str, torch.Tensor] = {}
        for need in self.needs:
            table = (tables or {}).get(need)
            if table is None or table.shape[0] == 0:
                raise GliomagenError(
                    f"{self.weight_key} needs a categorical condition (data.conditions has none)"
                )
            self.tables[need] = table
        for name in self.optional:
            table = (tables or {}).get(name)
            if table is not None:
                self.tables[name] = table

    @classmethod
    def weight_of(cls, cfg: Any) -> float:
        """The term's weight under ``cfg`` (the value of ``weight_key``; 0 = off)."""
        section, key = cls.weight_key.split(".")
        return float(getattr(getattr(cfg, section), key, 0.0))

    @abstractmethod
    def loss(self, inputs: TermInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(value, stats)``: the scalar the phase adds times ``weight``, and detached statistics
        summed over the micro-batch (keys ``"<phase>/<what>"``)."""
