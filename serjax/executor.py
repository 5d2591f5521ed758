"""Where a run's (run, fold) units execute: inline, one after another in this process (the
default), or as Ray tasks over every GPU of a machine or a cluster (`executor.name=ray`).

Both paths run the same unit, `experiment.run_fold`, and finish a run the same way
(`experiment.finish`). On Ray, the driver first starts every run here (config check, corpus,
folds, feature caches: built once, before any task), then each task reopens its run from
the workdir, which must be on a file system every node sees.
"""

from __future__ import annotations

from serjax import experiment
from serjax.errors import SerjaxError
from serjax.tasks import Job

EXECUTORS = ("inline", "ray")


def check_executor(executor_cfg) -> str:
    name = executor_cfg.name
    if name not in EXECUTORS:
        raise SerjaxError(f"config field executor.name: {name!r} is not one of {EXECUTORS}")
    for field in ("gpus_per_task", "cpus_per_task"):
        if float(executor_cfg[field]) < 0:
            raise SerjaxError(
                f"config field executor.{field}: need >= 0, got {executor_cfg[field]}"
            )
    if int(executor_cfg.max_retries) < 0:
        raise SerjaxError(
            f"config field executor.max_retries: need >= 0, got {executor_cfg.max_retries}"
        )
    return name


def execute(jobs: list[Job], executor_cfg, progress: bool = True, on_finished=None) -> list[dict]:
    """Every job's unfinished folds, then its summary; returns the summaries in job order.
    `on_finished(job, summary)` runs as each job's summary is written (e.g. its report)."""
    if check_executor(executor_cfg) == "inline":
        summaries = []
        for job in jobs:
            if job.name:
                print(job.name)
            summaries.append(experiment.run(job.config, job.workdir, progress=progress))
            if on_finished is not None:
                on_finished(job, summaries[-1])
        return summaries
    from serjax.ray_executor import execute_on_ray

    return execute_on_ray(jobs, executor_cfg, progress, on_finished)
