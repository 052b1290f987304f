"""The generator's parts: template from the installed package, contrast rules, tumour geometry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gliomagen import MODALITIES
from gliomagen.data.phantoms import PhantomParams
from gliomagen.data.phantoms.anatomy import (
    load_template,
    sample_geometry,
    template_files,
    warp_tissues,
)
from gliomagen.data.phantoms.case import case_rngs
from gliomagen.data.phantoms.contrast import sample_contrast
from gliomagen.data.phantoms.fields import smooth_field
from gliomagen.data.phantoms.tumour import mass_effect, sample_tumour, tumour_maps

PARAMS = PhantomParams()


def test_template_comes_from_the_nilearn_package() -> None:
    files = template_files()
    for key, path in files.items():
        assert path.is_file() and "nilearn" in path.parts and key in path.name
    t = load_template(2, PARAMS.anatomy)
    assert t.maps.shape == (101, 119, 97, 3)  # 197x233x189 at 1 mm -> 2 mm, plus a zero ring
    gm, wm, brain = (t.maps[..., k] for k in range(3))
    assert (gm + wm <= brain + 1e-5).all()  # CSF = brain - GM - WM is never negative
    csf_ml = (brain - gm - wm).sum() * 8 / 1000
    assert 100 < csf_ml < 400
    assert (t.maps[0] == 0).all() and (t.maps[:, :, -1] == 0).all()


@pytest.mark.parametrize("cohort", ["GLI", "SSA"])
def test_tissue_contrast_rules(cohort: str) -> None:
    acq = PARAMS.cohorts[cohort].acquisition
    for i in range(200):
        it = sample_contrast(np.random.default_rng(i), PARAMS.contrast, acq).intensity
        t1, t1c, t2, fl = (it[m] for m in MODALITIES)
        assert t1["wm"] > t1["gm"] > t1["csf"]
        assert t2["csf"] > t2["gm"] > t2["wm"]
        assert fl["csf"] < 0.5 * min(fl["gm"], fl["wm"])  # CSF suppressed
        # edema bright on T2/FLAIR
        assert fl["ed"] > max(fl["gm"], fl["wm"]) and t2["ed"] > t2["gm"]
        assert t1["ncr"] < t1["gm"] and t2["ncr"] > t2["gm"]  # necrosis dark T1, bright T2
        assert t2["net"] > t2["gm"] and fl["net"] > fl["gm"]  # LGG core bright on T2/FLAIR
        # T1Gd is T1 plus enhancement: the rim gains far more than normal tissue
        gain = {k: t1c[k] / t1[k] for k in ("et", "wm", "gm", "ncr")}
        assert np.isclose(gain["wm"], gain["ncr"])  # no enhancement outside the leaky rim
        assert gain["et"] > 1.5 * gain["wm"]


def test_ssa_contrast_balance_differs() -> None:
    """Same draws, two cohorts: SSA has a stronger T1 GM/WM contrast and weaker enhancement."""
    gli = sample_contrast(
        np.random.default_rng(0), PARAMS.contrast, PARAMS.cohorts["GLI"].acquisition
    ).intensity
    ssa = sample_contrast(
        np.random.default_rng(0), PARAMS.contrast, PARAMS.cohorts["SSA"].acquisition
    ).intensity
    assert ssa["t1n"]["gm"] / ssa["t1n"]["wm"] < gli["t1n"]["gm"] / gli["t1n"]["wm"]
    enh = {
        k: v["t1c"]["et"] / v["t1c"]["wm"] / (v["t1n"]["et"] / v["t1n"]["wm"])
        for k, v in (("gli", gli), ("ssa", ssa))
    }
    assert enh["ssa"] < enh["gli"]


def test_smooth_field_statistics() -> None:
    f = smooth_field((40, 40, 40), 8.0, np.random.default_rng(0))
    assert f.dtype == np.float32 and abs(float(f.mean())) < 0.3 and 0.5 < float(f.std()) < 1.5
    # smooth: neighbours are strongly correlated, far voxels are not
    near = np.corrcoef(f[:-1].ravel(), f[1:].ravel())[0, 1]
    far = np.corrcoef(f[:-20].ravel(), f[20:].ravel())[0, 1]
    assert near > 0.9 and abs(far) < 0.5


def _subject(seed: int, grade: str):
    t = load_template(2, PARAMS.anatomy)
    rng = case_rngs(seed, "GLI", 0)
    geo = sample_geometry(rng["anatomy"], t, PARAMS.anatomy)
    spec = sample_tumour(rng["tumour"], grade, t, geo, PARAMS.anatomy, PARAMS.tumours[grade])
    return t, geo, spec, rng


def test_mass_effect_pushes_tissue_away_without_folding() -> None:
    t, geo, spec, _ = _subject(0, "HGG")
    d = np.linspace(0.0, 6 * spec.reach_mm, 400, dtype=np.float32)
    ray = tuple(
        np.float32(spec.centre[k]) + d * np.float32(v) for k, v in enumerate((0.6, 0.8, 0.0))
    )
    pulled = mass_effect(spec, ray)
    src = np.sqrt(sum((pulled[k] - spec.centre[k]) ** 2 for k in range(3)))
    assert (np.diff(src) > 0).all()  # monotone: no folding
    inner = (d > 0) & (d < 2 * spec.reach_mm)
    # points show tissue from nearer the centre: the tissue was pushed outward
    assert (src[inner] < d[inner]).all()
    assert (src <= d + 1e-3).all()
    assert abs(src[-1] - d[-1]) < 1e-3 * d[-1]  # no effect far away
    np.testing.assert_allclose(src[1] / d[1], 1 - spec.mass_effect, rtol=1e-3)


def test_tumours_grow_in_white_matter() -> None:
    """The tumour centre sits in white matter of the subject's (warped) anatomy."""
    wm_at_centre = []
    for seed in range(12):
        t, geo, spec, _ = _subject(seed, "HGG" if seed % 2 else "LGG")
        world = t.grid.box_world()
        # no mass effect here: ask what tissue the centre would have been
        no_push = dataclasses.replace(spec, mass_effect=0.0)
        _, wm, _, _ = warp_tissues(t, geo, PARAMS.anatomy, mass_effect(no_push, world))
        idx = [int(np.argmin(np.abs(world[k].ravel() - spec.centre[k]))) for k in range(3)]
        wm_at_centre.append(float(wm[tuple(idx)]))
    assert np.median(wm_at_centre) > 0.8 and min(wm_at_centre) > 0.4, wm_at_centre


@pytest.mark.parametrize("grade", ["HGG", "LGG"])
def test_tumour_sizes_follow_the_grade(grade: str) -> None:
    """Core and edema volumes of 20 tumours lie in glioma ranges; HGG edema is wider than LGG."""
    cores, edemas = [], []
    for seed in range(20):
        t, geo, spec, rng = _subject(seed, grade)
        world = t.grid.box_world()
        gm, wm, _, brain = warp_tissues(t, geo, PARAMS.anatomy, mass_effect(spec, world))
        maps = tumour_maps(spec, PARAMS.tumours[grade], world, 2, gm, wm, brain, rng["tumour"])
        cores.append(float((maps.ncr + maps.et).sum()) * 8 / 1000)
        edemas.append(float(maps.ed.sum()) * 8 / 1000)
        if grade == "LGG":
            assert maps.et.max() == 0
    assert 3 < np.median(cores) < 80, cores
    if grade == "HGG":
        assert np.median(edemas) > np.median(cores) and np.median(edemas) < 250, edemas
    else:
        assert np.median(edemas) < 0.8 * np.median(cores), edemas
