"""The official BraTS lesion-wise metrics, computed by the challenge's own package (optional).

The BraTS segmentation challenges (2023 on) rank teams by *lesion-wise* Dice and HD95: each
region's mask is split into connected components (lesions), predicted and reference lesions are
matched, and the metrics are computed per matched lesion. The challenge publishes its code as the
PyPI package ``brats-evaluation`` (module ``brats_evaluation``, built on ``panoptica``); this
module runs it with its bundled glioma configuration (``gli``: connected components, maximum
bipartite matching on Dice > 1e-6) on one case held in memory. It is an optional dependency
(``pip install 'gliomagen[brats]'``): without it :func:`lesion_wise` returns ``None`` and
:func:`available` says why. Nothing here re-implements the challenge's algorithm.

The figures of each region (``WT`` = labels 1-3, ``TC`` = 1 and 3, ``ET`` = 3; BraTS 2023 labels
1 NCR, 2 ED, 3 ET), named after the columns of the package's own parser
(``brats_evaluation.parse_seg_results``):

* ``lesion_dice``: lesion-wise Dice (the parser's ``lesionwise_dsc_mean``; panoptica's ``sq_dsc``,
  the mean Dice over matched lesions; unmatched lesions count in ``f1``, not here);
* ``lesion_hd95``: lesion-wise HD95 in the units of ``spacing`` (``lesionwise_hd95_mean``; mean
  over matched lesions; ``inf`` when no lesion is matched, as the package reports it);
* ``f1``, ``tp``, ``fp``, ``fn``: lesion detection (``all_instance_f1/tp/fp/fn``);
* ``global_dice``: the voxel-wise Dice of the whole region (``global_dsc``);
* ``global_hd95_vox``: the region's HD95 (``global_hd95``) **in voxels**: panoptica 2.1.7 ignores
  the voxel spacing for its global metrics; ``inf`` becomes 373 as in the package's parser.

Every figure is ``nan`` for a region that neither mask contains (the package's own value).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from gliomagen.errors import GliomagenError

DISTRIBUTION = "brats-evaluation"
CONFIG = "gli"
# gliomagen's region name -> the package's label group in its glioma config
REGIONS: dict[str, str] = {"WT": "wt", "TC": "tc", "ET": "et"}
# our figure -> the key of panoptica's result dict that the package's parser reads
FIELDS: dict[str, str] = {
    "lesion_dice": "sq_dsc",
    "lesion_hd95": "sq_hd95",
    "f1": "rq",
    "tp": "tp",
    "fp": "fp",
    "fn": "fn",
    "global_dice": "global_bin_dsc",
    "global_hd95_vox": "global_bin_hd95",
}
HD95_PENALTY = 373.0  # the package parser's value for an infinite global HD95 (SRI cube diagonal)


def available() -> tuple[bool, str]:
    """Whether the challenge's package can be used, and a one-line reason or version."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False, f"{DISTRIBUTION} is not installed (pip install 'gliomagen[brats]')"
    try:
        _evaluator()
    except Exception as exc:  # any failure of a third-party import or config load
        return False, f"{DISTRIBUTION} {version} does not load: {type(exc).__name__}: {exc}"
    return True, (
        f"{DISTRIBUTION} {version} (panoptica {importlib.metadata.version('panoptica')}, "
        f"config {CONFIG})"
    )


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence the package's prints (citation banner, label-group notes) and warnings."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@functools.lru_cache(maxsize=1)
def _evaluator() -> Any:
    """The package's glioma evaluator (loaded once)."""
    # optional dependency: the challenge's package, only imported when it is used
    from brats_evaluation import config_path
    from panoptica import Panoptica_Evaluator

    with _quiet():
        return Panoptica_Evaluator.load_from_config(str(config_path(CONFIG)))


def _check(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> tuple[float, ...]:
    if pred.shape != gt.shape:
        raise GliomagenError(
            f"lesion_wise: prediction {pred.shape} and reference {gt.shape} differ in shape"
        )
    if len(spacing) != gt.ndim or not all(float(s) > 0 for s in spacing):
        raise GliomagenError(
            f"lesion_wise: spacing {tuple(spacing)} must give one positive size per axis of {gt.shape}"
        )
    for name, arr in (("prediction", pred), ("reference", gt)):
        labels = set(np.unique(arr).tolist())
        if not labels <= {0, 1, 2, 3}:
            raise GliomagenError(
                f"lesion_wise: {name} has labels {sorted(labels)}; expected 0-3 (BraTS 2023)"
            )
    return tuple(float(s) for s in spacing)


def _figure(name: str, value: Any) -> float:
    v = float(value) if value is not None else math.nan
    if name == "global_hd95_vox" and math.isinf(v):
        return HD95_PENALTY
    return v


def lesion_wise(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]
) -> dict[str, dict[str, float]] | None:
    """The official lesion-wise BraTS metrics of one case, per region (see the module docstring).

    Args:
        pred: predicted labels ``[*S]`` (0 background, 1 NCR, 2 ED, 3 ET).
        gt: reference labels, same shape.
        spacing: voxel size per axis (mm); lesion-wise HD95 is in these units.

    Returns:
        ``{"WT" | "TC" | "ET": {figure: value}}`` with the figures of :data:`FIELDS`, or ``None``
        when the package is not installed (:func:`available` says why).

    Raises:
        GliomagenError: shapes differ, a bad spacing, or labels outside 0-3.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    voxelspacing = _check(pred, gt, spacing)
    if not available()[0]:
        return None
    evaluator = _evaluator()
    skip = [g for g in ("netc", "snfh", "rc") if g not in REGIONS.values()]
    with _quiet():
        results = evaluator.evaluate(
            pred.astype(np.uint8),
            gt.astype(np.uint8),
            voxelspacing=voxelspacing,
            skip_groups=skip,
        )
    out: dict[str, dict[str, float]] = {}
    for region, group in REGIONS.items():
        row = results[group].to_dict(True)  # as brats_evaluation.evaluate_single_exam does
        out[region] = {name: _figure(name, row.get(key)) for name, key in FIELDS.items()}
    return out
