"""The labels carry signal: simple classifiers on region statistics tell cohort and grade apart."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from _phantom_measures import case_features, load_case
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gliomagen.data.phantoms import generate_cohort


def _dataset(out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with open(out / "clinical.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    x = np.stack([case_features(*load_case(out / r["case_id"])) for r in rows])
    cohort = np.array([r["cohort"] == "SSA" for r in rows], dtype=int)
    grade = np.array([r["grade"] == "HGG" for r in rows], dtype=int)
    return x, cohort, grade


@pytest.mark.slow
def test_logistic_regression_separates_cohort_and_grade(tmp_path: Path) -> None:
    train = generate_cohort(
        tmp_path / "train", {"GLI": 16, "SSA": 16}, seed=101, workers=2, progress=False
    )
    test = generate_cohort(
        tmp_path / "test", {"GLI": 12, "SSA": 12}, seed=202, workers=2, progress=False
    )
    x_tr, c_tr, g_tr = _dataset(train)
    x_te, c_te, g_te = _dataset(test)
    assert 0 < g_tr.sum() < len(g_tr) and 0 < g_te.sum() < len(g_te)  # both grades on both sides
    for name, y_tr, y_te in (("cohort", c_tr, c_te), ("grade", g_tr, g_te)):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
        clf.fit(x_tr, y_tr)
        acc = float((clf.predict(x_te) == y_te).mean())
        assert acc >= 0.9, f"{name}: held-out accuracy {acc:.2f}"
        # ... and not by memorising: shuffled training labels fall to chance
        rng = np.random.default_rng(0)
        shuffled = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
        shuffled.fit(x_tr, rng.permutation(y_tr))
        assert float((shuffled.predict(x_te) == y_te).mean()) < 0.85, name
