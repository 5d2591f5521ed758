"""serjax.layers' fast layers compute what the plain flax layers compute: same parameters,
outputs, gradients and updated state, layer by layer and as the whole model chosen by the
config field model.conv_impl."""

import collections
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from serjax.configlib import base_config
from serjax.errors import SerjaxError
from serjax.layers import BatchNormReLU, Conv3x3, avg_pool_2x2, resolve_conv_impl
from serjax.model import build_model, he_normal

RNG = np.random.default_rng(3)


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
    from serjax.layers import batch_norm_relu

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
    ref = nn.Conv(5, (3, 3), padding="SAME", kernel_init=he_normal)
    ours = Conv3x3(5, kernel_init=he_normal)
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
    slower one-channel convolution); its gradient is still the convolution's VJP."""
    from serjax.layers import single_channel_conv3x3

    x, k = jnp.ones((1, 4, 5, 1)), jnp.ones((3, 3, 1, 2))
    forward = str(jax.make_jaxpr(single_channel_conv3x3)(x, k))
    backward = str(jax.make_jaxpr(jax.grad(lambda k_: single_channel_conv3x3(x, k_).sum()))(k))
    assert "conv_general_dilated" not in forward
    assert "conv_general_dilated" in backward
    # the model's block 1: the shifted sum where "auto" resolves for the CPU, and with "fused"
    model = build_model(_model_cfg("auto"), 4)
    x = jnp.ones((1, 32, 32))
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    jaxpr = str(jax.make_jaxpr(model.apply)(variables, x))
    convolutions = 6 if jax.default_backend() != "cpu" else 5
    assert jaxpr.count("conv_general_dilated") == convolutions


def test_auto_resolves_once_for_the_backend_and_a_bad_choice_names_the_field():
    assert resolve_conv_impl("auto", "cpu") == "fused"
    assert resolve_conv_impl("auto", "gpu") == resolve_conv_impl("auto", "tpu") == "fused_xla_conv"
    assert resolve_conv_impl("flax", "gpu") == "flax" and resolve_conv_impl("fused") == "fused"
    # build_model resolves "auto" when it builds the model, not when the model is traced
    assert build_model(_model_cfg("auto"), 4).conv_impl == resolve_conv_impl("auto")
    with pytest.raises(SerjaxError, match="config field model.conv_impl: 'xla'"):
        build_model(_model_cfg("xla"), 4)
    with pytest.raises(SerjaxError, match="config field model.conv_impl"):
        build_model(_model_cfg("fused_xla_conv"), 4)  # internal: not a config value
    # a config saved before the field existed builds what "auto" builds
    old = _model_cfg("auto")
    del old["conv_impl"]
    assert "conv_impl" not in old
    assert build_model(old, 4) == build_model(_model_cfg("auto"), 4)


def _model_cfg(conv_impl, **overrides) -> ml_collections.ConfigDict:
    cfg = base_config().model
    cfg.update(width_scale=1, conv_impl=conv_impl, **overrides)
    return cfg


