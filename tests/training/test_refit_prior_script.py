"""benchmarks/refit_prior.py: refit a checkpoint's prior with K components and judge it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from gliomagen.training import train

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "refit_prior.py"


def _module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("refit_prior_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_refit_writes_one_row_per_checkpoint_and_k(
    tmp_path: Path, fake_store, tiny_cfg, monkeypatch  # noqa: ANN001
) -> None:
    store = fake_store(n=6)
    cfg = tiny_cfg(
        model={"encoder": True, "latent_prior": "fitted"},
        loss={"recon_weight": 1.0, "recon_img_weight": 1.0, "kl_weight": 0.02},
        train={"steps": 1},
    )
    ckpt = train(cfg, store, tmp_path / "run", progress=False)
    mod = _module()
    monkeypatch.setattr(mod, "open_store", lambda path, split=None: store)
    out = tmp_path / "refit.json"
    argv = ["refit_prior.py", "--store", "S", "--checkpoints", str(ckpt), "--components", "1", "3"]
    monkeypatch.setattr(sys, "argv", [*argv, "--samples", "2", "--threads", "1", "--out", str(out)])
    mod.main()
    rows = json.loads(out.read_text())["rows"]
    assert [r["components"] for r in rows] == [1, 3]
    assert [r["prior_components"] for r in rows] == [1.0, 3.0]
    assert rows[0]["prior_min_weight"] == 1.0 and rows[1]["prior_min_weight"] < 1.0
    for r in rows:
        assert 0.0 <= r["faithful_HGG"] <= 1.0 and 0.0 <= r["faithful_LGG"] <= 1.0
        assert r["prior_cases"] == 6.0
    # bad input: one line naming the option, exit 2, no output written
    out.unlink()
    monkeypatch.setattr(sys, "argv", [*argv[:-2], "--components", "0", "--out", str(out)])
    with pytest.raises(SystemExit) as e:
        mod.main()
    assert e.value.code == 2 and not out.exists()
