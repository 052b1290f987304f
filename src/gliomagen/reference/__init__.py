"""The reference model shipped with gliomagen, trained on the built-in phantoms only.

``PHANTOMS_32`` is a sampling-only generator (``gliomagen export generator``, float16, 2 MB):
``gliomagen train STORE --run RUN --max-minutes 90`` (the default preset; 15,880 steps on a 2-core
CPU) on 60 GLI + 16 SSA phantom cases of ``gliomagen phantoms --cohorts GLI=60,SSA=110 --seed 0
--resolution 2`` prepared at 32^3 with every label (cohort, grade, age, sex, whole-tumour volume,
enhancing fraction, hemisphere). ``scripts/reference_model.sh`` rebuilds it; ``MODEL_CARD.md``
beside it is its card. It is a demonstration of what a trained model does on synthetic phantoms,
not a model of real patients: it has never seen a real scan.

``python -m gliomagen.reference`` prints the file's path, e.g. for
``gliomagen generate --checkpoint "$(python -m gliomagen.reference)" -n 8 -o out``.
"""

from __future__ import annotations

from pathlib import Path

PHANTOMS_32 = Path(__file__).with_name("phantoms32.pt")
"""The reference generator's file (32^3, every label, GLI and SSA phantoms)."""

__all__ = ["PHANTOMS_32"]
