"""Intensity standardisation of one modality inside the brain: percentile, z-score, Nyul-Udupa.

Every method maps an image to [-1, 1] with every voxel outside the brain exactly -1 (the store's
contract); ``prepare --normalize`` picks one:

``percentile`` (default)
    the 0.5 / 99.5 percentiles inside the brain map linearly to -1 / 1, clipped.
``zscore``
    ``z = (x - mean) / sd`` over the brain voxels, then ``z / 3`` clipped to [-1, 1]: the range
    +-3 sd maps linearly onto [-1, 1] (:data:`ZSCORE_CLIP_SD`); brain voxels below -3 sd also
    become -1.
``nyul``
    histogram standardisation (Nyul & Udupa, Magn. Reson. Med. 1999; Nyul, Udupa & Zhang, IEEE
    TMI 2000). Each case's landmarks are its percentiles :data:`NYUL_PERCENTILES` inside the
    brain: the ends (0.5 and 99.5, the "minimum and maximum of interest") map to the standard
    scale's ends -1 and 1, and the deciles 10..90 to *standard landmarks*, the mean over the
    **training split** of each case's deciles after mapping its ends linearly to [-1, 1]
    (:func:`learn_landmarks`). Intensities in between are mapped piecewise-linearly; beyond the
    ends they are clipped, as with ``percentile``. So ``nyul`` is ``percentile`` plus a monotone,
    piecewise-linear correction that lines up the histograms' shapes across cases, sites and
    scanners.

How ``prepare`` applies ``nyul``: the split is assigned only after every case is read, so the
first pass stores each case percentile-scaled (exactly the ``percentile`` store) and records its
landmarks (measured on the native-resolution brain, :func:`case_landmarks`); after the split, the
standard landmarks are learnt from the training cases and :func:`rewrite_images` maps every
stored case in place, one case in memory at a time. The map therefore acts on the resampled grid
(it is monotone and fixes -1, so background stays exactly -1 and ranks are kept); its float16
round trip costs at most ~1e-3. The landmarks go into ``meta.json`` under
``preprocessing.nyul`` so they can be re-applied: ``prepare --nyul-from STORE`` reuses a store's
landmarks instead of learning new ones, and :func:`standardise_nyul` maps a new raw volume.

Example:
    >>> lm = np.array([[-1.0, 0.0, 1.0], [-1.0, 0.5, 1.0]])  # two training cases, one decile
    >>> standard = learn_landmarks(lm)
    >>> standard.tolist()
    [-1.0, 0.25, 1.0]
    >>> apply_landmarks(np.array([-1.0, 0.5, 0.75, 1.0]), lm[1], standard).tolist()
    [-1.0, 0.25, 0.625, 1.0]
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen import MODALITIES
from gliomagen.errors import GliomagenError

NORMALISATIONS = ("percentile", "zscore", "nyul")
"""The ``--normalize`` choices."""

PERCENTILES = (0.5, 99.5)
"""Robust intensity range inside the brain, mapped to [-1, 1] (``percentile`` and ``nyul`` ends)."""

ZSCORE_CLIP_SD = 3.0
"""``zscore``: +-this many standard deviations map onto [-1, 1]; beyond is clipped."""

NYUL_PERCENTILES = (
    PERCENTILES[0],
    10.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    70.0,
    80.0,
    90.0,
    PERCENTILES[1],
)
"""Nyul landmarks: the ends of the range of interest and the deciles (percent, inside the brain)."""

Landmarks = Sequence[float] | np.ndarray
"""``[L]`` landmark values: a sequence or an array."""

_MIN_GAP = 1e-6
"""Smallest gap between consecutive landmarks (ties, e.g. from quantised images, are spread)."""


def check_normalization(method: str) -> str:
    """Return ``method`` if it is one of :data:`NORMALISATIONS`, else raise naming the option."""
    if method not in NORMALISATIONS:
        raise GliomagenError(f"--normalize {method!r}: must be one of {', '.join(NORMALISATIONS)}")
    return method


# -- per case ------------------------------------------------------------------------------------
def standardise(
    x: np.ndarray, brain: np.ndarray, method: str, p_lo: float, p_hi: float
) -> dict[str, Any]:
    """Map one modality to [-1, 1] in place (outside ``brain`` exactly -1).

    Args:
        x: ``[X, Y, Z]`` float32 image, changed in place.
        brain: ``[X, Y, Z]`` bool brain mask (not empty).
        method: one of :data:`NORMALISATIONS`; ``nyul`` writes the percentile-scaled image (the
            landmark map is applied once the standard is known, see the module docstring).
        p_lo, p_hi: the :data:`PERCENTILES` of ``x[brain]`` (``p_hi > p_lo``).

    Returns:
        What was measured: ``{"mean", "sd"}`` for zscore, ``{"nyul": landmarks [L]}`` for nyul,
        ``{}`` for percentile.
    """
    stats: dict[str, Any] = {}
    if method == "zscore":
        z, mean, sd = zscore(x, brain)
        x[...] = zscore_to_unit(z, brain)
        return {"mean": mean, "sd": sd}
    if method == "nyul":
        stats["nyul"] = case_landmarks(x[brain], p_lo, p_hi).tolist()
    elif method != "percentile":
        check_normalization(method)
    x -= p_lo
    x *= 2.0 / (p_hi - p_lo)
    x -= 1.0
    np.clip(x, -1.0, 1.0, out=x)
    x[~brain] = -1.0
    return stats


def zscore(x: np.ndarray, brain: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(z [X, Y, Z] float32, mean, sd)``: z-scores by the brain voxels' mean and sd (unclipped).

    Raises:
        GliomagenError: the image is constant inside the brain.
    """
    values = x[brain].astype(np.float64)
    mean, sd = float(values.mean()), float(values.std())
    if not sd > 0:
        raise GliomagenError(f"zscore: image is constant ({mean:g}) inside the brain")
    return ((x - mean) / sd).astype(np.float32), mean, sd


