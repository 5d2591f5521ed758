"""The (run, fold) unit as a self-contained task: `Job` names a run, `fold_task` reopens a
started run from its workdir (config.json, folds.json, the feature cache) and runs one fold
of it, logging to <workdir>/logs/<fold>.log. Used by the Ray executor."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
import traceback
from pathlib import Path

from serjax import experiment
from serjax.errors import SerjaxError
from serjax.workdir import saved_config
from serjax.xla_options import use_compilation_cache

# test-only: a task whose fold has no marker yet kills its own worker after its first
# checkpoint (a worker lost mid-fold), to exercise retry and resume
FAULT_HOOK = "SERJAX_TEST_KILL_AFTER_CHECKPOINT"


@dataclasses.dataclass(frozen=True)
class Job:
    """One run to execute: its config and workdir (a sweep has one per grid point)."""

    config: object
    workdir: Path
    name: str = ""


def fold_task(workdir: str, k: int, machine: dict) -> dict:
    """A Ray task: the (run, fold) unit, reopened from its workdir; its output goes to
    <workdir>/logs/<fold>.log."""
    workdir = Path(workdir)
    if not (workdir / "config.json").is_file():
        raise SerjaxError(
            f"worker on {socket.gethostname()} cannot see {workdir / 'config.json'}: "
            "the workdir must be on a file system every node sees"
        )
    config = saved_config(workdir, machine)
    names = experiment.fold_names_of(workdir)
    log = workdir / "logs" / f"{names[k]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"--- {when} on {socket.gethostname()}, pid {os.getpid()}", flush=True)
        try:
            # before anything compiles: another task's compiled steps are loaded from disk
            enabled = machine.get("executor.compilation_cache", True)
            use_compilation_cache(machine["cache_dir"], enabled)
            run = experiment.prepare(config, workdir, progress=False, record=False)
            hook = _fault_hook(workdir, k)
            return experiment.run_fold(run, k, progress=False, on_checkpoint=hook)
        except BaseException:
            traceback.print_exc(file=out)
            raise


def _fault_hook(workdir: Path, k: int):
    if not os.environ.get(FAULT_HOOK):
        return None
    marker = workdir / f".killed-fold{k}"

    def kill_once():
        if not marker.exists():
            marker.write_text("killed once by the test hook\n")
            os._exit(1)

    return kill_once
