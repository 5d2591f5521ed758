"""The Ray path of serjax.executor: every unfinished (run, fold) unit of the jobs as one
Ray task, on the GPUs (or CPUs) of this machine or of a cluster; one progress bar for all.

Ray retries a task whose worker died (killed, node lost, out of memory) up to
`executor.max_retries` times; the retry resumes the fold from its last checkpoint. A task
that fails for good is listed at the end with its log; the other tasks' results are kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path

from serjax import experiment, locks
from serjax.errors import SerjaxError
from serjax.fileio import write_problem
from serjax.tasks import FAULT_HOOK, Job, fold_task
from serjax.workdir import machine_fields


def _ray():
    try:
        import ray
    except ImportError:
        raise SerjaxError(
            "config field executor.name: 'ray' needs Ray, which is not installed; "
            "pip install -e '.[ray]' (or pip install ray)"
        ) from None
    return ray


def connect(executor_cfg):
    """Join the cluster at executor.address, or start Ray embedded here when it is empty
    (an already initialised Ray, e.g. a test's, is used as it is)."""
    ray = _ray()
    address = executor_cfg.address or None
    if address and address != "auto":
        _check_reachable(address)
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address!r}" if address else "an embedded Ray"
        raise SerjaxError(
            f"config field executor.address: cannot start or reach {where} ({err}); "
            "start one with `ray start --head`, or leave the field empty"
        ) from None
    return ray


def _check_reachable(address: str) -> None:
    """Ray keeps retrying an unreachable address for minutes: probe it first."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as err:
        raise SerjaxError(
            f"config field executor.address: cannot reach a Ray cluster at {address!r} "
            f"({getattr(err, 'strerror', None) or err}); check the address, or leave the "
            "field empty to start Ray on this machine"
        ) from None


def task_options(executor_cfg, cluster_gpus: float) -> dict:
    """Ray options of a fold task. A task on a share of a GPU sees only its device (Ray sets
    CUDA_VISIBLE_DEVICES) and must not let XLA take most of the GPU's memory up front."""
    gpus = float(executor_cfg.gpus_per_task)
    if gpus > 0 and not cluster_gpus:
        print("serjax: the Ray cluster has no GPU; tasks run on CPUs (gpus_per_task=0)")
        gpus = 0.0
    env = {FAULT_HOOK: os.environ[FAULT_HOOK]} if os.environ.get(FAULT_HOOK) else {}
    if gpus:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        if gpus < 1:
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.95 * gpus:.3f}"
    options = {
        "num_cpus": float(executor_cfg.cpus_per_task),
        "num_gpus": gpus,
        "max_retries": int(executor_cfg.max_retries),
        "retry_exceptions": False,  # a SerjaxError is the same on every try
        "runtime_env": {"env_vars": env},
    }
    if gpus:
        options["max_calls"] = 1  # a fresh process per task: XLA keeps a GPU until exit
    return options


@dataclasses.dataclass
class _Started:
    job: Job
    run: experiment.Run
    clock: object
    results: dict  # fold index -> result
    summary: dict | None = None  # once every fold is done


def _check_writable(job: Job) -> None:
    problem = write_problem(job.workdir)
    if problem:
        raise SerjaxError(f"--workdir {job.workdir}: cannot write there ({problem})")


def execute_on_ray(jobs: list[Job], executor_cfg, progress: bool, on_finished) -> list[dict]:
    # the driver may start JAX (feature extraction, provenance): on a GPU it must not take
    # the memory the tasks need (XLA preallocates 75 % by default; read at backend start)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    for job in jobs:
        _check_writable(job)
    with contextlib.ExitStack() as held:  # this driver owns the runs; tasks lock their folds
        for job in jobs:
            held.enter_context(locks.exclusive(job.workdir, "workdir"))
        return _execute(jobs, executor_cfg, progress, on_finished)


