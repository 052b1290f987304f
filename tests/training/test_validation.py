"""Validation inside training on a 32^3 phantom store: metric file, best.pt, plateau and memorisation stops."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.errors import GliomagenError
from gliomagen.io.checkpoint import list_checkpoints
from gliomagen.training import load_checkpoint, load_generator, train, validation

# cheap validation for tests: a 20-step probe, 6 samples
VAL = {"val_samples": 6, "val_batch_size": 3, "val_pairs": 6, "val_probe_steps": 20}
METRICS = {"fd", "kid", "fidelity", "fidelity_real", "diversity", "diversity_real", "memorised",
           "mask", "mask_groups",
           "n_samples", "n_val"}  # fmt: skip


@pytest.fixture(scope="module")
def phantom_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """15 phantom cases (GLI 9, SSA 6) prepared at 32^3: 11 train, 2 val, 2 test."""
    from gliomagen.data.phantoms import generate_cohort
    from gliomagen.data.store import build_store

    root = tmp_path_factory.mktemp("val-phantoms")
    with torch.random.fork_rng(devices=[]):
        generate_cohort(root / "cases", {"GLI": 9, "SSA": 6}, resolution=2, seed=0, progress=False)
    build_store([root / "cases"], root / "store", labels_csv=root / "cases" / "clinical.csv",
                size=32, progress=False, qc_cases=0)  # fmt: skip
    return root / "store"


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run / "validation.jsonl").read_text().splitlines()]


@pytest.mark.slow  # the module's phantom store takes ~15 s once
def test_validation_writes_metrics_and_keeps_best(
    tmp_path: Path, phantom_store: Path, tiny_cfg
) -> None:  # noqa: ANN001
    cfg = tiny_cfg(train={"steps": 4, "val_every": 2, "val_patience": 0, "checkpoint_every": 1,
                          "keep_checkpoints": 1, **VAL})  # fmt: skip
    run = tmp_path / "run"
    ckpt = train(cfg, str(phantom_store), run, progress=False)
    recs = _records(run)
    assert [r["step"] for r in recs] == [2, 4] and ckpt.name == "step-0000004.pt"
    for r in recs:
        m = r["metrics"]
        assert set(m) == METRICS and m["n_samples"] == 6 and m["n_val"] == 2
        assert m["fd"] > 0 and m["kid"] is not None and 0 < m["diversity"] <= 1
        assert 0 <= m["fidelity"] <= 1 and m["memorised"] == 0  # an untrained G copies nothing
        assert r["seconds"] > 0 and r["stop"] is None and r["metric"] == "fd"
    assert recs[0]["setup_seconds"] > 0 and recs[1]["setup_seconds"] is None  # real side once
    assert recs[1]["metrics"]["diversity_real"] == recs[0]["metrics"]["diversity_real"]
    best_rec = min(recs, key=lambda r: r["metrics"]["fd"])
    assert recs[-1]["best"] == {"step": best_rec["step"], "value": best_rec["metrics"]["fd"]}
    # best.pt sits beside the last checkpoints and survives the keep-last-1 pruning
    assert [p.name for p in list_checkpoints(run)] == ["step-0000004.pt"]
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["step"] == best_rec["step"]
    assert best["validation"]["metric"] == "fd"
    assert best["validation"]["value"] == pytest.approx(best_rec["metrics"]["fd"])
    G, schema, _, _ = load_generator(run / "checkpoints" / "best.pt")
    for k, v in best["G_ema"].items():
        assert torch.equal(G.state_dict()[k], v)
    # real-side cache in the run folder, keyed by a hash; TensorBoard scalars; the log line
    cache = run / "validation"
    assert (
        len(list(cache.glob("reference/*.npz"))) == 1
        and len(list((cache / "probe").glob("*.pt"))) == 1
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run / "tensorboard"))
    ea.Reload()
    fd = [(e.step, e.value) for e in ea.Scalars("val/fd")]
    assert [s for s, _ in fd] == [2, 4]
    assert fd[0][1] == pytest.approx(recs[0]["metrics"]["fd"], rel=1e-5)
    assert {"val/kid", "val/fidelity", "val/diversity", "val/memorised", "val/seconds"} <= set(
        ea.Tags()["scalars"]
    )
    assert "validation at step 2: fd=" in (run / "log.txt").read_text()
    # `gliomagen generate --checkpoint RUN/checkpoints/best.pt` reads it
    res = CliRunner().invoke(app, ["generate", "--checkpoint", str(run / "checkpoints" / "best.pt"),
                                   "--n", "1", "--out", str(tmp_path / "syn"), "--space", "native",
                                   "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "syn").glob("SYN-*/*seg.nii.gz"))) == 1
    # resume: the early-stopping state comes back from the checkpoint, the cached probe and real
    # features are reused, and lines of evaluations after the checkpoint (a crash) are dropped
    cached = sorted(cache.rglob("*.*"))
    stamps = [(f.stat().st_ino, f.stat().st_mtime_ns) for f in cached]
    with open(run / "validation.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 5, "metrics": {}}) + "\n")
    train(tiny_cfg(train={**cfg.train.__dict__, "steps": 6}), str(phantom_store), run, resume=True,
          progress=False)  # fmt: skip
    again = _records(run)
    assert [r["step"] for r in again] == [2, 4, 6] and again[:2] == recs
    assert again[2]["setup_seconds"] is not None  # a new trainer sets the real side up again...
    assert sorted(cache.rglob("*.*")) == cached  # ... from the cache files, not rewritten
    assert [(f.stat().st_ino, f.stat().st_mtime_ns) for f in cached] == stamps
    assert load_checkpoint(run)["train_state"]["validation"]["evaluations"] == 3


@pytest.mark.slow  # the module's phantom store takes ~15 s once
def test_plateau_stops_after_patience_evaluations(tmp_path: Path, phantom_store: Path) -> None:
    """G and G_ema never change (lr 1e-30: updates vanish in float32; EMA weight 1), so the metric
    is the same at every evaluation: the first is the best, two more without improvement stop."""
    run = tmp_path / "run"
    sets = ["model.g_channels=4", "model.g_max_channels=8", "model.d_channels=4",
            "model.d_max_channels=8", "model.z_dim=8", "model.w_dim=16", "train.w_avg_samples=16",
            "train.threads=1", "train.steps=20", "train.lr_g=1e-30", "train.lr_d=1e-30",
            "train.ema_half_life_images=1e30", "train.ema_rampup=0", "train.val_every=1",
            "train.val_patience=2", "train.val_metric=kid", "train.log_every=1",
            *[f"train.{k}={v}" for k, v in VAL.items()]]  # fmt: skip
    res = CliRunner().invoke(app, ["train", str(phantom_store), "--run", str(run), "--preset",
                                   "demo-cpu", "--quiet", *[a for s in sets for a in ("--set", s)]])  # fmt: skip
    assert res.exit_code == 0, res.output
    recs = _records(run)
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert [r["improved"] for r in recs] == [True, False, False]
    assert [r["since_best"] for r in recs] == [0, 1, 2]
    assert len({r["metrics"]["kid"] for r in recs}) == 1  # the frozen generator: equal values
    assert [r["stop"] and r["stop"]["reason"] for r in recs] == [None, None, "plateau"]
    assert "has not improved for 2 evaluations" in recs[-1]["stop"]["detail"]
    # the final checkpoint is written at the stopping step; best.pt is step 1's
    assert [p.name for p in list_checkpoints(run)][-1] == "step-0000003.pt"
    assert load_checkpoint(run / "checkpoints" / "best.pt")["step"] == 1
    assert load_checkpoint(run)["train_state"]["validation"]["since_best"] == 2
    assert "stopped at step 3: early stop (plateau)" in (run / "log.txt").read_text()
    assert "stopped early at step 3 (plateau): val kid has not improved" in res.output
    assert "best: " in res.output and "best.pt" in res.output


@pytest.mark.slow  # the module's phantom store takes ~15 s once
def test_copying_generator_triggers_memorisation_stop(
    tmp_path: Path,
    phantom_store: Path,
    tiny_cfg,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    """A 'generator' whose samples are training cases is stopped at its first evaluation."""
    from gliomagen.data.store import open_store

    train_ds = open_store(phantom_store, split="train")
    images = np.load(phantom_store / "images.npy")[train_ds.indices].astype(np.float32)
    masks = np.load(phantom_store / "masks.npy")[train_ds.indices]
    calls: list[int] = []

    def copies(G: Any, z: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(z))
        pick = np.arange(len(z)) % len(images)  # training cases 0..n-1
        return images[pick], masks[pick]

    monkeypatch.setattr(validation, "generate_samples", copies)
    cfg = tiny_cfg(train={"steps": 10, "val_every": 1, "val_patience": 0, "stop_on_memorisation": True,
                          "memorisation_threshold": 4, **VAL})  # fmt: skip
    run = tmp_path / "run"
    ckpt = train(cfg, str(phantom_store), run, progress=False)
    assert calls == [6]
    recs = _records(run)
    assert len(recs) == 1 and recs[0]["step"] == 1
    assert recs[0]["metrics"]["memorised"] == 6  # every copy flagged
    assert recs[0]["stop"]["reason"] == "memorisation"
    assert "6 of 6 samples flagged" in recs[0]["stop"]["detail"]
    assert ckpt.name == "step-0000001.pt" and load_checkpoint(run)["step"] == 1
    assert not (run / "checkpoints" / "best.pt").exists()  # a copying generator is never the best
    assert "stopped at step 1: early stop (memorisation)" in (run / "log.txt").read_text()
    assert validation.last_stop(run) == recs[0]


@pytest.mark.slow  # the module's phantom store takes ~15 s once
def test_validation_needs_a_val_split(
    tmp_path: Path, phantom_store: Path, fake_store, tiny_cfg
) -> None:  # noqa: ANN001
    cfg = tiny_cfg(train={"val_every": 1, **VAL})
    with pytest.raises(GliomagenError, match=r"train.val_every=1: validation reads the val split"):
        train(cfg, fake_store(n=4), tmp_path / "a", progress=False)
    cfg = tiny_cfg(train={"val_every": 1, **VAL}, data={"split": "all"})
    with pytest.raises(GliomagenError, match=r"validation needs data.split=train"):
        train(cfg, str(phantom_store), tmp_path / "b", progress=False)
    cfg = tiny_cfg(train={"val_every": 5, **VAL})  # never due within 4 steps: no checks, no file
    train(cfg, fake_store(n=4), tmp_path / "c", progress=False)
    assert not (tmp_path / "c" / "validation.jsonl").exists()


@pytest.mark.parametrize(
    ("metric", "value", "best", "delta", "expected"),
    [
        ("fd", 1.0, None, 0.0, True),
        ("fd", 1.0, 2.0, 0.0, True),
        ("fd", 2.0, 2.0, 0.0, False),
        ("kid", 1.5, 2.0, 0.6, False),
        ("diversity", 0.3, 0.4, 0.0, True),
        ("fidelity", 0.5, 0.4, 0.0, True),
        ("fidelity", 0.4, 0.5, 0.0, False),
        ("mask", 0.2, 0.3, 0.0, True),
        ("mask", 0.3, 0.2, 0.0, False),
        ("fd", float("nan"), None, 0.0, False),
    ],
)
def test_direction_per_metric(
    metric: str, value: float, best: float | None, delta: float, expected: bool
) -> None:
    assert validation.is_better(metric, value, best, delta) is expected


@pytest.mark.slow  # the module's phantom store takes ~15 s once
def test_mask_metric_ranks_structure(
    tmp_path: Path, phantom_store: Path, tiny_cfg, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """``train.val_metric=mask``: samples whose tumours match their requested grade beat samples
    whose tumours vanished, the value is the structure distance computed by hand, and best.pt
    records it."""
    from gliomagen.data.store import open_store
    from gliomagen.evaluation import tissue

    train_ds, val_ds = open_store(phantom_store, split="train"), open_store(phantom_store, split="val")
    images = np.load(phantom_store / "images.npy")[train_ds.indices].astype(np.float32)
    masks = np.load(phantom_store / "masks.npy")[train_ds.indices]
    n = VAL["val_samples"]
    wanted = [val_ds.rows[i % len(val_ds)]["grade"] for i in range(n)]  # the conditions asked for
    by_grade = {g: [i for i, r in enumerate(train_ds.rows) if r["grade"] == g] for g in set(wanted)}
    pick = np.array([by_grade[g][k % len(by_grade[g])] for k, g in enumerate(wanted)])
    faithful = masks[pick]
    mode = {"masks": faithful}

    def fake(G: Any, z: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        return images[pick], mode["masks"]

    monkeypatch.setattr(validation, "generate_samples", fake)
    cfg = tiny_cfg(train={"steps": 2, "val_every": 1, "val_patience": 0, "val_metric": "mask",
                          "stop_on_memorisation": False, "memorisation_threshold": 100,
                          **VAL})  # fmt: skip (the images are training cases: no copy veto)
    run = tmp_path / "run"
    train(cfg, str(phantom_store), run, progress=False)
    mode["masks"] = np.zeros_like(faithful)  # every tumour gone
    train(tiny_cfg(train={**cfg.train.__dict__, "steps": 3}), str(phantom_store), run,
          resume=True, progress=False)  # fmt: skip
    recs = _records(run)
    assert [r["step"] for r in recs] == [1, 2, 3] and recs[0]["metric"] == "mask"
    good, gone = recs[0]["metrics"], recs[2]["metrics"]
    assert good["mask"] == pytest.approx(recs[1]["metrics"]["mask"])  # same samples, same value
    assert gone["mask"] > good["mask"] + 0.5
    assert [r["improved"] for r in recs] == [True, False, False]
    groups = good["mask_groups"]
    fields = sorted({k.split("=")[0] for k in groups})
    assert "grade" in fields and {"grade=HGG", "grade=LGG"} <= set(groups)
    # by hand: per condition of the model, the training cases' statistics against the samples'
    from gliomagen import MODALITIES

    real = {**tissue.structure_statistics(masks),
            **tissue.tissue_contrast(images, masks, MODALITIES)}  # fmt: skip
    gone_masks = np.zeros_like(faithful)
    syn = {**tissue.structure_statistics(gone_masks),
           **tissue.tissue_contrast(images[pick], gone_masks, MODALITIES)}  # fmt: skip
    rows = [train_ds.rows[i] for i in range(len(train_ds))]
    asked = [val_ds.rows[i % len(val_ds)] for i in range(n)]

    def positions(labels: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        return {f"{f}={v}": np.array([i for i, r in enumerate(labels) if str(r.get(f)) == v])
                for f in fields for v in {str(r.get(f)) for r in labels if r.get(f) is not None}}  # fmt: skip

    by_hand = tissue.structure_distance(real, positions(rows), syn, positions(asked))
    assert gone["mask"] == pytest.approx(by_hand["value"])
    assert gone["mask_groups"]["grade=LGG"]["log_tumour_voxels"] == pytest.approx(
        by_hand["groups"]["grade=LGG"]["log_tumour_voxels"]
    )
    # the faithful samples carry their tissue contrasts: both families are compared
    assert {"mask", "contrast", "contrast_t1c_et"} <= set(groups["grade=HGG"])
    assert "contrast" not in gone["mask_groups"]["grade=LGG"]  # no tumour tissue, no contrast
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["step"] == 1 and best["validation"]["metric"] == "mask"
    assert best["validation"]["value"] == pytest.approx(good["mask"])



@pytest.fixture(scope="module")
def slice_store(phantom_store: Path) -> Path:
    """The module's phantom cases as a 16x16 slice store (``prepare --slices``; every 2nd slice)."""
    from gliomagen.data.slices import build_slice_store

    cases = phantom_store.parent / "cases"
    out = phantom_store.parent / "slices"
    build_slice_store([cases], out, size=16, slice_step=2, labels_csv=cases / "clinical.csv",
                      progress=False, qc_cases=0)  # fmt: skip
    return out


