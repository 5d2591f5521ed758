"""Benchmark the compilation cache (`executor.compilation_cache`): a short `python launch.py`
run timed as a user sees it, from process start to exit, with the cache off, cold (empty)
and warm (filled by the cold run), in turns over --rounds rounds.

    python bench/bench_compile_cache.py [--epochs 1] [--rounds 3] [--out DIR]
    python bench/bench_compile_cache.py --quick --out /tmp/x   # tiny shapes (the test)

Each run is configs/quickstart.py (or, with --quick, a tiny corpus and model) with
train.epochs=--epochs in a fresh workdir; the corpus and feature caches are built before
the clock, so the runs differ only in where their compiled steps come from. The three
summaries' scores must be equal (the cache changes no result).

Writes compile-cache.json and compile-cache.md to --out (default results/bench).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

# bench/machine.py
from machine import command_line, loadavg, machine_info, utc_now, write_outputs  # noqa: E402

MODES = ("off", "cold", "warm")
QUICK = (
    "--config.data.synthetic.num_utterances=80",
    "--config.features.n_mels=32",
    "--config.features.duration_s=0.4",
    "--config.protocol.num_folds=2",
    "--config.model.base_widths=(4,4,8,8,8,8)",
    "--config.train.batch_size=16",
)


def launch(workdir: Path, cache: Path, overrides, mode: str | None) -> float:
    """Seconds of one `python launch.py` (mode None: build the caches, untimed)."""
    args = [sys.executable, str(ROOT / "launch.py"), f"--workdir={workdir}", *overrides]
    args += ["--mode=features"] if mode is None else []
    args += [f"--config.executor.compilation_cache={mode != 'off'}"]
    if mode == "cold":
        shutil.rmtree(cache / "jax-compilation-cache", ignore_errors=True)
    env = {**os.environ, "SERJAX_CACHE": str(cache)}
    start = time.perf_counter()
    subprocess.run(args, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def scores(workdir: Path) -> dict:
    summary = json.loads((workdir / "summary.json").read_text())
    return {m: summary[m]["mean"] for m in ("ua", "wa")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench"))
    args = parser.parse_args(argv)
    overrides = [
        *(QUICK if args.quick else ()),
        f"--config.train.epochs={args.epochs}",
        "--config.log.tensorboard=false",
    ]
    load_before, date = loadavg(), utc_now()
    times = {m: [] for m in MODES}
    results = {}
    with tempfile.TemporaryDirectory(prefix="serjax-cc-") as tmp:
        tmp = Path(tmp)
        launch(tmp / "features", tmp / "cache", overrides, None)
        for r in range(args.rounds):
            for mode in MODES:
                workdir = tmp / f"{mode}-{r}"
                times[mode].append(launch(workdir, tmp / "cache", overrides, mode))
                results.setdefault(mode, scores(workdir))
                shutil.rmtree(workdir)
        entries = len(list((tmp / "cache" / "jax-compilation-cache").glob("*")))
    if len({json.dumps(s) for s in results.values()}) != 1:
        raise SystemExit(f"the cache changed the scores: {results}")
    median = {m: statistics.median(times[m]) for m in MODES}
    result = {
        "command": command_line("bench_compile_cache.py", argv),
        "date": date,
        "machine": machine_info(),
        "load": [load_before, loadavg()],
        "config": "configs/quickstart.py" + (" (quick: tiny shapes)" if args.quick else ""),
        "epochs": args.epochs,
        "rounds": args.rounds,
        "wall_s": times,
        "median_s": median,
        "cache_entries": entries,
        "scores": results["off"],
    }
    lines = [
        "# The compilation cache: a short run, off, cold and warm",
        "",
        f"`{result['command']}` — {result['date']}, {result['machine'].get('cpu', '?')} "
        f"({result['machine'].get('cores', '?')} cores), load {load_before} → {loadavg()}.",
        "",
        f"Wall time of `python launch.py` ({result['config']}, {args.epochs} epoch(s), "
        "corpus and features cached beforehand), process start to exit; median of "
        f"{args.rounds} rounds, the modes in turns.",
        "",
        "| cache | median s | rounds (s) |",
        "|---|---|---|",
        *(f"| {m} | {median[m]:.1f} | {', '.join(f'{t:.1f}' for t in times[m])} |" for m in MODES),
        "",
        f"- off: `executor.compilation_cache=false`; cold: on, its folder emptied first (every "
        f"step compiled, then written); warm: on, filled by the cold run ({entries} entries).",
        f"- Scores equal in all three: UA {100 * results['off']['ua']:.2f}, "
        f"WA {100 * results['off']['wa']:.2f}.",
        "",
    ]
    write_outputs(args.out, "compile-cache", result, "\n".join(lines))
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
