"""The Ray executor against the inline one: same results, retries that resume, GPU sharing
options, and one clear error for each way it cannot start. Ray runs embedded here with
num_cpus=2 and two logical GPUs (no GPU is used: the tasks train on the CPU)."""

import json
import os
import sys
import time

import pytest
from conftest import tiny_config

from serjax import cli
from serjax.errors import SerjaxError
from serjax.executor import execute
from serjax.tasks import FAULT_HOOK, Job, fold_task

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def embedded_ray():
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _sweep(cache, executor: str, depths=(1, 2)):
    """A 2-config × 2-fold sweep (ECA on the last 1 or 2 blocks), tiny shapes."""
    import ml_collections

    config = tiny_config(cache, epochs=2)
    config.sweep = ml_collections.ConfigDict(
        {"name": "fig8", "variant": "tiny", "grid": {"kernels": (3,), "depths": depths}}
    )
    config.executor.name = executor
    config.executor.gpus_per_task = 0.0
    return config


def _results(workdir):
    """Every fold result and summary of a sweep, without the wall time."""
    out = {}
    for path in sorted(workdir.glob("*/folds/*.json")) + sorted(workdir.glob("*/summary.json")):
        data = json.loads(path.read_text())
        for key in ("wall_time_s", "invocations"):
            data.pop(key, None)
        out[str(path.relative_to(workdir))] = data
    return out


def _first_run(results):
    return {k: v for k, v in results.items() if k.startswith("last1_k3/")}


def _report_without_times(path):
    return [line for line in path.read_text().splitlines() if "time" not in line.lower()]


