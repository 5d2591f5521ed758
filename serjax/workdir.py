"""A run's workdir bookkeeping: the config it was made for, the software that trained it,
its wall-time ledger, and what it already holds (finished folds, checkpoints, a summary)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from serjax.errors import SerjaxError
from serjax.fileio import read_json, write_json

# Config fields added after runs were saved, with the value that does what those runs did:
# a saved config without the field equals a current one that has this value.
ADDED_FIELDS = {
    "data.normalisation": "per_band",
    "model.conv_impl": "auto",
    "model.compute_dtype": "float32",
    "train.scan_epoch": False,
    "train.deterministic": False,
}


def comparable_config(config) -> dict:
    """The config as JSON, without fields that may change between a run and its resumption."""
    d = json.loads(config.to_json())
    d.pop("cache_dir", None)
    d.pop("executor", None)  # where a run executes never changes its results
    d.pop("log", None)  # nor what it logs besides metrics.jsonl
    d["data"].pop("load_workers", None)
    return d


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: dict, current: dict) -> list[str]:
    """The dotted fields whose values differ between a saved config and the current one."""
    a, b = _flat(saved), _flat(current)
    for field, old_behaviour in ADDED_FIELDS.items():
        if field not in a and b.get(field) == old_behaviour:
            b.pop(field)
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def check_workdir_config(config, workdir: Path) -> None:
    """Refuse a workdir that holds a run of another config; record this one's config."""
    path = workdir / "config.json"
    if (workdir / "sweep.json").exists():
        raise SerjaxError(
            f"workdir {workdir} holds a sweep (sweep.json): pass the sweep's --config, or "
            "give this run another --workdir"
        )
    if path.exists():
        saved = read_json(path)
        differences = config_differences(saved.get("config", {}), comparable_config(config))
        if not differences:
            return
        listed = _listed(differences)
        if has_results(workdir):
            raise SerjaxError(
                f"workdir {workdir} holds a run of a different config ({path}; fields "
                f"that differ: {listed}); use another --workdir, or delete that one to start over"
            )
        # an earlier start that stopped before training anything (a bad corpus, a bad field):
        # nothing of it is kept but its config and fold assignment, which the new config replaces
        print(
            f"serjax: {workdir} held only an untrained start with another config ({listed}); "
            "starting over with this one"
        )
        (workdir / "folds.json").unlink(missing_ok=True)
        (workdir / "corpus_fingerprint.json").unlink(missing_ok=True)
    # the versions are added by record_environment when this invocation starts training
    write_json(path, {"config": comparable_config(config)})


def has_trained_work(workdir: Path) -> bool:
    """Whether a workdir holds work to resume: a finished fold or a checkpoint."""
    return any((workdir / "folds").glob("*.json")) or any((workdir / "checkpoints").glob("*/*"))


def has_results(workdir: Path) -> bool:
    """Whether a workdir holds a run: a summary or work to resume."""
    return (workdir / "summary.json").exists() or has_trained_work(workdir)


def record_environment(workdir: Path, environment: dict) -> None:
    """config.json's "versions" describe the software that trains (written when training
    starts). Earlier ones move to "earlier_versions" while work they trained is kept; a run
    trained again from nothing (a committed results folder: git keeps no checkpoints) drops
    them, as the wall-time ledger drops their invocations."""
    path = workdir / "config.json"
    saved = read_json(path)
    if saved.get("versions") != environment:
        if saved.get("versions") and has_trained_work(workdir):
            saved.setdefault("earlier_versions", []).append(saved["versions"])
        saved["versions"] = environment
        write_json(path, saved)


def software_environment() -> dict:
    """The software and devices that train: recorded in config.json as "versions"."""
    import flax
    import jax
    import optax
    import orbax.checkpoint

    from serjax.xla_options import compiler_options, host_allocator_state

    return {
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "orbax": orbax.checkpoint.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "git_commit": git_commit(),
        "host_allocator": host_allocator_state(),
        "compiler_options": compiler_options(),
    }


def git_commit(here: Path | None = None) -> str | None:
    """The commit of the serjax checkout that ran, with '+dirty' when its tracked files differ
    from it outside results/ (a run rewriting the committed results it reproduces, as
    `python launch.py` does, changes no software)."""
    if os.environ.get("SERJAX_GIT_COMMIT"):
        # set by whoever ships a copy of the tree elsewhere (its .git, if any, may be stale)
        return os.environ["SERJAX_GIT_COMMIT"]
    here = here or Path(__file__).resolve().parent

    def git(*args, check=False):
        return subprocess.run(
            ["git", *args], cwd=here, capture_output=True, text=True, timeout=5, check=check
        )

    try:
        commit = git("rev-parse", "HEAD", check=True).stdout.strip()
        status = ("status", "--porcelain", "--untracked-files=no")
        done = git(*status, "--", ":(top)", ":(top,exclude)results")
        if done.returncode != 0:  # a git without pathspec magic: every change counts
            done = git(*status, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if done.stdout.strip() else "")


