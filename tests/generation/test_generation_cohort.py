from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from generation_fixtures import REF_SHAPE, SIZE, case_file, expected_id

from gliomagen import MODALITIES
from gliomagen.generation import generate_cohort
from gliomagen.generation.intensity import SCANNER_RANGES
from gliomagen.generation.source import load_source

FILES = [*(f"-{m}.nii.gz" for m in MODALITIES), "-seg.nii.gz"]


def _bytes(folder: Path) -> dict[str, bytes]:
    """The NIfTI files of a cohort by ``(case seed, file suffix)``."""
    manifest = json.loads((folder / "manifest.json").read_text())
    return {
        (seed, p.name[len(cid) :]): p.read_bytes()
        for cid, seed in zip(manifest["case_ids"], manifest["seeds"], strict=True)
        for p in sorted((folder / cid).glob("*.nii.gz"))
    }


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "clinical.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_layout_clinical_and_manifest(checkpoint: Path, tmp_path: Path) -> None:
    out = generate_cohort(
        checkpoint,
        tmp_path / "syn",
        3,
        conditions={"grade": "LGG"},
        seed=5,
        progress=False,
        command_line="gliomagen generate ...",
    )
    cases = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert cases == [expected_id(checkpoint, s) for s in (5, 6, 7)]
    assert cases[0] == f"SYN-{load_source(checkpoint).sha256[:8]}-s000005"
    for cid in cases:
        assert sorted(p.name for p in (out / cid).iterdir()) == sorted(f"{cid}{s}" for s in FILES)
    assert not list(out.glob(".*")) and not list(out.parent.glob(".*"))  # no temporary left
    rows = _rows(out)
    assert [r["seed"] for r in rows] == ["5", "6", "7"]
    assert {r["grade"] for r in rows} == {"LGG"} and {r["cohort"] for r in rows} == {""}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint"]["sha256"] == load_source(checkpoint).sha256
    assert len(manifest["checkpoint"]["sha256"]) == 64
    assert manifest["seeds"] == [5, 6, 7] and manifest["case_ids"] == cases
    assert manifest["id_prefix"] == f"SYN-{manifest['checkpoint']['sha256'][:8]}"
    assert manifest["truncation"]["psi"] == 1.0
    assert manifest["latent_prior"] == "normal"  # no encoder: z ~ N(0, I)
    assert manifest["latent_prior_components"] == 1
    assert manifest["command_line"] == "gliomagen generate ..."
    assert manifest["gliomagen_version"]
    assert manifest["space"] == "brats" and manifest["shape"] == list(REF_SHAPE)


def test_same_seed_gives_byte_identical_files(checkpoint: Path, tmp_path: Path) -> None:
    kw = {
        "conditions": {"grade": "HGG", "cohort": "SSA"},
        "seed": 3,
        "truncation": 0.8,
        "progress": False,
    }
    a = _bytes(generate_cohort(checkpoint, tmp_path / "a", 3, batch_size=2, **kw))
    b = _bytes(generate_cohort(checkpoint, tmp_path / "b", 3, batch_size=2, **kw))
    c = _bytes(generate_cohort(checkpoint, tmp_path / "c", 3, batch_size=1, **kw))
    assert len(a) == 15 and a == b
    assert a == c  # independent of the batch size too
    d = _bytes(generate_cohort(checkpoint, tmp_path / "d", 3, **{**kw, "seed": 4}))
    assert d[(4, "-t1n.nii.gz")] == a[(4, "-t1n.nii.gz")]  # case seed = seed + i
    assert d[(4, "-t1n.nii.gz")] != a[(3, "-t1n.nii.gz")]
    # One case regenerated alone (other --n, other batch) is bit-identical to its cohort version.
    e = _bytes(generate_cohort(checkpoint, tmp_path / "e", 1, batch_size=4, **{**kw, "seed": 5}))
    for suffix in FILES:
        assert e[(5, suffix)] == a[(5, suffix)]


