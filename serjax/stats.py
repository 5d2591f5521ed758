"""Comparisons a reviewer can trust, for a sweep's cells: a 95 % confidence interval per
cell over its fold × seed scores, and a paired test of each cell against the best one on
the same folds and seeds, Holm-corrected over the table.

The test is the paired t-test (scipy.stats.ttest_rel), not Wilcoxon's signed-rank test: a
cell has 3-20 paired scores here, and with 5 pairs the exact two-sided Wilcoxon p-value
can never fall below 0.0625, so it could never tell any cell from the best.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

ALPHA = 0.05


def cell_scores(summary: dict, metric: str = "ua") -> np.ndarray | None:
    """A run's scores, one per (fold, seed) in fold-major order; None if its summary keeps
    only per-fold means of several seeds (older runs)."""
    grid = summary.get("by_fold_seed", {}).get(metric)
    if grid is not None:
        return np.asarray(grid, np.float64).ravel()
    if len(summary.get("seeds", [])) == 1:
        return np.asarray([f[metric] for f in summary["per_fold"]], np.float64)
    return None


def confidence_interval(scores: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean (ddof = 1); a single score has none (nan, nan)."""
    scores = np.asarray(scores, np.float64)
    if len(scores) < 2:
        return float("nan"), float("nan")
    mean, sem = scores.mean(), stats.sem(scores)
    if sem == 0:
        return float(mean), float(mean)
    low, high = stats.t.interval(level, len(scores) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def paired_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test p-value; identical score lists differ by nothing (p = 1)."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if len(diff) < 2 or np.all(diff == diff[0]) and diff[0] == 0:
        return 1.0
    p = stats.ttest_rel(a, b).pvalue
    return 1.0 if np.isnan(p) else float(p)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (each ≤ 1, monotone)."""
    order = np.argsort(pvalues)
    m = len(pvalues)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()


def compare_cells(scores: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per cell: mean, its 95 % interval, and (when every cell has the same number of paired
    scores) the Holm-adjusted p against the best cell and whether it is distinguishable."""
    out = {}
    for name, s in scores.items():
        low, high = confidence_interval(s)
        out[name] = {"mean": float(np.mean(s)), "ci_low": low, "ci_high": high, "n": len(s)}
    sizes = {len(s) for s in scores.values()}
    if len(scores) < 2 or len(sizes) != 1 or sizes.pop() < 2:
        return out
    best = max(scores, key=lambda n: out[n]["mean"])
    others = [n for n in scores if n != best]
    raw = [paired_p(scores[n], scores[best]) for n in others]
    for name, p, adjusted in zip(others, raw, holm(raw)):
        out[name].update({"p": p, "p_holm": adjusted, "below_best": adjusted < ALPHA})
    out[best].update({"p": None, "p_holm": None, "below_best": False, "best": True})
    return out
