"""Cohorts -> an nnU-Net v2 raw dataset for region-based BraTS training.

Writes ``RAW/DatasetNNN_NAME/`` (``NNN``: the dataset id, zero-padded to 3 digits)::

    imagesTr/CASE_0000.nii.gz .. CASE_0003.nii.gz   t1n, t1c, t2w, t2f (channel 0..3)
    labelsTr/CASE.nii.gz                            BraTS 2023 labels: 1 NCR, 2 ED, 3 ET
    dataset.json                                    channel names, regions, numTraining, ...
    gliomagen_sources.csv                           where each case came from, how each file got here

``dataset.json`` declares the BraTS evaluation regions (nnU-Net's region-based training,
documentation/region_based_training.md of nnU-Net v2): whole tumour = labels {1, 2, 3}, tumour
core = {1, 3}, enhancing tumour = {3}, and ``regions_class_order`` [2, 1, 3]: to turn predicted
regions back into labels nnU-Net writes 2 (ED) where the whole tumour is, then 1 (NCR) where the
core is, then 3 (ET) where the enhancing tumour is, each overwriting the last. The keys keep this
order in the file (nnU-Net reads the regions in file order).

Channel names are the BraTS 2023 names ``t1n t1c t2w t2f``, the names of the source files:
nnU-Net uses a channel's name only to pick its intensity normalisation (``CT``, ``noNorm``,
``zscore``, ``rescale_to_0_1``, ``rgb_to_0_1``; any other name gets per-case z-scoring, what MRI
wants), so the names that match the files cost nothing and keep each channel traceable.

A COHORT is any folder or manifest :func:`gliomagen.data.layouts.find_cases` reads: a cohort of
``gliomagen generate`` (BraTS 2023 layout), real BraTS 2018-2024 folders, a manifest CSV. Several
merge into one dataset; their case ids must be unique (``generate``'s ids carry the checkpoint's
hash and the seed). Files are hard-linked or converted as :mod:`gliomagen.export.nnunet_files`
says. The dataset folder is written under a temporary name beside it and renamed when complete
(:func:`gliomagen.io.atomic.atomic_dir`); an error leaves nothing behind.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gliomagen import MODALITIES, __version__
from gliomagen.data.layouts import CaseRecord, find_cases
from gliomagen.errors import GliomagenError
from gliomagen.export.nnunet_files import (
    Placement,
    header_volume,
    no_labels_message,
    place_image,
    place_labels,
)
from gliomagen.io.atomic import atomic_dir, write_json, write_text

CHANNEL_NAMES: dict[str, str] = {str(i): m for i, m in enumerate(MODALITIES)}
"""``dataset.json`` channel names: channel ``i`` is ``MODALITIES[i]`` (file suffix ``_000i``)."""

LABELS: dict[str, Any] = {
    "background": 0,
    "whole tumor": [1, 2, 3],
    "tumor core": [1, 3],
    "enhancing tumor": [3],
}
"""``dataset.json`` labels: the BraTS regions over the labels 1 NCR, 2 ED, 3 ET."""

REGIONS_CLASS_ORDER: list[int] = [2, 1, 3]
"""The label nnU-Net writes for each region (in ``LABELS`` order) when it converts regions back."""

FILE_ENDING = ".nii.gz"
SOURCES_FILE = "gliomagen_sources.csv"
MAX_DATASET_ID = 999
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_PLACEMENT_WORDS = {
    "link": "hard-linked",
    "copy": "copied",
    "gzip": "gzipped from .nii",
    "squeeze": "rewritten as 3D",
    "relabel": "masks relabelled 4 -> 3",
}


@dataclass
class NnunetExport:
    """What :func:`export_nnunet` wrote.

    Attributes:
        folder: ``RAW/DatasetNNN_NAME``.
        case_ids: the cases, in dataset order.
        placements: how many files were hard-linked, copied, gzipped, squeezed or relabelled.
    """

    folder: Path
    case_ids: list[str] = field(default_factory=list)
    placements: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One line: the folder, the cases and how the files got there."""
        how = ", ".join(
            f"{self.placements[kind]} {words}"
            for kind, words in _PLACEMENT_WORDS.items()
            if self.placements[kind]
        )
        return f"wrote {self.folder}: {len(self.case_ids)} cases; files {how}"


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``DatasetNNN_NAME`` after checking the id (1..999) and the name (letters, digits, _ -).

    Raises:
        GliomagenError: an id outside 1..999 or a name nnU-Net cannot use.
    """
    if not 1 <= int(dataset_id) <= MAX_DATASET_ID:
        raise GliomagenError(f"--dataset-id {dataset_id}: must be 1..{MAX_DATASET_ID}")
    if not _NAME.match(name):
        raise GliomagenError(
            f"--name {name!r}: use 1-64 letters, digits, '_' or '-', starting with a letter or "
            "digit (nnU-Net finds datasets by folder name)"
        )
    return f"Dataset{int(dataset_id):03d}_{name}"


def check_target(raw: Path, dataset_id: int, folder_name: str) -> Path:
    """The dataset folder ``raw/folder_name``, after checking it may be written.

    Raises:
        GliomagenError: ``raw`` is a file; the folder exists and is not empty; another dataset in
            ``raw`` has the same id (nnU-Net would not know which one ``-d N`` means).
    """
    if raw.exists() and not raw.is_dir():
        raise GliomagenError(f"--out {raw}: is a file, expected the nnU-Net raw folder")
    target = raw / folder_name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise GliomagenError(
            f"{target}: already exists and is not empty; remove it or choose another "
            "--dataset-id/--name"
        )
    prefix = f"Dataset{int(dataset_id):03d}_"
    if raw.is_dir():
        for other in sorted(raw.iterdir()):
            if other.name.startswith(prefix) and other.name != folder_name:
                raise GliomagenError(
                    f"{other}: dataset id {dataset_id} is taken (nnU-Net needs unique ids); "
                    "choose another --dataset-id"
                )
    return target


def dataset_json(n_training: int, name: str, description: str) -> dict[str, Any]:
    """The ``dataset.json`` of a region-based BraTS dataset (keys in the order nnU-Net reads)."""
    return {
        "channel_names": dict(CHANNEL_NAMES),
        "labels": {k: (list(v) if isinstance(v, list) else v) for k, v in LABELS.items()},
        "regions_class_order": list(REGIONS_CLASS_ORDER),
        "numTraining": int(n_training),
        "file_ending": FILE_ENDING,
        "name": name,
        "description": description,
    }


def usable_cases(cohorts: Sequence[Path | str]) -> list[CaseRecord]:
    """Every case of the cohorts, after checking each has its four images and a mask.

    Raises:
        GliomagenError: a cohort is missing or holds no case, a case id occurs twice, a case lacks
            a modality or its mask.
    """
    if not cohorts:
        raise GliomagenError("export nnunet: give at least one cohort folder or manifest CSV")
    cases = find_cases(list(cohorts))
    for record in cases:
        if record.problem:
            raise GliomagenError(f"{record.case_id}: {record.problem}")
        if record.seg is None:
            raise GliomagenError(no_labels_message(record))
    return cases


def export_case(record: CaseRecord, folder: Path, *, copy: bool = False) -> dict[str, Placement]:
    """Put one case's images and mask into the dataset ``folder``; how each file got there."""
    cid = record.case_id
    ref, _ = header_volume(record.images[MODALITIES[0]], what=cid)
    placed: dict[str, Placement] = {}
    for channel, modality in enumerate(MODALITIES):
        dst = folder / "imagesTr" / f"{cid}_{channel:04d}{FILE_ENDING}"
        placed[modality] = place_image(record.images[modality], dst, ref, copy=copy, what=cid)
    placed["seg"] = place_labels(record, folder / "labelsTr" / f"{cid}{FILE_ENDING}", ref, copy=copy)
    return placed


