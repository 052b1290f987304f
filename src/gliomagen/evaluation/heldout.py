"""A generator's samples against a store's held-out split, measured with the metric suite.

What validation during training measures (:mod:`gliomagen.training.validation`): a
:class:`HeldOutCheck` fixes the inputs of the samples once (the conditions of the held-out cases
in turn, encoded with the model's schema; latents from a seed; :func:`generate_samples` draws
them), builds the suite's reference of
the held-out and the training split on first use (:func:`~gliomagen.evaluation.suite.build_reference`,
cached on disk) and turns each set of samples into the summary of
:func:`~gliomagen.evaluation.suite.measure` (:func:`~gliomagen.evaluation.suite.summary`). Volumes
and 2-D slices (a ``prepare --slices`` store) alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomagen.data.store import open_store
from gliomagen.evaluation import suite
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.inputs import breakdown_fields, from_store


@torch.no_grad()
def generate_samples(
    G: torch.nn.Module,
    z: torch.Tensor,
    cat: torch.Tensor,
    cont: torch.Tensor,
    batch_size: int,
    device: torch.device | str,
) -> tuple[np.ndarray, np.ndarray]:
    """Volumes (or slices) of ``G`` (constant noise) in batches.

    Returns:
        ``(images float32 [N, C, *S] clamped to [-1, 1], masks uint8 [N, *S] (argmax of the logits))``.
    """
    imgs, masks = [], []
    for i in range(0, len(z), batch_size):
        sl = slice(i, i + batch_size)
        img, logits = G(
            z[sl].to(device), cat[sl].to(device), cont[sl].to(device), noise_mode="const"
        )
        imgs.append(img.float().clamp(-1, 1).cpu())
        masks.append(logits.argmax(1).to(torch.uint8).cpu())
    return torch.cat(imgs).numpy(), torch.cat(masks).numpy()


class HeldOutCheck:
    """Samples of a generator against the ``split`` cases of a store.

    Args:
        store: the store folder.
        schema: the model's conditions (a :class:`~gliomagen.data.conditions.ConditionSchema`).
        options: the suite's options.
        n_samples: samples per measurement.
        z_dim: length of a latent.
        seed: seed of the latents.
        split: the held-out split (at least one case).
        cache_dir: where the probe and the reference are cached.
        device: where the extractor runs.
        write: write a computed reference to the cache.

    Attributes:
        fields: the model's categorical conditions that break figures down (and whose fidelity
            is scored): categorical fields of the store, not derived from the mask.
        z: ``[n, z_dim]`` latents; ``cat`` ``[n, n_cat]`` and ``cont`` ``[n, n_cont]``: the
            encoded conditions of the samples; ``labels``: their raw values of ``fields``.
    """

    def __init__(
        self,
        store: str | os.PathLike[str],
        schema: Any,
        options: suite.SuiteOptions,
        *,
        n_samples: int,
        z_dim: int,
        seed: int,
        split: str = "val",
        cache_dir: str | os.PathLike[str] | None = None,
        device: torch.device | str = "cpu",
        write: bool = True,
    ) -> None:
        self.store, self.split, self.options = Path(store), split, options
        self.cache_dir, self.device, self.write = cache_dir, device, write
        heldout = open_store(self.store, split=split)
        self.fields = [f for f in breakdown_fields(heldout.schema) if f in schema.names]
        pick = np.arange(n_samples) % len(heldout)  # the held-out cases' conditions in turn
        cat, cont = schema.encode_many([schema.normalise(r) for r in heldout.rows])
        self.cat = torch.as_tensor(cat[pick], dtype=torch.long)
        self.cont = torch.as_tensor(cont[pick], dtype=torch.float32)
        self.labels = [{f: heldout.rows[i].get(f) for f in self.fields} for i in pick]
        gen = torch.Generator().manual_seed(seed)
        self.z = torch.randn(n_samples, z_dim, generator=gen)
        self._ref: suite.Reference | None = None

    @property
    def prepared(self) -> bool:
        """Whether the reference is built (in memory)."""
        return self._ref is not None

    def reference(self) -> suite.Reference:
        """The suite's reference of the held-out and training splits, built once (cached)."""
        if self._ref is None:
            heldout = from_store(self.store, self.split, "validation")
            train = from_store(self.store, "train", "validation")
            heldout.categorical = train.categorical = list(self.fields)
            self._ref = suite.build_reference(
                heldout, train, self.options, cache_dir=self.cache_dir, device=self.device,
                write=self.write,
            )  # fmt: skip
        return self._ref

    def measure(self, images: np.ndarray, masks: np.ndarray, name: str = "G_ema") -> dict[str, Any]:
        """The suite's summary of samples ``images [n, C, *S]`` and ``masks [n, *S]`` drawn from
        :attr:`z`, :attr:`cat` and :attr:`cont` (``None`` where a metric is undefined)."""
        ref = self.reference()
        samples = CaseSet.from_arrays(
            images, masks, labels=self.labels, name=name, spacing_mm=ref.real.spacing_mm,
            categorical=list(self.fields),
        )  # fmt: skip
        return suite.summary(ref, suite.measure(ref, samples, strict=False))
