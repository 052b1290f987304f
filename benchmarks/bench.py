"""Thin wrapper of ``gliomagen bench`` (same options), for running from a checkout.

Usage::

    python benchmarks/bench.py --presets origin,small-data --sizes 32,64,128 \
        --out benchmarks/results/bench-cpu.json --markdown docs/performance.md

See ``gliomagen bench --help`` and docs/performance.md.
"""

from __future__ import annotations

import sys

from gliomagen.cli import main

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
