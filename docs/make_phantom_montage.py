"""Make docs/phantom_vs_real.png: phantom cases beside a real BraTS case.

Rows: the real case (BraTS2021_07294, TCGA-LGG, from ``../shared/data/real``), a phantom LGG and a
phantom HGG (1 mm, seed 0), each in three planes through its tumour's centre; columns: T1, T1Gd,
T2, FLAIR and the tumour mask over T1Gd (red: NCR/NET, green: edema, yellow: enhancing). Every
volume is reoriented to RAS with nibabel before display, so all rows share one orientation
(radiological: the patient's right on the image's left, anterior/superior up).

Usage:
    .venv/bin/python docs/make_phantom_montage.py [--real DIR] [--out docs/phantom_vs_real.png]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from gliomagen import MODALITIES  # noqa: E402
from gliomagen.data.phantoms import make_case  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real" / "brats2021" / "BraTS2021_07294"
NAMES_2021 = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair"}
TITLES = {"t1n": "T1", "t1c": "T1Gd", "t2w": "T2", "t2f": "FLAIR"}
MASK_CMAP = ListedColormap(
    [(0, 0, 0, 0), (0.9, 0.1, 0.1, 0.6), (0.1, 0.8, 0.2, 0.45), (1.0, 0.9, 0.0, 0.7)]
)


def _canonical(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Reorient an array to RAS+ voxel order (like nibabel.as_closest_canonical)."""
    ornt = nib.orientations.io_orientation(affine)
    return nib.orientations.apply_orientation(data, ornt)


def load_real(folder: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A BraTS 2021 case as RAS arrays; labels 4 -> 3."""
    stem = folder.name
    images = {}
    for m, name in NAMES_2021.items():
        img = nib.load(str(folder / f"{stem}_{name}.nii.gz"))
        images[m] = _canonical(np.asarray(img.dataobj, dtype=np.float32), img.affine)
    seg_img = nib.load(str(folder / f"{stem}_seg.nii.gz"))
    seg = _canonical(np.asarray(seg_img.dataobj, dtype=np.uint8), seg_img.affine)
    seg[seg == 4] = 3
    return images, seg


def load_phantom(
    cohort: str, grade: str, seed: int
) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """The first phantom of ``cohort`` with ``grade`` (1 mm), as RAS arrays."""
    for index in range(100):
        case = make_case(cohort, index, seed=seed, resolution=1)
        if case.grade == grade:
            images = {
                m: _canonical(case.images[m].astype(np.float32), case.affine) for m in MODALITIES
            }
            return images, _canonical(case.seg, case.affine), case.case_id
    raise SystemExit(f"no {grade} case in the first 100 {cohort} phantoms")


def _planes(vol: np.ndarray, c: tuple[int, int, int]) -> list[np.ndarray]:
    """Axial, coronal, sagittal slices through ``c`` of a RAS volume, ready for imshow."""
    ax = vol[:, :, c[2]].T[::-1, ::-1]  # rows: anterior up; columns: patient's right on the left
    co = vol[:, c[1], :].T[::-1, ::-1]  # rows: superior up
    sa = vol[c[0], :, :].T[::-1, :]  # rows: superior up; columns: anterior on the right
    return [ax, co, sa]


def _crop(
    images: dict[str, np.ndarray], seg: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Crop every volume of a case to the brain's bounding box plus a margin of 4 voxels."""
    brain = np.any([v > 0 for v in images.values()], axis=0)
    idx = np.argwhere(brain)
    lo, hi = np.maximum(idx.min(0) - 4, 0), idx.max(0) + 5
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    return {m: v[box] for m, v in images.items()}, seg[box]


def montage(rows: list[tuple[str, dict[str, np.ndarray], np.ndarray]], out: Path) -> None:
    """Draw the montage: one block of three rows (planes) per case, five columns."""
    n = len(rows) * 3
    fig, axes = plt.subplots(
        n,
        5,
        figsize=(5 * 2.4, n * 2.4),
        facecolor="black",
        gridspec_kw={"hspace": 0.02, "wspace": 0.02},
    )
    for r, (label, full_images, full_seg) in enumerate(rows):
        images, seg = _crop(full_images, full_seg)
        centre = tuple(int(round(v)) for v in np.argwhere(seg > 0).mean(axis=0))
        brain = images["t1n"] > 0
        for col, m in enumerate([*MODALITIES, "mask"]):
            vol = images["t1c" if m == "mask" else m]
            lo, hi = np.percentile(vol[brain], [0.5, 99.5])
            for p, (sl, msl) in enumerate(
                zip(_planes(vol, centre), _planes(seg, centre), strict=True)
            ):
                a = axes[3 * r + p, col]
                a.imshow(sl, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest", aspect="equal")
                if m == "mask":
                    a.imshow(msl, cmap=MASK_CMAP, vmin=0, vmax=3, interpolation="nearest")
                a.set_xticks([])
                a.set_yticks([])
                a.set_facecolor("black")
                if r == 0 and p == 0:
                    a.set_title(
                        "mask on T1Gd" if m == "mask" else TITLES[m], color="white", fontsize=11
                    )
                if col == 0 and p == 1:
                    a.set_ylabel(label, color="white", fontsize=9)
    fig.subplots_adjust(left=0.04, right=0.995, top=0.97, bottom=0.005)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=72, facecolor="black")
    os.replace(tmp, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=REAL, help="a BraTS 2021 case folder")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "phantom_vs_real.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    real_images, real_seg = load_real(args.real)
    lgg_images, lgg_seg, lgg_id = load_phantom("GLI", "LGG", args.seed)
    hgg_images, hgg_seg, hgg_id = load_phantom("SSA", "HGG", args.seed)
    rows = [
        (f"real {args.real.name}\n(TCGA-LGG)", real_images, real_seg),
        (f"phantom {lgg_id}\n(LGG)", lgg_images, lgg_seg),
        (f"phantom {hgg_id}\n(HGG, 1.5 T-like)", hgg_images, hgg_seg),
    ]
    montage(rows, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
