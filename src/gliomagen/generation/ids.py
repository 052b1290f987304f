"""Which seed and which id every case of a synthetic cohort gets.

A case is one seed (StyleGAN's convention): ``--n N --seed S`` gives the seeds ``S .. S+N-1``,
``--seeds 0-99,123`` the listed ones. Its id is ``PREFIX-sSEED`` with the seed in at least six
digits, e.g. ``SYN-1a2b3c4d-s000123``. The default prefix is ``SYN-`` and the first 8 hex digits of
the checkpoint's SHA-256, so two models' cohorts never share an id, and within a model an id names
one seed: cohorts of one model merge without collisions, and a case regenerated alone
(``--seeds 123``) keeps its id.

Example:
    >>> parse_seeds("0-2,7")
    [0, 1, 2, 7]
    >>> case_id(default_prefix("1a2b3c4d" + "0" * 56), 123)
    'SYN-1a2b3c4d-s000123'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gliomagen.errors import GliomagenError
from gliomagen.generation.sampling import case_seeds

CASE_PREFIX = "SYN"
"""First part of the default id prefix (then the checkpoint's hash)."""

SEED_DIGITS = 6
"""The seed in an id has at least this many digits (zero-padded)."""

_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RANGE_RE = re.compile(r"^(\d+)-(\d+)$")


def default_prefix(checkpoint_sha256: str) -> str:
    """``SYN-`` and the first 8 hex digits of the checkpoint's SHA-256."""
    return f"{CASE_PREFIX}-{checkpoint_sha256[:8]}"


def check_prefix(prefix: str) -> str:
    """An id prefix that is safe in file names (letters, digits, ``.``, ``_``, ``-``; <= 64).

    Raises:
        GliomagenError: another character, an empty prefix or one starting with ``.``/``-``/``_``.
    """
    if not _PREFIX_RE.match(prefix):
        raise GliomagenError(
            f"--id-prefix {prefix!r}: use up to 64 letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return prefix


def case_id(prefix: str, seed: int) -> str:
    """The id of the case of ``seed``: ``PREFIX-s000123``."""
    return f"{prefix}-s{int(seed):0{SEED_DIGITS}d}"


def parse_seeds(text: str) -> list[int]:
    """``"0-99,123"`` -> ``[0, 1, ..., 99, 123]`` (ranges inclusive, as StyleGAN's generate.py).

    Raises:
        GliomagenError: not a list of seeds and ranges, a range that runs backwards, an empty list
            or a seed given twice.
    """
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        ranged = _RANGE_RE.match(part)
        if ranged:
            lo, hi = int(ranged.group(1)), int(ranged.group(2))
            if hi < lo:
                raise GliomagenError(f"--seeds {text!r}: range {part} runs backwards")
            seeds.extend(range(lo, hi + 1))
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise GliomagenError(
                f"--seeds {text!r}: expected seeds >= 0 and ranges, e.g. 0-99,123"
            )
    return check_seeds(seeds, f"--seeds {text!r}")


def check_seeds(seeds: Sequence[int], what: str = "seeds") -> list[int]:
    """``seeds`` as a list of distinct integers >= 0 (at least one).

    Raises:
        GliomagenError: an empty list, a negative seed or a seed given twice.
    """
    out = [int(s) for s in seeds]
    if not out:
        raise GliomagenError(f"{what}: give at least one seed")
    negative = [s for s in out if s < 0]
    if negative:
        raise GliomagenError(f"{what}: seed {negative[0]} must be >= 0")
    seen: set[int] = set()
    for s in out:
        if s in seen:
            raise GliomagenError(f"{what}: seed {s} is given twice (case ids would collide)")
        seen.add(s)
    return out


def cohort_seeds(n: int | None, seed: int, seeds: Sequence[int] | None) -> list[int]:
    """The case seeds of a cohort: ``seeds`` as given, else ``seed, seed + 1, ..., seed + n - 1``.

    Raises:
        GliomagenError: both or neither of ``n`` and ``seeds`` (unless ``n == len(seeds)``), ``n``
            not a whole number >= 1, a negative seed, or a seed listed twice.
    """
    if seeds is not None:
        if n is not None and int(n) != len(seeds):
            raise GliomagenError("--seeds and --n/--seed exclude each other: give one of them")
        return check_seeds(seeds, "--seeds")
    if n is None:
        raise GliomagenError("give --n N (cases with seeds --seed, --seed + 1, ...) or --seeds LIST")
    if int(n) != n or n <= 0:
        raise GliomagenError(f"--n {n}: must be a whole number of cases >= 1")
    if int(seed) < 0:
        raise GliomagenError(f"--seed {seed}: must be >= 0")
    return case_seeds(seed, int(n))
