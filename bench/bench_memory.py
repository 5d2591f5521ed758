"""Peak memory of a run with all 8 STFT versions (multi-STFT augmentation) on a 2943-utterance
corpus: the real pipeline, stage by stage.

    python bench/bench_memory.py [--width-scale 4] [--epochs 1] [--out results/bench]

Runs serjax.experiment.prepare on the built-in synthetic corpus (2943 utterances, as the
paper's IEMOCAP subset) with experiment.train_versions = 1..8: the corpus is generated if
missing, the float16 feature cache filled for all 8 versions, the [8·U, 64, 601] device table
built, then serjax.experiment.run_fold trains fold 1 for --epochs epochs (each epoch: every
augmented batch, the test fold evaluated, a checkpoint). The process's peak RSS (VmHWM) is
recorded after every stage. Later epochs and folds repeat the same steps on buffers of the
same shapes.

Writes memory.json and memory.md (--name) to --out. The host allocator is launch.py's: huge
pages unless SERJAX_MALLOC says otherwise (serjax/host.py). The cache goes to --cache
(default: a temporary folder, removed afterwards) so the measurement includes building it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# bench/machine.py
from machine import command_line, loadavg, machine_info, utc_now, write_outputs  # noqa: E402

LIMIT_MB = 6 * 1024


def rss_mb() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                key, value = line.split(":")
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return {"peak_rss_mb": out.get("VmHWM"), "rss_mb": out.get("VmRSS")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--width-scale", type=int, default=4, help="model width n (default: the paper config's)"
    )
    parser.add_argument("--epochs", type=int, default=1, help="epochs of fold 1")
    parser.add_argument("--cache", default=None, help="cache folder (default: a temporary one)")
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--name", default="memory", help="writes NAME.json and NAME.md")
    args = parser.parse_args(argv)

    from serjax.host import reexec_with_huge_pages

    reexec_with_huge_pages()  # as launch.py: huge pages unless SERJAX_MALLOC says otherwise
    import jax

    from serjax.xla_options import host_allocator_state

    allocator = host_allocator_state()

    from serjax import experiment
    from serjax.configlib import base_config

    started = time.perf_counter()
    stages = []

    def stage(name):
        stages.append(
            {"stage": name, "after_s": round(time.perf_counter() - started, 1), **rss_mb()}
        )
        print(f"[{stages[-1]['after_s']:7.1f} s] {name}: {stages[-1]}", flush=True)

    stage("imports")
    cache = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="serjax-mem-"))
    workdir = Path(tempfile.mkdtemp(prefix="serjax-mem-run-"))
    config = base_config()
    config.cache_dir = str(cache)
    config.experiment.train_versions = tuple(range(1, 9))
    config.experiment.test_version = 8
    config.model.width_scale = args.width_scale
    config.train.epochs = args.epochs
    try:
        prep = experiment.prepare(config, workdir, progress=False)
        jax.block_until_ready(prep.table)
        stage("prepare: corpus, feature cache (8 versions), device table")
        fold = experiment.split_fold(prep, 0)
        experiment.run_fold(prep, 0, progress=False)
        stage(
            f"fold 1: {config.train.epochs} epoch(s) of serjax.experiment.run_fold on "
            f"{len(fold.train)} × {len(config.experiment.train_versions)} augmented training "
            f"rows, each evaluated on the {len(fold.test)}-utterance test fold, checkpoints saved"
        )
        table_mb = round(prep.table.size * prep.table.dtype.itemsize / 2**20, 1)
        utterances = len(prep.labels)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not args.cache:
            shutil.rmtree(cache, ignore_errors=True)

    peak = max(s["peak_rss_mb"] for s in stages)
    prefix = "".join(f"{k}={os.environ[k]} " for k in ("SERJAX_MALLOC",) if os.environ.get(k))
    result = {
        "command": prefix + command_line("bench_memory.py", argv),
        "date": utc_now(),
        "machine": machine_info(),
        "loadavg_end": loadavg(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "host_allocator": allocator,
        "utterances": utterances,
        "versions": 8,
        "width_scale": args.width_scale,
        "device_table_mb": table_mb,
        "stages": stages,
        "peak_rss_mb": peak,
        "limit_mb": LIMIT_MB,
        "under_limit": peak < LIMIT_MB,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    lines = [
        "# Peak memory: 2943 utterances × all 8 STFT versions (augmentation), CPU",
        "",
        f"Command: `{result['command']}`",
        "",
        f"- Date: {result['date']}; wall time {result['wall_time_s']} s; machine: "
        f"{result['machine']['cpu']}, {result['machine']['cores']} cores; jax {result['jax']} "
        f"({result['backend']})",
        f"- {utterances} synthetic utterances, versions 1-8 in one float16 device table of "
        f"{table_mb} MB; model n = {args.width_scale}; host allocator {allocator}",
        f"- **Peak RSS {peak:.0f} MB** (limit {LIMIT_MB} MB: "
        f"{'under' if result['under_limit'] else 'OVER'})",
        "",
        "| stage | after (s) | peak RSS so far (MB) | RSS now (MB) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {s['stage']} | {s['after_s']} | {s['peak_rss_mb']} | {s['rss_mb']} |" for s in stages
    ]
    paths = write_outputs(args.out, args.name, result, "\n".join(lines) + "\n")
    print("wrote " + " and ".join(map(str, paths)))
    return 0 if result["under_limit"] else 1


if __name__ == "__main__":
    sys.exit(main())
