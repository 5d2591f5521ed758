"""The CPU fast path (serjax/cpu_tuning.py and the fused layers in serjax/model.py) computes
what the plain flax/XLA path computes: same outputs, gradients and updated state."""

import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from serjax import cpu_tuning
from serjax.errors import SerjaxError
from serjax.model import SERCNN, BatchNormReLU, Conv3x3, avg_pool_2x2, he_normal
from serjax.train import Trainer, seed_keys

RNG = np.random.default_rng(3)
ROOT = Path(__file__).resolve().parents[1]


class FlaxBatchNormReLU(nn.Module):
    """The plain pair BatchNormReLU replaces."""

    @nn.compact
    def __call__(self, x, train: bool):
        return nn.relu(
            nn.BatchNorm(
                use_running_average=not train, momentum=0.9, epsilon=1e-5, name="BatchNorm_0"
            )(x)
        )


class Fused(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        return BatchNormReLU(momentum=0.9, epsilon=1e-5, name="BatchNorm_0")(x, train)


def _close(a, b, rtol=2e-5, atol=2e-6):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)


def test_batch_norm_relu_matches_flax_outputs_gradients_and_running_stats():
    x = jnp.asarray(RNG.normal(1.5, 2.0, (4, 6, 10, 5)), jnp.float32)
    cot = jnp.asarray(RNG.normal(size=x.shape), jnp.float32)
    ref, fused = FlaxBatchNormReLU(), Fused()
    v_ref = ref.init(jax.random.PRNGKey(0), x, False)
    v_fused = fused.init(jax.random.PRNGKey(0), x, False)
    _close(v_ref, v_fused)  # same parameter and statistics names, shapes, initial values
    # non-trivial scale and bias, so their gradients are exercised
    params = {
        "BatchNorm_0": {
            "scale": jnp.asarray(RNG.normal(1, 0.3, 5), jnp.float32),
            "bias": jnp.asarray(RNG.normal(0, 0.5, 5), jnp.float32),
        }
    }

    def loss(model, variables):
        def f(p, x_):
            y, upd = model.apply(
                {"params": p, "batch_stats": variables["batch_stats"]},
                x_,
                True,
                mutable=["batch_stats"],
            )
            return jnp.sum(y * cot), (y, upd)

        (value, (y, upd)), grads = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(params, x)
        return value, y, upd, grads

    out_ref, out_fused = loss(ref, v_ref), loss(fused, v_fused)
    _close(out_ref, out_fused)
    assert float(jnp.abs(out_fused[3][1]).max()) > 0  # the input gradient is not trivially zero
    # eval mode uses the running statistics
    stats = out_ref[2]
    _close(
        ref.apply({"params": params, **stats}, x, False),
        fused.apply({"params": params, **stats}, x, False),
    )


def test_batch_norm_relu_statistics_outputs_have_their_gradients():
    """The batch mean and variance are outputs too: their VJP is the textbook one."""
    from serjax.model import batch_norm_relu

    x = jnp.asarray(RNG.normal(size=(3, 4, 2)), jnp.float32)
    scale, bias = jnp.ones(2), jnp.zeros(2)

    def plain(x_):
        mean = x_.mean((0, 1))
        var = jnp.maximum((x_ * x_).mean((0, 1)) - mean * mean, 0.0)
        return mean.sum() + 3.0 * var.sum()

    def fused(x_):
        _, mean, var = batch_norm_relu(x_, scale, bias, 1e-5)
        return mean.sum() + 3.0 * var.sum()

    _close(jax.grad(plain)(x), jax.grad(fused)(x))


@pytest.mark.parametrize("shape", [(2, 8, 12, 3), (2, 9, 13, 3)])
def test_avg_pool_matches_flax_forward_and_backward(shape):
    x = jnp.asarray(RNG.normal(size=shape), jnp.float32)
    ref = lambda x_: nn.avg_pool(x_, (2, 2), strides=(2, 2))  # noqa: E731
    _close(ref(x), avg_pool_2x2(x))
    cot = jnp.asarray(RNG.normal(size=ref(x).shape), jnp.float32)
    _close(
        jax.grad(lambda x_: jnp.sum(ref(x_) * cot))(x),
        jax.grad(lambda x_: jnp.sum(avg_pool_2x2(x_) * cot))(x),
    )


