"""Case ids that never collide: one case per seed, the seed in its id, the model in its prefix."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from generation_fixtures import (
    expected_id,
    save_tiny_checkpoint,
    store_meta,
    tiny_generator,
    tiny_schema,
)
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.errors import GliomagenError
from gliomagen.generation.ids import case_id, check_prefix, parse_seeds


def _generate(checkpoint: Path, out: Path, *extra: str):  # noqa: ANN202
    args = ["generate", "--checkpoint", str(checkpoint), "--out", str(out), "--quiet",
            "--space", "native", *extra]  # fmt: skip
    return CliRunner().invoke(app, args)


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "clinical.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.nii.gz")}


def test_parse_seeds_like_stylegan() -> None:
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seeds(" 5 , 9-9") == [5, 9]
    assert case_id("SYN-1a2b3c4d", 123) == "SYN-1a2b3c4d-s000123"
    assert case_id("X", 12345678) == "X-s12345678"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3-1", "range 3-1 runs backwards"),
        ("x", "expected seeds >= 0 and ranges, e.g. 0-99,123"),
        ("", "expected seeds >= 0 and ranges"),
        ("-2", "expected seeds >= 0 and ranges"),
        ("1,0-2", "seed 1 is given twice (case ids would collide)"),
    ],
)
def test_bad_seed_lists(text: str, message: str) -> None:
    with pytest.raises(GliomagenError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_seeds(text)


@pytest.mark.parametrize("prefix", ["", "../x", ".hidden", "a b", "x" * 65, "-x"])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(GliomagenError, match="--id-prefix"):
        check_prefix(prefix)


def test_seeds_option_one_case_per_seed(checkpoint: Path, tmp_path: Path) -> None:
    result = _generate(checkpoint, tmp_path / "a", "--seeds", "3,10-11")
    assert result.exit_code == 0, result.output
    assert "wrote 3 cases" in result.stdout
    rows = _rows(tmp_path / "a")
    ids = [expected_id(checkpoint, s) for s in (3, 10, 11)]
    assert [r["case_id"] for r in rows] == ids and [r["seed"] for r in rows] == ["3", "10", "11"]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["seeds"] == [3, 10, 11] and manifest["case_ids"] == ids
    assert manifest["id_prefix"] == ids[0].rsplit("-", 1)[0] and manifest["n_cases"] == 3
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_dir()) == ids
    # --n 2 --seed 10 writes the same two cases, under the same ids, byte for byte
    assert _generate(checkpoint, tmp_path / "b", "--n", "2", "--seed", "10").exit_code == 0
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(b) == 10 and all(a[k] == v for k, v in b.items())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "1-2", "--n", "2"], "--seeds and --n/--seed exclude each other"),
        (["--seeds", "1-2", "--seed", "3"], "--seeds and --n/--seed exclude each other"),
        ([], "give --n N (cases with seeds --seed, --seed + 1, ...) or --seeds LIST"),
        (["--seeds", "4,4"], "seed 4 is given twice"),
        (["--n", "1", "--id-prefix", "a/b"], "--id-prefix 'a/b': use up to 64 letters"),
    ],
)
def test_seed_and_prefix_errors_are_one_line(
    checkpoint: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    result = _generate(checkpoint, tmp_path / "x", *extra)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "x").exists()


def test_id_prefix_option(checkpoint: Path, tmp_path: Path) -> None:
    assert _generate(checkpoint, tmp_path / "t", "--n", "2", "--id-prefix", "trialA").exit_code == 0
    assert [r["case_id"] for r in _rows(tmp_path / "t")] == ["trialA-s000000", "trialA-s000001"]
    assert json.loads((tmp_path / "t" / "manifest.json").read_text())["id_prefix"] == "trialA"


def test_cohorts_of_two_models_never_share_an_id(
    checkpoint: Path, tmp_path: Path, reference_record
) -> None:  # noqa: ANN001
    schema = tiny_schema()
    other = save_tiny_checkpoint(
        tmp_path / "other", tiny_generator(schema, seed=1), schema, store_meta(reference_record)
    )
    assert _generate(checkpoint, tmp_path / "a", "--n", "3").exit_code == 0
    assert _generate(other, tmp_path / "b", "--n", "3").exit_code == 0
    a, b = ({r["case_id"] for r in _rows(tmp_path / k)} for k in "ab")
    assert len(a) == len(b) == 3 and not a & b
