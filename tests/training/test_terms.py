"""The training-term interface: the registry, what a configuration builds, how a phase adds terms."""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import pytest
import torch

from gliomagen.config import resolve_config
from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.errors import GliomagenError
from gliomagen.models import build_discriminator, build_generator
from gliomagen.training.batches import TrainingData
from gliomagen.training.losses import MicroBatch, StyleGANLoss
from gliomagen.training.terms import TERMS, MaskTables, Term, TermInputs, build_terms

SMALL = [
    "model.g_channels=4",
    "model.d_channels=4",
    "model.g_max_channels=8",
    "model.d_max_channels=8",
]


def test_build_terms_returns_the_terms_that_are_on_in_registry_order(fake_store, tiny_cfg) -> None:  # noqa: ANN001
    assert list(TERMS) == ["presence", "focality", "covariates", "reconstruction", "seg_fit", "label_consistency"]
    assert build_terms(resolve_config("demo-cpu")) == []
    recipe = resolve_config("demo-cpu", "configs/structure-vaegan.yaml")
    data = TrainingData(fake_store(n=4), tiny_cfg())
    terms = build_terms(recipe, data)
    assert [t.name for t in terms] == ["presence", "focality", "reconstruction"]
    assert [t.weight for t in terms] == [1.0, 3.0, 1.0]
    assert all(t.phase == "G" for t in terms)
    # a term that needs a table the data cannot give (no categorical condition) says so
    with pytest.raises(GliomagenError, match="loss.presence_weight needs a categorical"):
        build_terms(recipe)


def test_mask_tables_read_every_mask_once(fake_store, tiny_cfg, monkeypatch) -> None:  # noqa: ANN001
    store = fake_store(n=6)
    reads: list[int] = []
    get = type(store).__getitem__
    monkeypatch.setattr(
        type(store), "__getitem__", lambda self, i: (reads.append(i), get(self, i))[1]
    )
    tables = MaskTables(TrainingData(store, tiny_cfg()))
    a, b = tables.get("tumour_floor"), tables.get("focal_floor")
    assert a.shape == b.shape == (2, 2) and sorted(reads) == list(range(6))
    with pytest.raises(KeyError, match="no mask table"):
        tables.get("class_fractions")


class _Scale(Term):
    """A D-phase term for the test: ``mean(real images) + 1``, its value logged."""

    name: ClassVar[str] = "scale"
    phase: ClassVar[str] = "D"
    weight_key: ClassVar[str] = "loss.aux_weight"

    def loss(self, inputs: TermInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert inputs.probs.shape[1] == 4 and not inputs.probs.requires_grad
        value = inputs.mb.real_img.mean() + 1.0
        return value, {"D/scale": value.detach()}


def test_a_phase_adds_weight_times_value_of_its_terms() -> None:
    cfg = resolve_config("demo-cpu", overrides=SMALL)
    schema = ConditionSchema([ConditionField("grade", "categorical", categories=["HGG", "LGG"])])
    torch.manual_seed(0)
    G, D = (
        build_generator(cfg, schema, (16, 16, 16)),
        build_discriminator(cfg, schema, (16, 16, 16)),
    )
    mb = MicroBatch(
        real_img=torch.rand(2, 4, 16, 16, 16) * 2 - 1,
        real_mask=torch.nn.functional.one_hot(torch.zeros(2, 16, 16, 16, dtype=torch.long), 4).movedim(-1, 1).float(),
        real_cat=torch.tensor([[0], [1]]), real_cont=torch.zeros(2, 0), z=torch.randn(2, G.z_dim),
        gen_cat=torch.tensor([[0], [1]]), gen_cont=torch.zeros(2, 0), noise_seeds=[1, 2],
    )  # fmt: skip
    losses: dict[str, Any] = {}
    totals: dict[str, float] = {}
    for name, terms in (("plain", []), ("with", [_Scale(cfg)])):
        loss = StyleGANLoss(G, D, cfg, None, contextlib.nullcontext, [3], terms=terms)
        D.zero_grad(set_to_none=True)
        D.requires_grad_(True)
        losses[name] = loss.accumulate_gradients("D", mb, 1.0)
        totals[name] = float(loss._d_loss(mb, False)[0].detach())
    assert "D/scale" not in losses["plain"]
    value = float(mb.real_img.mean()) + 1.0
    assert float(losses["with"]["D/scale"]) == pytest.approx(value)
    assert totals["with"] - totals["plain"] == pytest.approx(cfg.loss.aux_weight * value, rel=1e-5)
    # G's phase ignores a D term
    g_stats = StyleGANLoss(
        G, D, cfg, None, contextlib.nullcontext, [3], terms=[_Scale(cfg)]
    ).accumulate_gradients("G", mb, 1.0)
    assert "D/scale" not in g_stats


def test_recon_exclude_codes_and_errors(fake_store, tiny_cfg) -> None:  # noqa: ANN001
    from gliomagen.training.batches import excluded_codes

    schema = fake_store(n=4).schema
    assert excluded_codes(schema, []) == []
    assert excluded_codes(schema, ["cohort=SSA"]) == [(0, 1)]
    assert excluded_codes(schema, ["cohort=SSA", "grade=LGG"]) == [(0, 1), (1, 1)]
    for bad, msg in (
        ("cohort", "expected name=value"),
        ("age=3", "'age' is not a categorical condition"),
        ("wt_volume_ml=3", "not a categorical condition"),
        ("cohort=AFR", "no such value"),
    ):
        with pytest.raises(GliomagenError, match=msg):
            excluded_codes(schema, [bad])
    cfg = tiny_cfg()
    cfg.loss.recon_exclude = ["cohort=SSA"]
    assert TrainingData(fake_store(n=4), cfg).recon_excluded == [(0, 1)]
    cfg.loss.recon_exclude = ["cohort=XYZ"]
    with pytest.raises(GliomagenError, match="loss.recon_exclude"):
        TrainingData(fake_store(n=4), cfg)
    with pytest.raises(GliomagenError, match="loss.recon_exclude"):  # no encoder to exclude from
        resolve_config("demo-cpu", overrides=["loss.recon_exclude=[cohort=SSA]"])


def test_an_excluded_case_is_no_reconstruction_target_but_keeps_its_kl(
    fake_store, tiny_cfg
) -> None:  # noqa: ANN001
    """recon_exclude: the excluded case's reconstruction leaves the loss, its KL stays; the table
    comes from the data through build_terms."""
    cfg = resolve_config("default", overrides=[*SMALL, "loss.recon_exclude=[cohort=SSA]"])
    data = TrainingData(fake_store(n=4), cfg)
    (term,) = [t for t in build_terms(cfg, data) if t.name == "reconstruction"]
    assert term.tables["recon_excluded"].tolist() == [[0, 1]]
    assert term.targets(torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1]])).tolist() == [
        True,
        False,
        False,
        True,
    ]
    schema = data.schema
    torch.manual_seed(0)
    G = build_generator(cfg, schema, (16, 16, 16))
    D = build_discriminator(cfg, schema, (16, 16, 16))
    net = StyleGANLoss(G, D, cfg, None, contextlib.nullcontext, [3], terms=[])
    lab = torch.zeros(2, 16, 16, 16, dtype=torch.long)
    lab[:, 6:10, 6:10, 6:10] = 2
    n_cont = len(schema.continuous)
    mb = MicroBatch(
        real_img=torch.rand(2, 4, 16, 16, 16) * 2 - 1,
        real_mask=torch.nn.functional.one_hot(lab, 4).movedim(-1, 1).float(),
        real_cat=torch.tensor([[0, 0], [1, 0]]), real_cont=torch.zeros(2, n_cont), z=torch.randn(2, G.z_dim),
        gen_cat=torch.tensor([[0, 0], [1, 0]]), gen_cont=torch.zeros(2, n_cont), noise_seeds=[1, 2],
        enc_eps=torch.randn(2, G.z_dim), step=10_000,
    )  # fmt: skip
    plain_cfg = resolve_config("default", overrides=SMALL)
    every = build_terms(plain_cfg, TrainingData(fake_store(n=4), plain_cfg))
    (plain,) = [t for t in every if t.name == "reconstruction"]
    with torch.no_grad():
        l_plain, stats = plain.reconstruct(mb, net)
        l_excl, _ = term.reconstruct(mb, net)
    ce, dice, l1, kl = (stats[k] for k in ("G/recon_ce", "G/recon_dice", "G/recon_l1", "G/kl"))
    assert float(l_plain) == pytest.approx(
        float(plain.recon_weight * (ce + dice) + plain.recon_img_weight * l1 + plain.kl_weight * kl)
        / 2,
        rel=1e-5,
    )
    assert float(l_excl) < float(l_plain)  # the SSA case's reconstruction left the loss
    mb_ssa = MicroBatch(**{**mb.__dict__, "real_cat": torch.tensor([[1, 0], [1, 1]])})
    with torch.no_grad():
        l_ssa, stats_ssa = term.reconstruct(mb_ssa, net)
    assert float(l_ssa) == pytest.approx(float(term.kl_weight * stats_ssa["G/kl"]) / 2, rel=1e-5)