@pytest.fixture(scope="module")
def inline_sweep(cache, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("inline")
    cli.train(_sweep(cache, "inline"), workdir)
    return workdir


def test_a_sweep_on_ray_equals_the_inline_sweep(embedded_ray, inline_sweep, cache, tmp_path):
    cli.train(_sweep(cache, "ray"), tmp_path)
    inline = _results(inline_sweep)
    assert len(inline) == 2 * 2 + 2 and _results(tmp_path) == inline  # bit-equal metrics
    for report in ("report.md", "last1_k3/report.md", "last2_k3/report.md"):
        assert _report_without_times(tmp_path / report) == _report_without_times(
            inline_sweep / report
        )
    log = (tmp_path / "last1_k3" / "logs" / "fold0.log").read_text()
    assert log.startswith("--- ")  # each task logs into its run's workdir
    # the tasks' processes kept their compiled steps for each other (same results above)
    assert list((cache / "jax-compilation-cache").glob("jit_*-cache"))
    # a second call finds every fold finished and trains nothing
    before = (tmp_path / "last1_k3" / "metrics.jsonl").read_text()
    cli.train(_sweep(cache, "ray"), tmp_path)
    assert (tmp_path / "last1_k3" / "metrics.jsonl").read_text() == before


def test_a_killed_task_is_retried_and_resumes(embedded_ray, inline_sweep, cache, tmp_path):
    config = _sweep(cache, "ray", depths=(1,))  # one run, two fold tasks
    config.executor.max_retries = 1
    os.environ[FAULT_HOOK] = "1"  # each fold's first attempt dies after its first checkpoint
    try:
        cli.train(config, tmp_path)
    finally:
        del os.environ[FAULT_HOOK]
    assert len(list(tmp_path.glob("*/.killed-fold*"))) == 2  # every task was killed once
    assert _results(tmp_path) == _first_run(_results(inline_sweep))


def test_a_task_that_fails_for_good_is_listed_and_the_others_kept(
    embedded_ray, inline_sweep, cache, tmp_path
):
    config = _sweep(cache, "ray", depths=(1,))
    config.executor.max_retries = 0
    os.environ[FAULT_HOOK] = "1"
    try:
        with pytest.raises(SerjaxError, match="2 of the sweep's fold tasks failed") as err:
            cli.train(config, tmp_path)
    finally:
        del os.environ[FAULT_HOOK]
    assert "logs/fold0.log" in str(err.value)
    # nothing is lost: a rerun resumes from the checkpoints the killed tasks left
    cli.train(_sweep(cache, "ray", depths=(1,)), tmp_path)
    assert _results(tmp_path) == _first_run(_results(inline_sweep))


def test_quarter_gpu_tasks_share_logical_gpus(embedded_ray):
    from serjax.configlib import base_config
    from serjax.ray_executor import task_options

    config = base_config()
    config.executor.gpus_per_task = 0.5
    config.executor.cpus_per_task = 0.25
    options = task_options(config.executor, cluster_gpus=2)

    def _probe(seconds: float) -> dict:  # defined here: Ray ships it by value
        start = time.time()
        time.sleep(seconds)
        keys = ("CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE")
        keys += ("XLA_PYTHON_CLIENT_MEM_FRACTION",)
        return {"start": start, "end": time.time(), **{k: os.environ.get(k) for k in keys}}

    probe = embedded_ray.remote(**options)(_probe)
    runs = embedded_ray.get([probe.remote(4.0) for _ in range(8)])
    assert {r["CUDA_VISIBLE_DEVICES"] for r in runs} <= {"0", "1"}
    assert {r["XLA_PYTHON_CLIENT_PREALLOCATE"] for r in runs} == {"false"}
    assert {r["XLA_PYTHON_CLIENT_MEM_FRACTION"] for r in runs} == {"0.475"}
    # two GPUs at half a GPU each: four tasks at a time, never five
    times = sorted(t for r in runs for t in ((r["start"], 1), (r["end"], -1)))
    in_flight, peak = 0, 0
    for _, step in times:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak == 4


def test_ray_not_installed_unreachable_cluster_and_unseen_workdir(cache, tmp_path, monkeypatch):
    config = tiny_config(cache)
    config.executor.name = "ray"
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(SerjaxError, match=r"needs Ray, which is not installed; pip install"):
        execute([Job(config, tmp_path / "a")], config.executor)
    monkeypatch.undo()
    from serjax.ray_executor import connect

    config.executor.address = "127.0.0.1:9"  # nothing listens there
    with pytest.raises(SerjaxError, match="executor.address: cannot reach a Ray cluster"):
        connect(config.executor)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SerjaxError, match="cannot write there"):
        execute([Job(config, blocker / "run")], config.executor)
    with pytest.raises(SerjaxError, match="cannot see .*config.json: the workdir must be on"):
        fold_task(str(tmp_path / "elsewhere"), 0, {})
    config.executor.name = "dask"
    with pytest.raises(SerjaxError, match="config field executor.name: 'dask'"):
        execute([Job(config, tmp_path / "b")], config.executor)
    assert blocker.read_text() == "" and not (tmp_path / "b").exists()


def test_the_compilation_cache_is_a_machine_field_that_turns_off(cache):
    """executor.compilation_cache travels to Ray tasks with the machine's fields (the driver's
    current value, never the run's identity), and False leaves JAX's cache alone."""
    from serjax.workdir import comparable_config, machine_fields
    from serjax.xla_options import use_compilation_cache

    config = _sweep(cache, "ray")
    assert machine_fields(config)["executor.compilation_cache"] is True
    config.executor.compilation_cache = False
    assert machine_fields(config)["executor.compilation_cache"] is False
    assert "executor" not in comparable_config(config)
    assert use_compilation_cache(cache, enabled=False) is None


def test_the_cache_is_bounded_only_where_jax_can_bound_it(tmp_path, monkeypatch):
    """JAX's size limit needs filelock: without it every cache read fails with a warning, so
    serjax then sets the folder alone (recorded here; the suite's own JAX is left alone)."""
    import importlib.util

    import jax

    from serjax import xla_options

    set_ = {}
    monkeypatch.setattr(jax.config, "update", lambda name, value: set_.__setitem__(name, value))
    path = xla_options.use_compilation_cache(tmp_path)
    assert set_ == {
        "jax_compilation_cache_dir": str(path),
        "jax_compilation_cache_max_size": xla_options.COMPILATION_CACHE_BYTES,
    }
    set_.clear()
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "filelock" else real(name)
    )
    xla_options.use_compilation_cache(tmp_path)
    assert set_ == {"jax_compilation_cache_dir": str(path)}
