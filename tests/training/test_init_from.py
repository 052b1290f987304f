"""``train --init``: a run starts from another run's weights, its conditions matched by name.

The parent trains 2 steps on a store with cohort {GLI, PED}; the children's stores have cohort
{GLI, SSA} (SSA new, PED dropped), the volume label in another standardisation, a new ``age``
label, or no ``grade`` label.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.config import to_dict
from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.data.nifti import sha256
from gliomagen.errors import GliomagenError
from gliomagen.generation.manifest import checkpoint_record
from gliomagen.generation.source import load_source
from gliomagen.io.checkpoint import list_checkpoints, load_checkpoint
from gliomagen.models import build_discriminator, build_generator
from gliomagen.training import train
from gliomagen.training.init_from import init_networks
from gliomagen.training.init_schema import match_schemas, parse_init_map

COHORT = ConditionField("cohort", "categorical", categories=["GLI", "PED"])
GRADE = ConditionField("grade", "categorical", categories=["HGG", "LGG"])
VOLUME = ConditionField("wt_volume_ml", "continuous", mean=20.0, std=5.0)
CHILD_COHORT = ConditionField("cohort", "categorical", categories=["GLI", "SSA"])
CHILD_VOLUME = ConditionField("wt_volume_ml", "continuous", mean=22.0, std=4.0)
AGE = ConditionField("age", "continuous", mean=60.0, std=10.0)
PARENT = ConditionSchema([COHORT, GRADE, VOLUME])
GROWN = ConditionSchema([CHILD_COHORT, GRADE, CHILD_VOLUME, AGE])  # SSA and age new, PED gone
SHRUNK = ConditionSchema([CHILD_COHORT, CHILD_VOLUME])  # grade dropped
TINY = ["data.size=null", "model.z_dim=8", "model.w_dim=16", "model.mapping_layers=2",
        "model.cond_embed_dim=8", "model.g_channels=4", "model.g_max_channels=8",
        "model.d_channels=4", "model.d_max_channels=8", "train.threads=1",
        "train.w_avg_samples=16", "train.samples_per_condition=1", "train.sample_every=1000",
        "train.log_every=1", "train.checkpoint_every=1000"]  # fmt: skip


def relabel(store: Any, schema: ConditionSchema) -> Any:
    """``store`` (a FakeStore) with ``schema``'s labels: cohorts alternate, volume 15 + i, age 50 + i."""
    rows = []
    for i, row in enumerate(store.rows):
        cohorts = schema["cohort"].categories
        rows.append({"cohort": cohorts[i % len(cohorts)], "grade": row["grade"],
                     "wt_volume_ml": 15.0 + i, "age": 50.0 + i})  # fmt: skip
    store.schema, store.rows = schema, rows
    store.cond_cat, store.cond_cont = schema.encode_many(
        [{k: r[k] for k in schema.names} for r in rows]
    )
    store.meta["schema"] = schema.to_dict()
    return store


@pytest.fixture
def parent(tmp_path: Path, fake_store, tiny_cfg) -> Path:  # noqa: ANN001
    """The parent checkpoint: 2 steps on cohort {GLI, PED}, grade, volume."""
    store = relabel(fake_store(n=4), PARENT)
    return train(tiny_cfg(train={"steps": 2}), store, tmp_path / "parent", progress=False)


def networks(cfg: Any, schema: ConditionSchema) -> tuple[Any, Any, Any]:
    """Fresh ``(G, D, G_ema)`` of ``cfg`` for ``schema`` at 16^3."""
    G = build_generator(cfg, schema, (16, 16, 16))
    return G, build_discriminator(cfg, schema, (16, 16, 16)), copy.deepcopy(G)


def parent_networks(ckpt: dict[str, Any], cfg: Any) -> tuple[Any, Any]:
    """The parent's ``(G_ema, D)`` as trained."""
    G, D, _ = networks(cfg, PARENT)
    G.load_state_dict(ckpt["G_ema"])
    D.load_state_dict(ckpt["D"])
    return G.eval(), D.eval()