def export_nnunet(
    cohorts: Sequence[Path | str],
    raw: Path | str,
    dataset_id: int,
    name: str,
    *,
    copy: bool = False,
    progress: bool = False,
) -> NnunetExport:
    """Write the cohorts as the nnU-Net v2 raw dataset ``raw/DatasetNNN_NAME`` (module docstring).

    Args:
        cohorts: cohort folders (``gliomagen generate``, BraTS layouts) or manifest CSVs.
        raw: the nnU-Net raw folder (``$nnUNet_raw``); created if missing.
        dataset_id: nnU-Net dataset id, 1..999.
        name: dataset name (letters, digits, ``_``, ``-``).
        copy: copy files instead of hard-linking them.
        progress: show a progress bar.

    Returns:
        What was written.

    Raises:
        GliomagenError: bad id or name, the dataset folder exists, a cohort or case is unusable,
            a write failed. Nothing is left behind.
    """
    folder_name = dataset_folder_name(dataset_id, name)
    target = check_target(Path(raw), dataset_id, folder_name)
    cases = usable_cases(cohorts)
    result = NnunetExport(folder=target)
    rows: list[dict[str, str]] = []
    try:
        with atomic_dir(target) as tmp:
            (tmp / "imagesTr").mkdir()
            (tmp / "labelsTr").mkdir()
            for record in tqdm(cases, desc="export", unit="case", disable=not progress):
                placed = export_case(record, tmp, copy=copy)
                result.case_ids.append(record.case_id)
                result.placements.update(placed.values())
                rows.append(_source_row(record, cohorts, placed))
            write_json(tmp / "dataset.json", dataset_json(len(cases), name, _description(cohorts)))
            write_text(tmp / SOURCES_FILE, _csv_text(rows))
    except OSError as exc:
        raise GliomagenError(f"{target}: cannot write the dataset ({exc.strerror or exc})") from None
    return result


def _description(cohorts: Sequence[Path | str]) -> str:
    sources = ", ".join(str(c) for c in cohorts)
    return (
        f"Exported by gliomagen {__version__} (gliomagen export nnunet) from {sources}. Labels: "
        "BraTS 2023 (1 NCR, 2 ED, 3 ET), trained as the regions whole tumor, tumor core, "
        f"enhancing tumor. Where each case came from: {SOURCES_FILE}."
    )


def _source_of(record: CaseRecord, cohorts: Sequence[Path | str]) -> str:
    """The COHORT argument a case was found under."""
    folder = os.path.abspath(record.folder)
    for cohort in cohorts:
        root = os.path.abspath(cohort)
        if folder == root or folder.startswith(root.rstrip(os.sep) + os.sep):
            return str(cohort)
    return ""


def _source_row(
    record: CaseRecord, cohorts: Sequence[Path | str], placed: dict[str, Placement]
) -> dict[str, str]:
    return {
        "case_id": record.case_id,
        "cohort": _source_of(record, cohorts),
        "folder": str(record.folder),
        "layout": record.layout,
        **{key: str(how) for key, how in placed.items()},
    }


def _csv_text(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    columns = ["case_id", "cohort", "folder", "layout", *MODALITIES, "seg"]
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
