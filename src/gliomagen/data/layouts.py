"""Find cases in BraTS folders and manifest CSVs: paths in, :class:`CaseRecord` list out.

Layouts (``.nii`` or ``.nii.gz``, file names matched case-insensitively):

- BraTS 2023/2024: ``<ID>/<ID>-t1n|-t1c|-t2w|-t2f[-seg]`` (GLI, SSA = Africa, MEN, PED, MET);
  masks use labels {0, 1, 2, 3}.
- BraTS 2021: ``BraTS2021_xxxxx/BraTS2021_xxxxx_t1|_t1ce|_t2|_flair[_seg]``; labels {0, 1, 2, 4}.
- BraTS 2018-2020: the 2021 suffixes, cases under ``HGG/`` and ``LGG/`` (the folder is the grade).
- A manifest CSV: ``case_id``, one column per modality (``t1n t1c t2w t2f``; aliases ``t1``,
  ``t1ce``/``t1gd``, ``t2``, ``flair``), optional ``seg``, any further label columns. Relative
  paths are relative to the CSV's folder. Mask labels are {0,1,2,3} or {0,1,2,4} (inferred).

A case that lacks a modality is still returned, with :attr:`CaseRecord.problem` set, so that
``--skip-bad`` can report it; problems that concern the whole input (a missing folder, duplicate
case ids, a manifest without a modality column) raise :class:`GliomagenError` at once.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gliomagen import MODALITIES
from gliomagen.data.tables import read_table
from gliomagen.errors import GliomagenError

#: File-name suffix (lower case) -> canonical key (a modality or ``seg``).
SUFFIX_KEYS: dict[str, str] = {
    "t1n": "t1n", "t1c": "t1c", "t2w": "t2w", "t2f": "t2f",  # BraTS 2023/2024
    "t1": "t1n", "t1ce": "t1c", "t1gd": "t1c", "t2": "t2w", "flair": "t2f",  # BraTS 2018-2021
    "seg": "seg",
}  # fmt: skip
_NEW_STYLE = {"t1n", "t1c", "t2w", "t2f"}
_FILE_RE = re.compile(
    r"^(?P<id>.+)[-_](?P<key>"
    + "|".join(sorted(SUFFIX_KEYS, key=len, reverse=True))
    + r")\.nii(?:\.gz)?$",
    re.IGNORECASE,
)
_STEM_RE = re.compile(
    r"^(?P<id>.+)[-_](?P<key>"
    + "|".join(sorted(SUFFIX_KEYS, key=len, reverse=True))
    + r")\.[^/]+$",
    re.IGNORECASE,
)
#: Folder or id tokens -> cohort code.
COHORT_TOKENS: dict[str, str] = {
    "GLI": "GLI", "GLIOMA": "GLI", "SSA": "SSA", "AFRICA": "SSA", "MEN": "MEN", "MENINGIOMA": "MEN",
    "PED": "PED", "PEDS": "PED", "PEDIATRIC": "PED", "MET": "MET", "METS": "MET", "METASTASES": "MET",
}  # fmt: skip
_BRATS_NEW_ID = re.compile(r"^BraTS-(?P<cohort>[A-Za-z]+)-", re.IGNORECASE)
_BRATS_OLD_ID = re.compile(r"^(BraTS20\d\d|BraTS\d\d|Brats\d\d)_", re.IGNORECASE)
_GRADE_FOLDERS = {"HGG", "LGG"}
MANIFEST_ALIASES: dict[str, str] = {**SUFFIX_KEYS, "case_id": "case_id"}


@dataclass
class CaseRecord:
    """One case found on disk.

    Attributes:
        case_id: the BraTS id (or the manifest's ``case_id``).
        images: modality (``t1n t1c t2w t2f``) -> file; all four for a usable case.
        seg: the tumour mask file, or ``None`` for a case without one.
        layout: ``brats2023``, ``brats2021``, ``brats2018`` or ``manifest``.
        cohort: ``GLI``, ``SSA``, ``MEN``, ``PED``, ``MET`` or ``None`` when unknown.
        grade: ``HGG``/``LGG`` from a 2018-2020 folder (or a manifest column), else ``None``.
        labels: further label columns of a manifest, raw strings.
        folder: the folder (or manifest CSV) the case was found in.
        problem: why the case cannot be used (e.g. a missing modality), ``None`` if complete.
        scale: a case written by ``gliomagen generate``: modality -> ``[lo, hi]``, the file
            units the generator's [-1, 1] was mapped to (its cohort's ``manifest.json``,
            ``intensity_ranges``); ``prepare`` then inverts that map instead of re-measuring
            percentiles. ``None`` for a scan.
    """

    case_id: str
    images: dict[str, Path]
    seg: Path | None
    layout: str
    cohort: str | None = None
    grade: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    folder: Path = Path(".")
    problem: str | None = None
    scale: dict[str, list[float]] | None = None

    @property
    def label_convention(self) -> str:
        """``2023`` ({0,1,2,3}), ``2021`` ({0,1,2,4}) or ``auto`` (either, inferred from values)."""
        return {"brats2023": "2023", "brats2021": "2021", "brats2018": "2021"}.get(
            self.layout, "auto"
        )

    def files(self) -> list[Path]:
        """Every input file of the case, images in modality order then the mask."""
        out = [self.images[m] for m in MODALITIES if m in self.images]
        return out + ([self.seg] if self.seg is not None else [])


def find_cases(sources: Sequence[Path | str]) -> list[CaseRecord]:
    """Find every case under the given folders and manifest CSVs.

    Args:
        sources: folders (searched recursively) and ``.csv`` manifests, in any mix.

    Returns:
        Cases in source order, sorted by case id within a source.

    Raises:
        GliomagenError: a source is missing or holds no case; a case id occurs twice; a manifest
            is malformed.
    """
    if not sources:
        raise GliomagenError("prepare: give at least one source folder or manifest CSV")
    cases: list[CaseRecord] = []
    for raw in sources:
        src = Path(raw)
        if not src.exists():
            raise GliomagenError(f"{src}: no such file or folder")
        if src.is_file():
            if src.suffix.lower() != ".csv":
                raise GliomagenError(f"{src}: a source must be a folder or a manifest .csv file")
            found = read_manifest(src)
        else:
            found = _scan_folder(src)
        if not found:
            raise GliomagenError(
                f"{src}: no cases found (expected BraTS folders such as <ID>/<ID>-t1n.nii.gz or "
                "<ID>/<ID>_t1.nii.gz, or a manifest .csv)"
            )
        cases.extend(found)
    _check_unique(cases)
    return cases


def cohort_from(case_id: str, folders: Sequence[str] = ()) -> str | None:
    """The cohort code from a BraTS id (``BraTS-SSA-...``, ``BraTS2021_...``) or folder names."""
    m = _BRATS_NEW_ID.match(case_id)
    if m and m.group("cohort").upper() in COHORT_TOKENS:
        return COHORT_TOKENS[m.group("cohort").upper()]
    if _BRATS_OLD_ID.match(case_id):
        return "GLI"  # BraTS 2018-2021 are adult glioma cohorts
    for name in reversed(list(folders)):
        for token in re.split(r"[^A-Za-z]+", name):
            if token.upper() in COHORT_TOKENS:
                return COHORT_TOKENS[token.upper()]
    return None


# -- folders ---------------------------------------------------------------------------------
def _scan_folder(src: Path) -> list[CaseRecord]:
    cases: list[CaseRecord] = []
    manifests: dict[Path, dict[str, Any] | None] = {}
    for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # .git, .Trash, ...
        filenames = [f for f in filenames if not f.startswith(".")]  # macOS ._ files, temp files
        groups: dict[str, dict[str, list[str]]] = {}
        for name in sorted(filenames):
            m = _FILE_RE.match(name)
            if m:
                groups.setdefault(m.group("id"), {}).setdefault(m.group("key").lower(), []).append(
                    name
                )
        folder = Path(dirpath)
        rel_parts = [src.resolve().name, *folder.relative_to(src).parts]
        for case_id in sorted(groups):
            case = _folder_case(case_id, groups[case_id], folder, rel_parts, filenames)
            case.scale = generated_scale(case_id, folder, src, manifests)
            cases.append(case)
    return cases


def generated_scale(
    case_id: str, folder: Path, src: Path, cache: dict[Path, dict[str, Any] | None] | None = None
) -> dict[str, list[float]] | None:
    """The intensity map of a case that ``gliomagen generate`` wrote, else ``None``.

    The cohort's ``manifest.json`` (in the case's folder or a parent, up to the one above
    ``src``) records
    ``intensity_ranges`` (modality -> ``[lo, hi]``: the writer mapped [-1, 1] linearly onto it)
    and the ``case_ids`` it wrote; a case it lists gets that map.
    """
    cache = {} if cache is None else cache
    for d in [folder, *folder.parents]:
        if d not in cache:
            cache[d] = _generate_manifest(d / "manifest.json")
        m = cache[d]
        if m is not None and case_id in m["case_ids"]:
            return {k: [float(v[0]), float(v[1])] for k, v in m["intensity_ranges"].items()}
        if d == src.parent:  # the source, and the cohort folder above a single case's folder
            break
    return None


def _generate_manifest(path: Path) -> dict[str, Any] | None:
    """A ``gliomagen generate`` manifest with its intensity map and case ids, else ``None``."""
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not ours, or unreadable: the case is treated as a scan
    if not isinstance(m, dict) or "gliomagen_version" not in m:
        return None
    ranges, ids = m.get("intensity_ranges"), m.get("case_ids")
    if not isinstance(ranges, dict) or not isinstance(ids, list):
        return None
    if not all(k in ranges and len(ranges[k]) == 2 and ranges[k][1] > ranges[k][0] for k in MODALITIES):
        return None
    return {"intensity_ranges": ranges, "case_ids": set(ids)}


def _folder_case(
    case_id: str,
    found: dict[str, list[str]],
    folder: Path,
    rel_parts: list[str],
    filenames: list[str],
) -> CaseRecord:
    images: dict[str, Path] = {}
    seg: Path | None = None
    problems: list[str] = []
    for suffix, names in sorted(found.items()):
        key = SUFFIX_KEYS[suffix]
        paths = [folder / n for n in names]
        target = seg if key == "seg" else images.get(key)
        if len(paths) > 1 or target is not None:
            clash = ", ".join(p.name for p in ([target] if target else []) + paths)
            problems.append(f"several files for {key}: {clash}")
            continue
        if key == "seg":
            seg = paths[0]
        else:
            images[key] = paths[0]
    missing = [m for m in MODALITIES if m not in images]
    if missing:
        problems.append(_missing_message(case_id, missing, folder, filenames))
    new_style = any(s in _NEW_STYLE for s in found)
    grade = next((p.upper() for p in reversed(rel_parts) if p.upper() in _GRADE_FOLDERS), None)
    layout = "brats2023" if new_style else ("brats2018" if grade else "brats2021")
    return CaseRecord(
        case_id=case_id,
        images=images,
        seg=seg,
        layout=layout,
        cohort=cohort_from(case_id, rel_parts),
        grade=grade,
        folder=folder,
        problem="; ".join(problems) or None,
    )


def _missing_message(case_id: str, missing: list[str], folder: Path, filenames: list[str]) -> str:
    other = []
    for name in sorted(filenames):
        m = _STEM_RE.match(name)
        if m and m.group("id") == case_id and SUFFIX_KEYS[m.group("key").lower()] in missing:
            other.append(name)
    text = f"{folder}: missing modality {', '.join(missing)}"
    if other:
        text += f" ({', '.join(other)}: not a NIfTI file, expected .nii or .nii.gz)"
    return text


# -- manifests -------------------------------------------------------------------------------
def read_manifest(path: Path) -> list[CaseRecord]:
    """Read a manifest CSV (``case_id``, modality columns, optional ``seg``, label columns).

    Raises:
        GliomagenError: an unreadable table, a column named twice or two columns for one modality,
            no ``case_id`` or modality column, a row with more or fewer fields than the header or
            without a case id (naming the line).
    """
    header, rows = read_table(path)
    columns = _manifest_columns(path, header)
    used = set(columns.values())
    label_cols = [h for h in header if h and h not in used]
    cases: list[CaseRecord] = []
    for line, row in rows:
        case_id = row[columns["case_id"]]
        if not case_id:
            raise GliomagenError(f"{path}: line {line} has an empty case_id")
        cases.append(_manifest_case(path, line, case_id, row, columns, label_cols))
    return cases


def _manifest_columns(path: Path, header: list[str]) -> dict[str, str]:
    """Canonical key (``case_id``, a modality, ``seg``) -> the manifest's column for it."""
    columns: dict[str, str] = {}
    for name in header:
        key = MANIFEST_ALIASES.get(name.lower())
        if key is None:
            continue
        if key in columns:
            raise GliomagenError(f"{path}: columns {columns[key]!r} and {name!r} both give {key}")
        columns[key] = name
    if "case_id" not in columns:
        raise GliomagenError(
            f"{path}: manifest has no case_id column (columns: {', '.join(header) or 'none'})"
        )
    missing = [m for m in MODALITIES if m not in columns]
    if missing:
        raise GliomagenError(f"{path}: manifest has no column for modality {', '.join(missing)}")
    return columns


