"""Adaptive discriminator augmentation (ADA) for volumes and their masks.

Every input of D (real and generated) goes through the same random pipeline: flips, integer
translation, small rotation and scale, brightness and contrast, cutout. Each operation is applied to
a sample with probability ``p``; geometric operations move the image channels and the mask channels
together, intensity operations touch only the images. As in torchio, parameters are sampled first
(:meth:`AugmentPipe.sample_params`, from a given generator: reproducible, and the same draws for a
batch split across workers) and then applied deterministically (:meth:`AugmentPipe.apply`).

``p`` is adapted from D's overfitting heuristic ``r_t = E[sign(D(real) - offset)]``: every few steps
``p += sign(r_t - target) * images / speed_images`` (Karras et al., "Training Generative Adversarial
Networks with Limited Data", NeurIPS 2020; target 0.6).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


def ada_adjust(
    p: float, sign_mean: float, n_images: int, target: float = 0.6, speed_images: float = 50_000
) -> float:
    """One ADA update of the augmentation probability.

    Args:
        p: current probability.
        sign_mean: ``E[sign(D(real) - offset)]`` since the last update (in [-1, 1]).
        n_images: real images seen since the last update.
        target: wanted value of the heuristic.
        speed_images: images for ``p`` to move from 0 to 1.

    Returns:
        The new ``p`` in [0, 1]: up when D is overconfident on reals, down otherwise.
    """
    step = math.copysign(1.0, sign_mean - target) * n_images / max(speed_images, 1.0)
    if sign_mean == target:
        step = 0.0
    return float(min(max(p + step, 0.0), 1.0))


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from angles: ``[N, 1] -> [N, 2, 2]`` or ``[N, 3] -> [N, 3, 3]`` (Rz Ry Rx)."""
    n = angles.shape[0]
    c, s = angles.cos(), angles.sin()
    if angles.shape[1] == 1:
        return torch.stack([c[:, 0], -s[:, 0], s[:, 0], c[:, 0]], 1).reshape(n, 2, 2)
    one, zero = torch.ones(n), torch.zeros(n)

    def rot(i: int, a: int, b: int) -> torch.Tensor:
        m = (
            torch.stack([one, zero, zero, zero, one, zero, zero, zero, one], 1)
            .reshape(n, 3, 3)
            .clone()
        )
        m[:, a, a], m[:, a, b], m[:, b, a], m[:, b, b] = c[:, i], -s[:, i], s[:, i], c[:, i]
        return m

    return rot(2, 0, 1) @ rot(1, 0, 2) @ rot(0, 1, 2)


