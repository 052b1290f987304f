"""Behaviour fingerprint: three short trainings and a generated cohort each, hashed.

A change that should not change behaviour (a refactor) must leave the JSON identical: the tensor
values of G, D, G_ema, the RNG state and w_avg after 12 steps of demo-cpu, of
configs/structure-vaegan.yaml (encoder, refitted mixture prior, presence / focality terms) and of
origin at small widths, and the sha256 of every NIfTI file `generate` writes (keyed by seed).

Usage:
    python benchmarks/behaviour_fingerprint.py WORKDIR OUT.json   # builds WORKDIR/store once
    diff before.json after.json
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

WORK = Path(sys.argv[1])
STORE = WORK / "store"


def sh(*a: str) -> None:
    subprocess.run([sys.executable, "-m", "gliomagen", *a], check=True, capture_output=True)


if not STORE.exists():
    sh("phantoms", "--out", str(WORK / "phantoms"), "--cohorts", "GLI=16,SSA=8", "--seed", "3")
    sh("prepare", str(WORK / "phantoms"), "--out", str(STORE), "--size", "32",
       "--labels", str(WORK / "phantoms" / "clinical.csv"), "--qc", "0")  # fmt: skip

def sd_hash(sd: dict) -> str:
    # key names ignored (a moved submodule renames keys): the sorted multiset of tensor hashes
    hs = sorted(hashlib.sha256(v.detach().float().contiguous().numpy().tobytes()).hexdigest()
                for v in sd.values() if torch.is_tensor(v) and v.numel() > 0)
    return hashlib.sha256("".join(hs).encode()).hexdigest()[:16]

recipes = {
    "demo": ["--preset", "demo-cpu"],
    "vaegan": ["--preset", "demo-cpu", "--config", "configs/structure-vaegan.yaml", "--set", "train.val_every=0", "--set", "train.latent_prior_every=5", "--set", "train.steps=12"],
    "origin": ["--preset", "origin", "--set", "data.size=null", "--set", "train.batch_size=2", "--set", "model.g_max_channels=32", "--set", "model.d_max_channels=32", "--set", "train.val_every=0"],
}
out = {}
tmp = Path(tempfile.mkdtemp())
for name, args in recipes.items():
    run = tmp / name
    base = ["train", str(STORE), "--run", str(run), "--set", "train.steps=12", "--set", "train.threads=1", "--set", "train.checkpoint_every=6"]
    try:
        sh(*base, *args)
    except subprocess.CalledProcessError as e:
        out[name] = "FAILED: " + e.stderr.decode()[-500:]
        continue
    ck = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    st = torch.load(ck, map_location="cpu", weights_only=True)
    out[name] = {k: sd_hash(st[k]) for k in st if isinstance(st[k], dict) and any(torch.is_tensor(v) for v in st[k].values())}
    gen = tmp / f"gen-{name}"
    sh("generate", "--checkpoint", str(run), "--n", "2", "--seed", "5", "--out", str(gen))
    out[name]["cohort"] = {  # keyed by seed and file kind: ids carry the checkpoint's hash
        re.sub(r"^.*-s(\d+)/.*-(\w+)\.nii\.gz$", r"seed \1 \2", str(p.relative_to(gen))):
        hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        for p in sorted(gen.rglob("*.nii.gz"))
    }
Path(sys.argv[2]).write_text(json.dumps(out, indent=1))
print(json.dumps(out, indent=1))