class WallClock:
    """A run's wall time over every invocation that worked on it, kept in wall_time.json:
    one entry per invocation, rewritten after each fold it trains. Earlier entries count
    only while their work is there to resume: a workdir without it starts a new ledger."""

    def __init__(self, path: Path):
        self.path, self.started = path, time.time()
        resumable = has_trained_work(path.parent)
        self.earlier = read_json(path)["invocations"] if resumable and path.exists() else []
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started))
        self.entry = {"started": started, "seconds": 0.0, "folds_trained": []}

    def record(self, trained: str | None = None) -> tuple[float, int]:
        """Write this invocation's time so far; return (total seconds, invocations)."""
        if trained is not None:
            self.entry["folds_trained"].append(trained)
        self.entry["seconds"] = round(time.time() - self.started, 1)
        invocations = self.earlier + [self.entry]
        total = round(sum(e["seconds"] for e in invocations), 1)
        write_json(self.path, {"total_s": total, "invocations": invocations})
        return total, len(invocations)


def _tuples(value):
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def machine_fields(config) -> dict:
    """The config fields that belong to the machine, not to the run (never compared)."""
    return {
        "cache_dir": config.cache_dir,
        "data.load_workers": config.data.load_workers,
        "executor.compilation_cache": bool(config.executor.get("compilation_cache", True)),
    }


def saved_config(workdir: Path, machine: dict):
    """The config a workdir was started with, as a ConfigDict, with this machine's
    machine-local fields (`machine_fields` of the current config)."""
    import ml_collections

    saved = read_json(Path(workdir) / "config.json")["config"]
    config = ml_collections.ConfigDict(_tuples(saved))
    config.cache_dir = machine["cache_dir"]
    config.data.load_workers = machine["data.load_workers"]
    return config


def check_sweep_workdir(config, workdir: Path, members: dict, write: bool) -> None:
    """Refuse a workdir that holds another sweep (or a single run) for this sweep's config;
    with `write`, record the sweep's config in sweep.json. A sweep folder older than
    sweep.json is checked through the run folders it holds. `members`: name -> run config."""
    workdir = Path(workdir)
    path = workdir / "sweep.json"
    current = comparable_config(config)
    name = f"{config.sweep.name} ({config.sweep.variant})"
    if (workdir / "config.json").exists():
        raise SerjaxError(
            f"workdir {workdir} holds a single run, not a sweep; give the sweep another --workdir"
        )
    if path.exists():
        saved = read_json(path)
        differences = [
            d
            for d in config_differences(saved["config"], current)
            if not d.startswith("sweep.grid.")  # a grid may be narrowed or widened in place
        ]
        if differences:
            raise SerjaxError(
                f"workdir {workdir} holds the sweep {saved['sweep']} ({saved['variant']}), "
                f"not {name} (fields that differ: {_listed(differences)}); use the sweep's "
                "own --config, or another --workdir"
            )
    elif workdir.is_dir():
        for run in sorted(p for p in workdir.iterdir() if (p / "config.json").is_file()):
            if run.name not in members:
                raise SerjaxError(
                    f"workdir {workdir} holds {run.name}, which is not a run of the sweep {name}; "
                    "use the sweep's own --config, or another --workdir"
                )
            saved = read_json(run / "config.json").get("config", {})
            differences = config_differences(saved, comparable_config(members[run.name]))
            if differences:
                raise SerjaxError(
                    f"workdir {workdir}: its run {run.name} was made with another config than "
                    f"the sweep {name} gives it (fields that differ: {_listed(differences)}); "
                    "use the sweep's own --config, or another --workdir"
                )
    if write:
        sweep = {"sweep": config.sweep.name, "variant": config.sweep.variant, "config": current}
        write_json(path, sweep)


def _listed(fields: list[str]) -> str:
    return ", ".join(fields[:5]) + (", …" if len(fields) > 5 else "")


def sweep_of_member(workdir: Path) -> dict | None:
    """The sweep.json of the sweep a run workdir belongs to, if it is one's member."""
    path = Path(workdir).resolve().parent / "sweep.json"
    return read_json(path) if path.is_file() else None
