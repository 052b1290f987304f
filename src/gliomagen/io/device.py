"""Which torch device a command runs on: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

One resolver for training (``train.device``; under ``torchrun`` each worker takes the GPU of its
local rank) and for generation and evaluation (``--device``). A request this machine cannot serve
is a one-line :class:`GliomagenError`, never a CUDA traceback later on.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
"""

from __future__ import annotations

import torch

from gliomagen.errors import GliomagenError

DEVICE_TYPES = ("cpu", "cuda")


def resolve_device(
    preference: str | torch.device = "auto", local_rank: int | None = None
) -> torch.device:
    """A checked torch device.

    Args:
        preference: ``auto`` (CUDA when a GPU is present, else the CPU), ``cpu``, ``cuda``,
            ``cuda:N`` or a :class:`torch.device`.
        local_rank: the worker's rank on its node. With it, a bare ``cuda`` (also from ``auto``)
            becomes GPU ``local_rank % device_count``; without it a bare ``cuda`` stays without an
            index (the current CUDA device).

    Returns:
        The device.

    Raises:
        GliomagenError: not a device, a device type other than cpu and cuda, or CUDA requested on a
            machine without a CUDA GPU.
    """
    if isinstance(preference, str) and preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(preference)
    except (RuntimeError, TypeError):
        raise GliomagenError(
            f"--device {preference!r}: not a device (use auto, cpu, cuda or cuda:N)"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GliomagenError(
            f"--device {preference}: no CUDA GPU is available here; use --device cpu"
        )
    if dev.type not in DEVICE_TYPES:
        raise GliomagenError(f"--device {preference}: only cpu and cuda are supported")
    if dev.type == "cuda" and dev.index is None and local_rank is not None:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return dev