class AugmentPipe:
    """The augmentation pipeline (stateless; ``p`` is passed in).

    Args:
        spatial_dims: 2 or 3.
        n_img: image channels (the leading channels of the D input); the rest are mask channels.
        flips: random flips along every axis.
        translate: maximal integer shift as a fraction of each side (0 disables).
        rotate_deg: maximal rotation about each axis, degrees (0 disables).
        scale_std: std of log2 of the isotropic scale (0 disables).
        brightness: std of the additive brightness shift of each image channel (0 disables).
        contrast: std of log2 of the contrast factor of each image channel, about -1 (0 disables).
        cutout: side of the cut-out box as a fraction of each side (0 disables).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        n_img: int = 4,
        flips: bool = True,
        translate: float = 0.125,
        rotate_deg: float = 10.0,
        scale_std: float = 0.1,
        brightness: float = 0.1,
        contrast: float = 0.2,
        cutout: float = 0.25,
    ) -> None:
        self.sd, self.n_img = spatial_dims, n_img
        self.flips, self.translate, self.rotate_deg = flips, translate, rotate_deg
        self.scale_std, self.brightness, self.contrast, self.cutout = (
            scale_std,
            brightness,
            contrast,
            cutout,
        )

    def sample_params(
        self, n: int, p: float, size: tuple[int, ...], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Draw the parameters of ``n`` samples (on CPU). The number of draws does not depend on ``p``.

        Returns:
            A dict of ``[n, ...]`` tensors: ``flip`` bool ``[n, sd]``, ``shift`` long ``[n, sd]``
            voxels, ``angle`` ``[n, 1|3]`` radians, ``scale`` ``[n]``, ``bright`` / ``contrast``
            ``[n, n_img]``, ``cut_on`` bool ``[n]``, ``cut_centre`` ``[n, sd]`` in [0, 1).
        """
        sd, g = self.sd, generator

        def on(*shape: int) -> torch.Tensor:
            return torch.rand((n, *shape), generator=g) < p

        sides = torch.tensor(size, dtype=torch.float32)
        n_ang = 1 if sd == 2 else 3
        flip = on(sd) & self.flips
        max_shift = torch.floor(sides * self.translate)
        shift = torch.round((torch.rand(n, sd, generator=g) * 2 - 1) * max_shift).long() * on(1)
        angle = (torch.rand(n, n_ang, generator=g) * 2 - 1) * math.radians(self.rotate_deg) * on(1)
        scale = torch.exp2(torch.randn(n, generator=g) * self.scale_std * on()).float()
        bright = torch.randn(n, self.n_img, generator=g) * self.brightness * on(1)
        contrast = torch.exp2(torch.randn(n, self.n_img, generator=g) * self.contrast * on(1))
        cut_on = on() & (self.cutout > 0)
        cut_centre = torch.rand(n, sd, generator=g)
        return {
            "flip": flip,
            "shift": shift,
            "angle": angle,
            "scale": scale,
            "bright": bright,
            "contrast": contrast,
            "cut_on": cut_on,
            "cut_centre": cut_centre,
        }

    def apply(
        self, images: torch.Tensor, mask: torch.Tensor, params: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply sampled parameters (differentiable in the inputs).

        Args:
            images: ``[N, n_img, *S]``.
            mask: ``[N, n_cls, *S]`` class probabilities.
            params: from :meth:`sample_params` (``N`` rows).

        Returns:
            Augmented ``(images, mask)``.
        """
        n, sd = images.shape[0], self.sd
        dev = images.device
        x = torch.cat([images, mask.to(images.dtype)], dim=1)  # [N, C, *S]
        view = (n, 1) + (1,) * sd
        flip = params["flip"].to(dev)
        for a in range(sd):
            if bool(flip[:, a].any()):
                x = torch.where(flip[:, a].reshape(view), x.flip(2 + a), x)
        x = self._affine(x, params)
        img, msk = x[:, : self.n_img], x[:, self.n_img :]
        bright = params["bright"].to(dev, img.dtype).reshape(n, self.n_img, *(1,) * sd)
        contrast = params["contrast"].to(dev, img.dtype).reshape(n, self.n_img, *(1,) * sd)
        img = (img + 1.0) * contrast - 1.0 + bright
        if bool(params["cut_on"].any()):
            keep = self._cutout_keep(params, tuple(images.shape[2:]), dev).to(
                img.dtype
            )  # [N, 1, *S]
            img, msk = img * keep, msk * keep
        return img, msk

    def _affine(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        shift, angle, scale = params["shift"], params["angle"], params["scale"]
        if not (bool(shift.any()) or bool(angle.any()) or bool((scale != 1).any())):
            return x
        n = x.shape[0]
        sides = torch.tensor(x.shape[2:], dtype=torch.float32)
        # output voxel coordinates -> input voxel coordinates, axes in (D, H, W) order
        lin = _rotation(angle.float()) / scale.reshape(n, 1, 1)  # [N, sd, sd]
        dmat = torch.diag(2.0 / sides)  # voxel -> normalised units
        a = dmat @ lin @ torch.linalg.inv(dmat)
        b = (2.0 / sides) * (-shift.float())  # sample from x - shift: content moves by +shift
        a, b = a.flip(1, 2), b.flip(1)  # affine_grid wants (W, H, D) order
        theta = torch.cat([a, b.unsqueeze(2)], dim=2).to(x.device, torch.float32)  # [N, sd, sd + 1]
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(
            x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
        ).to(x.dtype)

    def _cutout_keep(
        self, params: dict[str, torch.Tensor], size: tuple[int, ...], dev: torch.device
    ) -> torch.Tensor:
        n = params["cut_on"].shape[0]
        keep = torch.ones((n, 1, *size), device=dev)
        for i in range(n):
            if not bool(params["cut_on"][i]):
                continue
            sl: list[Any] = [i, slice(None)]
            for a, side in enumerate(size):
                half = max(1, round(side * self.cutout / 2))
                c = int(params["cut_centre"][i, a] * side)
                sl.append(slice(max(0, c - half), min(side, c + half)))
            keep[tuple(sl)] = 0.0
        return keep
