"""Process and compiler settings: serjax.host (huge pages for malloc, entry points only) and
serjax.xla_options (XLA's CPU compiler options, the allocator's provenance record). They
change speed and float rounding at most."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from serjax import host, xla_options
from serjax.data import FoldData
from serjax.errors import SerjaxError
from serjax.model import SERCNN
from serjax.seeds import seed_keys
from serjax.train import Trainer

RNG = np.random.default_rng(3)
ROOT = Path(__file__).resolve().parents[1]


def _close(a, b, rtol, atol):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)


def test_cpu_compiler_options_give_the_same_train_steps():
    """Three train steps of the tiny model compiled with serjax's CPU options and with XLA's
    defaults: same losses, parameters and batch statistics within float32 tolerance. (Plain
    SGD: Adam would turn rounding noise in the conv biases' gradients, which BatchNorm makes
    exactly zero in exact arithmetic, into ±lr steps.)"""
    options = xla_options.compiler_options()
    if options is None:
        pytest.skip("not on the CPU backend, or this jaxlib lacks the option")
    model = SERCNN(num_classes=4, widths=(4, 4, 8, 8, 8, 8))
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    U, shape = 24, (32, 41)
    data = FoldData.of(
        RNG.normal(size=(U, *shape)).astype(np.float16),
        RNG.integers(0, 4, U).astype(np.int32),
        np.zeros(shape[0], np.float32),
        np.ones(shape[0], np.float32),
        np.ones(4, np.float32),
    )
    runs = []
    for opts in (None, options):
        trainer = Trainer(model, tx, 2.0, "auto", opts)
        states = trainer.init(seed_keys([0], 0), shape)
        stats = []
        for step in range(3):
            rows = jnp.asarray(np.arange(8 * step, 8 * step + 8)[None])
            states, s = trainer.train_step(states, rows, data, jnp.float32(0.1))
            stats.append(s)
        runs.append((stats, states.params, states.batch_stats))
    _close(runs[0], runs[1], rtol=1e-4, atol=1e-5)


def test_compiler_options_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("SERJAX_CPU_COMPILER", "default")
    assert xla_options.compiler_options() is None
    monkeypatch.setenv("SERJAX_CPU_COMPILER", "fast")
    with pytest.raises(SerjaxError, match="SERJAX_CPU_COMPILER='fast'"):
        xla_options.compiler_options()


def test_the_allocator_record_reads_what_the_process_was_started_with(monkeypatch):
    """The provenance record (config.json "versions") says whether huge pages are on, from the
    environment and the kernel's mode, changing nothing."""
    monkeypatch.setattr(xla_options, "_thp_mode", lambda: "madvise")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")
    state = xla_options.host_allocator_state()
    assert state == {
        "huge_pages": {
            "on": True,
            "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1",
            "thp_mode": "madvise",
        }
    }
    monkeypatch.delenv("GLIBC_TUNABLES")
    assert xla_options.host_allocator_state()["huge_pages"]["on"] is False
    monkeypatch.setattr(xla_options, "_thp_mode", lambda: "always")  # the kernel does it anyway
    assert xla_options.host_allocator_state()["huge_pages"]["on"] is True


def test_the_library_never_imports_the_process_tuning():
    """serjax.host restarts the program: only entry points (launch.py, bench/) may import it."""
    imports_host = re.compile(
        r"^\s*(from serjax\.host import|import serjax\.host\b|from serjax import .*\bhost\b)",
        re.MULTILINE,
    )
    library = [p for p in (ROOT / "serjax").rglob("*.py") if p.name != "host.py"]
    assert library and imports_host.search("from serjax import cli, host")
    for path in library:
        assert not imports_host.search(path.read_text()), path


def test_huge_pages_are_asked_for_only_where_glibc_and_the_kernel_can_give_them():
    env = host.huge_pages_env
    linux, ok = "linux", (2, 36)
    assert env({}, linux, "madvise", ok) == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    assert env({"SERJAX_MALLOC": "HugePages"}, linux, "madvise", ok) == {
        "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"
    }
    # other tunables are kept; one already naming hugetlb is left alone
    assert env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, linux, "madvise", ok) == {
        "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    }
    assert env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, linux, "madvise", ok) is None
    assert env({"SERJAX_MALLOC": "default"}, linux, "madvise", ok) is None
    assert env({}, "darwin", "madvise", ok) is None
    assert env({}, linux, "always", ok) is None  # the kernel already does it
    assert env({}, linux, "never", ok) is None
    assert env({}, linux, None, ok) is None
    assert env({}, linux, "madvise", (2, 34)) is None  # the tunable came with glibc 2.35
    assert env({}, linux, "madvise", None) is None


