from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from generation_fixtures import case_file, expected_id
from typer.testing import CliRunner

from gliomagen.cli import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_generate_cli_writes_a_cohort(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "syn"
    result = _run(
        "generate",
        "--checkpoint",
        str(checkpoint),
        "--n",
        "2",
        "--condition",
        "grade=HGG",
        "--condition",
        "cohort=SSA",
        "--truncation",
        "0.7",
        "--seed",
        "11",
        "--space",
        "native",
        "--format",
        "int16",
        "--mix-seed",
        "40",
        "--mix-layer",
        "2",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "wrote 2 cases" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seeds"] == [11, 12] and manifest["truncation"]["psi"] == 0.7
    assert manifest["format"] == "int16" and manifest["mix"]["layer"] == 2
    assert (
        manifest["command_line"].startswith("gliomagen ") or "generate" in manifest["command_line"]
    )
    line = (out / "clinical.csv").read_text().splitlines()[1]
    assert line.startswith(f"{expected_id(checkpoint, 11)},11,40,SSA,HGG,,")


def _bad_csv(tmp_path: Path) -> str:
    p = tmp_path / "bad.csv"
    p.write_text("grade\nGBM\n")
    return str(p)


def _not_ours(tmp_path: Path) -> str:
    p = tmp_path / "random.pt"
    p.write_bytes(os.urandom(256))
    return str(p)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "--checkpoint {tmp}/nope.pt: file not found"),
        ("not_ours", "not a readable gliomagen checkpoint"),
        (
            "bad_condition_name",
            "condition 'colour' is not in the model; known conditions: cohort, grade, age",
        ),
        (
            "bad_condition_value",
            "condition grade='GBM' is not in the model; known values: HGG, LGG",
        ),
        ("n_zero", "--n 0: must be a whole number of cases >= 1"),
        ("n_negative", "--n -3: must be a whole number of cases >= 1"),
        ("bad_csv", "line 2: condition grade='GBM' is not in the model"),
        ("missing_csv", "--conditions-csv {tmp}/none.csv: file not found"),
        ("bad_space", "--space 'mni': must be one of brats, native"),
        ("bad_format", "--format 'uint8': must be one of float32, int16"),
        ("mix_half", "--mix-seed and --mix-layer go together"),
        ("mix_layer", "--mix-layer 99: must be between 1 and"),
        ("cuda", "--device cuda"),
        ("out_is_file", "--out {tmp}/file.txt: exists and is not a folder"),
        ("anatomy_name", "--anatomy-from colour=red: 'colour' is not a condition of this model"),
        ("anatomy_value", "--anatomy-from cohort=MEN:"),
        ("anatomy_syntax", "--anatomy-from 'GLI': expected name=value"),
        ("anatomy_layer_alone", "--anatomy-layer: needs --anatomy-from"),
    ],
)
def test_generate_bad_input_is_one_line_exit_2_and_nothing_written(
    checkpoint: Path, tmp_path: Path, case: str, message: str
) -> None:
    import torch

    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = tmp_path / "out"
    (tmp_path / "file.txt").write_text("x")
    args = {"--checkpoint": str(checkpoint), "--n": "2", "--out": str(out)}
    extra: list[str] = []
    if case == "missing":
        args["--checkpoint"] = str(tmp_path / "nope.pt")
    elif case == "not_ours":
        args["--checkpoint"] = _not_ours(tmp_path)
    elif case == "bad_condition_name":
        extra = ["--condition", "colour=red"]
    elif case == "bad_condition_value":
        extra = ["--condition", "grade=GBM"]
    elif case == "n_zero":
        args["--n"] = "0"
    elif case == "n_negative":
        args["--n"] = "-3"
    elif case == "bad_csv":
        extra = ["--conditions-csv", _bad_csv(tmp_path)]
    elif case == "missing_csv":
        extra = ["--conditions-csv", str(tmp_path / "none.csv")]
    elif case == "bad_space":
        extra = ["--space", "mni"]
    elif case == "bad_format":
        extra = ["--format", "uint8"]
    elif case == "mix_half":
        extra = ["--mix-seed", "3"]
    elif case == "mix_layer":
        extra = ["--mix-seed", "3", "--mix-layer", "99"]
    elif case == "cuda":
        extra = ["--device", "cuda"]
    elif case == "out_is_file":
        args["--out"] = str(tmp_path / "file.txt")
    elif case.startswith("anatomy"):
        extra = {"anatomy_name": ["--anatomy-from", "colour=red"], "anatomy_value": ["--anatomy-from", "cohort=MEN"],
                 "anatomy_syntax": ["--anatomy-from", "GLI"], "anatomy_layer_alone": ["--anatomy-layer", "2"]}[case]  # fmt: skip
    result = _run("generate", *[x for kv in args.items() for x in kv], *extra)
    line = _one_error_line(result)
    assert message.format(tmp=tmp_path) in line
    assert not out.exists()  # nothing half-written