def codes(schema: ConditionSchema, values: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    cat, cont = schema.encode(values)
    return torch.as_tensor(cat)[None].repeat(2, 1), torch.as_tensor(cont)[None].repeat(2, 1)


def outputs(G: Any, D: Any, schema: ConditionSchema, values: dict[str, Any]) -> list[torch.Tensor]:
    """G's images and mask logits for two fixed latents (no noise), and D's score and logits on them."""
    cat, cont = codes(schema, values)
    with torch.no_grad():
        img, logits = G(torch.randn(2, 8, generator=torch.Generator().manual_seed(3)), cat, cont,
                        noise_mode="none")  # fmt: skip
        d = D(img, logits.softmax(1), cat, cont)
    return [img, logits, d.score]


def test_schemas_match_by_name() -> None:
    m = match_schemas(PARENT, GROWN, {"cohort": {"SSA": "GLI"}})
    assert m.kept == ["cohort=GLI", "grade=HGG", "grade=LGG", "wt_volume_ml"]
    assert m.new == ["cohort=SSA", "age"] and m.mapped == {"cohort=SSA": "cohort=GLI"}
    assert m.dropped == ["cohort=PED"]
    assert [f.sources for f in m.cat] == [[0, 0], [0, 1]]  # SSA from GLI's row
    vol, age = m.cont
    assert (vol.parent_index, vol.scale, vol.shift) == (0, 4.0 / 5.0, (22.0 - 20.0) / 5.0)
    assert age.parent_index is None
    m = match_schemas(PARENT, SHRUNK)
    assert m.cat[0].sources == [0, None]  # SSA: the mean row
    assert m.dropped == ["grade", "cohort=PED"] and m.dropped_cat == [1]
    assert m.new == ["cohort=SSA"] and m.mapped == {}
    assert parse_init_map(["cohort=SSA:GLI", "grade=X:HGG"]) == {
        "cohort": {"SSA": "GLI"}, "grade": {"X": "HGG"}
    }


@pytest.mark.parametrize(
    ("init_map", "match"),
    [
        ({"site": {"A": "B"}}, "has no categorical condition 'site'"),
        ({"wt_volume_ml": {"A": "B"}}, "has no categorical condition 'wt_volume_ml'"),
        ({"cohort": {"XYZ": "GLI"}}, "'XYZ' is not a category of cohort in the store"),
        ({"cohort": {"GLI": "PED"}}, "the parent already knows cohort=GLI"),
        ({"cohort": {"SSA": "UCSF"}}, "the parent has no cohort=UCSF"),
    ],
)
def test_a_bad_init_map_is_refused(init_map: dict[str, dict[str, str]], match: str) -> None:
    with pytest.raises(GliomagenError, match=match):
        match_schemas(PARENT, GROWN, init_map)


def test_a_changed_kind_and_a_bad_map_string_are_refused() -> None:
    other = ConditionSchema([ConditionField("grade", "continuous")])
    with pytest.raises(GliomagenError, match="'grade' is categorical in the parent and continuous"):
        match_schemas(PARENT, other)
    with pytest.raises(GliomagenError, match="expected FIELD=NEW:OLD"):
        parse_init_map(["cohort=SSA"])


@pytest.mark.parametrize("mapped", [True, False])
def test_a_new_code_starts_from_the_named_row_or_the_mean(parent: Path, tiny_cfg, mapped: bool) -> None:  # noqa: ANN001
    ckpt, cfg = load_checkpoint(parent), tiny_cfg()
    G, D, G_ema = networks(cfg, GROWN)
    lines: list[str] = []
    init_networks(G, D, G_ema, GROWN, parent, {"cohort": {"SSA": "GLI"}} if mapped else None,
                  lines.append, config=cfg)  # fmt: skip
    for net, sd, table in ((G, ckpt["G"], "mapping.embed.tables.0.weight"),
                           (G_ema, ckpt["G_ema"], "mapping.embed.tables.0.weight"),
                           (D, ckpt["D"], "embed.0.weight"), (D, ckpt["D"], "aux_cat.0.weight")):  # fmt: skip
        old, new = sd[table], net.state_dict()[table]
        want = old[0] if mapped else old[:2].mean(0)  # GLI's row, or the mean of GLI's and PED's
        assert torch.equal(new[0], old[0]), table  # GLI kept
        assert torch.allclose(new[1], want, atol=1e-6), table  # SSA
        if "aux" not in table:
            assert torch.equal(new[2], old[2]), table  # the 'unknown' slot is the parent's
    assert torch.equal(G.state_dict()["mapping.embed.tables.1.weight"],
                       ckpt["G"]["mapping.embed.tables.1.weight"])  # fmt: skip
    how = "(from cohort=GLI)" if mapped else "(mean of the parent's rows)"
    assert f"--init new: cohort=SSA {how}, age (no effect until trained)" in lines
    assert "--init dropped (not in the store): cohort=PED" in lines


def test_a_kept_condition_gives_the_parents_outputs(parent: Path, tiny_cfg) -> None:  # noqa: ANN001
    ckpt, cfg = load_checkpoint(parent), tiny_cfg()
    G, D, G_ema = networks(cfg, GROWN)
    init_networks(G, D, G_ema, GROWN, parent, config=cfg)
    pG, pD = parent_networks(ckpt, cfg)
    raw = {"cohort": "GLI", "grade": "LGG", "wt_volume_ml": 18.0}
    want = outputs(pG, pD, PARENT, raw)
    got = outputs(G_ema.eval(), D.eval(), GROWN, {**raw, "age": 71.0})  # age: zero weight
    for a, b in zip(want, got, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (a - b).abs().max()
    assert not torch.equal(got[0], outputs(G_ema, D, GROWN, {**raw, "grade": "HGG"})[0])
    assert torch.equal(G_ema.mapping.case_cat, torch.zeros(0, 2, dtype=torch.long))  # its own


def test_a_dropped_label_counts_as_its_mean_row(parent: Path, tiny_cfg) -> None:  # noqa: ANN001
    ckpt, cfg = load_checkpoint(parent), tiny_cfg()
    G, D, G_ema = networks(cfg, SHRUNK)
    init_networks(G, D, G_ema, SHRUNK, parent, config=cfg)
    tables = {"G_ema": "mapping.embed.tables.1.weight", "D": "embed.1.weight"}
    for key, table in tables.items():  # the parent's grade 'unknown' row := the mean row
        ckpt[key][table][2] = ckpt[key][table][:2].mean(0)
    pG, pD = parent_networks(ckpt, cfg)
    want = outputs(pG, pD, PARENT, {"cohort": "GLI", "wt_volume_ml": 25.0})  # grade unknown
    got = outputs(G_ema.eval(), D.eval(), SHRUNK, {"cohort": "GLI", "wt_volume_ml": 25.0})
    for a, b in zip(want, got, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (a - b).abs().max()


def test_grid_and_width_mismatches_are_one_error(parent: Path, tiny_cfg) -> None:  # noqa: ANN001
    cfg = tiny_cfg(model={"g_channels": 2})
    with pytest.raises(GliomagenError, match=r"grid or widths differ from the parent \(--init .*\): model.g_channels is 4 there and 2 here"):
        init_networks(*networks(cfg, GROWN), GROWN, parent, config=cfg)
    with pytest.raises(GliomagenError, match=r"G tensor synthesis\..* is \[.*\] in the parent"):
        init_networks(*networks(cfg, GROWN), GROWN, parent)  # unchecked config: the tensors
    G = build_generator(tiny_cfg(), GROWN, (32, 32, 32))
    D = build_discriminator(tiny_cfg(), GROWN, (32, 32, 32))
    with pytest.raises(GliomagenError, match="trained on 16x16x16 volumes of 4 modalities, the store holds 32x32x32"):
        init_networks(G, D, copy.deepcopy(G), GROWN, parent)


def test_provenance_in_the_checkpoint_and_the_manifest(
    parent: Path, tmp_path: Path, fake_store, tiny_cfg  # noqa: ANN001
) -> None:
    store = relabel(fake_store(n=4), GROWN)
    cfg = tiny_cfg(train={"steps": 1})
    ckpt_path = train(cfg, store, tmp_path / "child", progress=False, init=parent,
                      init_map={"cohort": {"SSA": "GLI"}})  # fmt: skip
    record = load_checkpoint(ckpt_path)["parent"]
    assert record["parent"] == str(parent.resolve()) and record["parent_step"] == 2
    assert record["parent_sha256"] == sha256(parent) and len(record["parent_sha256"]) == 64
    assert record["new"] == ["cohort=SSA", "age"] and record["dropped"] == ["cohort=PED"]
    assert record["mapped"] == {"cohort=SSA": "cohort=GLI"}
    log = (tmp_path / "child" / "log.txt").read_text()
    assert f"initialised G, G_ema, D from {parent.resolve()} (step 2" in log
    resumed = train(tiny_cfg(train={"steps": 2}), store, tmp_path / "child", resume=True, progress=False)
    assert load_checkpoint(resumed)["parent"] == record  # a resumed child keeps its parent
    manifest = checkpoint_record(load_source(resumed))  # manifest.json's "checkpoint"
    assert manifest["parent_sha256"] == record["parent_sha256"]
    assert manifest["sha256"] == sha256(resumed) != record["parent_sha256"]
    plain = checkpoint_record(load_source(parent))
    assert "parent_sha256" not in plain


def test_freeze_d_and_the_mapping_rate(parent: Path, tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    store = relabel(fake_store(n=4), PARENT)
    cfg = tiny_cfg(model={"d_freeze_blocks": 1}, train={"steps": 3, "lr_mapping_scale": 0.1})
    ckpt = load_checkpoint(train(cfg, store, tmp_path / "ft", progress=False, init=parent))
    was = load_checkpoint(parent)["D"]
    frozen = [k for k in was if k.startswith(("from_input.", "blocks.0."))]
    assert frozen and all(torch.equal(was[k], ckpt["D"][k]) for k in frozen)
    assert not torch.equal(was["fc.weight"], ckpt["D"]["fc.weight"])  # the rest of D trains
    groups = ckpt["opt_G"]["param_groups"]
    assert [g["lr"] for g in groups] == [cfg.train.lr_g, pytest.approx(cfg.train.lr_g * 0.1)]
    assert len(ckpt["opt_D"]["state"]) == len(list(ckpt["D"])) - len(frozen)  # no frozen state
    resumed = load_checkpoint(
        train(tiny_cfg(model={"d_freeze_blocks": 1}, train={"steps": 4, "lr_mapping_scale": 0.2}),
              store, tmp_path / "ft", resume=True, progress=False)  # fmt: skip
    )
    assert [g["lr"] for g in resumed["opt_G"]["param_groups"]][1] == pytest.approx(cfg.train.lr_g * 0.2)
    with pytest.raises(GliomagenError, match="model.d_freeze_blocks=2: D has 1 residual blocks"):
        train(tiny_cfg(model={"d_freeze_blocks": 2}), store, tmp_path / "x", progress=False)


def _cli(store: Path, run: Path, *extra: str):  # noqa: ANN202
    sets = [a for s in [*TINY, "train.steps=1"] for a in ("--set", s)]
    return CliRunner().invoke(
        app, ["train", str(store), "--run", str(run), "--preset", "demo-cpu", "--quiet", *sets, *extra]
    )


def test_cli_init_and_its_errors(parent: Path, tmp_path: Path, disk_store) -> None:  # noqa: ANN001
    store = disk_store(tmp_path / "store", n=4)  # cohort {GLI, SSA}, grade, volume
    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_text("hello")
    run = tmp_path / "run"
    cases = [
        (["--init", str(tmp_path / "missing.pt")], "checkpoint or run folder not found"),
        (["--init", str(not_ckpt)], "not a readable gliomagen checkpoint"),
        (["--init", str(parent), "--init-map", "site=A:B"], "has no categorical condition 'site'"),
        (["--init", str(parent), "--init-map", "cohort=SSA:UCSF"], "the parent has no cohort=UCSF"),
        (["--init", str(parent), "--init-map", "cohort"], "expected FIELD=NEW:OLD"),
        (["--init-map", "cohort=SSA:GLI"], "--init-map: only with --init"),
        (["--init", str(parent), "--set", "model.d_channels=2"], "grid or widths differ from the parent"),
    ]
    for extra, message in cases:
        res = _cli(store, run, *extra)
        assert res.exit_code == 2, res.output
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.output
        assert not run.exists(), extra  # nothing written
    res = _cli(store, run, "--init", str(parent.parent.parent), "--init-map", "cohort=SSA:PED")
    assert res.exit_code == 0, res.output
    assert "warning: --init: the store lacks the parent's cohort=PED; dropped" in res.output
    record = load_checkpoint(run)["parent"]
    assert record["mapped"] == {"cohort=SSA": "cohort=PED"} and record["dropped"] == ["cohort=PED"]
    res = _cli(store, run, "--resume", "--init", str(parent))
    assert res.exit_code == 2 and "--init: not with --resume" in res.output, res.output
    assert [p.name for p in list_checkpoints(run)] == ["step-0000001.pt"]


NO_CONT = ConditionSchema([CHILD_COHORT, GRADE])
NO_CONT_PARENT = ConditionSchema([COHORT, GRADE])


@pytest.mark.parametrize(
    ("model", "was", "now", "extra"),
    [
        ({}, PARENT, NO_CONT, {}),  # every continuous field dropped: at the parent's mean
        ({}, NO_CONT_PARENT, GROWN, {"wt_volume_ml": 30.0, "age": 40.0}),  # continuous ones new
        ({"spectral_norm": True}, PARENT, GROWN, {"wt_volume_ml": 21.0}),
        ({"encoder": True}, PARENT, GROWN, {"wt_volume_ml": 21.0}),
        ({"aux_classifier": False}, PARENT, GROWN, {"wt_volume_ml": 21.0}),
    ],
)
def test_other_layouts_keep_the_outputs(
    tmp_path: Path, tiny_cfg, model: dict[str, Any], was: ConditionSchema,  # noqa: ANN001
    now: ConditionSchema, extra: dict[str, Any],
) -> None:
    loss = {"recon_weight": 1.0, "kl_weight": 0.1} if model.get("encoder") else {}
    cfg = tiny_cfg(model=model, loss=loss)
    G, D, _ = networks(cfg, was)  # an untrained parent, saved as a checkpoint
    for t in [*G.parameters(), *D.parameters()]:
        t.data.add_(0.1 * torch.randn_like(t))  # off the initialisation (zero biases)
    path = tmp_path / "parent.pt"
    torch.save({"format_version": 1, "step": 0, "G": G.state_dict(), "G_ema": G.state_dict(),
                "D": D.state_dict(), "schema": was.to_dict(), "size": [16, 16, 16],
                "n_modalities": 4, "config": to_dict(cfg)}, path)  # fmt: skip
    child = networks(cfg, now)
    init_networks(*child, now, path, config=cfg)
    raw = {"cohort": "GLI", "grade": "HGG"}  # and extra's values where the parent has them
    want = outputs(G.eval(), D.eval(), was, {**raw, **{k: v for k, v in extra.items() if k in was}})
    got = outputs(child[2].eval(), child[1].eval(), now, {**raw, **extra})
    n = 2 if model.get("spectral_norm") else 3  # D renormalised under spectral norm: G only
    for a, b in zip(want[:n], got[:n], strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (a - b).abs().max()
    if model.get("encoder"):
        assert torch.equal(child[0].encoder.mu.weight, G.encoder.mu.weight)


def test_the_label_consistency_segmenter_is_copied_or_started(
    parent: Path,
    tmp_path: Path,
    fake_store,
    tiny_cfg,  # noqa: ANN001
) -> None:
    """A parent without D's segmenter (``loss.seg_weight``) into a run with one: the rest of D is
    the parent's and the segmenter its own; a parent with one into a run with one: copied; into a
    run without: dropped."""
    ckpt = load_checkpoint(parent)
    seg_cfg = tiny_cfg(loss={"seg_weight": 1.0})
    G, D, G_ema = networks(seg_cfg, GROWN)
    own = {k: v.clone() for k, v in D.state_dict().items() if k.startswith("seg.")}
    init_networks(G, D, G_ema, GROWN, parent, config=seg_cfg)
    sd = D.state_dict()
    assert own and all(torch.equal(sd[k], v) for k, v in own.items())
    body = [k for k in ckpt["D"] if k.startswith("blocks.")]
    assert body and all(torch.equal(sd[k], ckpt["D"][k]) for k in body)  # the rest: the parent's
    store = relabel(fake_store(n=4), PARENT)
    with_seg = train(
        tiny_cfg(train={"steps": 2}, loss={"seg_weight": 1.0}),
        store,
        tmp_path / "p2",
        progress=False,
    )
    parent_seg = {k: v for k, v in load_checkpoint(with_seg)["D"].items() if k.startswith("seg.")}
    G, D, G_ema = networks(seg_cfg, GROWN)
    init_networks(G, D, G_ema, GROWN, with_seg, config=seg_cfg)
    assert all(torch.equal(D.state_dict()[k], v) for k, v in parent_seg.items())
    G, D, G_ema = networks(tiny_cfg(), GROWN)
    init_networks(G, D, G_ema, GROWN, with_seg, config=tiny_cfg())
    assert not any(k.startswith("seg.") for k in D.state_dict())