def zscore_to_unit(z: np.ndarray, brain: np.ndarray, clip_sd: float = ZSCORE_CLIP_SD) -> np.ndarray:
    """``z / clip_sd`` clipped to [-1, 1], and exactly -1 outside ``brain`` (float32)."""
    out = np.clip(np.asarray(z, dtype=np.float32) / np.float32(clip_sd), -1.0, 1.0)
    out[~brain] = -1.0
    return out


# -- Nyul-Udupa ----------------------------------------------------------------------------------
def case_landmarks(values: np.ndarray, p_lo: float, p_hi: float) -> np.ndarray:
    """One case's Nyul landmarks on the percentile scale (``p_lo -> -1``, ``p_hi -> 1``).

    Args:
        values: ``[K]`` brain voxel intensities (file units).
        p_lo, p_hi: the :data:`PERCENTILES` of ``values``.

    Returns:
        ``[L]`` float64, strictly increasing, ``-1`` first and ``1`` last (L = len(NYUL_PERCENTILES)).
    """
    raw = np.percentile(values, NYUL_PERCENTILES)
    lm = (raw - p_lo) * (2.0 / (p_hi - p_lo)) - 1.0
    lm[0], lm[-1] = -1.0, 1.0
    return _strictly_increasing(np.clip(lm, -1.0, 1.0))


def _strictly_increasing(lm: np.ndarray) -> np.ndarray:
    """Spread ties (and undo rounding inversions) by :data:`_MIN_GAP`, keeping -1 and 1 at the ends."""
    out = np.maximum.accumulate(np.asarray(lm, dtype=np.float64))
    for k in range(1, len(out) - 1):
        out[k] = max(out[k], out[k - 1] + _MIN_GAP)
    for k in range(len(out) - 2, 0, -1):
        out[k] = min(out[k], out[k + 1] - _MIN_GAP)
    return out


def learn_landmarks(train_landmarks: Sequence[Landmarks] | np.ndarray) -> np.ndarray:
    """The standard landmarks: the mean of the training cases' landmarks.

    Args:
        train_landmarks: ``[n_train, L]`` from :func:`case_landmarks` (training split only;
            L = len(NYUL_PERCENTILES) in stores).

    Returns:
        ``[L]`` float64, strictly increasing from -1 to 1.

    Raises:
        GliomagenError: no training case.
    """
    lm = np.asarray(train_landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] == 0 or lm.shape[1] < 2:
        raise GliomagenError(
            f"nyul: need the landmarks of at least one training case, shape [n, L], got {list(lm.shape)}"
        )
    return _strictly_increasing(lm.mean(axis=0))


def apply_landmarks(x: np.ndarray, case_lm: Landmarks, standard: Landmarks) -> np.ndarray:
    """Map percentile-scaled intensities piecewise-linearly from a case's landmarks to the standard.

    Args:
        x: intensities on the percentile scale, any shape (``-1`` background stays ``-1``).
        case_lm: ``[L]`` the case's landmarks (:func:`case_landmarks`).
        standard: ``[L]`` the standard landmarks (:func:`learn_landmarks`).

    Returns:
        float32, same shape, in [-1, 1]; monotone non-decreasing in ``x``.
    """
    xp = np.asarray(case_lm, dtype=np.float64)
    fp = np.asarray(standard, dtype=np.float64)
    return np.interp(np.asarray(x, dtype=np.float32), xp, fp).astype(np.float32)


