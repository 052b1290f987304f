#!/usr/bin/env bash
# make demo: the whole pipeline on the built-in phantom cohort, on CPU, in about ten minutes.
#   phantoms -> prepare -> inspect -> train (demo-cpu) -> generate -> evaluate (HTML report)
# Usage: scripts/demo.sh [OUT] ; DEMO_TRAIN_MINUTES (default 5) sets the training budget.
set -euo pipefail
OUT=${1:-demo-out}
MINUTES=${DEMO_TRAIN_MINUTES:-5}
G=".venv/bin/gliomagen"
# Only ever replace a folder an earlier demo wrote (it holds our marker); never a user's folder.
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ] && [ ! -f "$OUT/.gliomagen-demo" ]; then
  echo "error: $OUT: exists and was not written by make demo; choose another DEMO=folder" >&2
  exit 2
fi
rm -rf "$OUT"
mkdir -p "$OUT"
touch "$OUT/.gliomagen-demo"
t0=$(date +%s)
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }

step "phantoms: a BraTS-like cohort, 48 GLI + 16 SSA cases at 2 mm"
$G phantoms --out "$OUT/phantoms" --cohorts GLI=48,SSA=16 --resolution 2 --seed 0 --workers 2

step "prepare: store at 32^3 with the clinical labels"
$G prepare "$OUT/phantoms" --labels "$OUT/phantoms/clinical.csv" --out "$OUT/store" --size 32 --workers 2
$G inspect "$OUT/store"

step "train: demo-cpu preset for ${MINUTES} minutes"
$G train "$OUT/store" --run "$OUT/run" --preset demo-cpu --max-minutes "$MINUTES" --device cpu

step "generate: 8 HGG and 8 LGG synthetic cases (BraTS layout, 1 mm grid)"
$G generate --checkpoint "$OUT/run" --n 8 --condition grade=HGG --seed 0 --out "$OUT/synthetic-hgg"
$G generate --checkpoint "$OUT/run" --n 8 --condition grade=LGG --seed 100 --out "$OUT/synthetic-lgg"

step "evaluate: synthetic HGG vs held-out real cases, report with training curves"
$G evaluate --real "$OUT/store:test" --train "$OUT/store:train" --synthetic "$OUT/synthetic-hgg" \
  --out "$OUT/report" --run "$OUT/run"

step "done"
echo "samples:   $OUT/run/samples/"
echo "synthetic: $OUT/synthetic-hgg/ $OUT/synthetic-lgg/"
echo "report:    $OUT/report/index.html"