def _train_step_outputs(conv_impl, x, cot, **overrides):
    """Initial variables, then train-mode logits, batch-statistics update and parameter
    gradients of the model the config builds, and its eval-mode logits."""
    if conv_impl == "fused_xla_conv":  # what "auto" builds on a GPU, run here on the CPU
        model = build_model(_model_cfg("auto", **overrides), 4).clone(conv_impl=conv_impl)
    else:
        model = build_model(_model_cfg(conv_impl, **overrides), 4)
    variables = jax.jit(model.init)(jax.random.PRNGKey(5), x)

    def loss(params):
        logits, upd = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        return jnp.sum(logits * cot), (logits, upd)

    (_, (logits, upd)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
    return variables, logits, upd, grads, jax.jit(model.apply)(variables, x)


def _scaled_close(a, b, tol):
    """Each leaf's largest difference within tol times its largest magnitude (gradients of
    the ECA-BatchNorm variant are ill-conditioned elementwise, not leaf by leaf)."""
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        assert np.abs(x - y).max() <= tol * np.abs(x).max(), jax.tree_util.keystr(path)


@pytest.mark.parametrize("eca_batch_norm", [False, True])
def test_every_conv_impl_is_the_same_model(eca_batch_norm):
    """model.conv_impl "flax", "fused" and "auto" build one model: the same parameter tree and
    initial values (checkpoints move between them), the same logits, statistics and
    gradients within float32 rounding; on the CPU "auto" is "fused", bit for bit, and what it
    builds on a GPU ("fused_xla_conv") is the same model too."""
    x = jnp.asarray(RNG.normal(size=(4, 32, 48)), jnp.float32)
    cot = jnp.asarray(RNG.normal(size=(4, 4)), jnp.float32)
    extra = dict(eca_batch_norm=eca_batch_norm)
    if eca_batch_norm:
        extra.update(eca_layers=(1, 2, 3, 4, 5, 6), eca_kernel=0)
    gpu = () if eca_batch_norm else ("fused_xla_conv",)  # the GPU's layers: one variant
    runs = {
        impl: _train_step_outputs(impl, x, cot, **extra) for impl in ("flax", "fused", "auto", *gpu)
    }
    flax_run = runs["flax"]
    for impl in ("fused", *gpu):
        fused_run = runs[impl]
        _close(flax_run[0], fused_run[0], rtol=0, atol=0)  # names, shapes, initial values
        _scaled_close(flax_run[1:3] + (flax_run[4],), fused_run[1:3] + (fused_run[4],), 1e-4)
        # a conv bias's gradient is 0 in exact arithmetic (a BatchNorm follows each conv):
        # only rounding, small next to its kernel's gradient
        grads = [jax.tree_util.tree_map(lambda a: a, run[3]) for run in (flax_run, fused_run)]
        for g in grads:
            for block in range(1, 7):
                conv = g[f"block{block}"]["Conv_0"]
                assert float(jnp.abs(conv.pop("bias")).max()) < 1e-3 * float(
                    jnp.abs(conv["kernel"]).max()
                )
        # original ECA: a BatchNorm over B pooled values per channel, less well conditioned
        _scaled_close(grads[0], grads[1], 1e-3 if eca_batch_norm else 1e-4)
    fused_run = runs["fused"]
    if jax.default_backend() == "cpu":
        _close(runs["auto"], fused_run, rtol=0, atol=0)


def _grouped_convolutions(jaxpr) -> int:
    """Convolutions whose feature_group_count is above 1 (JAX's batching of a convolution
    whose activations and kernel are both batched)."""
    import re

    return sum(int(g) > 1 for g in re.findall(r"feature_group_count=(\d+)", str(jaxpr)))


@pytest.mark.parametrize("channels_in", [1, 3])
def test_conv3x3_under_vmap_over_seeds_is_the_per_seed_convolution(channels_in):
    """jax.vmap over seeds (activations, kernel and output cotangent each per seed): forward,
    input and kernel gradients equal to each seed's own, with no grouped convolution; the
    shared-input case (evaluation: one batch, a kernel per seed) too."""
    from serjax.layers import _conv, conv3x3, single_channel_conv3x3

    S = 3
    x = jnp.asarray(RNG.normal(size=(S, 2, 7, 10, channels_in)), jnp.float32)
    k = jnp.asarray(RNG.normal(size=(S, 3, 3, channels_in, 5)), jnp.float32)
    cot = jnp.asarray(RNG.normal(size=(S, 2, 7, 10, 5)), jnp.float32)
    convs = [conv3x3] + ([single_channel_conv3x3] if channels_in == 1 else [])
    for conv in convs:

        def loss(x_, k_, c_, conv=conv):
            return jnp.sum(conv(x_, k_) ** 2 * c_)  # a cotangent that depends on the seed

        grads = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))
        per_seed = [jax.jit(jax.grad(loss, argnums=(0, 1)))(x[s], k[s], cot[s]) for s in range(S)]
        _close(grads(x, k, cot), jax.tree_util.tree_map(lambda *a: jnp.stack(a), *per_seed))
        _close(jax.jit(jax.vmap(conv))(x, k), jnp.stack([conv(x[s], k[s]) for s in range(S)]))
        vmapped_grad = jax.make_jaxpr(jax.vmap(jax.grad(loss, (0, 1))))(x, k, cot)
        assert _grouped_convolutions(vmapped_grad) == 0
        # the check has teeth: JAX's own batching of the plain convolution groups it
        plain = lambda x_, k_, c_: jnp.sum(_conv(x_, k_) ** 2 * c_)  # noqa: E731
        assert _grouped_convolutions(jax.make_jaxpr(jax.vmap(jax.grad(plain, (0, 1))))(x, k, cot))
        # one input for every seed's kernel
        shared = jax.vmap(conv, in_axes=(None, 0))(x[0], k)
        _close(shared, jnp.stack([conv(x[0], k[s]) for s in range(S)]))
    # nested vmaps (seeds × something else) keep the per-index rule
    nested = jax.vmap(jax.vmap(conv3x3))(x[None].repeat(2, 0), k[None].repeat(2, 0))
    _close(nested[1], jax.vmap(conv3x3)(x, k))


def _tiny_setup():
    """A tiny model, its SGD trainer's pieces and a fold's data (24 rows of 32 × 41)."""
    import optax

    from serjax.data import FoldData
    from serjax.model import SERCNN

    rng = np.random.default_rng(11)
    U, shape = 24, (32, 41)
    data = FoldData.of(
        rng.normal(size=(U, *shape)).astype(np.float16),
        rng.integers(0, 4, U).astype(np.int32),
        np.zeros(shape[0], np.float32),
        np.ones(shape[0], np.float32),
        np.ones(4, np.float32),
    )
    model = SERCNN(num_classes=4, widths=(4, 4, 8, 8, 8, 8))
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    return rng, data, model, tx, shape