def _execute(jobs: list[Job], executor_cfg, progress: bool, on_finished) -> list[dict]:
    ray = connect(executor_cfg)
    options = task_options(executor_cfg, ray.cluster_resources().get("GPU", 0))
    remote = ray.remote(**options)(fold_task)
    started, pending = [], {}
    for job in jobs:  # corpora and feature caches are built here, once, before any task
        run, clock = experiment.start(job.config, job.workdir, progress=False, on_device=False)
        experiment.record_training_start(run, clock)
        entry = _Started(job, run, clock, {})
        started.append(entry)
        machine = machine_fields(job.config)
        for k in range(len(run.fold_names)):
            if run.fold_path(run.fold_names[k]).exists():
                entry.results[k] = experiment.run_fold(run, k)  # finished: read back
            else:
                pending[remote.remote(str(job.workdir), k, machine)] = (entry, k)
    failures = _wait_all(ray, pending, started, progress, on_finished)
    if failures:
        listed = "\n".join(f"  {name}: {error} (log: {log})" for name, error, log in failures)
        raise SerjaxError(
            f"{len(failures)} of the sweep's fold tasks failed for good; the others' results "
            f"are kept and a rerun of the same command resumes:\n{listed}"
        )
    return [entry.summary for entry in started]


def _wait_all(ray, pending: dict, started: list, progress: bool, on_finished) -> list:
    """Collect the tasks as they end (a bar over fold-epochs, with tasks done/running/failed);
    Ctrl-C cancels every task and leaves the workdirs resumable."""
    from tqdm.auto import tqdm

    total_tasks = len(pending)
    epochs = sum(e.run.config.train.epochs for e, _ in pending.values())
    bar = tqdm(total=epochs, unit="fold-epoch", disable=not progress, desc="fold tasks")
    failures, done, since = [], 0, time.time()
    for entry in started:
        _finish_if_complete(entry, on_finished)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                entry, k = pending.pop(ref)
                name = entry.run.fold_names[k]
                try:
                    entry.results[k] = ray.get(ref)
                    entry.clock.record(trained=name)
                except Exception as err:  # reported with its log at the end
                    log = entry.run.workdir / "logs" / f"{name}.log"
                    which = f"{entry.job.name or entry.run.workdir} {name}"
                    failures.append((which, _first_line(err), log))
                done += 1
                _finish_if_complete(entry, on_finished)
            bar.n = min(epochs, _epochs_done(pending, started))
            running = _running(pending, since)
            bar.set_postfix(done=f"{done}/{total_tasks}", running=running, failed=len(failures))
            bar.refresh()
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        bar.close()
        raise SerjaxError(
            "interrupted: the fold tasks were cancelled; every workdir resumes from its last "
            "checkpoint when the same command runs again"
        ) from None
    bar.close()
    return failures


def _first_line(err: Exception) -> str:
    cause = getattr(err, "cause", None)
    text = str(cause if isinstance(cause, SerjaxError) else err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _running(pending: dict, since: float) -> int:
    """Tasks a worker has started: their fold's log was opened after the driver began."""
    count = 0
    for entry, k in pending.values():
        log = entry.run.workdir / "logs" / f"{entry.run.fold_names[k]}.log"
        try:
            count += log.stat().st_mtime >= since
        except OSError:
            pass
    return count


def _epochs_done(pending: dict, started: list) -> int:
    """Fold-epochs done so far: finished folds count whole, running ones by metrics.jsonl."""
    total = 0
    for entry in started:
        per_fold = entry.run.config.train.epochs
        lines = _metric_lines(entry.run.workdir / "metrics.jsonl")
        seeds = len(entry.run.seeds)
        total += min(lines // max(seeds, 1), per_fold * len(entry.run.fold_names))
    return total


def _metric_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _finish_if_complete(entry: _Started, on_finished) -> None:
    if entry.summary is not None or len(entry.results) < len(entry.run.fold_names):
        return
    results = [entry.results[k] for k in range(len(entry.run.fold_names))]
    entry.summary = experiment.finish(entry.run, results, entry.clock)
    if on_finished is not None:
        on_finished(entry.job, entry.summary)
