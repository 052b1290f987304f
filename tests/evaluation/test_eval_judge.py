"""``gliomagen evaluate --judge N``: the conditioning judge of a checkpoint in metrics.json and the report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.errors import GliomagenError
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.conditioning import FAITHFUL, JudgeThresholds, judge, judge_generator
from gliomagen.evaluation.judge_section import (
    TARGETS,
    Judged,
    judge_cases,
    judge_section,
    prepare,
    summary_line,
    wilson,
)
from gliomagen.evaluation.probe import ProbeOptions
from gliomagen.report.html import evaluate_report, render

N = 3  # samples per grade and cohort


def _fixtures() -> ModuleType:
    """The generation tests' tiny 16^3 generator and checkpoint writer (``generation_fixtures``)."""
    name = "gliomagen_test_generation_fixtures"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "generation" / "generation_fixtures.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 16^3 generator (cohort GLI/SSA, grade HGG/LGG, age) with a table of training
    conditions, so unset conditions are drawn, saved as a real checkpoint."""
    gf = _fixtures()
    schema = gf.tiny_schema()
    G = gf.tiny_generator(schema)
    cat = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    G.mapping.set_case_table(cat, torch.tensor([[-1.0], [0.0], [0.5], [1.0]]))
    meta = {"size": list(gf.SIZE), "schema": schema.to_dict()}
    return gf.save_tiny_checkpoint(tmp_path_factory.mktemp("run"), G, schema, meta)


def _set(volumes: ModuleType, n: int, seed: int, prefix: str) -> CaseSet:
    imgs, masks, ids, labels = volumes.make_cohort(n, size=16, seed=seed, prefix=prefix)
    return CaseSet.from_arrays(imgs, masks, case_ids=ids, labels=labels, name=prefix, spacing_mm=(10.0,) * 3)  # fmt: skip


def test_wilson_interval() -> None:
    lo, hi = wilson(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == 1.0 and wilson(0, 0) is None
    lo, hi = wilson(3, 3)
    assert 0.43 < lo < 0.44 and hi == 1.0


def test_judge_needs_a_checkpoint(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["evaluate", "--real", "r", "--synthetic", "s", "--out", str(tmp_path / "o"), "--judge", "4"]
    )  # fmt: skip
    assert res.exit_code == 2
    assert res.output.strip() == "error: --judge 4: needs --checkpoint (the generator to judge)"
    res = CliRunner().invoke(
        app, ["evaluate", "--real", "r", "--synthetic", "s", "--out", str(tmp_path / "o"), "--judge", "-1"]
    )  # fmt: skip
    assert res.exit_code == 2 and res.output.strip() == "error: --judge -1: must be >= 0"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("by", ["site", "age", "grade"])
def test_judge_by_must_be_a_categorical_condition(
    checkpoint: Path, tmp_path: Path, by: str
) -> None:
    res = CliRunner().invoke(
        app,
        ["evaluate", "--real", str(tmp_path / "nostore"), "--synthetic", "s", "--out", str(tmp_path / "o"),
         "--checkpoint", str(checkpoint), "--judge", "2", "--judge-by", by],
    )  # fmt: skip
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"error: --judge-by {by}: not a categorical condition of the checkpoint other than grade "
        "(its categorical conditions: cohort)"
    )


def test_the_options_say_what_they_do() -> None:
    params = typer.main.get_command(app).commands["evaluate"].params  # type: ignore[attr-defined]
    helps = {p.opts[0]: (p.default, p.help) for p in params}
    default, text = helps["--judge"]
    assert default == 0 and text.endswith("0 = off.")
    assert "(needs --checkpoint)" in text and "per value of --judge-by" in text
    # the help's numbers are the code's
    assert f"targets {TARGETS['HGG']} / {TARGETS['LGG']}" in text
    default, text = helps["--judge-by"]
    assert default == "cohort" and "categorical condition of the checkpoint" in text


@pytest.fixture(scope="module")
def judged_report(
    volumes: ModuleType, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any], CaseSet]:
    out = tmp_path_factory.mktemp("report") / "r"
    train = _set(volumes, 12, 1, "TRAIN")
    metrics = evaluate_report(
        _set(volumes, 8, 2, "REAL"), _set(volumes, 8, 3, "SYN"), out, train=train, checkpoint=checkpoint,
        n_judge=N, n_reconstruct=1, reconstruct_steps=2, probe_options=ProbeOptions(size=16, width=4, steps=5),
        n_boot=0, n_pairs=2, n_montage=1, seed=5,
    )  # fmt: skip
    return out, metrics, train


def test_the_judge_in_metrics_json(judged_report: tuple[Path, dict[str, Any], CaseSet]) -> None:
    out, returned, train = judged_report
    j = json.loads((out / "metrics.json").read_text())["conditioning_judge"]
    assert j == json.loads(json.dumps(returned["conditioning_judge"]))
    assert (j["by"], j["samples_per_grade"], j["seed"], j["unset"]) == ("cohort", N, 5, "drawn")
    assert j["targets"] == TARGETS and j["faithful"] == FAITHFUL and j["grid"] == [16, 16, 16]
    assert list(j["per_value"]) == ["GLI", "SSA"]
    # the calibration: every training case judged by hand, counted per cohort and grade
    th = JudgeThresholds.for_grid(16)
    imgs, masks = train.load(np.arange(len(train)))
    expected: dict[tuple[str, str], list[bool]] = {}
    for i, row in enumerate(train.labels):
        r = judge(imgs[i].numpy(), masks[i].numpy(), th)
        expected.setdefault((row["cohort"], row["grade"]), []).append(r[row["grade"].lower()])
    verdicts = []
    for cohort, e in j["per_value"].items():
        for grade in ("HGG", "LGG"):
            g, real = e[grade]["generated"], e[grade]["real"]
            assert g["n"] == N and 0 <= g["faithful"] <= N and 0.0 <= g["rate"] <= 1.0
            assert g["rate"] == pytest.approx(g["faithful"] / N)
            assert g["ci"] == pytest.approx(list(wilson(g["faithful"], N)))
            assert g["ci"][0] <= g["rate"] <= g["ci"][1]
            assert e[grade]["target"] == TARGETS[grade]
            assert e[grade]["pass"] == (g["rate"] >= TARGETS[grade])
            verdicts.append(e[grade]["pass"])
            hand = expected[(cohort, grade)]
            assert (real["n"], real["faithful"]) == (len(hand), sum(hand)) and real["n"] == 3
            assert 0.0 <= real["rate"] <= 1.0
        assert 0.0 <= e["criteria"]["HGG_ok_et"] <= 1.0
    assert j["passed"] == all(verdicts)
    line = summary_line(j)
    assert line.startswith("conditioning judge, faithful HGG / LGG per cohort: GLI ")
    assert f"{j['per_value']['SSA']['LGG']['generated']['rate']:.2f}" in line


class _Textbook(torch.nn.Module):
    """A stand-in generator (16^3): a textbook HGG (enhancing rim round a necrotic core) when
    ``z[:, 0] > 0``, else a textbook LGG (a non-enhancing core in edema)."""

    z_dim, size = 4, (16, 16, 16)

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))
        self.mapping = type("Mapping", (), {"training_conditions": staticmethod(lambda: None)})()
        ax = torch.arange(16) - 8.0
        r = (ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2).sqrt()
        self.masks, self.images = [], []
        for rim in (False, True):
            mask = torch.zeros(16, 16, 16, dtype=torch.long)
            mask[r < 6] = 2
            mask[r < (4 if rim else 3)] = 3 if rim else 1
            mask[r < 2] = 1
            img = torch.full((4, 16, 16, 16), -1.0)
            img[:, r < 7.5] = 0.0
            img[1][mask == 3], img[1][mask == 1] = 0.6, -0.5
            self.masks.append(mask)
            self.images.append(img)

    def forward(self, z: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor, **_: Any) -> Any:
        hgg = (z[:, 0] > 0).long().tolist()
        logits = torch.stack(
            [torch.nn.functional.one_hot(self.masks[h], 4).permute(3, 0, 1, 2).float() for h in hgg]
        )
        return torch.stack([self.images[h] for h in hgg]), logits  # fmt: skip


def test_judge_section_counts_the_faithful_samples(volumes: ModuleType) -> None:
    schema, n, seed = _fixtures().tiny_schema(), 7, 3
    judged = Judged(_Textbook(), schema, "textbook", "cohort", ["GLI", "SSA"], "unknown")
    train = _set(volumes, 4, 1, "T")
    out = judge_section(judged, train, n, seed)
    gen = torch.Generator().manual_seed(seed)
    z_hgg, z_lgg = (torch.randn(n, 4, generator=gen)[:, 0] for _ in range(2))  # HGG first
    hgg, lgg = int((z_hgg > 0).sum()), int((z_lgg <= 0).sum())
    assert 0 < hgg < n and 0 < lgg < n  # the seed gives both kinds
    for value in ("GLI", "SSA"):  # the same latents for every value
        e = out["per_value"][value]
        assert e["HGG"]["generated"] == {
            "n": n,
            "faithful": hgg,
            "rate": hgg / n,
            "ci": list(wilson(hgg, n)),
        }
        assert e["LGG"]["generated"]["faithful"] == lgg
        assert e["HGG"]["pass"] == (hgg / n >= 0.8) and e["LGG"]["pass"] == (lgg / n >= 0.9)
        assert e["criteria"]["HGG_ok_rim"] == pytest.approx(hgg / n)
        assert e["criteria"]["LGG_any_et_region"] == pytest.approx(1 - lgg / n)
    assert out["unset"] == "unknown" and out["passed"] is False
    assert out["thresholds"]["min_et"] == 1  # 4 voxels at 32^3 scaled to 16^3, at least 1


def test_the_report_section(judged_report: tuple[Path, dict[str, Any], CaseSet]) -> None:
    out, metrics, _ = judged_report
    page = (out / "index.html").read_text()
    assert '<h2 id="judge">Conditioning judge</h2>' in page
    assert "A sample is a faithful HGG when" in page
    g = metrics["conditioning_judge"]["per_value"]["GLI"]["HGG"]
    row = f'<td class="l">GLI</td><td class="l">HGG</td>\n<td>{100 * g["generated"]["rate"]:.1f}%'
    assert row in page and f"({g['real']['faithful']} of 3)" in page
    assert page.count('<td class="l">HGG</td>') == 2 and page.count('<td class="l">LGG</td>') == 2
    # no judge: no section; a judge with nothing to show: folded away
    assert "Conditioning judge" not in render({**metrics, "conditioning_judge": None}, out)
    empty = render({**metrics, "conditioning_judge": {"per_value": {}}}, out)
    assert "<summary>Conditioning judge: nothing judged</summary>" in empty


def test_judge_cases_skip_cases_without_a_mask_or_grade(volumes: ModuleType) -> None:
    cases = _set(volumes, 4, 1, "T")
    cases.masks[0] = 255  # no mask
    cases.labels[1]["grade"] = None
    cases.labels[2]["cohort"] = None
    found = judge_cases(cases, "cohort", JudgeThresholds.for_grid(16))
    assert sum(len(r) for per in found.values() for r in per.values()) == 1  # case 3 alone
    assert list(found) == [str(cases.labels[3]["cohort"])]


def test_a_two_d_generator_is_refused(tmp_path: Path) -> None:
    gf = _fixtures()
    schema = gf.tiny_schema()
    torch.manual_seed(0)
    from gliomagen.models import build_generator

    G = build_generator(gf.tiny_config(), schema, (16, 16))
    path = gf.save_tiny_checkpoint(tmp_path, G, schema, {"size": [16, 16]})
    state = torch.load(path, weights_only=True)
    torch.save({**state, "size": [16, 16]}, path)
    with pytest.raises(GliomagenError, match="is a 2D generator; the judge needs 3D volumes"):
        prepare(path, "cohort")


def test_judge_truncation_reaches_the_generator_and_the_record(volumes: ModuleType) -> None:
    seen: list[Any] = []

    class _Recording(_Textbook):
        def forward(self, z: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor, **kw: Any) -> Any:
            seen.append(kw.get("truncation_psi"))
            return super().forward(z, cat, cont, **kw)

    judged = Judged(
        _Recording(), _fixtures().tiny_schema(), "textbook", "cohort", ["GLI"], "unknown"
    )
    out = judge_section(judged, _set(volumes, 4, 1, "T"), 3, 0, psi=0.7)
    assert seen and all(psi == 0.7 for psi in seen)
    assert out["truncation"] == 0.7


def test_judge_truncation_out_of_range_is_one_error_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["evaluate", "--real", "r", "--synthetic", "s", "--out", str(tmp_path / "o"),
              "--judge-truncation", "1.5"],
    )  # fmt: skip
    assert (
        res.exit_code == 2
        and res.output.strip() == "error: --judge-truncation 1.5: must be in (0, 1]"
    )
    assert not (tmp_path / "o").exists()


def test_judge_anatomy_takes_the_coarse_styles_under_other_values() -> None:
    gf = _fixtures()
    schema = gf.tiny_schema()
    G = gf.tiny_generator(schema).eval()

    def masks(**kw: Any) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        torch.manual_seed(5)  # the noise
        judge_generator(G, schema, 2, seed=3, tumours=out, **kw)
        return out

    ssa, gli = masks(conditions={"cohort": "SSA"}), masks(conditions={"cohort": "GLI"})
    assert not all(np.array_equal(a, b) for a, b in zip(ssa, gli, strict=True))  # the cohort shows
    # the sample's own values as the anatomy: the plain samples; every style input: the other cohort's
    same = masks(conditions={"cohort": "SSA"}, anatomy={"cohort": "SSA"})
    whole = masks(conditions={"cohort": "SSA"}, anatomy={"cohort": "GLI"}, anatomy_layer=G.num_ws)
    assert all(np.array_equal(a, b) for a, b in zip(ssa, same, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(gli, whole, strict=True))
    with pytest.raises(ValueError, match="no truncation"):
        judge_generator(G, schema, 1, seed=0, psi=0.5, anatomy={"cohort": "GLI"})


def test_judge_gives_unset_numbers_as_generate_does(checkpoint: Path) -> None:
    """unset="drawn": each sample's number is a training case's; "blended": between two training
    cases' of its grade; the categories are the same draws; other modes are refused."""
    from gliomagen.training import load_generator

    G, schema = load_generator(checkpoint)[:2]
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    G.register_forward_pre_hook(lambda _m, a: seen.append((a[1].clone(), a[2].clone())))

    def given(unset: str) -> tuple[torch.Tensor, np.ndarray]:
        seen.clear()
        judge_generator(G, schema, 6, seed=2, unset=unset)
        return torch.cat([c for c, _ in seen]), torch.cat([n for _, n in seen]).numpy().ravel()

    cat_d, drawn = given("drawn")
    cat_b, blended = given("blended")
    table = {-1.0, 0.0, 0.5, 1.0}
    assert set(np.round(drawn, 6).tolist()) <= table
    # HGG first: its two cases (-1, 0.5) both hold a number, so each sample's lies between them;
    # LGG's (0 = missing, 1) keep the donor's (a number either case lacks is not blended)
    assert not set(np.round(blended[:6], 6).tolist()) & table
    assert ((blended[:6] > -1.0) & (blended[:6] < 0.5)).all()
    assert set(np.round(blended[6:], 6).tolist()) <= table
    assert torch.equal(cat_d, cat_b)
    with pytest.raises(GliomagenError, match="--unset 'mean'"):
        judge_generator(G, schema, 1, seed=0, unset="mean")
