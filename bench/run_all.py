"""Run the CPU benchmarks one after another on this machine, then check the performance
goals (the Performance issue's "done when") against what they wrote.

    python bench/run_all.py [--out results/bench] [--only train features ...] [--summary-only]

Runs, each as its own process with its documented command (so each writes its JSON and
Markdown table under --out as when run alone): bench_features.py, bench_memory.py,
bench_layers.py, bench_train.py --min-time 4. A benchmark that fails is reported and the
others still run; the exit status is then 1. Afterwards (or alone, --summary-only) it writes
summary.json and summary.md under --out: every goal with the measured value, met or not,
and the file and date it comes from, and whether the CPU figures come from one run of this
script (dates inside its window) or from separate runs; --summary-only keeps the record of
the last run (from the summary.json it replaces), so that provenance survives a recheck. GPU
rows come from the files bench/gpu_session.py wrote (gpu-run.json, gpu-seeds.json) when a GPU
was lent.

About 40 minutes on 2 cores (bench_train alone about 24); run nothing else meanwhile: the
benchmarks time wall-clock rates.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from machine import machine_info, utc_now, write_outputs  # bench/machine.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> (script and arguments, the JSON it writes); run in this order (cheapest first)
BENCHMARKS = {
    "features": (["bench/bench_features.py"], "features.json"),
    "memory": (["bench/bench_memory.py"], "memory.json"),
    "layers": (["bench/bench_layers.py"], "layers.json"),
    "train": (["bench/bench_train.py", "--min-time", "4"], "train.json"),
}
WIDTHS = (1, 2, 4)
TRAIN_RATIO_GOAL = 1.0
FEATURES_RATIO_GOAL = 1.5
FEATURES_TOTAL_S_GOAL = 60.0
MEMORY_GB_GOAL = 6.0
GPU_WALL_S_GOAL = 600.0


def _parse_date(text):
    try:
        when = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def run_benchmarks(names, out: Path, log=print) -> list[dict]:
    """Run each named benchmark in a fresh process; what each did (never raises for one)."""
    runs = []
    for name in names:
        script, _ = BENCHMARKS[name]
        cmd = [sys.executable, *script, "--out", str(out)]
        log(f"[run_all] {name}: {' '.join(cmd[1:])}")
        start, t0 = utc_now(), time.perf_counter()
        try:
            rc = subprocess.run(cmd, cwd=ROOT).returncode
        except KeyboardInterrupt:
            runs.append(
                {
                    "name": name,
                    "command": " ".join(["python", *script]),
                    "returncode": "interrupted",
                    "started": start,
                    "wall_time_s": round(time.perf_counter() - t0, 1),
                }
            )
            raise
        runs.append(
            {
                "name": name,
                "command": " ".join(["python", *script]),
                "returncode": rc,
                "started": start,
                "wall_time_s": round(time.perf_counter() - t0, 1),
            }
        )
        log(f"[run_all] {name}: exit {rc} after {runs[-1]['wall_time_s']} s")
    return runs


def _load(out: Path, filename: str) -> dict | None:
    path = out / filename
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"_unreadable": f"{path}: {e}"}


def _goal(name, value, goal, met, source, date, note=""):
    return {
        "goal": name,
        "value": value,
        "target": goal,
        "met": met,
        "source": source,
        "date": date,
        "note": note,
    }


def seed_goals(table: dict | None, source: str, date, backend: str) -> list[dict]:
    """Total throughput with S seeds, by the strategy serjax's `auto` uses now, against S
    single-seed runs one after the other, per S >= 2 (S = 1 is the single-seed step itself)."""
    if not table or "rows" not in table:
        return [
            _goal(
                f"{backend}: S seeds ≥ S single-seed runs",
                None,
                "≥ 1.00×",
                None,
                source,
                date,
                "no seed table",
            )
        ]
    from serjax.seeds import resolve_seed_strategy

    strategy = resolve_seed_strategy("auto")
    then = table.get("auto_resolves_to")
    note = f"when measured, `auto` was {then}" if then and then != strategy else ""
    goals = []
    for row in table["rows"]:
        if (
            row.get("strategy") != strategy
            or row.get("S", 1) < 2
            or row.get("ratio_over_sequence") is None
        ):
            continue
        ratio = row["ratio_over_sequence"]
        goals.append(
            _goal(
                f"{backend}: S = {row['S']} seeds (`auto` = {strategy}) vs S single-seed runs",
                f"{ratio:.2f}×",
                "≥ 1.00×",
                ratio >= 1.0,
                source,
                date,
                note,
            )
        )
    return goals


def check_goals(out: Path) -> dict:
    """The performance goals, each checked against the benchmark files under `out`."""
    goals, dates = [], {}
    train = _load(out, "train.json")
    if train and "comparison" in train:
        dates["train"] = train.get("date")
        by_n = {row["n"]: row for row in train["comparison"]}
        for n in WIDTHS:
            row = by_n.get(n)
            if row is None:
                goals.append(
                    _goal(
                        f"CPU train throughput vs PyTorch, n = {n}",
                        None,
                        f"≥ {TRAIN_RATIO_GOAL:.2f}×",
                        None,
                        "train.json",
                        train.get("date"),
                        "not measured",
                    )
                )
                continue
            ratio = row["ratio_train_jax_over_torch"]
            low, high = row.get("ratio_train_jax_over_torch_range", [None, None])
            context = []
            for key, words in (
                ("ratio_train_jax_over_torch_both_hugepages", "both huge pages, fresh processes"),
                ("ratio_train_jax_over_torch_as_installed", "as installed"),
                ("ratio_train_jax_best_over_torch_best", "each at its fastest allocator"),
            ):
                if row.get(key) is not None:
                    context.append(f"{words} {row[key]:.2f}×")
            note = (
                f"one process, same allocator, paired rounds {low:.2f}-{high:.2f}"
                if low is not None
                else ""
            )
            goals.append(
                _goal(
                    f"CPU train throughput vs PyTorch eager, n = {n}",
                    f"{ratio:.2f}×",
                    f"≥ {TRAIN_RATIO_GOAL:.2f}×",
                    ratio >= TRAIN_RATIO_GOAL,
                    "train.json",
                    train.get("date"),
                    "; ".join([note, *context]).strip("; "),
                )
            )
        goals += seed_goals(train.get("seed_scaling"), "train.json", train.get("date"), "CPU")
    else:
        goals.append(
            _goal(
                "CPU train throughput vs PyTorch",
                None,
                f"≥ {TRAIN_RATIO_GOAL:.2f}×",
                None,
                "train.json",
                None,
                "missing or unreadable",
            )
        )
    features = _load(out, "features.json")
    if features and "rows" in features:
        dates["features"] = features.get("date")
        low = min(row["ratio_jax_over_librosa"] for row in features["rows"])
        worst = min(features["rows"], key=lambda row: row["ratio_jax_over_librosa"])
        goals.append(
            _goal(
                "features: JAX vs librosa, every version",
                f"{low:.2f}× (lowest, v{worst['version']})",
                f"≥ {FEATURES_RATIO_GOAL:.1f}×",
                low >= FEATURES_RATIO_GOAL,
                "features.json",
                features.get("date"),
            )
        )
        total = features["total_jax_s_all_versions"]
        goals.append(
            _goal(
                f"features: all 8 versions of {features.get('num_utterances')} utterances",
                f"{total:.1f} s",
                f"≤ {FEATURES_TOTAL_S_GOAL:.0f} s",
                total <= FEATURES_TOTAL_S_GOAL,
                "features.json",
                features.get("date"),
                f"+ compilation {features.get('total_jax_compile_s_all_versions')} s",
            )
        )
    else:
        goals.append(
            _goal(
                "features vs librosa",
                None,
                f"≥ {FEATURES_RATIO_GOAL:.1f}×",
                None,
                "features.json",
                None,
                "missing or unreadable",
            )
        )
    memory = _load(out, "memory.json")
    if memory and "peak_rss_mb" in memory:
        dates["memory"] = memory.get("date")
        gb = memory["peak_rss_mb"] / 1024
        goals.append(
            _goal(
                f"memory: {memory.get('utterances')} utterances, {memory.get('versions')} "
                f"versions, n = {memory.get('width_scale')}",
                f"{gb:.1f} GB peak RSS",
                f"< {MEMORY_GB_GOAL:.0f} GB",
                gb < MEMORY_GB_GOAL,
                "memory.json",
                memory.get("date"),
            )
        )
    else:
        goals.append(
            _goal(
                "memory",
                None,
                f"< {MEMORY_GB_GOAL:.0f} GB",
                None,
                "memory.json",
                None,
                "missing or unreadable",
            )
        )
    layers = _load(out, "layers.json")
    if layers and "date" in layers:
        dates["layers"] = layers.get("date")
    gpu_run = _load(out, "gpu-run.json")
    if gpu_run and "wall_time_s" in gpu_run:
        device = (gpu_run.get("device") or {}).get("device", "a GPU")
        if gpu_run.get("finished"):
            wall = gpu_run["wall_time_s"]
            goals.append(
                _goal(
                    f"GPU: full default run on {device}",
                    f"{wall:.0f} s",
                    f"≤ {GPU_WALL_S_GOAL:.0f} s",
                    wall <= GPU_WALL_S_GOAL,
                    "gpu-run.json",
                    gpu_run.get("date"),
                )
            )
        else:
            projected = (gpu_run.get("projection") or {}).get("projected_wall_time_s")
            goals.append(
                _goal(
                    f"GPU: full default run on {device}",
                    None,
                    f"≤ {GPU_WALL_S_GOAL:.0f} s",
                    None,
                    "gpu-run.json",
                    gpu_run.get("date"),
                    f"not finished ({gpu_run.get('stopped_why', 'stopped')}; "
                    f"{gpu_run.get('epochs_done')} of {gpu_run.get('epochs_total')} epochs)"
                    + (f"; projected {projected:.0f} s" if projected else ""),
                )
            )
        gpu_seeds = _load(out, "gpu-seeds.json")
        if gpu_seeds and "result" in gpu_seeds:
            goals += seed_goals(gpu_seeds["result"], "gpu-seeds.json", gpu_seeds.get("date"), "GPU")
    else:
        goals.append(
            _goal(
                "GPU: full default run",
                None,
                f"≤ {GPU_WALL_S_GOAL:.0f} s",
                None,
                "gpu-run.json",
                None,
                "no GPU run recorded",
            )
        )
    return {"goals": goals, "cpu_dates": dates}


def one_run(dates: dict, window: tuple[str, str] | None) -> bool | None:
    """Whether every CPU benchmark's date falls inside this script's run (None: no run)."""
    if window is None:
        return None
    start, end = (_parse_date(w) for w in window)
    parsed = [_parse_date(d) for d in dates.values()]
    return len(parsed) == len(BENCHMARKS) and all(
        d is not None and start <= d <= end for d in parsed
    )


def markdown(summary: dict) -> str:
    def mark(met):
        return {True: "met", False: "**not met**", None: "–"}[met]

    lines = [
        "# Performance goals: measured status",
        "",
        f"Command: `{summary['command']}`",
        "",
        f"- Date: {summary['date']}",
        f"- Machine: {summary['machine']['cpu']}, {summary['machine']['cores']} cores, "
        f"{summary['machine']['platform']}, Python {summary['machine']['python']}",
    ]
    if summary.get("runs"):
        lines.append(
            f"- Benchmarks run ({summary['window'][0]} to {summary['window'][1]}): "
            + ", ".join(
                f"{r['name']} ({r['wall_time_s']} "
                f"s{'' if r['returncode'] == 0 else ', exit ' + str(r['returncode'])})"
                for r in summary["runs"]
            )
        )
    if summary["one_run"] is True:
        lines.append("- All CPU figures below come from that one run, on one machine.")
    else:
        lines.append(
            "- The CPU figures come from separate runs: "
            + ", ".join(f"{name} {date}" for name, date in sorted(summary["cpu_dates"].items()))
            + "."
        )
    lines += [
        "",
        "| goal | measured | target | status | source (date) | note |",
        "|---|---|---|---|---|---|",
    ]
    for g in summary["goals"]:
        lines.append(
            f"| {g['goal']} | {g['value'] if g['value'] is not None else '–'} | {g['target']} | "
            f"{mark(g['met'])} | `{g['source']}` ({g['date'] or '–'}) | {g['note']} |"
        )
    lines += [
        "",
        "Each source file's Markdown twin (`train.md`, `features.md`, ...) gives the method, load "
        "and rounds. On a shared machine read ratios near 1 as ties (on the 2 shared cores serjax "
        "was developed on, the same cells moved by up to ±25 % between runs of bench_train); the "
        "CPU train ratio above is the controlled one (one process, same allocator, paired rounds).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(BENCHMARKS),
        default=None,
        help="run only these benchmarks (the summary still reads every file)",
    )
    parser.add_argument(
        "--summary-only", action="store_true", help="run nothing; check the files under --out"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not out.is_absolute():
        out = (Path.cwd() / out).resolve()
    runs, window, machine = [], None, machine_info()
    command = (
        "python bench/run_all.py"
        + (" --summary-only" if args.summary_only else "")
        + (" --only " + " ".join(args.only) if args.only else "")
    )
    if not args.summary_only:
        start = utc_now()
        runs = run_benchmarks(args.only or list(BENCHMARKS), out)
        window = (start, utc_now())
    else:
        # the last run of this script, if any: its files may still be the ones checked
        earlier = _load(out, "summary.json") or {}
        if earlier.get("window") and earlier.get("runs"):
            runs, window = earlier["runs"], tuple(earlier["window"])
            machine = earlier.get("machine") or machine
    checked = check_goals(out)
    summary = {
        "command": command,
        "date": utc_now(),
        "machine": machine,
        "runs": runs,
        "window": window,
        "one_run": one_run(checked["cpu_dates"], window),
        **checked,
    }
    json_path, md_path = write_outputs(out, "summary", summary, markdown(summary))
    print(markdown(summary))
    print(f"wrote {json_path} and {md_path}")
    failed = [r["name"] for r in runs if r["returncode"] != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