def test_a_bad_malloc_setting_is_one_clear_error():
    assert host.malloc_mode({}) == "hugepages"
    with pytest.raises(SerjaxError, match="SERJAX_MALLOC='fast'"):
        host.malloc_mode({"SERJAX_MALLOC": "fast"})
    # the mallopt-tuned mode is gone
    with pytest.raises(SerjaxError, match="SERJAX_MALLOC='tuned'"):
        host.malloc_mode({"SERJAX_MALLOC": "tuned"})


def test_reexec_restarts_once_with_the_tunable_and_keeps_the_arguments(tmp_path):
    script = tmp_path / "show.py"
    script.write_text(
        "import json, os, sys\n"
        "from serjax import host, xla_options\n"
        "print('start', flush=True)\n"
        "host.reexec_with_huge_pages()\n"
        "print(json.dumps({'tunables': os.environ.get('GLIBC_TUNABLES'), 'argv': sys.argv[1:],\n"
        "                  'on': xla_options.host_allocator_state()['huge_pages']['on']}))\n"
    )

    def run(**extra):
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("GLIBC_TUNABLES", "SERJAX_MALLOC", "SERJAX_REEXECUTED")
        }
        # this checkout's serjax, however (or whether) it is installed
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        out = subprocess.run(
            [sys.executable, str(script), "a", "--b=1"],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        return out.count("start"), json.loads(out.strip().splitlines()[-1])

    expected = host.huge_pages_env({}, sys.platform, xla_options._thp_mode(), host._glibc_version())
    starts, shown = run()
    assert shown["argv"] == ["a", "--b=1"]
    if expected:
        assert starts == 2 and shown["tunables"] == expected["GLIBC_TUNABLES"] and shown["on"]
    else:
        assert starts == 1 and shown["tunables"] is None
    starts, shown = run(SERJAX_MALLOC="default")
    assert starts == 1 and shown["tunables"] is None and not shown["on"]


def test_launch_names_a_bad_malloc_setting_in_one_line():
    launch = ROOT / "launch.py"
    res = subprocess.run(
        [sys.executable, str(launch), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SERJAX_MALLOC": "fast"},
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "serjax: error: environment variable SERJAX_MALLOC='fast': use one of ('hugepages', "
        "'default') (unset: hugepages)"
    ]


def test_deterministic_adds_xla_deterministic_ops_on_a_gpu_only(monkeypatch):
    """train.deterministic: XLA's deterministic GPU ops on a GPU backend, nothing on the CPU
    (deterministic already); the CPU's own options stay as they are."""
    det = xla_options.GPU_DETERMINISTIC_OPTIONS
    assert det == {"xla_gpu_deterministic_ops": True}
    assert xla_options.compiler_options("gpu", deterministic=True) == det
    assert xla_options.compiler_options("cuda", deterministic=True) == det
    assert xla_options.compiler_options("gpu") is None
    assert xla_options.compiler_options("tpu", deterministic=True) is None
    cpu = xla_options.compiler_options("cpu")
    assert xla_options.compiler_options("cpu", deterministic=True) == cpu
    if jax.default_backend() == "cpu":
        assert xla_options.compiler_options() == cpu
    # the option is one this jaxlib's compiler accepts (its debug options are every backend's)
    assert xla_options._options_supported(tuple(det.items()))
    monkeypatch.setenv("SERJAX_CPU_COMPILER", "default")
    assert xla_options.compiler_options("cpu", deterministic=True) is None
    assert xla_options.compiler_options("gpu", deterministic=True) == det


def test_the_deterministic_field_reaches_the_trainers_compiler_options(monkeypatch):
    """train.deterministic is passed on to the jit of every step (as on a GPU, where
    compiler_options gives the flag; on this CPU it gives none)."""
    from serjax import train
    from serjax.configlib import base_config
    from serjax.model import build_model

    monkeypatch.setattr(
        train, "compiler_options", lambda **kw: xla_options.compiler_options("gpu", **kw)
    )
    made = []
    monkeypatch.setattr(train, "_cached_trainer", lambda *args: made.append(args[-1]))
    config = base_config()
    assert config.train.deterministic is False
    model = build_model(config.model, 4)
    train.trainer_for(model, config.train)
    config.train.deterministic = True  # a bool field: the command line's --config.train.…=True
    train.trainer_for(model, config.train)
    flag = ("xla_gpu_deterministic_ops", True)
    assert flag not in (made[0] or ()) and flag in made[1]