@pytest.mark.parametrize("fmt", ["float32", "int16"])
def test_brats_space_files_load_with_the_training_geometry(
    checkpoint: Path, tmp_path: Path, fmt: str
) -> None:
    from monai.transforms import LoadImage

    out = generate_cohort(checkpoint, tmp_path / "syn", 1, fmt=fmt, progress=False)
    meta = load_source(checkpoint).meta["template_geometry"]
    brain = None
    for m in MODALITIES:
        img = nib.load(case_file(out, 0, f"{m}.nii.gz"))
        assert img.shape == REF_SHAPE
        assert img.get_data_dtype() == np.dtype(fmt)
        np.testing.assert_allclose(img.affine, np.asarray(meta["affine"]), atol=1e-5)
        assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
        assert img.header.get_zooms() == (1.0, 1.0, 1.0)
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
        data = np.asarray(img.dataobj)
        lo, hi = SCANNER_RANGES[m]
        inside = data[data != 0]
        assert inside.size > 0 and inside.min() >= lo - 0.5 and inside.max() <= hi + 0.5
        brain = data != 0 if brain is None else brain
        assert np.array_equal(brain, data != 0)  # one brain for every modality
        assert not brain[0].any() and not brain[-1].any()  # background around the generated box
        loaded = LoadImage(image_only=True)(str(case_file(out, 0, f"{m}.nii.gz")))
        assert tuple(loaded.shape) == REF_SHAPE
        np.testing.assert_allclose(np.asarray(loaded.affine), np.asarray(meta["affine"]), atol=1e-5)
        np.testing.assert_allclose(loaded.pixdim.numpy(), [1.0, 1.0, 1.0])
    seg = nib.load(case_file(out, 0, "seg.nii.gz"))
    assert seg.get_data_dtype() == np.uint8
    labels = np.asarray(seg.dataobj)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3}
    assert not (labels[~brain] > 0).any()


def test_native_space_has_the_generator_grid_and_true_spacing(
    checkpoint: Path, tmp_path: Path
) -> None:
    from gliomagen.data.preprocess import grid_affine

    source = load_source(checkpoint)
    geometry = source.meta["template_geometry"]
    out = generate_cohort(
        checkpoint, tmp_path / "n", 1, space="native", seed=9, noise_mode="const", progress=False
    )
    img = nib.load(case_file(out, 0, "t2f.nii.gz"))
    assert img.shape == SIZE
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    np.testing.assert_allclose(img.header.get_zooms(), [geometry["spacing_mm"]] * 3, rtol=1e-5)
    np.testing.assert_allclose(img.affine, grid_affine(geometry), atol=1e-5)
    # The native volume is the network output mapped to the scanner range, voxel for voxel.
    from gliomagen.generation.sampling import case_ws

    cat, cont = source.schema.encode({})
    ws = case_ws(source.G, [9], cat[None], cont[None])
    with torch.no_grad():
        images, _ = source.G.synthesis(ws, noise_mode="const")
    x = images[0, MODALITIES.index("t2f")].numpy()
    lo, hi = SCANNER_RANGES["t2f"]
    data = np.asarray(img.dataobj)
    inside = data > 0
    np.testing.assert_allclose(data[inside], lo + (x[inside] + 1) / 2 * (hi - lo), rtol=1e-5)


