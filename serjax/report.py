"""Reports drawn from a run's or a sweep's saved results: Markdown and CSV tables in the
paper's form, and PNG figures (serjax.figures). Never retrains, and gathers nothing: the
command layer (serjax.cli) hands in the summaries, the sweep's rows with the paper's cells
(serjax.sweeps.report_inputs) and the model as built; this module only writes them out."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from serjax import figures, stats
from serjax.errors import SerjaxError
from serjax.fileio import write_text

METRICS = ("ua", "wa", "acc", "f1")
# std: the population standard deviation (ddof = 0) of the folds × seeds scores
SCORES_HEADING = "## Scores (%, mean ± std over folds × seeds; population std, ddof = 0)"
# ACC is the paper's, not plain accuracy (that is WA): every report defines it where it is shown.
ACC_DEFINITION = "ACC = (UA + WA) / 2"


def scores_note(num_classes: int) -> str:
    """What the score columns are, and chance for this many classes."""
    return (
        "UA: unweighted accuracy, the mean of the per-class recalls. "
        "WA: weighted accuracy, the share of test utterances labelled right (plain accuracy). "
        f"**{ACC_DEFINITION}**, the paper's ACC: the mean of the two, *not* plain accuracy. "
        "macro-F1: the mean of the per-class F1 scores. "
        f"Chance: guessing uniformly at random scores 1 / {num_classes} classes = "
        f"{100 / num_classes:.2f}% UA (and, on average, WA and ACC)."
    )


PROTOCOL_NOTES = {
    "stratified_kfold": "stratified random k-fold over utterances (the paper's protocol; "
    "speaker-dependent: a speaker's utterances are in train and test)",
    "leave_one_session_out": "leave-one-session-out (speaker-independent)",
    "leave_one_speaker_out": "leave-one-speaker-out (speaker-independent)",
    "speaker_kfold": "speaker-independent k-fold (speakers dealt to folds)",
}


def protocol_note(summary: dict) -> str:
    """The protocol in words; a leave-one-session-out run on a corpus that names no
    speakers cannot be checked for speaker independence, and says so."""
    note = PROTOCOL_NOTES.get(summary["protocol"], summary["protocol"])
    if summary["protocol"] == "leave_one_session_out" and not summary.get("speakers_known", True):
        note = (
            "leave-one-session-out (speaker independence not verified: the corpus does not name "
            "every utterance's speaker)"
        )
    return f"{note}, {len(summary['per_fold'])} folds" if summary.get("per_fold") else note


def model_note(model_config, model) -> str:
    """Width and the ECA blocks of `model` as built from `model_config` (the caller builds
    it): blocks, kernel sizes (the adaptive rule resolved), BatchNorm on the pooled vector."""
    note = (
        f"widths n = {model_config.width_scale} × {tuple(model_config.base_widths)} "
        f"= {tuple(model.widths)}"
    )
    if not model.eca_layers:
        return note + ", no ECA"
    return (
        note
        + f", ECA after blocks {tuple(model.eca_layers)}"
        + f" with kernel sizes {tuple(model.eca_kernels)}"
        + (
            ", BatchNorm on the pooled vector (original ECA)"
            if model.eca_batch_norm
            else ", no BatchNorm"
        )
    )


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def mean_std(block: dict) -> str:
    return f"{pct(block['mean'])} ± {pct(block['std'])}"


def data_note(summary: dict) -> str:
    if summary["corpus"] == "synthetic":
        return (
            "**synthetic data** (serjax's built-in generated corpus, not IEMOCAP: these numbers "
            "say the pipeline works, nothing about emotion in real speech)"
        )
    return f"corpus `{summary['corpus']}`"


def score_table(summary: dict) -> list[str]:
    return [
        "| UA | WA | ACC | macro-F1 |",
        "|---|---|---|---|",
        "| " + " | ".join(mean_std(summary[m]) for m in METRICS) + " |",
    ]


def confusion_table(matrix, classes) -> list[str]:
    rows = [
        "| true \\ predicted | " + " | ".join(classes) + " | recall |",
        "|---" * (len(classes) + 2) + "|",
    ]
    for name, row in zip(classes, matrix):
        total = sum(row)
        recall = f"{100 * row[classes.index(name)] / total:.1f}" if total else "-"
        rows.append(f"| {name} | " + " | ".join(str(v) for v in row) + f" | {recall} |")
    return rows


def _metrics_records(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:  # a torn last line is a killed writer's, dropped on resume
                raise SerjaxError(f"{path}: line {i + 1} is damaged (not valid JSON)") from None
    return records


def write_run_report(workdir: Path, summary: dict, model: str) -> Path:
    """report.md for one run, with its figures (confusion, curves from metrics.jsonl, ECA
    weights); `model` describes the model in words (model_note)."""
    workdir = Path(workdir)
    classes = summary["classes"]
    figure_lines = []
    corpus = summary["corpus"]
    figures.confusion(
        summary["confusion"],
        classes,
        workdir / "figures" / "confusion.png",
        "all folds and seeds pooled",
        corpus,
    )
    figure_lines.append("![confusion matrix](figures/confusion.png)")
    records = _metrics_records(workdir)
    if records:
        figures.training_curves(records, workdir / "figures" / "curves.png", len(classes), corpus)
        figure_lines.append(
            "Training curves (the dashed line in the UA panel is chance, "
            f"1 / {len(classes)} classes):\n\n![training curves](figures/curves.png)"
        )
    if summary.get("eca_weights"):
        source = summary.get("eca_weights_model", {})
        which = f"one model: {source.get('fold', '?')}, seed {source.get('seed', '?')}"
        figures.eca_weights(
            summary["eca_weights"],
            classes,
            workdir / "figures" / "eca_weights.png",
            corpus,
            f"ECA channel weights per emotion ({which})",
        )
        figure_lines.append(
            "ECA channel weights per emotion, averaged over the test utterances of each "
            f"class ({which}): one row per ECA block; left, each emotion's weight of each "
            "channel; right, the same minus the mean over the emotions (red: the block turns "
            "that channel up for the emotion, blue: down):\n\n"
            "![ECA channel weights per emotion](figures/eca_weights.png)"
        )
    lines = [
        f"# Run report: {workdir.name}",
        "",
        f"- Data: {data_note(summary)}, {summary['num_utterances']} utterances, "
        f"classes {', '.join(classes)}",
        f"- Protocol: {protocol_note(summary)}",
        f"- Features: train on STFT version(s) {summary['train_versions']}, "
        f"test on version {summary['test_version']}",
        f"- Model: {model}",
        f"- Training: {summary['epochs']} epochs, seeds {summary['seeds']}; "
        f"scores are of the **{summary['selection']}** (the test fold selects nothing)",
        "",
        SCORES_HEADING,
        "",
        scores_note(len(classes)),
        "",
    ]
    lines += score_table(summary)
    if "best_val" in summary:
        lines += ["", f"Selected on validation: {summary['best_val']['selection']}", ""]
        lines += score_table(summary["best_val"])
    lines += [
        "",
        "## Per fold (mean over seeds)",
        "",
        "| fold | test utterances | UA | WA | ACC | macro-F1 |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {f['fold']} | {f['n_test']} | " + " | ".join(pct(f[m]) for m in METRICS) + " |"
        for f in summary["per_fold"]
    ]
    lines += [
        "",
        "## Per seed (mean over folds)",
        "",
        "| seed | UA | WA | ACC | macro-F1 |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['seed']} | " + " | ".join(pct(s[m]) for m in METRICS) + " |"
        for s in summary["per_seed"]
    ]
    lines += ["", "## Confusion matrix (all folds and seeds pooled)", ""]
    lines += confusion_table(summary["confusion"], classes)
    lines += ["", "## Figures", ""] + [f"{line}\n" for line in figure_lines]
    if "wall_time_s" in summary:
        parts = summary.get("invocations", 1)
        lines += [
            f"Wall time: {summary['wall_time_s']:.0f} s"
            + (f" (over {parts} invocations: stopped and resumed, or rerun)." if parts > 1 else ".")
        ]
    return write_text(workdir / "report.md", "\n".join(lines) + "\n")


def _csv(rows) -> str:
    """One row per run: what the run was (corpus, protocol, folds, epochs, seeds), our scores
    (%), and the paper's IEMOCAP scores for the same cell, where it gives them."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["run", "series", "x", "corpus", "protocol", "num_folds", "epochs", "num_seeds"]
        + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
        + ["ua_ci95_low", "ua_ci95_high", "ua_p_vs_best", "ua_p_holm", "ua_below_best"]
        + ["paper_iemocap_ua", "paper_iemocap_wa", "paper_iemocap_acc"]
    )
    compared = compare_rows(rows, "ua")
    for r in rows:
        summary = r["summary"]
        c = compared.get(r["name"], {})
        writer.writerow(
            [
                r["name"],
                r["series"],
                "" if r["x"] is None else r["x"],
                summary["corpus"],
                summary["protocol"],
                len(summary["per_fold"]),
                summary["epochs"],
                len(summary["seeds"]),
            ]
            + [f"{100 * summary[m][s]:.4f}" for m in METRICS for s in ("mean", "std")]
            + [_number(c.get("ci_low"), 100), _number(c.get("ci_high"), 100)]
            + [_number(c.get("p")), _number(c.get("p_holm")), c.get("below_best", "")]
            + (list(r["paper"]) if r["paper"] else ["", "", ""])
        )
    return out.getvalue()


