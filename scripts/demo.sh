#!/usr/bin/env bash
# make demo: the whole pipeline on the built-in phantom cohort, on CPU, in about ten minutes.
#   phantoms -> prepare -> inspect -> train (the default recipe, a few minutes) -> generate from
#   the shipped reference model (90 minutes of that recipe) -> evaluate with the conditioning judge
# Usage: scripts/demo.sh [OUT] ; DEMO_TRAIN_MINUTES (default 4) sets the training budget.
set -euo pipefail
OUT=${1:-demo-out}
MINUTES=${DEMO_TRAIN_MINUTES:-4}
G=".venv/bin/gliomagen"
PY=".venv/bin/python"
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

step "phantoms: a BraTS-like cohort, 48 GLI + 16 SSA cases at 2 mm (seed 1: none trained the reference model)"
$G phantoms --out "$OUT/phantoms" --cohorts GLI=48,SSA=16 --resolution 2 --seed 1 --workers 2

step "prepare: store at 32^3 with the clinical labels"
$G prepare "$OUT/phantoms" --labels "$OUT/phantoms/clinical.csv" --out "$OUT/store" --size 32 --workers 2
$G inspect "$OUT/store"

step "train: the default recipe (what \`gliomagen train STORE --run RUN\` runs) for ${MINUTES} minutes"
$G train "$OUT/store" --run "$OUT/run" --max-minutes "$MINUTES" --quiet
echo "its samples so far: $OUT/run/samples/ (90 minutes of this recipe make the reference model)"

REF=$($PY -m gliomagen.reference)
step "generate from the shipped reference model (the same recipe, 90 minutes on the built-in phantoms): 8 HGG + 8 LGG, truncation 0.8"
$G generate --checkpoint "$REF" --n 8 --condition grade=HGG --seed 0 --truncation 0.8 --out "$OUT/synthetic-hgg" --quiet
$G generate --checkpoint "$REF" --n 8 --condition grade=LGG --seed 100 --truncation 0.8 --out "$OUT/synthetic-lgg" --quiet

step "evaluate: the reference's HGG cases vs held-out cases, and its conditioning judge (100 samples per grade and cohort, truncation 0.8)"
$G evaluate --real "$OUT/store:test" --train "$OUT/store:train" --synthetic "$OUT/synthetic-hgg" \
  --checkpoint "$REF" --judge 100 --judge-truncation 0.8 --reconstruct 4 --out "$OUT/report"

step "done"
echo "your run: $OUT/run/ (samples/, tensorboard/: tensorboard --logdir $OUT/run/tensorboard)"
echo "synthetic: $OUT/synthetic-hgg/ $OUT/synthetic-lgg/ (the reference model's)"
echo "report:    $OUT/report/index.html"
