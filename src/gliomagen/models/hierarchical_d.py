"""The hierarchical discriminator (``model.hierarchical``): the whole volume at low resolution and
a high-resolution sub-volume, each judged by its own conditional discriminator.

``low`` is the ordinary :class:`~gliomagen.models.discriminator.Discriminator` at ``low_res^3``.
``sub`` is a second one at ``sub_volume^3`` that also sees where the sub-volume lies: three
channels of normalised full-grid coordinates (``[-1, 1]`` at the volume's edges) are appended to
its images, so a patch of skull at the top and one at the side are judged as such (HA-GAN gives
its sub-volume D the crop index as a scalar feature; channels carry it for all three axes). Its
conditioning is projection, as the low one's; it has no auxiliary classifier (a box that misses
the tumour cannot say the grade).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gliomagen.models.discriminator import Discriminator, DOutput


def coordinate_channels(
    corner: Sequence[int], side: int, size: Sequence[int], n: int, device: torch.device | str
) -> torch.Tensor:
    """``[n, 3, side, side, side]`` normalised voxel-centre coordinates of the box at ``corner``
    on the ``size`` grid (``-1``/``1`` at the grid's outer faces)."""
    axes = [
        (torch.arange(int(c), int(c) + side, device=device, dtype=torch.float32) + 0.5) / int(s) * 2
        - 1
        for c, s in zip(corner, size, strict=True)
    ]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # [3, side, side, side]
    return grid.unsqueeze(0).expand(n, *grid.shape)


class HierarchicalDiscriminator(nn.Module):
    """``low``: D on the low-resolution whole volume; ``sub``: D on a sub-volume and its position.

    Args:
        size: the full grid (a cube).
        low_res: side of the low-resolution volume.
        sub_volume: side of the sub-volume.
        **kwargs: the :class:`Discriminator` arguments (conditions, widths, mbstd, ...).
    """

    def __init__(
        self, size: Sequence[int], low_res: int, sub_volume: int, **kwargs: object
    ) -> None:
        super().__init__()
        self.size = tuple(int(s) for s in size)
        self.low_res, self.sub_volume = int(low_res), int(sub_volume)
        n_img = int(kwargs.pop("n_img", 4))  # type: ignore[call-overload]
        self.low = Discriminator(size=(low_res,) * 3, n_img=n_img, **kwargs)  # type: ignore[arg-type]
        kwargs["aux_classifier"] = False
        self.sub = Discriminator(size=(sub_volume,) * 3, n_img=n_img + 3, **kwargs)  # type: ignore[arg-type]
        self.blocks = self.low.blocks  # FreezeD's view (model.d_freeze_blocks is refused)
        self.from_input = self.low.from_input

    def judge_sub(
        self,
        images: torch.Tensor,
        mask: torch.Tensor,
        corner: Sequence[int],
        cat: torch.Tensor,
        cont: torch.Tensor,
    ) -> DOutput:
        """Judge sub-volumes ``images [N, n_img, s, s, s]``, ``mask [N, n_cls, s, s, s]`` that lie
        at ``corner`` of the full grid."""
        coords = coordinate_channels(
            corner, self.sub_volume, self.size, images.shape[0], images.device
        )
        return self.sub(torch.cat([images, coords.to(images.dtype)], dim=1), mask, cat, cont)

    def forward(
        self, images: torch.Tensor, mask: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor
    ) -> DOutput:
        """Judge low-resolution whole volumes (the ``low`` discriminator)."""
        return self.low(images, mask, cat, cont)


__all__ = ["HierarchicalDiscriminator", "coordinate_channels"]
