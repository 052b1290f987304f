"""Generation throughput: volumes/s of the generator alone and of ``generate_cohort`` with writing.

Builds a randomly initialised generator with the default (``small-data``) preset widths at each
grid size, saves it as a real checkpoint with a BraTS-like template geometry (a synthetic
240x240x155 LPS 1 mm case run through the store's preprocessing), then measures:

- ``forward``: mapping + synthesis of ``--n`` cases (CPU: one case per call, as ``generate`` does
  there; GPU: batches of ``--batch-size``), after one warm-up call;
- ``forward_batched`` (CPU only): the same in batches of ``--batch-size``, for comparison;
- ``write_native`` / ``write_brats``: the whole ``generate_cohort`` (generator, brain mask, labels,
  resampling to the 240x240x155 grid for ``brats``, scanner intensities, gzip NIfTI writing);
- ``condition_mean_s``: the one-off cost of a per-condition mean ``w`` (truncation).

Usage::

    python benchmarks/generate.py --sizes 64 128 --n 4 --out benchmarks/generate.json

Prints one line per measurement and writes all figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from gliomagen import MODALITIES, __version__
from gliomagen.config import preset, to_dict
from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.data.layouts import CaseRecord
from gliomagen.data.preprocess import prepare_case, template_geometry
from gliomagen.generation import generate_cohort
from gliomagen.generation.plan import encode_plan
from gliomagen.generation.sampling import ConditionMeans, case_seeds, case_ws
from gliomagen.generation.source import load_source
from gliomagen.generation.synthesis import synthesize
from gliomagen.io.checkpoint import FORMAT_VERSION, save_checkpoint
from gliomagen.models import build_generator

SCHEMA = ConditionSchema(
    [
        ConditionField("cohort", "categorical", categories=["GLI", "SSA"]),
        ConditionField("grade", "categorical", categories=["HGG", "LGG"]),
    ]
)


def brats_like_geometry(folder: Path, size: tuple[int, int, int]) -> dict[str, Any]:
    """Template geometry of an ellipsoid 'brain' on the BraTS grid (240x240x155, LPS, 1 mm)."""
    shape = (240, 240, 155)
    affine = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    r = ((x - 120) / 70.0) ** 2 + ((y - 130) / 85.0) ** 2 + ((z - 75) / 65.0) ** 2
    vol = np.where(r < 1, 300 + 500 * (1 - r), 0).astype(np.int16)
    images = {}
    for m in MODALITIES:
        images[m] = folder / f"GEO-{m}.nii.gz"
        nib.save(nib.Nifti1Image(vol, affine), str(images[m]))
    case = prepare_case(CaseRecord("GEO", images, None, layout="brats2023", folder=folder), size)
    return template_geometry([case.geometry])


def make_checkpoint(folder: Path, size: tuple[int, int, int], geometry: dict[str, Any]) -> Path:
    cfg = preset("small-data")
    cfg.data.size = list(size)
    torch.manual_seed(0)
    G = build_generator(cfg, SCHEMA, size)
    state = {
        "format_version": FORMAT_VERSION,
        "step": 0,
        "G": G.state_dict(),
        "G_ema": G.state_dict(),
        "config": to_dict(cfg),
        "schema": SCHEMA.to_dict(),
        "store_meta": {
            "size": list(size),
            "modalities": list(MODALITIES),
            "spacing_mm": [geometry["spacing_mm"]] * 3,
            "template_geometry": geometry,
        },
        "size": list(size),
        "n_modalities": len(MODALITIES),
    }
    return save_checkpoint(state, folder / "run")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_forward(ckpt: Path, device: str, n: int, batch_size: int, per_case: bool) -> float:
    """Volumes/s of mapping + synthesis (results copied to the host, as generation does)."""
    source = load_source(ckpt, device)
    cat, cont = encode_plan(SCHEMA, [{"grade": "HGG", "cohort": "GLI"}] * n)
    step = 1 if per_case else batch_size

    def run(seeds: list[int]) -> None:
        for i in range(0, len(seeds), step):
            ids = seeds[i : i + step]
            ws = case_ws(source.G, ids, cat[: len(ids)], cont[: len(ids)])
            if per_case or device == "cuda":
                synthesize(source, ws, "random", ids)
            else:  # the batched CPU path, for comparison
                with torch.no_grad():
                    source.G.synthesis(ws, noise_mode="random")

    run(case_seeds(10_000, min(step, n)))  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    run(case_seeds(0, n))
    _sync(device)
    return n / (time.perf_counter() - t0)


def time_cohort(
    ckpt: Path, out: Path, device: str, n: int, batch_size: int, space: str, fmt: str
) -> float:
    t0 = time.perf_counter()
    generate_cohort(
        ckpt, out, n, conditions={"grade": "HGG"}, batch_size=batch_size, device=device, space=space,
        fmt=fmt, progress=False,
    )  # fmt: skip
    return n / (time.perf_counter() - t0)


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="cube sides")
    parser.add_argument("--n", type=int, default=4, help="volumes per measurement")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--devices", nargs="+", default=None, help="default: cpu, and cuda when available"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the figures")
    return parser.parse_args()


def measure(
    ckpt: Path, side: int, device: str, params: int, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """Every figure of one grid on one device: forward passes, written cohorts, a condition mean."""
    run: dict[str, Any] = {"size": side, "device": device, "generator_params": params}
    run["forward_vol_s"] = time_forward(
        ckpt, device, args.n, args.batch_size, per_case=device == "cpu"
    )
    if device == "cpu":
        run["forward_batched_vol_s"] = time_forward(ckpt, device, args.n, args.batch_size, False)
    for space, fmt in (("native", "float32"), ("brats", "int16")):
        key = f"write_{space}_{fmt}_vol_s"
        run[key] = time_cohort(ckpt, tmp / f"o-{side}-{device}-{space}", device, args.n,
                               args.batch_size, space, fmt)  # fmt: skip
    t0 = time.perf_counter()
    source = load_source(ckpt, device)
    cat, cont = SCHEMA.encode({"grade": "LGG"})
    ConditionMeans(source.G).get(torch.as_tensor(cat), torch.as_tensor(cont))
    run["condition_mean_s"] = time.perf_counter() - t0
    return run


def main() -> None:
    """Measure every grid on every device; print a line each and write the JSON file."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    results: dict[str, Any] = {
        "gliomagen_version": __version__,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "preset": "small-data",
        "n": args.n,
        "batch_size": args.batch_size,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for side in args.sizes:
            size = (side, side, side)
            geo_dir = tmp / f"geo{side}"
            geo_dir.mkdir()
            ckpt = make_checkpoint(tmp / f"ck{side}", size, brats_like_geometry(geo_dir, size))
            params = sum(p.numel() for p in load_source(ckpt).G.parameters())
            for device in devices:
                run = measure(ckpt, side, device, params, args, tmp)
                results["runs"].append(run)
                figures = ", ".join(
                    f"{k} {v:.3g}" for k, v in run.items() if k.endswith(("vol_s", "_s"))
                )
                print(f"{side}^3 {device}: {figures}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
