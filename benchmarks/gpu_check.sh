#!/usr/bin/env bash
# The GPU check of issue 23, in one run (about 6-8 minutes of an H100), figures in OUT/gpu-check.json:
#   1. training step at 128^3, batch 4, bf16: origin and the default preset (full volume:
#      model.hierarchical_from=0), the naive reference, and a full-volume 32^3 step of small-data's
#      widths (the cost ratio's baseline);
#   2. the hierarchical mode at 128^3, batch 4, low_res 32, sub-volume 32: small-data +
#      model.hierarchical (the cost ratio's row) and the default preset (hierarchical from 64^3);
#   3. peak memory at 256^3, batch 1: hierarchical and origin full-volume (an out-of-memory is a result);
#   4. generation seconds per volume (every bench row above), bf16 vs fp32 loss parity, and the
#      model FLOP/s as a share of the GPU's dense bf16 peak (benchmarks/gpu_check.py);
#   5. a one-process torchrun smoke run of `gliomagen train` (NCCL on a GPU, gloo on the CPU).
# Usage: benchmarks/gpu_check.sh [--tiny] [OUT]   (--tiny: CPU, 16^3-32^3, seconds; the tests run it)
set -euo pipefail
TINY=0
if [ "${1:-}" = "--tiny" ]; then TINY=1; shift; fi
OUT=${1:-gpu-check-out}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$OUT"
if [ "$TINY" = 1 ]; then
  DEV=cpu; S=32; BIG=32; BASE=16; LOW=16; SUB=16; STEPS=1; REPEATS=1; EXTRA="--threads 1 --skip-memory"
else
  DEV=cuda; S=128; BIG=256; BASE=32; LOW=32; SUB=32; STEPS=10; REPEATS=16; EXTRA="--skip-memory"
fi
HIER="--set model.hierarchical=true --set model.low_res=$LOW --set model.sub_volume=$SUB"
bench() { "$PY" -m gliomagen bench --device "$DEV" --steps "$STEPS" --repeats "$REPEATS" --skip-ldm $EXTRA --quiet "$@"; }
t0=$(date +%s)
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }

step "1. full volume at ${S}^3, batch 4: origin, default, the naive reference; small-data at ${BASE}^3"
bench --presets origin,default --sizes "$S" --batch-size 4 --max-train-size "$S" \
  --set model.hierarchical_from=0 -o "$OUT/full"
bench --presets small-data --sizes "$BASE" --batch-size 4 --max-train-size "$BASE" --skip-naive -o "$OUT/base"
# the same 32^3 step with the widths the hierarchical model's low-resolution network has
# (small-data's g_channels, 16, x size / low_res)
bench --presets small-data --sizes "$BASE" --batch-size 4 --max-train-size "$BASE" --skip-naive \
  --set model.g_channels=$(( 16 * S / LOW )) -o "$OUT/base-wide"
step "2. hierarchical at ${S}^3, batch 4"
bench --presets small-data,default --sizes "$S" --batch-size 4 --max-train-size "$S" --skip-naive $HIER -o "$OUT/hier"
step "3. peak memory at ${BIG}^3, batch 1: hierarchical, origin full volume"
bench --presets small-data --sizes "$BIG" --batch-size 1 --max-train-size "$BIG" --skip-naive $HIER -o "$OUT/hier-big"
bench --presets origin --sizes "$BIG" --batch-size 1 --max-train-size "$BIG" --skip-naive -o "$OUT/full-big"

step "4. torchrun smoke run (one process)"
"$PY" -m gliomagen phantoms --out "$OUT/smoke/phantoms" --cohorts GLI=6 --resolution 2 --seed 0 --workers 1 --quiet
"$PY" -m gliomagen prepare "$OUT/smoke/phantoms" --out "$OUT/smoke/store" --size 16 --workers 1 --qc 0 --quiet
set +e
"$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m gliomagen train "$OUT/smoke/store" \
  --out "$OUT/smoke/run" --preset small-data --set train.steps=3 --set train.batch_size=2 --device "$DEV" --quiet \
  > "$OUT/smoke/torchrun.log" 2>&1
echo $? > "$OUT/smoke/torchrun.rc"
set -e

step "5. parity, peak share, summary"
TINY_FLAG=""
[ "$TINY" = 1 ] && TINY_FLAG="--tiny"
"$PY" benchmarks/gpu_check.py --out "$OUT" --device "$DEV" --size "$S" $TINY_FLAG
step "done: $OUT/gpu-check.json"