@pytest.mark.parametrize("channels_in", [1, 3])
def test_conv3x3_matches_flax_conv_parameters_outputs_and_gradients(channels_in):
    """Conv3x3 is nn.Conv(…, (3, 3), 'SAME') with the same parameter tree and initial values;
    the one-channel case (block 1, the shifted sum on the CPU) and the general one give
    nn.Conv's outputs, kernel and bias gradients, and input gradient."""
    x = jnp.asarray(RNG.normal(size=(2, 7, 10, channels_in)), jnp.float32)
    ref, ours = nn.Conv(5, (3, 3), padding="SAME", kernel_init=he_normal), Conv3x3(5)
    v_ref, v_ours = ref.init(jax.random.PRNGKey(1), x), ours.init(jax.random.PRNGKey(1), x)
    _close(v_ref, v_ours, rtol=0, atol=0)
    params = {
        "params": {
            "kernel": v_ref["params"]["kernel"],
            "bias": jnp.asarray(RNG.normal(size=5), jnp.float32),
        }
    }
    cot = jnp.asarray(RNG.normal(size=(2, 7, 10, 5)), jnp.float32)

    def outputs_and_grads(model):
        f = lambda p, x_: jnp.sum(model.apply(p, x_) * cot)  # noqa: E731
        return jax.jit(model.apply)(params, x), jax.jit(jax.grad(f, argnums=(0, 1)))(params, x)

    _close(outputs_and_grads(ref), outputs_and_grads(ours), rtol=1e-5, atol=1e-5)
    # the borders: a map of ones and a kernel of ones count each output's in-image neighbours
    ones = jnp.ones((1, 4, 5, channels_in), jnp.float32)
    counts = ours.apply(
        {"params": {"kernel": jnp.ones((3, 3, channels_in, 5)), "bias": jnp.zeros(5)}}, ones
    )
    assert (
        float(counts[0, 0, 0, 0]) == 4 * channels_in
        and float(counts[0, 1, 1, 0]) == 9 * channels_in
    )


def test_block_one_forward_is_the_shifted_sum_on_the_cpu():
    """On the CPU block 1's forward pass has no convolution (the shifted sum replaced XLA's
    4x slower one-channel convolution); its gradient is still the convolution's VJP."""
    from serjax.model import single_channel_conv3x3

    x, k = jnp.ones((1, 4, 5, 1)), jnp.ones((3, 3, 1, 2))
    forward = str(jax.make_jaxpr(single_channel_conv3x3)(x, k))
    backward = str(jax.make_jaxpr(jax.grad(lambda k_: single_channel_conv3x3(x, k_).sum()))(k))
    assert ("conv_general_dilated" in forward) == (jax.default_backend() != "cpu")
    assert "conv_general_dilated" in backward


def test_cpu_compiler_options_give_the_same_train_steps():
    """Three train steps of the tiny model compiled with serjax's CPU options and with XLA's
    defaults: same losses, parameters and batch statistics within float32 tolerance. (Plain
    SGD: Adam would turn rounding noise in the conv biases' gradients, which BatchNorm makes
    exactly zero in exact arithmetic, into ±lr steps.)"""
    options = cpu_tuning.compiler_options()
    if options is None:
        pytest.skip("not on the CPU backend, or this jaxlib lacks the option")
    model = SERCNN(num_classes=4, widths=(4, 4, 8, 8, 8, 8))
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    U, shape = 24, (32, 41)
    data = jnp.asarray(RNG.normal(size=(U, *shape)), jnp.float16)
    labels = jnp.asarray(RNG.integers(0, 4, U), jnp.int32)
    weights, mean, std = jnp.ones(4), jnp.zeros(shape[0]), jnp.ones(shape[0])
    runs = []
    for opts in (None, options):
        trainer = Trainer(model, tx, 2.0, U, "auto", opts)
        states = trainer.init(seed_keys([0], 0), shape)
        stats = []
        for step in range(3):
            rows = jnp.asarray(np.arange(8 * step, 8 * step + 8)[None])
            states, s = trainer.train_step(
                states, rows, data, labels, weights, mean, std, jnp.float32(0.1)
            )
            stats.append(s)
        runs.append((stats, states.params, states.batch_stats))
    _close(runs[0], runs[1], rtol=1e-4, atol=1e-5)


