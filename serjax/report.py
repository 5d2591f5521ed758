"""Human-readable reports built from a run's saved results."""

from __future__ import annotations

from pathlib import Path

from serjax.fileio import write_text

PROTOCOL_NOTES = {
    "stratified_kfold": "stratified random k-fold over utterances (the paper's protocol; "
                        "speaker-dependent: a speaker's utterances are in train and test)",
    "leave_one_session_out": "leave-one-session-out (speaker-independent)",
    "leave_one_speaker_out": "leave-one-speaker-out (speaker-independent)",
}


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def score_table(summary: dict) -> list[str]:
    rows = ["| UA | WA | ACC | macro-F1 |", "|---|---|---|---|",
            "| " + " | ".join(f"{pct(summary[m]['mean'])} ± {pct(summary[m]['std'])}"
                             for m in ("ua", "wa", "acc", "f1")) + " |"]
    return rows


def confusion_table(matrix, classes) -> list[str]:
    rows = ["| true \\ predicted | " + " | ".join(classes) + " | recall |",
            "|---" * (len(classes) + 2) + "|"]
    for name, row in zip(classes, matrix):
        total = sum(row)
        recall = f"{100 * row[classes.index(name)] / total:.1f}" if total else "-"
        rows.append(f"| {name} | " + " | ".join(str(v) for v in row) + f" | {recall} |")
    return rows


def write_run_report(workdir: Path, config, summary: dict) -> Path:
    classes = summary["classes"]
    corpus = summary["corpus"]
    data_note = ("**synthetic data** (serjax's built-in generated corpus, not IEMOCAP: these "
                 "numbers say the pipeline works, nothing about emotion in real speech)"
                 if corpus == "synthetic" else f"corpus `{corpus}`")
    lines = [f"# Run report: {Path(workdir).name}", "",
             f"- Data: {data_note}, {summary['num_utterances']} utterances, classes {', '.join(classes)}",
             f"- Protocol: {PROTOCOL_NOTES.get(summary['protocol'], summary['protocol'])}",
             f"- Features: train on STFT version(s) {summary['train_versions']}, "
             f"test on version {summary['test_version']}",
             f"- Model: width scale n = {config.model.width_scale}, ECA after blocks "
             f"{tuple(config.model.eca_layers) or 'none'}",
             f"- Training: {summary['epochs']} epochs, seeds {summary['seeds']}; "
             f"scores are of the **{summary['selection']}** (the test fold selects nothing)",
             "", "## Scores (%, mean ± std over folds × seeds)", ""]
    lines += score_table(summary)
    if "best_val" in summary:
        lines += ["", f"Selected on validation: {summary['best_val']['selection']}", ""]
        lines += score_table(summary["best_val"])
    lines += ["", "## Per fold (mean over seeds)", "",
              "| fold | test utterances | UA | WA | ACC | macro-F1 |", "|---|---|---|---|---|---|"]
    lines += [f"| {f['fold']} | {f['n_test']} | " + " | ".join(pct(f[m]) for m in ("ua", "wa", "acc", "f1")) + " |"
              for f in summary["per_fold"]]
    lines += ["", "## Per seed (mean over folds)", "",
              "| seed | UA | WA | ACC | macro-F1 |", "|---|---|---|---|---|"]
    lines += [f"| {s['seed']} | " + " | ".join(pct(s[m]) for m in ("ua", "wa", "acc", "f1")) + " |"
              for s in summary["per_seed"]]
    lines += ["", "## Confusion matrix (all folds and seeds pooled)", ""]
    lines += confusion_table(summary["confusion"], classes)
    if "wall_time_s" in summary:
        lines += ["", f"Wall time: {summary['wall_time_s']:.0f} s."]
    return write_text(Path(workdir) / "report.md", "\n".join(lines) + "\n")
