#!/usr/bin/env bash
# Rebuild the shipped reference model (src/gliomagen/reference/phantoms32.pt and MODEL_CARD.md):
# the default preset on 60 GLI + 16 SSA built-in phantom cases at 32^3 with every label.
#   scripts/reference_model.sh [WORK]      (about 95 minutes on a 2-core CPU)
# The 16 SSA cases are the first 16 of the utility benchmark's seeded pool order
# (benchmarks/results/utility-ssa-order-seed0.csv), so the model is the benchmark's n=16 generator
# on the package's default phantoms. The shipped file trained 90 minutes (15,880 steps); the step
# count is fixed here so that the run does not depend on the machine's speed.
set -euo pipefail
WORK=${1:-reference-work}
G=".venv/bin/gliomagen"
PY=".venv/bin/python"
if [ -e "$WORK" ] && [ -n "$(ls -A "$WORK" 2>/dev/null)" ]; then
  echo "error: $WORK: exists and is not empty; give another folder" >&2
  exit 2
fi
mkdir -p "$WORK/cases"
$G phantoms -o "$WORK/phantoms" --cohorts GLI=60,SSA=110 --seed 0 --resolution 2 -j 2
# the training cases: every GLI case and the first 16 SSA cases of the order file
$PY - "$WORK" <<'PY'
import csv, os, sys
from pathlib import Path
work = Path(sys.argv[1])
rows = list(csv.DictReader(open("benchmarks/results/utility-ssa-order-seed0.csv")))
ssa = [r["case_id"] for r in rows if r["role"] == "pool" and int(r["rank"]) < 16]
keep = sorted(p.name for p in (work / "phantoms").glob("BraTS-GLI-*")) + sorted(ssa)
for cid in keep:
    os.symlink((work / "phantoms" / cid).resolve(), work / "cases" / cid)
with open(work / "phantoms" / "clinical.csv") as f:
    clinical = [r for r in csv.DictReader(f) if r["case_id"] in set(keep)]
with open(work / "cases" / "clinical.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(clinical[0]))
    w.writeheader()
    w.writerows(clinical)
with open(work / "split.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["case_id", "split"])
    w.writerows([c, "train"] for c in keep)
PY
$G prepare "$WORK/cases" --labels "$WORK/cases/clinical.csv" --split-csv "$WORK/split.csv" \
  -o "$WORK/store" --size 32 -j 2
$G train "$WORK/store" --run "$WORK/run" --set train.steps=15880
$G export generator "$WORK/run" -o src/gliomagen/reference/phantoms32.pt --note "gliomagen reference \
model: default preset, 90 min (15,880 steps) on 60 GLI + 16 SSA built-in phantom cases (gliomagen \
phantoms --seed 0), 32^3, every label; phantoms only, never a real scan; rebuilt by scripts/reference_model.sh"
$G export card src/gliomagen/reference/phantoms32.pt --store "$WORK/store" -o src/gliomagen/reference/MODEL_CARD.md
$PY benchmarks/judge.py --checkpoint src/gliomagen/reference/phantoms32.pt --store "$WORK/store" \
  --samples 400 --unset drawn --seed 7 --out "$WORK/judge.json"