COMPARISON_NOTE = (
    "UA 95 % CI: Student-t interval of the mean over the run's fold × seed scores. UA vs best: "
    "a paired t-test against the best run on the same folds and seeds (paired, because a fold "
    "that is hard is hard for every run; t rather than Wilcoxon, which cannot reach p < 0.05 "
    "with 5 or fewer pairs), p-values Holm-corrected over the table; **≈ best**: not "
    "distinguishable from the best at the 5 % level, **lower**: distinguishably lower."
)


def compare_rows(rows: list[dict], metric: str) -> dict[str, dict]:
    """serjax.stats.compare_cells over the rows whose summaries give per-(fold, seed)
    scores: 95 % intervals, Holm-adjusted paired p-values against the best cell."""
    scores = {}
    for r in rows:
        cell = stats.cell_scores(r["summary"], metric)
        if cell is not None:
            scores[r["name"]] = cell
    return stats.compare_cells(scores)


def _number(value, scale: float = 1.0) -> str:
    if value is None or value != value:  # absent or nan
        return ""
    return f"{scale * value:.4f}" if scale != 1.0 else f"{value:.4g}"


def _versus_best(c: dict) -> str:
    """The table's last columns: the 95 % interval of UA, and the cell against the best."""
    interval = (
        f"{pct(c['ci_low'])}–{pct(c['ci_high'])}" if c.get("ci_low") == c.get("ci_low") else ""
    )
    if c.get("best"):
        return f"{interval} | best"
    if "p_holm" not in c:
        return f"{interval} | "
    mark = "lower" if c["below_best"] else "≈ best"
    return f"{interval} | {mark} (p = {c['p_holm']:.3g})"


