"""``gliomagen export card``: the model card states the checkpoint's, run's and store's facts."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch
from card_fixtures import checkpoint_state, write_run, write_store
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.config import preset
from gliomagen.export import model_card

PHANTOM = "- **Warning: trained on the built-in phantoms** (`gliomagen phantoms`)"
UNCHECKED = "- Whether the store was built from the built-in phantoms could not be checked"


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def test_card_of_a_run_by_value(tmp_path: Path) -> None:
    run, store = write_run(tmp_path)
    ckpt = run / "checkpoints" / "step-0000010.pt"
    lines = lines_of(model_card(run))
    demo = preset("demo-cpu")
    expected = [
        "# Model card: run",
        f"- SHA-256: `{hashlib.sha256(ckpt.read_bytes()).hexdigest()}`",
        f"- Run folder: `{run}`",
        "- Generator (EMA weights): 17 values",
        PHANTOM + ": procedurally drawn brains and tumours, not patient data. Its cases look like "
        "phantoms, not like MRI; use it to test a pipeline, never as a source of realistic data.",
        f"- Store: `{store}` (from RUN/log.txt)",
        "- Training cases: 3 with a tumour mask (1 without one left out), from the run's log",
        f"- Store format 1, built by gliomagen 0.1.0; input fingerprint `{'f' * 64}`",
        "- Store cases: 5 (train 4, val 1, test 0), 4 with a mask",
        "- Grid: 16x16x16 voxels, voxel size 2.5 mm (isotropic)",
        "- File grid of generated cases (`generate --space brats`): 40x44x30 voxels at 1 mm (isotropic)",
        "- Modalities: t1n, t1c, t2w, t2f",
        "- Tumour mask labels (BraTS 2023): 0 background, 1 NCR (necrotic / non-enhancing core), "
        "2 ED (oedema), 3 ET (enhancing)",
        "- Preset: `demo-cpu`",
        f"| `model.z_dim` | {demo.model.z_dim} | 16 |",
        f"| `train.steps` | {demo.train.steps} | 10 |",
        f"| `train.val_every` | {demo.train.val_every} | 2 |",
        "- Steps: 10 of 10 planned, batch 4; 40 images seen",
        "- Training time: 1.5 minutes",
        "- Hardware: 1 worker(s) on cpu",
        "- Stopped early: plateau (val fd has not improved for 1 evaluations)",
        "- Best checkpoint (`best.pt`): step 8, fd = 1.25",
        "  | fd | 1.25 |",
        "  | memorised | 0 |",
        "- Last validation (`validation.jsonl`): step 10, fd = 2.5, no improvement",
        "  | fd | 2.5 |",
        "| `cohort` | categorical | 0 = GLI, 1 = SSA, 2 = unknown | GLI 2, SSA 1 | labels-csv |",
        "| `age` | continuous | (x - 55) / 12.5 | 40 to 71.5 | labels-csv |",
    ]
    missing = [line for line in expected if line not in lines]
    assert not missing, "\n".join(lines)
    top = lines.index("| key | preset | this run |")
    assert lines[top + 1 : top + 6] == ["|---|---|---|", *expected[14:17], ""]  # only these differ
    assert not any("mask_groups" in line for line in lines)  # only scalar metrics
    assert lines[2:4] == ["Conditional StyleGAN of gliomagen; card written by gliomagen 0.1.0 "
                          "(`gliomagen export card`).", ""]  # fmt: skip
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == [
        "## Checkpoint", "## Intended use and limits", "## Training data", "## Recipe",
        "## Training length", "## Validation", "## Conditioning",
    ]  # fmt: skip


def test_card_of_best_pt_in_its_run(tmp_path: Path) -> None:
    run, _ = write_run(tmp_path)
    lines = lines_of(model_card(run / "checkpoints" / "best.pt"))
    assert "# Model card: run" in lines
    assert f"- File: `{run / 'checkpoints' / 'best.pt'}` (0.0 MB)" in lines
    assert "- Steps: 8 of 10 planned, batch 4; 32 images seen" in lines
    assert "- Best checkpoint (`best.pt`): step 8, fd = 1.25" in lines


def test_card_of_a_lone_checkpoint_says_what_is_unknown(tmp_path: Path) -> None:
    run, _ = write_run(tmp_path)
    lone = tmp_path / "elsewhere" / "model.pt"
    lone.parent.mkdir()
    shutil.copyfile(run / "checkpoints" / "step-0000010.pt", lone)
    lines = lines_of(model_card(lone))
    assert "# Model card: model" in lines
    assert "- Run folder: not given" in lines
    assert (
        "- Store: not recorded (the checkpoint does not name its store, and no run log or "
        "`--store` was given)"
    ) in lines
    assert "- No validation recorded (`train.val_every=2`)" in lines
    assert "| `cohort` | categorical | 0 = GLI, 1 = SSA, 2 = unknown | not recorded | labels-csv |" in lines
    assert any(line.startswith(UNCHECKED) for line in lines)
    assert not any(line.startswith(PHANTOM) for line in lines)


def test_real_cases_carry_no_phantom_warning(tmp_path: Path) -> None:
    run, _ = write_run(tmp_path, phantoms=False)
    lines = lines_of(model_card(run))
    assert not any(line.startswith((PHANTOM, UNCHECKED)) for line in lines)


def test_sources_gone_means_unchecked(tmp_path: Path) -> None:
    run, _ = write_run(tmp_path)
    shutil.rmtree(tmp_path / "phantoms")
    lines = lines_of(model_card(run))
    assert any(line.startswith(UNCHECKED) for line in lines)
    assert not any(line.startswith(PHANTOM) for line in lines)


def test_store_option_and_a_store_that_no_longer_matches(tmp_path: Path) -> None:
    run, _ = write_run(tmp_path)
    other = write_store(tmp_path / "rebuilt", tmp_path / "phantoms", tmp_path / "x.csv", size=32)
    lines = lines_of(model_card(run, store=other))
    assert f"- Store: `{other}` (from --store)" in lines
    assert any(line.startswith("- **The store now at this path does not match") for line in lines)
    gone = lines_of(model_card(run, store=tmp_path / "nowhere"))
    assert f"- Store: `{tmp_path / 'nowhere'}` (from --store; not readable now)" in gone


def test_unknown_preset_is_said(tmp_path: Path) -> None:
    state = checkpoint_state(3)
    state["config"]["preset"] = "my-own"
    path = tmp_path / "x.pt"
    torch.save(state, path)
    lines = lines_of(model_card(path))
    assert "- The preset `my-own` is unknown to this gliomagen; differences not listed" in lines


def test_cli_writes_or_prints_the_card(tmp_path: Path) -> None:
    run, _ = write_run(tmp_path)
    out = tmp_path / "cards" / "card.md"
    written = CliRunner().invoke(app, ["export", "card", str(run), "--out", str(out)])
    printed = CliRunner().invoke(app, ["export", "card", str(run)])
    assert written.exit_code == 0 and written.stdout == f"wrote {out}\n"
    assert printed.exit_code == 0 and printed.stdout == out.read_text() == model_card(run)
    missing = CliRunner().invoke(app, ["export", "card", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert missing.stderr == f"error: {tmp_path / 'nope'}: checkpoint or run folder not found\n"


def test_a_recorded_store_fingerprint_decides_the_match(tmp_path: Path) -> None:
    """Checkpoints since the store check record ``{path, fingerprint}``: the card finds the store
    there and compares content, not just the grid."""
    from gliomagen.data.fingerprint import store_fingerprint

    run, store = write_run(tmp_path)
    ckpt = run / "checkpoints" / "step-0000010.pt"
    state = torch.load(ckpt, weights_only=True)
    state["store"] = {"path": str(store), "fingerprint": store_fingerprint(store)}
    torch.save(state, ckpt)
    (run / "log.txt").unlink()  # the path now comes from the checkpoint
    lines = lines_of(model_card(ckpt))
    assert f"- Store: `{store}` (from the checkpoint)" in lines
    assert f"- Store content fingerprint recorded at training: `{store_fingerprint(store)}`" in lines
    assert "- The store now at this path holds the data the model was trained on" in lines
    state["store"]["fingerprint"] = "sha256:" + "0" * 64  # trained on other data
    torch.save(state, ckpt)
    assert any(
        line.startswith("- **The store now at this path does not match the checkpoint**")
        for line in lines_of(model_card(ckpt))
    )
