"""UA, WA, ACC = (UA + WA) / 2, macro-F1 and the confusion matrix; their summaries over
folds × seeds; the per-epoch metrics log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from serjax import locks
from serjax.fileio import write_text


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def scores(labels, predictions, num_classes: int) -> dict:
    """UA = mean recall over the classes present; WA = accuracy; F1 macro over the classes
    present in the labels or the predictions (as scikit-learn does)."""
    matrix = confusion_matrix(labels, predictions, num_classes)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    hits = np.diag(matrix)
    present = support > 0
    ua = float(np.mean(hits[present] / support[present]))
    wa = float(hits.sum() / support.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(support + predicted > 0, 2 * hits / (support + predicted), 0.0)
    return {
        "ua": ua,
        "wa": wa,
        "acc": (ua + wa) / 2,
        "f1": float(np.mean(f1[(support + predicted) > 0])),
        "confusion": matrix.tolist(),
    }


METRICS = ("ua", "wa", "acc", "f1")


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def score_seeds(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> list[dict]:
    """scores() of each seed's argmax predictions; logits are [S, N, classes]."""
    return [scores(labels, seed_logits.argmax(-1), num_classes) for seed_logits in logits]


def summarize_results(fold_results: list[dict], key: str = "per_seed") -> dict:
    """Mean ± std over folds × seeds, per fold (over seeds) and per seed (over folds).
    `key` picks the last-epoch scores ("per_seed") or the selected epoch's ("best_val")."""

    def block(entries):
        return {
            m: {
                "mean": float(np.mean([e[m] for e in entries])),
                "std": float(np.std([e[m] for e in entries])),
            }
            for m in METRICS
        }

    def pick(result):
        return result[key] if key == "per_seed" else result[key]["per_seed"]

    grid = [[pick(r)[s] for s in range(len(r["seeds"]))] for r in fold_results]  # [fold][seed]
    summary = block([e for row in grid for e in row])
    seeds = fold_results[0]["seeds"]
    summary["per_fold"] = [
        {
            "fold": r["fold"],
            "n_test": len(r["labels"]),
            **{m: float(np.mean([e[m] for e in row])) for m in METRICS},
        }
        for r, row in zip(fold_results, grid)
    ]
    summary["per_seed"] = [
        {"seed": seed, **{m: float(np.mean([row[s][m] for row in grid])) for m in METRICS}}
        for s, seed in enumerate(seeds)
    ]
    # every (fold, seed) score, for paired comparisons between runs (serjax/stats.py)
    summary["by_fold_seed"] = {m: [[e[m] for e in row] for row in grid] for m in METRICS}
    summary["confusion"] = np.sum([e["confusion"] for row in grid for e in row], axis=0).tolist()
    if key == "per_seed" and fold_results[0].get("eca_weights"):
        # one model's weights, as the paper plots them: the first fold's first seed
        first = fold_results[0]
        summary["eca_weights"] = {name: w[0] for name, w in first["eca_weights"].items()}
        summary["eca_weights_model"] = {"fold": first["fold"], "seed": first["seeds"][0]}
    return summary


class MetricsWriter:
    """metrics.jsonl: one JSON line per (fold, seed, epoch), and with `tensorboard` the same
    points as TensorBoard event files (serjax/tensorboard.py). A resumed fold first drops
    its lines past its checkpoint (`resume`), so every epoch is logged once."""

    def __init__(self, path: Path, tensorboard: bool = False):
        self.path = Path(path)
        self.events = None
        if tensorboard:
            from serjax.tensorboard import EventLog

            self.events = EventLog(self.path.parent / "tensorboard")

    def _lines(self) -> tuple[list[tuple[str, dict]], bool]:
        """(parsed lines, whether any line was torn by a kill mid-write)."""
        if not self.path.exists():
            return [], False
        raw = self.path.read_text().splitlines()
        lines = []
        for line in raw:
            try:
                lines.append((line, json.loads(line)))
            except json.JSONDecodeError:
                continue
        return lines, len(lines) < len(raw)

    def _locked(self):
        """The run's folds may train in parallel (Ray tasks) and share this file."""
        return locks.exclusive(self.path.parent, "metrics of", wait=True, name=".metrics.lock")

    def resume(self, fold: str, upto_epoch: int) -> None:
        """Drop the fold's lines past `upto_epoch` (and torn lines); other folds' stay."""
        with self._locked():
            lines, torn = self._lines()
            kept = [
                (line, r)
                for line, r in lines
                if not (r["fold"] == fold and r["epoch"] > upto_epoch)
            ]
            if torn or len(kept) < len(lines):
                write_text(self.path, "".join(line + "\n" for line, _ in kept))
        if self.events is not None:
            self.events.restart_fold(fold, [r for _, r in kept if r["fold"] == fold])

    def write(self, records: list[dict]) -> None:
        with self._locked(), open(self.path, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        if self.events is not None:
            self.events.add(records)

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
