"""``python -m gliomagen.reference``: print the shipped reference generator's path."""

from gliomagen.reference import PHANTOMS_32

print(PHANTOMS_32)
