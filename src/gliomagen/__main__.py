"""``python -m gliomagen`` (also what ``torchrun -m gliomagen train ...`` runs)."""

from __future__ import annotations

from gliomagen.cli import main

if __name__ == "__main__":
    main()
