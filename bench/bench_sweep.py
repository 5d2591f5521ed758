"""Benchmark the executors: one small sweep inline vs as Ray tasks on this machine; and k fold
tasks sharing one GPU (gpus_per_task = 1/k) against one task alone.

    python bench/bench_sweep.py [--kernels 3 5 7 9] [--versions 8] [--epochs N] [--out DIR]
    python bench/bench_sweep.py --gpu-shares 1,2,4,8 [--share-epochs 20]   # on a GPU machine
    python bench/bench_sweep.py --quick --out /tmp/x    # both parts, tiny shapes (the test)

Sweep part: configs/fig9.py:small (synthetic corpus, 300 utterances, 3 folds, n = 1, 5 epochs)
narrowed to the grid given (default: k = 3, 5, 7, 9 at version 8, i.e. 4 runs × 3 folds = 12
(run, fold) tasks), run with `serjax.sweeps.run_sweep` twice, each into a fresh workdir: with
executor.name=inline (this process, one fold after another), then with executor.name=ray on
an embedded Ray (`ray.init(num_cpus=<usable cores>)`, started before the clock and timed on its
own; gpus_per_task=0, cpus_per_task=1 on a CPU machine). Both share one feature cache, built
before either is timed (corpus generated, log-Mel features extracted), so the wall times
hold training: each run's start (cache read, folds), every fold's epochs, evaluation and
checkpoints, its summary; no report is drawn. The two workdirs' fold results and summaries
(wall times aside) must be equal; metrics.jsonl is compared too.

GPU part (`--gpu-shares`): the default model (n = 4, batch 32, one seed) on the built-in
synthetic corpus (2943 utterances, 8 folds so that up to 8 tasks have a fold each); for each k,
k fold tasks run at once as Ray tasks with serjax's own task options (serjax.ray_executor.
task_options: gpus_per_task = 1/k, XLA's memory fraction split), each `experiment.run_fold` of
1 + --share-epochs epochs, no per-epoch test evaluation. A task's first epoch (compilation)
is not timed: every task waits at a barrier after it, then all train --share-epochs epochs
together; total train samples/s = their samples over the time from the barrier to the last
task's last epoch. Without a GPU (and in --quick) the same code runs on CPUs, gpus_per_task=0.
This process keeps JAX on the CPU there (it builds the corpus and features), so that only the
tasks hold the GPU. Ray must be installed on the machine (`pip install ray`).

Writes <name>.json and <name>.md to --out (default results/bench; name: sweep, or
sweep-gpu-shares for the GPU part alone).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# bench/machine.py
from machine import command_line, loadavg, machine_info, utc_now, write_outputs  # noqa: E402

TIME_FIELDS = ("wall_time_s", "invocations")
BARRIER_TIMEOUT_S = 900.0


# ---------------------------------------------------------------- configs


def _tiny(config):
    """Tiny shapes (as the test suite's): 80 utterances of 0.4 s, 32 Mel bands, 2 folds."""
    config.data.synthetic.num_utterances = 80
    config.data.synthetic.distractor_fraction = 0.1
    config.data.synthetic.scripted_fraction = 0.1
    config.features.n_mels = 32
    config.features.duration_s = 0.4
    config.protocol.num_folds = 2
    config.model.width_scale = 1
    config.model.base_widths = (4, 4, 8, 8, 8, 8)
    config.train.epochs = 2
    config.train.batch_size = 16
    config.train.checkpoint_every = 1
    return config


def sweep_config(args, cache_dir: str, executor: str):
    """configs/fig9.py:small (or tiny shapes with --quick), its grid narrowed to the
    benchmark's, on the given executor."""
    from serjax.configlib import sweep_config as make

    config = make("fig9", "small")
    if args.quick:
        _tiny(config)
    if args.epochs:
        config.train.epochs = args.epochs
        config.train.checkpoint_every = min(config.train.checkpoint_every, args.epochs)
    config.cache_dir = cache_dir
    config.sweep.grid.kernels = tuple(args.kernels)
    config.sweep.grid.versions = tuple(args.versions)
    config.executor.name = executor
    config.executor.gpus_per_task = 0.0
    config.executor.cpus_per_task = 1.0
    return config


def shares_config(args, cache_dir: str, num_folds: int):
    """The default model on the synthetic corpus (tiny shapes with --quick): 1 + share_epochs
    epochs, no per-epoch test evaluation, one checkpoint at the end."""
    from serjax.configlib import base_config

    config = base_config()
    if args.quick:  # the quick sweep's model and shapes: a warm Ray worker compiles nothing
        _tiny(config)
    config.cache_dir = cache_dir
    config.data.corpus = "synthetic"
    config.protocol.num_folds = num_folds
    config.train.epochs = 1 + args.share_epochs
    config.train.eval_every = 0
    config.train.checkpoint_every = config.train.epochs
    return config


# ---------------------------------------------------------------- the sweep part


def start_ray(ray, num_cpus: int, fresh: bool = False) -> float:
    """An embedded Ray with num_cpus logical CPUs (GPUs detected), kept when the one running
    already has as many (its warm workers are reused) unless `fresh`: the seconds it took to
    start."""
    if ray.is_initialized():
        if ray.cluster_resources().get("CPU") == num_cpus and not fresh:
            return 0.0
        ray.shutdown()
    started = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return time.perf_counter() - started


def warm_up(config, where: Path) -> float:
    """Build the corpus and every grid point's feature cache (no device table, nothing of the
    training compiled): seconds."""
    from serjax import experiment
    from serjax.sweeps import expand, run_config

    started = time.perf_counter()
    for name, overrides, _ in expand(config.sweep):
        experiment.prepare(run_config(config, overrides), where / name, False, on_device=False)
    return time.perf_counter() - started


def results_of(workdir: Path) -> dict:
    """Every fold result and summary of a sweep, wall times left out."""
    out = {}
    for path in sorted(workdir.glob("*/folds/*.json")) + sorted(workdir.glob("*/summary.json")):
        data = json.loads(path.read_text())
        for key in TIME_FIELDS:
            data.pop(key, None)
        out[str(path.relative_to(workdir))] = data
    return out


def metric_lines(workdir: Path) -> dict:
    """Each run's metrics.jsonl lines, sorted (tasks append in the order they run)."""
    return {
        str(p.relative_to(workdir)): sorted(p.read_text().splitlines())
        for p in sorted(workdir.glob("*/metrics.jsonl"))
    }


def worker_processes(workdir: Path) -> dict:
    """From a Ray sweep's task logs (`--- <date> on <host>, pid <pid>`): how many worker
    processes ran its tasks, and how many (run, process) pairs there were, i.e. how many
    times a run's steps were compiled (a process keeps a run's compiled steps)."""
    pairs = set()
    for log in workdir.glob("*/logs/*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("--- ") and ", pid " in line:
                pairs.add((log.parent.parent.name, line.rsplit(", pid ", 1)[1].strip()))
    return {"processes": len({pid for _, pid in pairs}), "run_process_pairs": len(pairs)}


def timed_sweep(config, workdir: Path) -> dict:
    from serjax.sweeps import run_sweep

    load = loadavg()
    started = time.perf_counter()
    summaries = run_sweep(config, workdir, progress=False)
    wall = time.perf_counter() - started
    tasks = sum(len(s["per_fold"]) for s in summaries)
    return {
        "executor": config.executor.name,
        "wall_time_s": round(wall, 2),
        "runs": len(summaries),
        "tasks": tasks,
        "tasks_per_hour": round(tasks / wall * 3600, 1),
        "per_run_wall_time_s": [round(s["wall_time_s"], 2) for s in summaries],
        "loadavg_before": load,
        "loadavg_after": loadavg(),
    }


def sweep_part(args, ray, tmp: Path, cache_dir: str) -> dict:
    """Each round times the sweep inline and on a fresh embedded Ray, in the order inline, ray
    in even rounds and ray, inline in odd ones (so drift in the machine's load reaches both)."""
    import jax

    from serjax.sweeps import expand
    from serjax.train import _cached_trainer

    configs = {e: sweep_config(args, cache_dir, e) for e in ("inline", "ray")}
    runs = [name for name, _, _ in expand(configs["inline"].sweep)]
    print(f"sweep: fig9 grid {runs}; building the corpus and features", flush=True)
    warm = warm_up(configs["inline"], tmp / "warm-up")
    print(f"  corpus and features: {warm:.1f} s (not timed below)", flush=True)
    cores = machine_info()["cores"]
    rounds = []
    for r in range(args.rounds):
        timed = {}
        for executor in ("inline", "ray") if r % 2 == 0 else ("ray", "inline"):
            workdir = tmp / f"{executor}-{r}"
            if executor == "inline":  # as in a new process: every step compiled again
                _cached_trainer.cache_clear()
                jax.clear_caches()
            else:  # fresh worker processes, and no step compiled by an earlier round
                shutil.rmtree(Path(cache_dir) / "jax-compilation-cache", ignore_errors=True)
                ray_start = start_ray(ray, cores, fresh=True)
            print(f"  round {r + 1}, {executor} ...", flush=True)
            row = timed_sweep(configs[executor], workdir)
            if executor == "ray":
                row["ray_init_s"] = round(ray_start, 2)
                row["ray_num_cpus"] = cores
                row["workers"] = worker_processes(workdir)
                entries = (Path(cache_dir) / "jax-compilation-cache").glob("*-cache")
                row["compilation_cache_entries"] = len(list(entries))
            print(f"    {row['wall_time_s']} s", flush=True)
            timed[executor] = row
        timed["ray_over_inline"] = round(
            timed["ray"]["wall_time_s"] / timed["inline"]["wall_time_s"], 3
        )
        rounds.append(timed)

    reference = tmp / "inline-0"
    a, ma = results_of(reference), metric_lines(reference)
    differing, metrics_same, lines = set(), True, []
    for workdir in sorted(tmp.glob("inline-*")) + sorted(tmp.glob("ray-*")):
        b, mb = results_of(workdir), metric_lines(workdir)
        differing |= {f"{workdir.name}/{k}" for k in set(a) | set(b) if a.get(k) != b.get(k)}
        metrics_same &= ma == mb
        lines.append(sum(len(v) for v in mb.values()))
    check = {
        "compared": "folds/*.json and summary.json of every run, wall_time_s and invocations "
        "left out, of every timed workdir against the first inline one",
        "workdirs": 2 * args.rounds,
        "files": len(a),
        "identical": bool(a) and not differing,
        "differing": sorted(differing),
        "metrics_jsonl_identical": metrics_same,
        "metrics_jsonl_lines": lines,
    }
    print(f"  inline vs ray: {'identical' if check['identical'] else 'DIFFERENT'}", flush=True)
    summary = {e: _median_row([t[e] for t in rounds]) for e in ("inline", "ray")}
    cfg = configs["inline"]
    return {
        "config": "configs/fig9.py:small" + (" with --quick's tiny shapes" if args.quick else ""),
        "grid": {"kernels": list(args.kernels), "versions": list(args.versions), "runs": runs},
        "shape": {
            "utterances": cfg.data.synthetic.num_utterances,
            "duration_s": cfg.features.duration_s,
            "n_mels": cfg.features.n_mels,
            "folds": cfg.protocol.num_folds,
            "width_scale": cfg.model.width_scale,
            "epochs": cfg.train.epochs,
            "batch_size": cfg.train.batch_size,
            "checkpoint_every": cfg.train.checkpoint_every,
        },
        "executor": {
            "gpus_per_task": configs["ray"].executor.gpus_per_task,
            "cpus_per_task": configs["ray"].executor.cpus_per_task,
        },
        "warm_up_s": round(warm, 2),
        "rounds": rounds,
        "inline": summary["inline"],
        "ray": summary["ray"],
        "ray_over_inline_wall_time": round(
            statistics.median(t["ray_over_inline"] for t in rounds), 3
        ),
        "check": check,
    }


def _median_row(rows: list[dict]) -> dict:
    """One executor over the rounds: the median wall time and its tasks/hour."""
    wall = statistics.median(r["wall_time_s"] for r in rows)
    out = {
        "executor": rows[0]["executor"],
        "wall_time_s": round(wall, 2),
        "wall_time_s_rounds": [r["wall_time_s"] for r in rows],
        "runs": rows[0]["runs"],
        "tasks": rows[0]["tasks"],
        "tasks_per_hour": round(rows[0]["tasks"] / wall * 3600, 1),
    }
    if "ray_init_s" in rows[0]:
        out["ray_init_s"] = round(statistics.median(r["ray_init_s"] for r in rows), 2)
        out["ray_num_cpus"] = rows[0]["ray_num_cpus"]
    return out


# ---------------------------------------------------------------- the GPU-sharing part


def share_task(workdir: str, k: int, tasks: int, machine: dict, barrier_timeout: float) -> dict:
    """A Ray task: fold k of the run started in `workdir`, as serjax.tasks.fold_task runs it
    (reopened from the workdir, `experiment.run_fold`), with every epoch's end timed. After
    its first epoch (compilation) it waits until all `tasks` tasks have reached theirs."""
    import time as clock
    from pathlib import Path as P

    import jax

    from serjax import experiment
    from serjax.metrics import MetricsWriter
    from serjax.workdir import saved_config

    begun = clock.time()
    workdir = P(workdir)
    config = saved_config(workdir, machine)
    run = experiment.prepare(config, workdir, progress=False, record=False)
    ready = clock.time()
    rows = len(experiment.fold_inputs(run, k)[2].train)
    marks = {"first_epoch": None, "released": None, "ends": []}
    barrier = workdir / "barrier"

    class TimedWriter(MetricsWriter):
        def write(self, records):
            super().write(records)
            now = clock.time()
            if marks["first_epoch"] is None:
                marks["first_epoch"] = now
                (barrier / f"ready-{k}").write_text("")
                while len(list(barrier.glob("ready-*"))) < tasks:
                    if clock.time() - now > barrier_timeout:
                        raise RuntimeError(f"barrier: not all {tasks} tasks arrived in time")
                    clock.sleep(0.005)
                marks["released"] = clock.time()
            else:
                marks["ends"].append(now)

    experiment.MetricsWriter = TimedWriter  # this worker's run_fold times its epochs
    experiment.run_fold(run, k, progress=False)
    batch = int(config.train.batch_size)
    steps = math.ceil(rows / batch)
    epochs = len(marks["ends"])
    device = jax.devices()[0]
    return {
        "fold": run.fold_names[k],
        "device": getattr(device, "device_kind", str(device)),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "mem_fraction": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
        "train_rows": rows,
        "samples_per_epoch": steps * batch * len(run.seeds),
        "measured_epochs": epochs,
        "start_s": round(ready - begun, 3),  # reopen: imports, cache, device table
        "first_epoch_s": round(marks["first_epoch"] - ready, 3),  # compilation included
        "released": marks["released"],
        "last_end": marks["ends"][-1] if epochs else marks["released"],
        "samples_per_s": round(
            steps * batch * len(run.seeds) * epochs / (marks["ends"][-1] - marks["released"]), 1
        )
        if epochs
        else None,
    }


def shares_part(args, ray, tmp: Path, cache_dir: str) -> dict:
    import ml_collections

    from serjax import experiment
    from serjax.ray_executor import task_options
    from serjax.workdir import machine_fields

    shares = sorted(set(args.gpu_shares))
    num_folds = max(2 if args.quick else 8, max(shares))
    config = shares_config(args, cache_dir, num_folds)
    print(f"gpu shares {shares}: building the corpus and features", flush=True)
    started = time.perf_counter()
    experiment.prepare(config, tmp / "shares-warm-up", progress=False, on_device=False)
    warm = time.perf_counter() - started
    start_ray(ray, max(machine_info()["cores"], math.ceil(max(shares) * args.cpus_per_task)))
    gpus = ray.cluster_resources().get("GPU", 0)
    rows = []
    for k in shares:
        executor = ml_collections.ConfigDict(
            {
                "name": "ray",
                "address": "",
                "gpus_per_task": 1.0 / k if gpus else 0.0,
                "cpus_per_task": float(args.cpus_per_task),
                "max_retries": 0,
            }
        )
        workdir = tmp / f"shares-k{k}"
        experiment.start(config, workdir, progress=False, on_device=False)
        (workdir / "barrier").mkdir()
        remote = ray.remote(**task_options(executor, gpus))(share_task)
        machine = machine_fields(config)
        load = loadavg()
        print(f"  k = {k} (gpus_per_task {executor.gpus_per_task:g}) ...", flush=True)
        tasks = ray.get(
            [remote.remote(str(workdir), i, k, machine, BARRIER_TIMEOUT_S) for i in range(k)]
        )
        window = max(t["last_end"] for t in tasks) - min(t["released"] for t in tasks)
        samples = sum(t["samples_per_epoch"] * t["measured_epochs"] for t in tasks)
        per_task = [t["samples_per_s"] for t in tasks]
        rows.append(
            {
                "tasks_per_gpu": k,
                "gpus_per_task": executor.gpus_per_task,
                "total_samples_per_s": round(samples / window, 1),
                "window_s": round(window, 3),
                "samples": samples,
                "per_task_samples_per_s": per_task,
                "first_epoch_s": [t["first_epoch_s"] for t in tasks],
                "start_s": [t["start_s"] for t in tasks],
                "loadavg_before": load,
                "tasks": [
                    {k2: v for k2, v in t.items() if k2 not in ("released", "last_end")}
                    for t in tasks
                ],
            }
        )
        print(f"    total {rows[-1]['total_samples_per_s']} samples/s", flush=True)
    alone = next((r["total_samples_per_s"] for r in rows if r["tasks_per_gpu"] == 1), None)
    for r in rows:
        r["vs_one_task"] = round(r["total_samples_per_s"] / alone, 3) if alone else None
    return {
        "config": "base_config() (the default model)"
        + (" with --quick's tiny shapes" if args.quick else ""),
        "shape": {
            "utterances": config.data.synthetic.num_utterances,
            "duration_s": config.features.duration_s,
            "n_mels": config.features.n_mels,
            "folds": num_folds,
            "width_scale": config.model.width_scale,
            "batch_size": config.train.batch_size,
            "seeds": config.num_seeds,
            "measured_epochs": args.share_epochs,
        },
        "gpus": gpus,
        "device": rows[0]["tasks"][0]["device"] if rows else None,
        "cpus_per_task": args.cpus_per_task,
        "warm_up_s": round(warm, 2),
        "rows": rows,
    }


# ---------------------------------------------------------------- output


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Executors: a sweep inline vs on Ray; fold tasks sharing a GPU",
        "",
        f"Command: `{result['command']}`",
        "",
        f"- Date: {result['date']}; wall time {result['wall_time_s']} s",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}",
        f"- Versions: jax {result['versions']['jax']} (this process: "
        f"{result['versions']['backend']}), ray {result['versions']['ray']}; host allocator: "
        f"{_allocator(result['host_allocator'])} (inherited by Ray's workers)",
        f"- Load average at start / end: {result['loadavg_start']} / {result['loadavg_end']}",
        "",
    ]
    if result["quick"]:
        lines += [
            "`--quick`: a check that the code runs, on tiny shapes; its processes share compiled "
            "steps through a JAX compilation cache on disk (JAX_COMPILATION_CACHE_DIR), so the "
            "Ray workers load what the inline run compiled: its times compare nothing.",
            "",
        ]
    s = result.get("sweep")
    if s:
        sh, ray_row, inline = s["shape"], s["ray"], s["inline"]
        lines += [
            "## One sweep, inline vs embedded Ray",
            "",
            f"{s['config']}, grid kernels = {s['grid']['kernels']} × versions = "
            f"{s['grid']['versions']}: runs {', '.join(s['grid']['runs'])}; each "
            f"{sh['utterances']} synthetic utterances of {sh['duration_s']} s, {sh['n_mels']} Mel "
            f"bands, {sh['folds']} folds, n = {sh['width_scale']}, {sh['epochs']} epochs, batch "
            f"{sh['batch_size']}, checkpoints every {sh['checkpoint_every']} epoch(s). "
            "`serjax.sweeps.run_sweep` into a fresh workdir for each executor, one feature "
            f"cache for both, built before either is timed ({s['warm_up_s']} s: corpus generated "
            "and features extracted). A wall time holds every run's start (cache read, folds), "
            "every fold's epochs, test evaluation and checkpoints, and the summaries; no report "
            "is drawn. Inline runs in the benchmark's process (JAX already imported, not yet "
            "compiled); each Ray worker process imports serjax and JAX and, for each run it "
            "trains a fold of, loads the run's steps from the compilation cache "
            "(`executor.compilation_cache`, emptied before each Ray round) or compiles them "
            "when no worker has yet.",
            "",
            "| round | executor | wall time (s) | tasks (runs × folds) | tasks/hour | "
            "Ray start (s, not in the wall time) | Ray worker processes / (run, process) pairs "
            "/ programs compiled (cache entries) | load (1 min) before → after |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r, timed in enumerate(s["rounds"], start=1):
            order = ("inline", "ray") if r % 2 else ("ray", "inline")
            for executor in order:
                row = timed[executor]
                extra = (
                    f"{row['ray_init_s']} | {row['workers']['processes']} / "
                    f"{row['workers']['run_process_pairs']} / "
                    f"{row.get('compilation_cache_entries', '?')}"
                    if executor == "ray"
                    else f"– | 1 / {row['runs']} / –"
                )
                lines.append(
                    f"| {r} | {executor} | {row['wall_time_s']} | {row['tasks']} | "
                    f"{row['tasks_per_hour']} | {extra} | {_load(row)} |"
                )
        lines += [
            "",
            f"Ray ran embedded with num_cpus = {ray_row['ray_num_cpus']}, gpus_per_task = "
            f"{s['executor']['gpus_per_task']:g}, cpus_per_task = "
            f"{s['executor']['cpus_per_task']:g}: {ray_row['ray_num_cpus']} tasks at a time. "
            f"Median over {len(s['rounds'])} round(s): inline {inline['wall_time_s']} s "
            f"({inline['tasks_per_hour']} tasks/hour), Ray {ray_row['wall_time_s']} s "
            f"({ray_row['tasks_per_hour']} tasks/hour); Ray / inline wall time "
            f"**{s['ray_over_inline_wall_time']}×** (median of the rounds' ratios: "
            f"{', '.join(str(t['ray_over_inline']) for t in s['rounds'])}). Inline, one process "
            "compiles each run's steps once; on Ray every worker process imports serjax and "
            "JAX and needs the steps of every run it trains a fold of, compiled by the first "
            "worker to need them and loaded from the compilation cache by the others (CPU "
            "workers are reused across tasks, keeping what they hold). Each run's own wall time "
            "(summary.json) in the first round: inline "
            f"{s['rounds'][0]['inline']['per_run_wall_time_s']} s, one run after another; Ray "
            f"{s['rounds'][0]['ray']['per_run_wall_time_s']} s, every run started at once by "
            "the driver, so these are the times at which each finished.",
            "",
        ]
        loads = [
            row[key][0]
            for timed in s["rounds"]
            for row in (timed["inline"], timed["ray"])
            for key in ("loadavg_before", "loadavg_after")
            if row[key]
        ]
        ratio = s["ray_over_inline_wall_time"]
        pairs = s["rounds"][0]["ray"]["workers"]["run_process_pairs"]
        entries = s["rounds"][0]["ray"].get("compilation_cache_entries", "?")
        lines += [
            f"Reading: on this {m['cores']}-core machine Ray took {ratio:.2f}× the inline wall "
            f"time ({'slower' if ratio > 1 else 'faster'}). Its worker processes needed a run's "
            f"steps {pairs} times against inline's {inline['runs']}; the compilation cache held "
            f"{entries} programs after the round (a run's train and eval steps), but two tasks "
            "of one run often start together, and then both compile before either has written it: "
            "it pays for the tasks after them (later folds, retries, resumed runs, the next "
            "sweep of the same shapes). Its "
            f"{ray_row['ray_num_cpus']} concurrent tasks share the cores that one inline process "
            "already keeps busy (XLA's CPU steps are multi-threaded)."
            + (
                " What Ray adds is tasks on several GPUs or machines at once; on a machine like "
                "this one, inline is the executor to use."
                if ratio > 1
                else ""
            )
            + (
                f" The cores were shared with other jobs (1-min load {min(loads)}-{max(loads)} "
                "across the timings), so read the times as noisy."
                if loads and max(loads) > m["cores"]
                else ""
            ),
            "",
        ]
        c = s["check"]
        verdict = (
            f"**identical** ({c['files']} files)"
            if c["identical"]
            else f"**DIFFERENT**: {', '.join(c['differing']) or 'no files'}"
        )
        lines += [
            f"Inline vs Ray results ({c['compared']}): {verdict}; metrics.jsonl lines "
            f"(sorted) {'identical' if c['metrics_jsonl_identical'] else 'DIFFERENT'} "
            f"(lines per workdir: {c['metrics_jsonl_lines']}).",
            "",
        ]
    g = result.get("gpu_shares")
    if not g:
        lines += [
            "## Fold tasks sharing one GPU",
            "",
            "Not run here (no GPU): `python bench/bench_sweep.py --gpu-shares 1,2,4,8` on a GPU "
            "machine with Ray installed writes sweep-gpu-shares.json and .md: total train "
            "samples/s of the default model with 1, 2, 4 and 8 fold tasks on one GPU.",
            "",
        ]
    else:
        sh = g["shape"]
        lines += [
            "## Fold tasks sharing one GPU",
            "",
            f"{g['config']}: {sh['utterances']} synthetic utterances, {sh['folds']} folds (one "
            f"per task), n = {sh['width_scale']}, batch {sh['batch_size']}, {sh['seeds']} seed; "
            f"device {g['device']} ({g['gpus']:g} GPU(s) in the Ray cluster; "
            f"cpus_per_task = {g['cpus_per_task']:g}). k tasks start at once with serjax's Ray "
            "task options; each trains 1 + "
            f"{sh['measured_epochs']} epochs of its fold with `experiment.run_fold` (no per-epoch "
            "test evaluation); the first epoch (compilation) is not timed: the tasks wait for "
            "each other after it, then total samples/s = all their training samples over the "
            "time from that barrier to the last task's last epoch.",
            "",
            "| tasks per GPU k | gpus_per_task | total train samples/s | × one task alone | "
            "per task samples/s | task start (s) | first epoch (s, compile) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in g["rows"]:
            lines.append(
                f"| {r['tasks_per_gpu']} | {r['gpus_per_task']:g} | {r['total_samples_per_s']} | "
                f"{r['vs_one_task']} | {_span(r['per_task_samples_per_s'])} | "
                f"{_span(r['start_s'])} | {_span(r['first_epoch_s'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def _load(row: dict) -> str:
    before, after = row["loadavg_before"], row["loadavg_after"]
    return f"{before[0] if before else '?'} → {after[0] if after else '?'}"


def _allocator(state: dict) -> str:
    pages = state.get("huge_pages", {})
    if pages.get("on"):
        return f"huge pages ({pages.get('GLIBC_TUNABLES')})"
    return f"glibc as configured ({pages})"


def _span(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def shares_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"need positive integers like 1,2,4,8, got {text!r}")
    return values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, nargs="+", default=None, help="ECA kernel sizes")
    parser.add_argument("--versions", type=int, nargs="+", default=None, help="STFT versions")
    parser.add_argument("--epochs", type=int, default=None, help="(default: the small variant's)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="sweep timings per executor (order alternates)"
    )
    parser.add_argument(
        "--gpu-shares",
        type=shares_list,
        default=None,
        help="tasks per GPU to measure, e.g. 1,2,4,8 (runs this part alone)",
    )
    parser.add_argument("--share-epochs", type=int, default=None, help="timed epochs per task")
    parser.add_argument("--cpus-per-task", type=float, default=1.0, help="GPU part's tasks")
    parser.add_argument("--quick", action="store_true", help="both parts, tiny shapes")
    parser.add_argument("--cache", default=None, help="feature cache (default: a temporary one)")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench"))
    parser.add_argument("--name", default=None, help="writes NAME.json and NAME.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.kernels = args.kernels or [7]
        args.gpu_shares = args.gpu_shares or [1, 2]
        args.share_epochs = args.share_epochs or 2
    args.kernels = args.kernels or [3, 5, 7, 9]
    args.versions = args.versions or [8]
    args.share_epochs = args.share_epochs or 20
    parts = ["sweep", "gpu_shares"] if args.quick else ["gpu_shares"] if args.gpu_shares else []
    parts = parts or ["sweep"]
    name = args.name or ("sweep" if "sweep" in parts else "sweep-gpu-shares")

    from serjax.host import reexec_with_huge_pages

    reexec_with_huge_pages()  # as launch.py; Ray's workers inherit the environment
    tmp = Path(tempfile.mkdtemp(prefix="serjax-bench-sweep-"))
    if args.quick:  # a code-path check: let processes share compiled steps (on disk)
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(tmp / "jax-cache"))
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    import jax
    import ray

    if parts == ["gpu_shares"]:
        # this driver builds features and starts tasks; only the tasks may hold the GPU (the
        # config setting, not JAX_PLATFORMS, which Ray's workers would inherit)
        jax.config.update("jax_platforms", "cpu")
    from serjax.xla_options import host_allocator_state

    started = time.perf_counter()
    result = {
        "command": command_line("bench_sweep.py", argv),
        "date": utc_now(),
        "machine": machine_info(),
        "versions": {
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "ray": ray.__version__,
        },
        "host_allocator": host_allocator_state(),
        "loadavg_start": loadavg(),
        "quick": args.quick,
    }
    cache_dir = args.cache or str(tmp / "cache")
    try:
        if "sweep" in parts:
            result["sweep"] = sweep_part(args, ray, tmp, cache_dir)
        if "gpu_shares" in parts:
            result["gpu_shares"] = shares_part(args, ray, tmp, cache_dir)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    result["loadavg_end"] = loadavg()
    result["wall_time_s"] = round(time.perf_counter() - started, 1)
    paths = write_outputs(args.out, name, result, markdown(result))
    print("wrote " + " and ".join(map(str, paths)))
    ok = result.get("sweep", {}).get("check", {}).get("identical", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