def test_compiler_options_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("SERJAX_CPU_COMPILER", "default")
    assert cpu_tuning.compiler_options() is None
    monkeypatch.setenv("SERJAX_CPU_COMPILER", "fast")
    with pytest.raises(SerjaxError, match="SERJAX_CPU_COMPILER='fast'"):
        cpu_tuning.compiler_options()


def test_host_allocator_tuning_is_opt_in_and_idempotent(monkeypatch):
    monkeypatch.setattr(cpu_tuning, "_ALLOCATOR_STATE", {})
    monkeypatch.delenv("SERJAX_MALLOC", raising=False)
    off = cpu_tuning.tune_host_allocator()
    assert off["tuned"] is False and "SERJAX_MALLOC=tuned" in off["why"]
    assert cpu_tuning.tune_host_allocator(True) == off  # decided once per process
    monkeypatch.setattr(cpu_tuning, "_ALLOCATOR_STATE", {})
    monkeypatch.setenv("SERJAX_MALLOC", "tuned")
    on = cpu_tuning.tune_host_allocator()
    if sys.platform.startswith("linux"):
        assert on["tuned"] is True and all(on["mallopt"].values())
    assert cpu_tuning.allocator_state() == on


def test_huge_pages_are_asked_for_only_where_glibc_and_the_kernel_can_give_them():
    env = cpu_tuning.huge_pages_env
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
    for mode in ("default", "tuned"):
        assert env({"SERJAX_MALLOC": mode}, linux, "madvise", ok) is None
    assert env({}, "darwin", "madvise", ok) is None
    assert env({}, linux, "always", ok) is None  # the kernel already does it
    assert env({}, linux, "never", ok) is None
    assert env({}, linux, None, ok) is None
    assert env({}, linux, "madvise", (2, 34)) is None  # the tunable came with glibc 2.35
    assert env({}, linux, "madvise", None) is None


def test_a_bad_malloc_setting_is_one_clear_error():
    from serjax.errors import SerjaxError

    assert cpu_tuning.malloc_mode({}) == "hugepages"
    with pytest.raises(SerjaxError, match="SERJAX_MALLOC='fast'"):
        cpu_tuning.malloc_mode({"SERJAX_MALLOC": "fast"})


def test_reexec_restarts_once_with_the_tunable_and_keeps_the_arguments(tmp_path):
    import os
    import subprocess

    script = tmp_path / "show.py"
    script.write_text(
        "import json, os, sys\n"
        "from serjax import cpu_tuning\n"
        "print('start', flush=True)\n"
        "cpu_tuning.reexec_with_huge_pages()\n"
        "print(json.dumps({'tunables': os.environ.get('GLIBC_TUNABLES'), 'argv': sys.argv[1:],\n"
        "                  'on': cpu_tuning.huge_pages_state()['on']}))\n"
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

    import json

    expected = cpu_tuning.huge_pages_env(
        {}, sys.platform, cpu_tuning._thp_mode(), cpu_tuning._glibc_version()
    )
    starts, shown = run()
    assert shown["argv"] == ["a", "--b=1"]
    if expected:
        assert starts == 2 and shown["tunables"] == expected["GLIBC_TUNABLES"] and shown["on"]
    else:
        assert starts == 1 and shown["tunables"] is None
    starts, shown = run(SERJAX_MALLOC="default")
    assert starts == 1 and shown["tunables"] is None and not shown["on"]


def test_launch_names_a_bad_malloc_setting_in_one_line():
    import os
    import subprocess
    from pathlib import Path

    launch = Path(__file__).resolve().parents[1] / "launch.py"
    res = subprocess.run(
        [sys.executable, str(launch), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SERJAX_MALLOC": "fast"},
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "serjax: error: environment variable SERJAX_MALLOC='fast': use one of ('hugepages', 'tuned', "
        "'default') (unset: hugepages)"
    ]