def test_psi_zero_gives_the_condition_mean_case(checkpoint: Path, tmp_path: Path) -> None:
    kw = {"truncation": 0.0, "noise_mode": "const", "space": "native", "progress": False}
    hgg = generate_cohort(checkpoint, tmp_path / "hgg", 2, conditions={"grade": "HGG"}, **kw)
    lgg = generate_cohort(checkpoint, tmp_path / "lgg", 1, conditions={"grade": "LGG"}, **kw)
    a = np.asarray(nib.load(case_file(hgg, 0, "t1c.nii.gz")).dataobj)
    b = np.asarray(nib.load(case_file(hgg, 1, "t1c.nii.gz")).dataobj)
    c = np.asarray(nib.load(case_file(lgg, 0, "t1c.nii.gz")).dataobj)
    assert np.array_equal(a, b)  # every seed collapses onto the HGG mean
    assert np.abs(a - c).max() > 10.0  # the LGG mean is another case
    # ... and that case is the synthesis of the HGG mean w.
    source = load_source(checkpoint)
    cat, cont = source.schema.encode({"grade": "HGG"})
    z = torch.randn(20000, source.G.z_dim, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        w = source.G.mapping(
            z, torch.as_tensor(cat).expand(20000, -1), torch.as_tensor(cont).expand(20000, -1)
        )
        img, _ = source.G.synthesis(
            w.mean(0, keepdim=True).unsqueeze(1).repeat(1, source.G.num_ws, 1), noise_mode="const"
        )
    lo, hi = SCANNER_RANGES["t1c"]
    expected = lo + (img[0, 1].numpy() + 1) / 2 * (hi - lo)
    inside = a > 0
    assert np.abs(a[inside] - expected[inside]).max() < 0.02 * (hi - lo)


def test_conditions_csv_mixture_lands_in_clinical_csv(checkpoint: Path, tmp_path: Path) -> None:
    mix = tmp_path / "mix.csv"
    mix.write_text("grade,cohort,weight\nHGG,GLI,3\nLGG,SSA,1\n")
    out = generate_cohort(
        checkpoint, tmp_path / "syn", 8, conditions_csv=mix, space="native", progress=False
    )
    rows = _rows(out)
    assert [(r["grade"], r["cohort"]) for r in rows] == [("HGG", "GLI")] * 6 + [("LGG", "SSA")] * 2
    assert [r["case_id"] for r in rows] == [expected_id(checkpoint, i) for i in range(8)]


def test_style_mixing_is_recorded_and_changes_only_with_the_mix(
    checkpoint: Path, tmp_path: Path
) -> None:
    kw = {"space": "native", "noise_mode": "const", "progress": False}
    plain = generate_cohort(checkpoint, tmp_path / "p", 1, seed=1, **kw)
    mixed = generate_cohort(checkpoint, tmp_path / "m", 1, seed=1, mix=(50, 2), **kw)
    rows = _rows(mixed)
    assert rows[0]["mix_seed"] == "50"
    assert json.loads((mixed / "manifest.json").read_text())["mix"] == {
        "seed": 50,
        "layer": 2,
        "seeds": [50],
    }
    a = np.asarray(nib.load(case_file(plain, 0, "t1n.nii.gz")).dataobj)
    b = np.asarray(nib.load(case_file(mixed, 0, "t1n.nii.gz")).dataobj)
    assert not np.array_equal(a, b)


def test_anatomy_from_another_cohort_is_recorded_and_changes_only_the_coarse_styles(
    checkpoint: Path, tmp_path: Path
) -> None:
    from gliomagen.errors import GliomagenError

    kw = {"space": "native", "noise_mode": "const", "progress": False, "conditions": {"cohort": "SSA", "grade": "LGG"}}
    own = generate_cohort(checkpoint, tmp_path / "own", 2, seed=3, **kw)
    anat = generate_cohort(checkpoint, tmp_path / "anat", 2, seed=3, anatomy_from={"cohort": "GLI"}, **kw)
    same = generate_cohort(checkpoint, tmp_path / "same", 2, seed=3, anatomy_from={"cohort": "SSA"}, **kw)
    man = json.loads((anat / "manifest.json").read_text())
    assert man["anatomy_from"] == {"conditions": {"cohort": "GLI"}, "layer": 2}
    assert json.loads((own / "manifest.json").read_text())["anatomy_from"] is None
    assert [(r["cohort"], r["grade"]) for r in _rows(anat)] == [("SSA", "LGG")] * 2  # the case's own labels
    read = lambda d: np.asarray(nib.load(case_file(d, 1, "t1c.nii.gz")).dataobj)  # noqa: E731
    assert not np.array_equal(read(own), read(anat))
    assert np.array_equal(read(own), read(same))  # its own conditions: the plain cohort, bit for bit
    for bad, match in (({"site": "X"}, "--anatomy-from site=X: 'site' is not a condition"),
                       ({"cohort": "MEN"}, "--anatomy-from cohort=MEN: .*known values: GLI, SSA")):  # fmt: skip
        with pytest.raises(GliomagenError, match=match):
            generate_cohort(checkpoint, tmp_path / "bad", 1, anatomy_from=bad, **kw)
    with pytest.raises(GliomagenError, match="--anatomy-layer 99: must be between 1 and"):
        generate_cohort(checkpoint, tmp_path / "bad", 1, anatomy_from={"cohort": "GLI"}, anatomy_layer=99, **kw)
    with pytest.raises(GliomagenError, match="--anatomy-layer: needs --anatomy-from"):
        generate_cohort(checkpoint, tmp_path / "bad", 1, anatomy_layer=2, **kw)
    assert not (tmp_path / "bad").exists()


def test_a_failed_write_leaves_nothing(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write error in the middle of the cohort: nothing at ``out``, no temporary folder beside."""
    import gliomagen.generation.writer as writer
    from gliomagen.errors import GliomagenError

    calls = {"n": 0}
    real_save = nib.save

    def flaky_save(img, path):  # the 8th file (second case, third modality) fails
        calls["n"] += 1
        if calls["n"] == 8:
            raise OSError("disk full")
        return real_save(img, path)

    monkeypatch.setattr(writer.nib, "save", flaky_save)
    with pytest.raises(GliomagenError, match="disk full"):
        generate_cohort(checkpoint, tmp_path / "syn", 3, space="native", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no syn, no .syn.*.tmp
