"""The segmenter that label consistency (``loss.seg_weight``) keeps in D as ``D.seg``.

See :mod:`gliomagen.training.terms.segmentation` for what it learns and how G uses it.
"""

from __future__ import annotations

from torch import nn

N_REGIONS = 3  # WT, TC, ET


def build_segmenter(n_modalities: int, spatial_dims: int = 3, init_filters: int = 8) -> nn.Module:
    """``S``: MONAI's residual U-Net as the utility benchmark's segmenter builds it (channels
    ``f, 2f, 4f, 8f``, strides 2, 2, 2, two residual units), ``n_modalities`` in, three region
    logits out, 2D or 3D."""
    from monai.networks.nets import UNet  # MONAI: a heavy import, only when the term is on

    f = int(init_filters)
    return UNet(spatial_dims=spatial_dims, in_channels=n_modalities, out_channels=N_REGIONS,
                channels=(f, 2 * f, 4 * f, 8 * f), strides=(2, 2, 2), num_res_units=2)  # fmt: skip


__all__ = ["N_REGIONS", "build_segmenter"]
