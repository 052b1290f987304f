"""Intensity standardisation: percentile, z-score and Nyul-Udupa, per case and in the store."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from synth_brats import Synth
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.data.standardise import (
    NYUL_PERCENTILES,
    ZSCORE_CLIP_SD,
    apply_landmarks,
    case_landmarks,
    check_normalization,
    learn_landmarks,
    load_nyul_standard,
    standardise,
    standardise_nyul,
    zscore,
    zscore_to_unit,
)
from gliomagen.data.store import build_store
from gliomagen.errors import GliomagenError

SIZE = (24, 24, 16)


def _brain(shape: tuple[int, int, int] = (20, 22, 18)) -> np.ndarray:
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    c = [(s - 1) / 2 for s in shape]
    return ((x - c[0]) / 8) ** 2 + ((y - c[1]) / 9) ** 2 + ((z - c[2]) / 7) ** 2 <= 1.0


# -- maths on hand-made arrays --------------------------------------------------------------------
def test_case_landmarks_are_percentiles_on_the_percentile_scale() -> None:
    values = np.arange(0.0, 1001.0)  # percentile q of 0..1000 is 10 q
    lm = case_landmarks(values, 5.0, 995.0)
    expect = (10.0 * np.asarray(NYUL_PERCENTILES) - 5.0) * (2.0 / 990.0) - 1.0
    np.testing.assert_allclose(lm, expect, atol=1e-12)
    assert lm[0] == -1.0 and lm[-1] == 1.0 and len(lm) == 11
    # an affine change of the scanner's units leaves the landmarks as they are
    np.testing.assert_allclose(case_landmarks(3.0 * values + 40.0, 55.0, 3025.0), lm, atol=1e-12)


def test_nyul_maps_landmarks_exactly_and_monotonically() -> None:
    rng = np.random.default_rng(0)
    cases = [np.sort(rng.uniform(-1, 1, 9)) for _ in range(5)]
    lms = np.array([[-1.0, *c, 1.0] for c in cases])  # [5, 11]
    standard = learn_landmarks(lms)
    np.testing.assert_allclose(standard, lms.mean(axis=0), atol=1e-12)
    assert np.all(np.diff(standard) > 0)
    for lm in lms:
        np.testing.assert_allclose(apply_landmarks(lm, lm, standard), standard, atol=1e-6)
        x = np.linspace(-1, 1, 2001, dtype=np.float32)
        y = apply_landmarks(x, lm, standard)
        assert np.all(np.diff(y) >= 0) and y[0] == -1.0 and y[-1] == 1.0
        # piecewise linear: the midpoint of two landmarks goes to the midpoint of their images
        mid = apply_landmarks((lm[3] + lm[4]) / 2, lm, standard)
        assert mid == pytest.approx((standard[3] + standard[4]) / 2, abs=1e-6)


def test_nyul_aligns_two_differently_shaped_histograms() -> None:
    rng = np.random.default_rng(1)
    brain = _brain()
    a = np.where(brain, rng.gamma(2.0, 50.0, brain.shape), 0.0).astype(np.float32)
    b = np.where(brain, rng.normal(300.0, 40.0, brain.shape) ** 1.5, 0.0).astype(np.float32)
    lms = []
    for img in (a, b):
        p_lo, p_hi = np.percentile(img[brain], (0.5, 99.5))
        lms.append(case_landmarks(img[brain], p_lo, p_hi))
    standard = learn_landmarks(np.array(lms))
    deciles = []
    for img in (a, b):
        out = standardise_nyul(img, brain, standard)
        assert np.all(out[~brain] == -1.0) and out.min() >= -1.0 and out.max() <= 1.0
        deciles.append(np.percentile(out[brain], NYUL_PERCENTILES[1:-1]))
        np.testing.assert_allclose(deciles[-1], standard[1:-1], atol=0.02)
    plain = [
        np.percentile(np.clip((img[brain] - lo) * 2 / (hi - lo) - 1, -1, 1), [50])
        for img in (a, b)
        for lo, hi in [np.percentile(img[brain], (0.5, 99.5))]
    ]
    # the medians differed by > 0.1 after percentile scaling and agree within 0.02 after nyul
    assert abs(plain[0][0] - plain[1][0]) > 0.1
    assert abs(deciles[0][4] - deciles[1][4]) < 0.02


def test_ties_give_strictly_increasing_landmarks() -> None:
    values = np.repeat([1.0, 2.0, 3.0, 50.0], [500, 300, 150, 50])  # quantised image
    lm = case_landmarks(values, *np.percentile(values, (0.5, 99.5)))
    assert np.all(np.diff(lm) > 0) and lm[0] == -1.0 and lm[-1] == 1.0
    y = apply_landmarks(np.linspace(-1, 1, 101), lm, learn_landmarks(lm[None]))
    assert np.all(np.diff(y) >= 0)


def test_zscore_inside_the_brain() -> None:
    rng = np.random.default_rng(2)
    brain = _brain()
    x = np.where(brain, rng.gamma(3.0, 40.0, brain.shape) + 200.0, 7.0).astype(np.float32)
    z, mean, sd = zscore(x, brain)
    assert float(z[brain].mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(z[brain].std()) == pytest.approx(1.0, abs=1e-4)
    assert mean == pytest.approx(float(x[brain].mean()), rel=1e-6)
    unit = zscore_to_unit(z, brain)
    inside = brain & (np.abs(z) < ZSCORE_CLIP_SD)
    np.testing.assert_allclose(unit[inside], z[inside] / ZSCORE_CLIP_SD, atol=1e-6)
    assert np.all(unit[~brain] == -1.0) and unit.max() == 1.0  # gamma tail beyond +3 sd is clipped
    with pytest.raises(GliomagenError, match="constant"):
        zscore(np.ones((4, 4, 4), np.float32), np.ones((4, 4, 4), bool))


@pytest.mark.parametrize("method", ["percentile", "zscore", "nyul"])
def test_background_is_exactly_minus_one(method: str) -> None:
    rng = np.random.default_rng(3)
    brain = _brain()
    x = np.where(brain, rng.normal(500.0, 80.0, brain.shape), 3.0).astype(np.float32)
    p_lo, p_hi = (float(v) for v in np.percentile(x[brain], (0.5, 99.5)))
    out = x.copy()
    stats = standardise(out, brain, method, p_lo, p_hi)
    assert np.all(out[~brain] == -1.0) and out.min() >= -1.0 and out.max() <= 1.0
    assert (out[brain] > -1.0).mean() > 0.99
    assert set(stats) == {"percentile": set(), "zscore": {"mean", "sd"}, "nyul": {"nyul"}}[method]


def test_bad_method() -> None:
    with pytest.raises(
        GliomagenError, match=r"^--normalize 'minmax': must be one of percentile, zscore, nyul$"
    ):
        check_normalization("minmax")


# -- in the store ----------------------------------------------------------------------------------
@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """Ten small BraTS-2023 cases (8 train, 1 val, 1 test)."""
    s = Synth()
    for i in range(10):
        s.case(tmp_path / "src", f"BraTS-GLI-{i:05d}-000", seed=i)
    return tmp_path / "src"


def _build(src: Path, out: Path, **kw: object) -> Path:
    return build_store([src], out, size=SIZE, progress=False, qc_cases=1, **kw)  # type: ignore[arg-type]


def _meta(store: Path) -> dict:
    return json.loads((store / "meta.json").read_text())


def _splits(store: Path) -> dict[str, str]:
    with open(store / "index.csv", newline="") as fh:
        return {r["case_id"]: r["split"] for r in csv.DictReader(fh)}


def test_store_modes_background_and_meta(cohort: Path, tmp_path: Path) -> None:
    stores = {
        m: _build(cohort, tmp_path / m, normalize=m) for m in ("percentile", "zscore", "nyul")
    }
    imgs = {m: np.load(p / "images.npy").astype(np.float32) for m, p in stores.items()}
    background = (imgs["percentile"] == -1.0).all(axis=1)  # [N, D, H, W] outside the brain
    assert 0.2 < background.mean() < 0.8
    for m, im in imgs.items():
        assert np.all(np.moveaxis(im, 1, 0)[:, background] == -1.0), m
        assert im.min() >= -1.0 and im.max() <= 1.0
        assert (np.moveaxis(im, 1, 0)[:, ~background] > -1.0).mean() > 0.97, m
    # nyul is a strictly increasing map fixing -1: exactly the same voxels are -1 as with percentile
    np.testing.assert_array_equal(imgs["nyul"] == -1.0, imgs["percentile"] == -1.0)
    assert not np.array_equal(imgs["nyul"], imgs["percentile"])
    metas = {m: _meta(p) for m, p in stores.items()}
    assert metas["percentile"]["preprocessing"]["normalization"] == "percentile"
    assert "preprocessing" not in metas["percentile"]["options"]  # default fingerprint unchanged
    assert metas["zscore"]["preprocessing"]["zscore"]["clip_sd"] == 3.0
    nyul = metas["nyul"]["preprocessing"]["nyul"]
    assert nyul["percentiles"] == list(NYUL_PERCENTILES) and nyul["n_train_cases"] == 8
    assert nyul["learned_from"] == "train split"
    assert set(nyul["landmarks"]) == {"t1n", "t1c", "t2w", "t2f"}
    # the landmarks are the mean of the training cases' landmarks (recorded in index.csv)
    with open(stores["nyul"] / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    train = np.array(
        [json.loads(r["intensity"])["t2f"]["nyul"] for r in rows if r["split"] == "train"]
    )
    np.testing.assert_allclose(nyul["landmarks"]["t2f"], train.mean(axis=0), atol=1e-9)
    assert len(list((stores["nyul"] / "qc").glob("*.png"))) == 1  # drawn after the nyul pass


def test_landmarks_are_learnt_on_the_training_split_only(cohort: Path, tmp_path: Path) -> None:
    first = _build(cohort, tmp_path / "S", normalize="nyul")
    landmarks = _meta(first)["preprocessing"]["nyul"]["landmarks"]
    before = np.load(first / "images.npy").astype(np.float32)
    splits = _splits(first)
    order = list(splits)

    def distort(case_id: str) -> None:  # another histogram shape: intensities squared
        path = cohort / case_id / f"{case_id}-t1n.nii.gz"
        img = nib.load(path)
        data = np.asarray(img.dataobj).astype(np.float64)
        nib.save(nib.Nifti1Image((data**2 / data.max()).astype(np.int16), img.affine), str(path))
        os.utime(path, ns=(0, 10**18))  # a different mtime for the fingerprint, whatever the clock

    test_id = next(c for c, s in splits.items() if s == "test")
    distort(test_id)
    second = _build(cohort, tmp_path / "S", normalize="nyul")
    assert _splits(second) == splits
    assert _meta(second)["preprocessing"]["nyul"]["landmarks"] == landmarks
    after = np.load(second / "images.npy").astype(np.float32)
    k = order.index(test_id)
    assert np.abs(after[k, 0] - before[k, 0]).max() > 0.05  # the test case itself did change
    np.testing.assert_array_equal(np.delete(after, k, 0), np.delete(before, k, 0))

    train_id = next(c for c, s in splits.items() if s == "train")
    distort(train_id)
    third = _build(cohort, tmp_path / "S", normalize="nyul")
    assert _meta(third)["preprocessing"]["nyul"]["landmarks"]["t1n"] != landmarks["t1n"]
    assert _meta(third)["preprocessing"]["nyul"]["landmarks"]["t2w"] == landmarks["t2w"]


def test_nyul_from_reuses_a_stores_landmarks(cohort: Path, tmp_path: Path) -> None:
    a = _build(cohort, tmp_path / "A", normalize="nyul")
    b = _build(cohort, tmp_path / "B", normalize="nyul", nyul_from=a)
    nb = _meta(b)["preprocessing"]["nyul"]
    assert nb["landmarks"] == _meta(a)["preprocessing"]["nyul"]["landmarks"]
    assert nb["learned_from"] == str(a.resolve())
    np.testing.assert_array_equal(np.load(a / "images.npy"), np.load(b / "images.npy"))
    std = load_nyul_standard(a)
    assert all(v[0] == -1.0 and v[-1] == 1.0 for v in std.values())
    plain = _build(cohort, tmp_path / "P")
    with pytest.raises(GliomagenError, match=r"--nyul-from .*P: the store has no Nyul landmarks"):
        _build(cohort, tmp_path / "C", normalize="nyul", nyul_from=plain)
    with pytest.raises(GliomagenError, match=r"--nyul-from .*: only with --normalize nyul"):
        _build(cohort, tmp_path / "C", nyul_from=a)
    with pytest.raises(GliomagenError, match=r"--nyul-from .*nowhere: not a readable"):
        _build(cohort, tmp_path / "C", normalize="nyul", nyul_from=tmp_path / "nowhere")
    assert not (tmp_path / "C").exists()


def test_nyul_with_worker_processes_matches_one_process(cohort: Path, tmp_path: Path) -> None:
    one = _build(cohort, tmp_path / "one", normalize="nyul")
    two = _build(cohort, tmp_path / "two", normalize="nyul", workers=2)
    np.testing.assert_array_equal(np.load(one / "images.npy"), np.load(two / "images.npy"))
    assert _meta(one)["preprocessing"]["nyul"] == _meta(two)["preprocessing"]["nyul"]
    assert [p.name for p in (one / "qc").glob("*.png")] == [
        p.name for p in (two / "qc").glob("*.png")
    ]


def test_changing_the_normalisation_rebuilds(
    cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "S"
    build_store([cohort], out, size=SIZE, qc_cases=0, normalize="zscore")
    build_store([cohort], out, size=SIZE, qc_cases=0, normalize="zscore")
    assert "up to date with its inputs; nothing to do" in capsys.readouterr().err
    build_store([cohort], out, size=SIZE, qc_cases=0, normalize="nyul")
    assert "nothing to do" not in capsys.readouterr().err
    assert _meta(out)["preprocessing"]["normalization"] == "nyul"


def _run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_options(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "S"
    code, stdout, _ = _run("prepare", "--help")
    assert code == 0
    for option in (
        "--normalize",
        "--nyul-from",
        "--bias-correction",
        "--n4-shrink",
        "--denoise",
        "--denoise-strength",
    ):
        assert option in stdout
    for args, message in [
        (
            ["--normalize", "minmax"],
            "error: --normalize 'minmax': must be one of percentile, zscore, nyul\n",
        ),
        (["--bias-correction", "--n4-shrink", "0"], "error: --n4-shrink 0: must be 1..16\n"),
        (
            ["--denoise", "--denoise-strength", "0"],
            "error: --denoise-strength 0.0: must be > 0 and <= 5\n",
        ),
        (["--nyul-from", tmp_path], f"error: --nyul-from {tmp_path}: only with --normalize nyul\n"),
    ]:
        code, _, stderr = _run("prepare", cohort, "--out", out, *args)
        assert code == 2 and stderr == message, (args, stderr)
        assert not out.exists()
    code, _, stderr = _run(
        "prepare", cohort, "--out", out, "--size", "24,24,16", "--normalize", "nyul", "--qc", "0"
    )
    assert code == 0, stderr
    assert _meta(out)["preprocessing"]["nyul"]["n_train_cases"] == 8


# -- the cohort shift: GLI (3 T) vs SSA (1.5 T-like) phantoms --------------------------------------
def _wm_t1n(store: Path) -> tuple[np.ndarray, list[str]]:
    """Per case, the median T1n of white matter (proxy), and the cohorts.

    WM proxy: normal-appearing brain (inside the brain, outside the tumour mask) in the darkest
    quarter of T2w, where white matter is (WM < GM < CSF on T2). The voxels are chosen by rank in
    another modality, so the same voxels are used whatever the T1n standardisation.
    """
    images = np.load(store / "images.npy").astype(np.float32)  # [N, C, D, H, W]
    masks = np.load(store / "masks.npy")  # [N, D, H, W]
    with open(store / "index.csv", newline="") as fh:
        cohorts = [r["cohort"] for r in csv.DictReader(fh)]
    out = []
    for img, mask in zip(images, masks, strict=True):
        normal = (img.max(axis=0) > -1.0) & (mask == 0)
        t2w = img[2][normal]
        wm = t2w <= np.percentile(t2w, 25)
        out.append(float(np.median(img[0][normal][wm])))
    return np.array(out), cohorts


@pytest.mark.slow  # ~20 s to draw the 16 phantoms, ~8 s to prepare them twice
def test_nyul_reduces_the_gli_ssa_spread_of_white_matter(tmp_path: Path) -> None:
    from gliomagen.data.phantoms import generate_cohort

    src = tmp_path / "phantoms"
    generate_cohort(
        src, cohorts={"GLI": 8, "SSA": 8}, resolution=2, seed=0, workers=1, progress=False
    )
    figures = {}
    for method in ("percentile", "nyul"):
        store = build_store(
            [src], tmp_path / method, size=32, progress=False, qc_cases=0, normalize=method
        )
        wm, cohorts = _wm_t1n(store)
        gli = wm[[c == "GLI" for c in cohorts]]
        ssa = wm[[c == "SSA" for c in cohorts]]
        figures[method] = {
            "gap": abs(float(gli.mean() - ssa.mean())),  # between-cohort difference of the means
            "sd": float(wm.std()),  # spread over all 16 cases
        }
    print(figures)  # measured: gap 0.26 -> 0.13 and sd 0.14 -> 0.07 (about halved)
    assert figures["percentile"]["gap"] > 0.1  # the cohort shift is there to begin with
    assert figures["nyul"]["gap"] < 0.6 * figures["percentile"]["gap"]
    assert figures["nyul"]["sd"] < 0.7 * figures["percentile"]["sd"]
