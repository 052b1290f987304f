"""Artefacts every layer reads and writes: atomic files and folders, checkpoints, devices.

The lowest layer of gliomagen beside ``errors`` and ``config``: it imports neither ``data`` nor
``models`` nor ``training``, so training writes through it and generation / evaluation read
through it without importing each other.

Modules: :mod:`~gliomagen.io.atomic` (atomic files and folders, JSON without NaN),
:mod:`~gliomagen.io.checkpoint` (the checkpoint format, saving, keeping, safe loading, RNG states),
:mod:`~gliomagen.io.device` (``auto`` / ``cpu`` / ``cuda[:N]``) and :mod:`~gliomagen.io.ownership`
(the marker a folder gliomagen wrote carries, listing its files with cheap digests). Nothing is re-exported here,
so ``import gliomagen.io.atomic`` (as ``gliomagen.config`` does) does not import torch. Rebuilding
a generator from a checkpoint needs the networks: :func:`gliomagen.models.loading.load_generator`.
"""