def standardise_nyul(x: np.ndarray, brain: np.ndarray, standard: Landmarks) -> np.ndarray:
    """Nyul-standardise a new raw volume with known standard landmarks (e.g. from a store's meta).

    Args:
        x: ``[X, Y, Z]`` image in file units.
        brain: ``[X, Y, Z]`` bool brain mask.
        standard: ``[L]`` standard landmarks of the modality, e.g.
            ``meta["preprocessing"]["nyul"]["landmarks"]["t1n"]``.

    Returns:
        ``[X, Y, Z]`` float32 in [-1, 1], exactly -1 outside the brain.
    """
    values = np.asarray(x, dtype=np.float32)[brain]
    if values.size == 0:
        raise GliomagenError("nyul: empty brain mask")
    p_lo, p_hi = (float(v) for v in np.percentile(values, PERCENTILES))
    if not p_hi > p_lo:
        raise GliomagenError(f"nyul: image is constant ({p_lo:g}) inside the brain")
    scaled = np.array(x, dtype=np.float32)
    lm = standardise(scaled, brain, "nyul", p_lo, p_hi)["nyul"]
    out = apply_landmarks(scaled, lm, standard)
    out[~brain] = -1.0
    return out


# -- stores --------------------------------------------------------------------------------------
def nyul_meta(
    standard: Mapping[str, np.ndarray], n_train: int, learned_from: str
) -> dict[str, Any]:
    """The ``meta["preprocessing"]["nyul"]`` record of a store."""
    return {
        "percentiles": list(NYUL_PERCENTILES),
        "standard_scale": [-1.0, 1.0],
        "landmarks": {m: [float(v) for v in standard[m]] for m in MODALITIES},
        "learned_from": learned_from,
        "n_train_cases": int(n_train),
        "applied": "piecewise-linear map of each case's landmarks (on the percentile scale) to "
        "these, after resampling; clipped to [-1, 1]; background stays -1",
    }


def load_nyul_standard(store: Path | str) -> dict[str, np.ndarray]:
    """Read the standard landmarks of a store prepared with ``--normalize nyul`` (``--nyul-from``).

    Raises:
        GliomagenError: no such store, or it has no (compatible) landmarks; names ``--nyul-from``.
    """
    path = Path(store) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GliomagenError(
            f"--nyul-from {store}: not a readable gliomagen store ({exc})"
        ) from None
    nyul = (meta.get("preprocessing") or {}).get("nyul") if isinstance(meta, dict) else None
    if not isinstance(nyul, dict) or "landmarks" not in nyul:
        raise GliomagenError(
            f"--nyul-from {store}: the store has no Nyul landmarks (prepare it with --normalize nyul)"
        )
    if [float(p) for p in nyul.get("percentiles", [])] != list(NYUL_PERCENTILES):
        raise GliomagenError(
            f"--nyul-from {store}: landmarks at percentiles {nyul.get('percentiles')}, expected {list(NYUL_PERCENTILES)}"
        )
    out = {}
    for m in MODALITIES:
        lm = np.asarray(nyul["landmarks"].get(m, []), dtype=np.float64)
        if lm.shape != (len(NYUL_PERCENTILES),) or not (
            lm[0] == -1.0 and lm[-1] == 1.0 and np.all(np.diff(lm) > 0)
        ):
            raise GliomagenError(
                f"--nyul-from {store}: landmarks of {m} are not {len(NYUL_PERCENTILES)} increasing values from -1 to 1"
            )
        out[m] = lm
    return out


def rewrite_images(
    images_path: Path,
    case_lms: Sequence[Mapping[str, Landmarks]],
    standard: Mapping[str, Landmarks],
) -> None:
    """Apply the Nyul map to every case of a store's ``images.npy`` in place, one case at a time.

    Args:
        images_path: ``images.npy`` float16 ``[N, C, D, H, W]``, percentile-scaled.
        case_lms: per stored case, modality -> its landmarks (``intensity[m]["nyul"]``).
        standard: modality -> ``[L]`` standard landmarks.
    """
    images = np.load(images_path, mmap_mode="r+")  # [N, C, D, H, W]
    try:
        if len(case_lms) != images.shape[0]:
            raise ValueError(f"{len(case_lms)} landmark sets for {images.shape[0]} cases")
        for i, lms in enumerate(case_lms):
            case = np.asarray(images[i], dtype=np.float32)  # [C, D, H, W]
            for c, m in enumerate(MODALITIES):
                case[c] = apply_landmarks(case[c], lms[m], standard[m])
            images[i] = case.astype(np.float16)
        images.flush()
    finally:
        del images
