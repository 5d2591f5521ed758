"""Sweep comparisons: intervals and Holm-corrected paired tests against scipy on hand-made
score tables; identical cells are never told apart; the report and CSV show them."""

import csv
import json

import numpy as np
import pytest
from scipy import stats as sps

from serjax import cli, stats
from serjax.configlib import sweep_config

TABLE = {  # UA per (fold, seed) of three cells, paired by position
    "a": np.array([0.61, 0.64, 0.58, 0.66, 0.63, 0.60]),
    "b": np.array([0.55, 0.60, 0.50, 0.61, 0.57, 0.52]),
    "c": np.array([0.60, 0.65, 0.57, 0.64, 0.64, 0.59]),
}


def test_intervals_and_holm_corrected_paired_tests_match_scipy():
    out = stats.compare_cells(TABLE)
    for name, scores in TABLE.items():
        low, high = sps.t.interval(0.95, len(scores) - 1, scores.mean(), sps.sem(scores))
        assert out[name]["ci_low"] == pytest.approx(low) and out[name]["ci_high"] == pytest.approx(
            high
        )
    assert out["a"]["best"] and out["a"]["p_holm"] is None
    p_b = sps.ttest_rel(TABLE["b"], TABLE["a"]).pvalue
    p_c = sps.ttest_rel(TABLE["c"], TABLE["a"]).pvalue
    assert out["b"]["p"] == pytest.approx(p_b) and out["c"]["p"] == pytest.approx(p_c)
    # Holm over two tests: the smaller p times 2, the larger times 1 (but never below it)
    small, large = sorted([p_b, p_c])
    expected = {small: min(1, 2 * small), large: max(min(1, 2 * small), large)}
    assert out["b"]["p_holm"] == pytest.approx(expected[p_b])
    assert out["c"]["p_holm"] == pytest.approx(expected[p_c])
    assert out["b"]["below_best"] and not out["c"]["below_best"]


def test_identical_cells_are_never_told_apart():
    same = {name: TABLE["a"].copy() for name in ("x", "y", "z")}
    out = stats.compare_cells(same)
    assert [out[n]["below_best"] for n in same] == [False, False, False]
    assert all(out[n]["p_holm"] in (None, 1.0) for n in same)


def test_holm_is_monotone_and_capped():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 2 × 0.8 capped at 1


def _summary(scores):
    ua = {"mean": float(np.mean(scores)), "std": float(np.std(scores))}
    per_fold = [
        {"fold": f"fold{k}", "n_test": 10, "ua": s, "wa": s, "acc": s, "f1": s}
        for k, s in enumerate(scores)
    ]
    return {
        "corpus": "synthetic",
        "protocol": "stratified_kfold",
        "classes": ["ang", "sad", "hap", "neu"],
        "num_utterances": 300,
        "train_versions": [8],
        "test_version": 8,
        "seeds": [0],
        "epochs": 5,
        "selection": "last epoch",
        "ua": ua,
        "wa": ua,
        "acc": ua,
        "f1": ua,
        "per_fold": per_fold,
        "per_seed": [
            {"seed": 0, "ua": ua["mean"], "wa": ua["mean"], "acc": ua["mean"], "f1": ua["mean"]}
        ],
        "confusion": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
    }


def test_the_sweep_report_shows_intervals_and_marks(tmp_path):
    config = sweep_config("table5", "small")
    for name, scores in zip(("cnn", "original_eca", "ours"), TABLE.values()):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(_summary(scores.tolist())))
    cli.report(config, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "| best |" in report and "| lower (p = " in report and "| ≈ best (p = " in report
    assert "Holm" in report and "paired t-test" in report
    rows = {r["run"]: r for r in csv.DictReader((tmp_path / "results.csv").open())}
    low, high = sps.t.interval(0.95, 5, TABLE["a"].mean(), sps.sem(TABLE["a"]))
    assert float(rows["cnn"]["ua_ci95_low"]) == pytest.approx(100 * low, abs=1e-4)
    assert float(rows["cnn"]["ua_ci95_high"]) == pytest.approx(100 * high, abs=1e-4)
    assert rows["original_eca"]["ua_below_best"] == "True" and rows["cnn"]["ua_p_holm"] == ""
