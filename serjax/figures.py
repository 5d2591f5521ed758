"""Figures as PNG (matplotlib, no display): confusion matrices, training curves, ECA
channel weights per emotion (paper Fig. 14) as emotion × channel heatmaps, metric-vs-setting
curves of a sweep. Figures of a synthetic corpus say so; score axes show chance.

Each figure is drawn by a `draw_*` function that returns the matplotlib Figure (tests read
its axes back) and saved by the function of the same name without the prefix."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from serjax import stats  # noqa: E402

METRIC_NAMES = {"ua": "UA", "wa": "WA", "acc": "ACC", "f1": "macro-F1"}
# What each score is, for panel titles: ACC is the paper's mean of UA and WA, not accuracy.
METRIC_TITLES = {
    "ua": "UA (mean per-class recall)",
    "wa": "WA (plain accuracy)",
    "acc": "ACC = (UA + WA) / 2",
    "f1": "macro-F1",
}
SYNTHETIC_LABEL = "SYNTHETIC corpus (serjax's generated data, not real speech)"


def corpus_label(corpus: str | None) -> str:
    """What a figure says about its data: the synthetic corpus is named as such."""
    if corpus == "synthetic":
        return SYNTHETIC_LABEL
    return f"corpus: {corpus}" if corpus else ""


def chance_pct(num_classes: int) -> float:
    """Chance in %: guessing uniformly at random scores 1 / classes UA (and WA, ACC on
    average, whatever the class balance)."""
    return 100.0 / num_classes


def _chance_line(ax, num_classes: int, label: bool = True) -> None:
    ax.axhline(
        chance_pct(num_classes),
        color="0.35",
        linestyle="--",
        linewidth=1.0,
        label=f"chance: 1 / {num_classes} classes = {chance_pct(num_classes):.0f}%"
        if label
        else None,
    )


def _headline(fig, title: str, corpus: str | None) -> None:
    """The figure's title, with the corpus note on a line of its own (the whole title in red
    for the synthetic corpus)."""
    text = "\n".join(line for line in (title, corpus_label(corpus)) if line)
    if text:
        fig.suptitle(
            text,
            color="firebrick" if corpus == "synthetic" else "black",
            weight="bold" if corpus == "synthetic" else "normal",
            fontsize=11,
        )


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def draw_confusion(matrix, classes, title="", corpus: str | None = None):
    """Row-normalised confusion matrix (recall per true class), with counts."""
    matrix = np.asarray(matrix, float)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(
        figsize=(1.1 * len(classes) + 1.5, 1.0 * len(classes) + 1.2), layout="constrained"
    )
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
    ax.set_title(title or "confusion matrix (% of true class)", fontsize=10)
    _headline(fig, "", corpus)
    return fig


def confusion(matrix, classes, path, title="", corpus: str | None = None) -> Path:
    return _save(draw_confusion(matrix, classes, title, corpus), path)


def draw_training_curves(records, num_classes: int | None = None, corpus: str | None = None):
    """Per fold: training loss and test UA against the epoch (mean over seeds); the UA
    panel shows chance when the number of classes is given."""
    by_fold = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in records:
        by_fold[r["fold"]][r["epoch"]].append(r)
    fig, (loss_ax, ua_ax) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
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
    if num_classes:  # the folds' colours are the loss panel's legend
        _chance_line(ua_ax, num_classes)
        chance = [h for h in ua_ax.get_lines() if h.get_label().startswith("chance")]
        ua_ax.legend(handles=chance, fontsize=7, loc="lower right")
    loss_ax.set(xlabel="epoch", ylabel="training focal loss", title="training loss")
    ua_ax.set(
        xlabel="epoch", ylabel="test UA (%)", title="test UA (monitoring only; selects nothing)"
    )
    loss_ax.legend(fontsize=7)
    _headline(fig, "", corpus)
    return fig


def training_curves(records, path, num_classes: int | None = None, corpus=None) -> Path:
    return _save(draw_training_curves(records, num_classes, corpus), path)


def draw_eca_weights(weights: dict, classes, corpus: str | None = None, title: str = ""):
    """ECA channel weights per emotion, one row per ECA block: left, the weights as an
    emotion × channel heatmap (one colour scale for all blocks); right, each emotion's
    weights minus the mean over emotions (red: the channel is turned up for that emotion,
    blue: down; one scale for all blocks). A class with no test utterance in the model's
    fold is a blank row."""
    names = sorted(weights, key=lambda n: int(n.removeprefix("eca")))

    def grid(name):
        rows = weights[name]
        width = max(len(r) for r in rows if r is not None)
        return np.array([r if r is not None else [np.nan] * width for r in rows], float)

    grids = {name: grid(name) for name in names}
    low = min(np.nanmin(g) for g in grids.values())
    high = max(np.nanmax(g) for g in grids.values())
    deviations = {n: g - np.nanmean(g, axis=0, keepdims=True) for n, g in grids.items()}
    spread = max(np.nanmax(np.abs(d)) for d in deviations.values()) or 1.0
    width = max(g.shape[1] for g in grids.values())
    fig, axes = plt.subplots(
        len(names),
        2,
        figsize=(2 * max(4.0, 0.08 * width + 1.2) + 1.5, len(names) * (0.3 * len(classes) + 1.0)),
        squeeze=False,
        layout="constrained",
    )
    for row, name in enumerate(names):
        left, right = axes[row]
        block = name.removeprefix("eca")
        image = left.imshow(
            np.ma.masked_invalid(grids[name]),
            aspect="auto",
            cmap="viridis",
            vmin=low,
            vmax=high,
            interpolation="nearest",
        )
        left.set_title(f"ECA after block {block}: sigmoid weight", fontsize=9)
        diff = right.imshow(
            np.ma.masked_invalid(deviations[name]),
            aspect="auto",
            cmap="RdBu_r",
            vmin=-spread,
            vmax=spread,
            interpolation="nearest",
        )
        right.set_title(f"ECA after block {block}: minus the mean over emotions", fontsize=9)
        labels = [
            c if weights[name][i] is not None else f"{c} (none in fold)"
            for i, c in enumerate(classes)
        ]
        for ax in (left, right):
            ax.set_yticks(range(len(classes)), labels, fontsize=8)
            ax.tick_params(axis="x", labelsize=8)
            ax.set_facecolor("0.85")
    for ax in axes[-1]:
        ax.set_xlabel("channel")
    fig.colorbar(image, ax=axes[:, 0], shrink=0.9, label="weight", location="left", pad=0.01)
    fig.colorbar(diff, ax=axes[:, 1], shrink=0.9, label="difference", pad=0.01)
    _headline(fig, title, corpus)
    return fig


def eca_weights(weights: dict, classes, path, corpus: str | None = None, title: str = "") -> Path:
    """ECA channel weights per emotion for each ECA block, averaged over the test set."""
    return _save(draw_eca_weights(weights, classes, corpus, title), path)


def sweep_y_range(rows, metrics=("ua", "wa", "acc"), floor: float | None = None):
    """One y range (%) for every panel of a sweep figure: the means ± std of all rows and
    metrics, and `floor` (chance) if given, with a margin."""
    values = [
        100 * (r["summary"][m]["mean"] + sign * r["summary"][m]["std"])
        for r in rows
        for m in metrics
        for sign in (-1, 1)
    ]
    if floor is not None:
        values.append(floor)
    low, high = min(values), max(values)
    margin = max(1.0, 0.05 * (high - low))
    return max(0.0, low - margin), min(100.0, high + margin)


def draw_sweep_curves(rows, x_label, title=""):
    """UA / WA / ACC (mean, 95 % CI) against the sweep's x axis, one line per series, every
    panel on one y range with chance drawn; rows as serjax.sweeps.report_inputs gathers
    them (series, x, the run's summary)."""
    metrics = ("ua", "wa", "acc")
    first = rows[0]["summary"]
    num_classes = len(first["classes"])
    corpora = {r["summary"]["corpus"] for r in rows}
    corpus = "synthetic" if "synthetic" in corpora else ", ".join(sorted(corpora))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), sharey=True, layout="constrained")
    series = list(dict.fromkeys(r["series"] for r in rows))
    # series side by side around each x, so their error bars do not hide one another
    xs_all = sorted({r["x"] for r in rows})
    step = min(np.diff(xs_all)) if len(xs_all) > 1 else 1.0
    offsets = (np.arange(len(series)) - (len(series) - 1) / 2) * min(0.08, 0.5 / len(series))
    for ax, metric in zip(axes, metrics):
        for k, name in enumerate(series):
            points = [r for r in rows if r["series"] == name]
            means = [100 * r["summary"][metric]["mean"] for r in points]
            ax.errorbar(
                [r["x"] + offsets[k] * step for r in points],
                means,
                yerr=np.transpose([_interval(r["summary"], metric) for r in points]),
                marker="o",
                capsize=2,
                label=name,
                linewidth=1.2,
                markersize=3,
                elinewidth=0.8,
            )
        _chance_line(ax, num_classes, label=ax is axes[0])
        ax.set(xlabel=x_label, ylabel=f"{METRIC_NAMES[metric]} (%)", title=METRIC_TITLES[metric])
        ax.set_xticks(xs_all)
        ax.yaxis.set_tick_params(labelleft=True)
        ax.grid(alpha=0.3)
    ax.set_ylim(*sweep_y_range(rows, metrics, chance_pct(num_classes)))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncol=min(len(labels), 6),
        fontsize=8,
        frameon=False,
    )
    _headline(fig, title, corpus)
    return fig


def _interval(summary: dict, metric: str) -> tuple[float, float]:
    """(below, above) the mean, in %: its 95 % interval over the fold × seed scores, or ± the
    std where the summary keeps no per-(fold, seed) scores."""
    mean = summary[metric]["mean"]
    scores = stats.cell_scores(summary, metric)
    low, high = stats.confidence_interval(scores) if scores is not None else (np.nan, np.nan)
    if np.isnan(low):
        return 100 * summary[metric]["std"], 100 * summary[metric]["std"]
    return 100 * (mean - low), 100 * (high - mean)


def sweep_curves(rows, x_label, path, title="") -> Path:
    return _save(draw_sweep_curves(rows, x_label, title), path)