def write_sweep_report(
    workdir: Path,
    *,
    name: str,
    variant: str,
    width_scale,
    rows: list[dict],
    total: int,
    paper_note: str,
    caveat: str | None,
    x_label: str | None,
) -> Path:
    """A sweep's report.md, results.csv and score figure (its runs' own reports are written
    by the caller). The keywords are serjax.sweeps.report_inputs': rows of the finished runs
    (name, series, x, summary, the paper's cell), the grid size, the paper's note and caveat,
    and the figure's x axis (None: table only)."""
    workdir = Path(workdir)
    lines = [f"# Sweep report: {name} ({variant} variant)", ""]
    if not rows:
        lines.append(f"No finished run yet (0 of {total}).")
        return write_text(workdir / "report.md", "\n".join(lines) + "\n")
    first = rows[0]["summary"]
    lines += [
        f"- Data: {data_note(first)}, {first['num_utterances']} utterances",
        f"- Protocol: {protocol_note(first)}; "
        f"{first['epochs']} epochs; seeds {first['seeds']}; scores of the {first['selection']}",
        f"- Width scale n = {width_scale} wherever the sweep does not vary it "
        "(the paper used its Fig. 6 best, whose n our copy does not show)",
        f"- Finished runs: {len(rows)} of {total}",
        f"- {paper_note} (Beside ours: {caveat}.)",
        "",
        SCORES_HEADING,
        "",
        scores_note(len(first["classes"])),
        "",
        f"| run | series | x | UA | WA | ACC | macro-F1 | UA 95 % CI | UA vs best | "
        f"paper's IEMOCAP UA / WA / ACC ({caveat}) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    compared = compare_rows(rows, "ua")
    for r in rows:
        paper = " / ".join(f"{v:.2f}" for v in r["paper"]) if r["paper"] else ""
        x = "" if r["x"] is None else r["x"]
        lines.append(
            f"| [{r['name']}]({r['name']}/report.md) | {r['series']} | {x} | "
            + " | ".join(mean_std(r["summary"][m]) for m in METRICS)
            + f" | {_versus_best(compared.get(r['name'], {}))} | {paper} |"
        )
    lines += ["", COMPARISON_NOTE]
    if x_label:
        series = list(dict.fromkeys(r["series"] for r in rows))
        xs = sorted({r["x"] for r in rows})
        cell = {(r["series"], r["x"]): r for r in rows}
        lines += [
            "",
            f"## ACC (%) by series and {x_label} ({ACC_DEFINITION})",
            "",
            "| series | " + " | ".join(str(x) for x in xs) + " |",
            "|---" * (len(xs) + 1) + "|",
        ]
        for s in series:
            lines.append(
                f"| {s} | "
                + " | ".join(
                    pct(cell[(s, x)]["summary"]["acc"]["mean"]) if (s, x) in cell else ""
                    for x in xs
                )
                + " |"
            )
        figures.sweep_curves(
            rows,
            x_label,
            workdir / "figures" / "scores.png",
            f"{name} ({variant}): mean and 95 % CI over folds × seeds",
        )
        lines += [
            "",
            f"UA, WA and ACC against the {x_label}, mean and 95 % CI over folds × seeds, on one "
            "y scale; the dashed line is chance "
            f"(1 / {len(first['classes'])} classes). The series are drawn side by side at "
            "each x so that their error bars stay apart.",
            "",
            "![scores](figures/scores.png)",
        ]
    total_s = sum(r["summary"].get("wall_time_s", 0) for r in rows)
    lines += ["", f"Compute: {total_s / 60:.1f} min of training wall time over the finished runs."]
    lines += [
        "",
        "Each run's report (confusion matrix, training curves, ECA channel weights) is "
        "linked from the first column. Tables as CSV: [results.csv](results.csv).",
    ]
    write_text(workdir / "results.csv", _csv(rows))
    return write_text(workdir / "report.md", "\n".join(lines) + "\n")