def _manifest_case(
    path: Path,
    line: int,
    case_id: str,
    row: dict[str, str],
    columns: dict[str, str],
    label_cols: list[str],
) -> CaseRecord:
    """One manifest row as a case (relative paths are relative to the manifest's folder)."""
    base = path.parent
    images = {m: base / row[columns[m]] for m in MODALITIES if row[columns[m]]}
    seg_cell = row[columns["seg"]] if "seg" in columns else ""
    labels = {c: row[c] for c in label_cols}
    absent = [m for m in MODALITIES if m not in images]
    return CaseRecord(
        case_id=case_id,
        images=images,
        seg=base / seg_cell if seg_cell else None,
        layout="manifest",
        cohort=labels.pop("cohort", "") or cohort_from(case_id),
        grade=labels.pop("grade", "") or None,
        labels=labels,
        folder=path,
        problem=f"{path}: line {line}: missing modality {', '.join(absent)}" if absent else None,
    )


def _check_unique(cases: list[CaseRecord]) -> None:
    seen: dict[str, CaseRecord] = {}
    for case in cases:
        if case.case_id in seen:
            first = seen[case.case_id]
            raise GliomagenError(
                f"duplicate case id {case.case_id!r}: found in {first.folder} and in {case.folder}"
            )
        seen[case.case_id] = case