def test_recon_scarce_ratio_excludes_the_cohorts_far_smaller_than_the_largest(
    fake_store, tiny_cfg
) -> None:  # noqa: ANN001
    from gliomagen.training.batches import scarce_cohort_codes

    schema = fake_store(n=4).schema  # cohort: GLI = 0, SSA = 1 (column 0)
    cat = torch.tensor([[0, 0]] * 60 + [[1, 0]] * 16)
    codes, note = scarce_cohort_codes(schema, cat, 0.5)
    assert codes == [(0, 1)]
    assert "cohort GLI (60 cases)" in note and "SSA (16 cases) is learnt through D only" in note
    assert scarce_cohort_codes(schema, cat, 0.0) == ([], "")
    assert scarce_cohort_codes(schema, cat, 0.25)[0] == []  # 16 >= 0.25 x 60
    codes, note = scarce_cohort_codes(schema, torch.tensor([[0, 0]] * 10 + [[1, 0]] * 6), 0.5)
    assert codes == [] and "no cohort is scarce" in note
    # one cohort only: it is the largest, never excluded
    assert scarce_cohort_codes(schema, torch.tensor([[1, 0]] * 16), 0.9)[0] == []
    cfg = tiny_cfg()
    cfg.model.encoder = True
    cfg.loss.recon_scarce_ratio = 0.9  # fake_store alternates GLI / SSA: equal counts
    data = TrainingData(fake_store(n=5), cfg)  # GLI 3, SSA 2: 2 < 0.9 x 3
    assert data.recon_excluded == [(0, 1)] and "SSA (2 cases)" in data.recon_note
    cfg.loss.recon_exclude = ["cohort=SSA"]  # named as well: listed once
    assert TrainingData(fake_store(n=5), cfg).recon_excluded == [(0, 1)]
    for bad in ("loss.recon_scarce_ratio=1.5", "loss.recon_scarce_ratio=-0.1"):
        with pytest.raises(GliomagenError, match="loss.recon_scarce_ratio"):
            resolve_config("default", overrides=[bad])
    with pytest.raises(GliomagenError, match="loss.recon_scarce_ratio"):  # no encoder
        resolve_config("demo-cpu", overrides=["loss.recon_scarce_ratio=0.5"])
