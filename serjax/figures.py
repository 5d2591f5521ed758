"""Figures as PNG (matplotlib, no display): confusion matrices, training curves, ECA
channel weights per emotion (paper Fig. 14), metric-vs-setting curves of a sweep."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

METRIC_NAMES = {"ua": "UA", "wa": "WA", "acc": "ACC", "f1": "macro-F1"}


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def confusion(matrix, classes, path, title="") -> Path:
    """Row-normalised confusion matrix (recall per true class), with counts."""
    matrix = np.asarray(matrix, float)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 1.5, 1.0 * len(classes) + 1.2))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{100 * rates[i, j]:.1f}\n({int(matrix[i, j])})",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if rates[i, j] > 0.6 else "black",
            )
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (% of true class)")
    return _save(fig, path)


def training_curves(records, path) -> Path:
    """Per fold: training loss and test UA against the epoch (mean over seeds)."""
    by_fold = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in records:
        by_fold[r["fold"]][r["epoch"]].append(r)
    fig, (loss_ax, ua_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for fold, epochs in sorted(by_fold.items()):
        xs = sorted(epochs)
        loss_ax.plot(xs, [np.mean([r["train_loss"] for r in epochs[e]]) for e in xs], label=fold)
        tested = [e for e in xs if "test_ua" in epochs[e][0]]
        if tested:
            ua_ax.plot(
                tested,
                [100 * np.mean([r["test_ua"] for r in epochs[e]]) for e in tested],
                label=fold,
            )
    loss_ax.set(xlabel="epoch", ylabel="training focal loss", title="training loss")
    ua_ax.set(
        xlabel="epoch", ylabel="test UA (%)", title="test UA (monitoring only; selects nothing)"
    )
    loss_ax.legend(fontsize=7)
    return _save(fig, path)


def eca_weights(weights: dict, classes, path) -> Path:
    """ECA channel weights per emotion for each ECA block, averaged over the test set."""
    names = sorted(weights, key=lambda n: int(n.removeprefix("eca")))
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for label, curve in zip(classes, weights[name]):
            if curve is None:  # no test utterance of this class in the model's fold
                ax.plot([], [], label=f"{label} (not in this test fold)", linewidth=1.2)
                continue
            ax.plot(np.arange(len(curve)), curve, label=label, linewidth=1.2)
        ax.set(
            xlabel="channel",
            ylabel="sigmoid weight",
            title=f"ECA after block {name.removeprefix('eca')}",
        )
    axes[0][0].legend(fontsize=8)
    return _save(fig, path)


def sweep_curves(rows, x_label, path, title="") -> Path:
    """UA / WA / ACC (mean ± std) against the sweep's x axis, one line per series; rows as
    serjax.sweeps.report_inputs gathers them (series, x, the run's summary)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    series = list(dict.fromkeys(r["series"] for r in rows))
    for ax, metric in zip(axes, ("ua", "wa", "acc")):
        for name in series:
            points = [r for r in rows if r["series"] == name]
            xs = [r["x"] for r in points]
            ax.errorbar(
                xs,
                [100 * r["summary"][metric]["mean"] for r in points],
                yerr=[100 * r["summary"][metric]["std"] for r in points],
                marker="o",
                capsize=2,
                label=name,
                linewidth=1.2,
                markersize=3,
            )
        ax.set(xlabel=x_label, ylabel=f"{METRIC_NAMES[metric]} (%)", title=METRIC_NAMES[metric])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