def _tiny_trainer_run(strategy, steps=3):
    """Per-step stats, parameters, batch statistics and eval logits of 2 seeds trained
    together (plain SGD: Adam turns rounding noise in the conv biases' gradients, zero in
    exact arithmetic, into ±lr steps)."""
    from serjax.seeds import seed_keys
    from serjax.train import Trainer

    rng, data, model, tx, shape = _tiny_setup()
    trainer = Trainer(model, tx, 2.0, strategy)
    states = trainer.init(seed_keys([0, 1], 0), shape)
    rows = [jnp.asarray(rng.integers(0, data.labels.shape[0], (2, 8))) for _ in range(steps)]
    compiled = trainer.train_step.lower(states, rows[0], data, jnp.float32(0.1)).compile()
    grouped = _grouped_convolutions(compiled.as_text()) + _grouped_convolutions(
        trainer.eval_step.lower(states, rows[0][0], data).as_text()
    )
    ops = collections.Counter(re.findall(r"= \S+ ([a-z-]+)\(", compiled.as_text()))
    stats = []
    for r in rows:
        states, s = trainer.train_step(states, r, data, jnp.float32(0.1))
        stats.append(s)
    logits = trainer.predict(states, data, np.arange(data.labels.shape[0]), 16)
    return (stats, states.params, states.batch_stats, logits), grouped, ops


def test_a_vmapped_train_step_over_two_seeds_equals_unroll():
    """train.seed_strategy=vmap (jax.vmap of the single-seed train step) and unroll: the
    step's vmap rule makes them one program (XLA's compiled ops counted alike, no grouped
    convolution), so losses, parameters, statistics and predictions agree bit for bit on the
    CPU."""
    vmapped, grouped, vmap_ops = _tiny_trainer_run("vmap")
    unrolled, _, unroll_ops = _tiny_trainer_run("unroll")
    assert grouped == 0
    assert vmap_ops == unroll_ops and sum(vmap_ops.values()) > 1000
    exact = jax.default_backend() == "cpu"
    for a, b in zip(vmapped, unrolled):
        _close(a, b, rtol=0 if exact else 1e-4, atol=0 if exact else 1e-5)


def _stacked_activations(jaxpr_text: str, seeds: int, batch: int) -> int:
    """Rank-5 arrays [seeds, batch, ...]: a batch of feature maps stacked across seeds."""
    import re

    return len(re.findall(rf"\[{seeds},{batch},\d+,\d+,\d+\]", jaxpr_text))


def test_a_users_vmap_of_the_steps_never_stacks_seeds_activations():
    """A user's own jax.vmap of serjax's train and eval steps over stacked seeds: each
    seed's forward and backward pass runs on its own (serjax.train's vmap rule), so no
    feature map is stacked across seeds, and the results equal each seed's own step. With
    JAX's own batching of the same pass (the rule off), stacked maps appear."""
    import functools

    from serjax import train
    from serjax.seeds import seed_keys

    rng, data, model, tx, shape = _tiny_setup()
    trainer = train.Trainer(model, tx, 2.0, "unroll")
    states = trainer.init(seed_keys([0, 1, 2], 0), shape)
    rows = jnp.asarray(rng.integers(0, data.labels.shape[0], (3, 8)))
    lr = jnp.float32(0.1)
    step = functools.partial(train.train_step, model=model, gamma=2.0)
    evaluate = functools.partial(train.eval_step, model=model)
    vstep = jax.vmap(step, in_axes=(0, 0, None, None))
    veval = jax.vmap(evaluate, in_axes=(0, None, None))
    assert _stacked_activations(str(jax.make_jaxpr(vstep)(states, rows, data, lr)), 3, 8) == 0
    assert _stacked_activations(str(jax.make_jaxpr(veval)(states, rows[0], data)), 3, 8) == 0
    new_states, stats = jax.jit(vstep)(states, rows, data, lr)
    for s in range(3):
        one = jax.tree_util.tree_map(lambda a, s=s: a[s], states)
        own_state, own_stats = jax.jit(step)(one, rows[s], data, lr)
        _close(stats[s], own_stats)
        _close(jax.tree_util.tree_map(lambda a, s=s: a[s], new_states.params), own_state.params)
    # the check has teeth: JAX's own batching of the pass stacks every seed's maps (fresh
    # functions: JAX keeps the traces of the ones above)
    saved = train._train_fn, train._eval_fn
    train._train_fn = functools.partial(train._train_fn, rule=False)
    train._eval_fn = functools.partial(train._eval_fn, rule=False)
    try:
        vstep = jax.vmap(
            functools.partial(train.train_step, model=model, gamma=2.0), (0, 0, None, None)
        )
        veval = jax.vmap(functools.partial(train.eval_step, model=model), (0, None, None))
        assert _stacked_activations(str(jax.make_jaxpr(vstep)(states, rows, data, lr)), 3, 8)
        assert _stacked_activations(str(jax.make_jaxpr(veval)(states, rows[0], data)), 3, 8)
    finally:
        train._train_fn, train._eval_fn = saved