@pytest.mark.slow  # the module's phantom store takes ~15 s once
def test_validation_of_a_2d_run(tmp_path: Path, slice_store: Path) -> None:
    """A model trained on slices is validated like a volume model: the same record, the slice
    store's val slices as held-out cases, the view among the conditions, best.pt kept."""
    from gliomagen.config import resolve_config
    from gliomagen.data.store import open_store

    tiny = ["model.z_dim=8", "model.w_dim=16", "model.mapping_layers=2", "model.cond_embed_dim=8",
            "model.g_channels=4", "model.g_max_channels=8", "model.d_channels=4",
            "model.d_max_channels=8", "train.batch_size=4", "train.threads=1",
            "train.w_avg_samples=16", "train.checkpoint_every=1000", "train.sample_every=1000",
            "train.steps=2", "train.val_every=1", "train.val_patience=0", "train.val_metric=mask",
            "train.stop_on_memorisation=false", *[f"train.{k}={v}" for k, v in VAL.items()]]  # fmt: skip
    run = tmp_path / "run"
    train(resolve_config("small-data-2d", overrides=tiny), str(slice_store), run, progress=False)
    recs = _records(run)
    n_val = len(open_store(slice_store, split="val"))
    assert [r["step"] for r in recs] == [1, 2] and n_val >= 2
    for r in recs:
        m = r["metrics"]
        assert set(m) == METRICS and m["n_samples"] == 6 and m["n_val"] == n_val
        assert m["fd"] > 0 and m["kid"] is not None and 0 < m["diversity"] <= 1
        assert 0 <= m["fidelity"] <= 1 and m["mask"] is not None and m["memorised"] is not None
        assert "view=axial" in m["mask_groups"] or "view=coronal" in m["mask_groups"]
    assert recs[0]["setup_seconds"] > 0 and recs[1]["setup_seconds"] is None
    cache = run / "validation"
    assert len(list(cache.glob("reference/*.npz"))) == 1
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["validation"]["metric"] == "mask" and best["step"] in (1, 2)
