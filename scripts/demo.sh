#!/usr/bin/env bash
# The main job on built-in data. Filled in as the pipeline lands.
set -euo pipefail
OUT=${1:-demo-out}
mkdir -p "$OUT"
.venv/bin/gliomagen --version