def test_unwritable_out_is_exit_2(checkpoint: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/gliomagen-out")  # not writable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "out"
    result = _run("generate", "--checkpoint", str(checkpoint), "--n", "1", "--out", str(target))
    assert "cannot write there" in _one_error_line(result)


def test_existing_cohort_is_not_overwritten(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "syn"
    assert (
        _run(
            "generate",
            "--checkpoint",
            str(checkpoint),
            "--n",
            "1",
            "--space",
            "native",
            "--quiet",
            "--out",
            str(out),
        ).exit_code
        == 0
    )
    before = case_file(out, 0, "t1n.nii.gz").read_bytes()
    result = _run(
        "generate", "--checkpoint", str(checkpoint), "--n", "1", "--seed", "7", "--out", str(out)
    )
    assert "already holds a cohort" in _one_error_line(result)
    assert case_file(out, 0, "t1n.nii.gz").read_bytes() == before


def test_interpolate_cli(checkpoint: Path, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "walk"
    result = _run(
        "interpolate",
        "--checkpoint",
        str(checkpoint),
        "--conditions",
        "grade=LGG",
        "grade=HGG,cohort=SSA",
        "--steps",
        "4",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    gif = Image.open(out / "interpolation.gif")
    assert gif.n_frames == 6  # 4 steps forth, 2 back
    assert Image.open(out / "interpolation.png").size[0] > 4 * 40

    result = _run(
        "interpolate",
        "--checkpoint",
        str(checkpoint),
        "--seeds",
        "1,2",
        "--condition",
        "grade=HGG",
        "--steps",
        "3",
        "--out",
        str(tmp_path / "walk2"),
    )
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "walk2" / "interpolation.gif").n_frames == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "1"], "--seeds '1': expected two integers A,B"),
        (["--seeds", "1,x"], "--seeds '1,x': expected two integers A,B"),
        ([], "give either --seeds A,B or --conditions A B"),
        (["--seeds", "1,2", "--conditions", "grade=LGG", "grade=HGG"], "give either"),
        (["--conditions", "grade=LGG", "grade=GBM"], "condition grade='GBM' is not in the model"),
        (["--seeds", "1,2", "--steps", "1"], "--steps 1: must be at least 2"),
        (["--seeds", "1,2", "--modality", "dwi"], "--modality dwi: not generated by this model"),
    ],
)
def test_interpolate_bad_input(
    checkpoint: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "walk"
    result = _run("interpolate", "--checkpoint", str(checkpoint), *args, "--out", str(out))
    assert message in _one_error_line(result)
    assert not out.exists()


def test_generate_latent_prior_choice(tmp_path: Path, reference_record) -> None:  # noqa: ANN001
    import nibabel as nib
    import torch
    from generation_fixtures import save_tiny_checkpoint, store_meta, tiny_generator, tiny_schema

    schema = tiny_schema()
    G = tiny_generator(schema)
    plain = save_tiny_checkpoint(tmp_path / "plain", G, schema, store_meta(reference_record))
    z = G.z_dim
    G.mapping.set_prior(torch.full((z,), 3.0), 0.1 * torch.eye(z))  # far from N(0, I)
    fitted = save_tiny_checkpoint(tmp_path / "fitted", G, schema, store_meta(reference_record))
    common = ["--n", "1", "--space", "native", "--noise", "const", "--seed", "3"]

    def gen(ckpt: Path, out: str, *extra: str):  # noqa: ANN202
        return _run("generate", "--checkpoint", str(ckpt), "--out", str(tmp_path / out), *common, *extra)

    assert gen(fitted, "a").exit_code == 0
    assert gen(fitted, "b", "--latent-prior", "normal").exit_code == 0
    assert gen(plain, "c").exit_code == 0
    man = {k: json.loads((tmp_path / k / "manifest.json").read_text()) for k in "abc"}
    assert [man[k]["latent_prior"] for k in "abc"] == ["fitted", "normal", "normal"]

    def t1c(out: str):  # noqa: ANN202
        return nib.load(case_file(tmp_path / out, 0, "t1c.nii.gz")).get_fdata()

    # same seed: --latent-prior normal on the fitted model draws what the plain model draws
    assert (t1c("b") == t1c("c")).all() and not (t1c("a") == t1c("c")).all()
    line = _one_error_line(gen(plain, "d", "--latent-prior", "fitted"))
    assert "--latent-prior fitted" in line and "no fitted latent prior" in line
    assert not (tmp_path / "d").exists()
    assert "expected fitted or normal" in _one_error_line(gen(plain, "e", "--latent-prior", "x"))
