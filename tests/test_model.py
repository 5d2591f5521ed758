import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from serjax.errors import SerjaxError
from serjax.model import ECA, SERCNN, adaptive_eca_kernel, build_model, count_params

# Small input, few shapes: 32 Mel bands × 64 frames survive five 2×2 poolings (→ 1 × 2).
X = jnp.asarray(np.random.default_rng(0).standard_normal((2, 32, 64)), jnp.float32)


def model_cfg(**overrides):
    cfg = ml_collections.ConfigDict(
        dict(
            width_scale=1,
            base_widths=(8, 16, 32, 32, 64, 64),
            eca_layers=(5, 6),
            eca_kernel=7,
            eca_kernels=(),
            eca_batch_norm=False,
            eca_gamma=2.0,
            eca_b=1.0,
        )
    )
    cfg.update(overrides)
    return cfg


def param_count(model):
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), X))
    return count_params(variables["params"])


def test_our_eca_adds_exactly_14_parameters():
    with_eca = build_model(model_cfg(), 4)
    without = build_model(model_cfg(eca_layers=()), 4)
    assert param_count(with_eca) - param_count(without) == 14


def test_parameter_count_by_hand():
    # conv: 9·cin·cout + cout bias; BN: 2·cout; dense1: C6·C6 + C6; dense2: C6·4 + 4.
    widths = [8, 16, 32, 32, 64, 64]
    cins = [1] + widths[:-1]
    expected = sum(9 * ci * co + co + 2 * co for ci, co in zip(cins, widths))
    expected += 64 * 64 + 64 + 64 * 4 + 4
    assert param_count(build_model(model_cfg(eca_layers=()), 4)) == expected
    # width scale n multiplies every width
    assert build_model(model_cfg(width_scale=3), 4).widths == (24, 48, 96, 96, 192, 192)


def test_original_eca_variant_uses_adaptive_kernels_and_batch_norm():
    assert [adaptive_eca_kernel(c) for c in (8, 16, 32, 64, 128, 256, 512)] == [3, 3, 3, 3, 5, 5, 5]
    model = build_model(
        model_cfg(eca_layers=(1, 2, 3, 4, 5, 6), eca_kernel=0, eca_batch_norm=True), 4
    )
    assert model.eca_kernels == (3, 3, 3, 3, 3, 3)
    base = param_count(build_model(model_cfg(eca_layers=()), 4))
    # kernels + BN scale/bias on each pooled channel vector
    assert param_count(model) - base == 6 * 3 + 2 * (8 + 16 + 32 + 32 + 64 + 64)


def test_eca_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 6)).astype(np.float32)
    eca = ECA(kernel_size=3)
    variables = {"params": {"kernel": jnp.asarray([0.5, -1.0, 2.0])}}
    out, state = eca.apply(variables, jnp.asarray(x), False, mutable=["intermediates"])
    pooled = x.mean(axis=(1, 2))
    padded = np.pad(pooled, ((0, 0), (1, 1)))
    z = 0.5 * padded[:, :-2] - 1.0 * padded[:, 1:-1] + 2.0 * padded[:, 2:]
    weights = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(out, x * weights[:, None, None, :], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["intermediates"]["channel_weights"][0], weights, rtol=1e-5)


def test_forward_shapes_and_batch_norm_modes():
    model = build_model(model_cfg(), 4)
    variables = model.init(jax.random.PRNGKey(0), X)
    assert set(variables) == {"params", "batch_stats"}
    logits, updates = model.apply(variables, X, train=True, mutable=["batch_stats"])
    assert logits.shape == (2, 4)
    changed = jax.tree_util.tree_map(
        lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], updates["batch_stats"]
    )
    assert all(jax.tree_util.tree_leaves(changed))
    # eval mode uses running statistics: deterministic and per-sample independent
    one = model.apply(variables, X[:1])
    both = model.apply(variables, X)
    np.testing.assert_allclose(one[0], both[0], rtol=1e-5, atol=1e-6)


def _numpy_forward(params, stats, x, eca_layers, eps=1e-5):
    """SPEC §3 written out in NumPy (eval mode): conv 3×3 SAME + bias → BatchNorm (running
    statistics) → ReLU → [ECA] → 2×2 average pool (blocks 1-5) / global average (block 6)
    → Dense → ReLU → Dense. Independent of flax and of serjax's fast path."""
    h = x[..., None].astype(np.float64)
    for block in range(1, 7):
        conv, bn = params[f"block{block}"]["Conv_0"], params[f"block{block}"]["BatchNorm_0"]
        kernel, (n, height, width, _) = np.asarray(conv["kernel"], np.float64), h.shape
        padded = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
        h = sum(
            np.einsum("nhwc,co->nhwo", padded[:, i : i + height, j : j + width], kernel[i, j])
            for i in range(3)
            for j in range(3)
        ) + np.asarray(conv["bias"])
        running = stats[f"block{block}"]["BatchNorm_0"]
        h = (h - np.asarray(running["mean"])) / np.sqrt(np.asarray(running["var"]) + eps)
        h = np.maximum(h * np.asarray(bn["scale"]) + np.asarray(bn["bias"]), 0.0)
        if block in eca_layers:
            k = np.asarray(params[f"eca{block}"]["kernel"], np.float64)
            pooled = np.pad(h.mean(axis=(1, 2)), ((0, 0), (len(k) // 2, len(k) // 2)))
            z = sum(k[j] * pooled[:, j : j + h.shape[-1]] for j in range(len(k)))
            h = h * (1 / (1 + np.exp(-z)))[:, None, None, :]
        if block < 6:
            h = h[:, : h.shape[1] // 2 * 2, : h.shape[2] // 2 * 2]
            h = h.reshape(n, h.shape[1] // 2, 2, h.shape[2] // 2, 2, -1).mean(axis=(2, 4))
    h = h.mean(axis=(1, 2))
    h = np.maximum(
        h @ np.asarray(params["dense1"]["kernel"]) + np.asarray(params["dense1"]["bias"]), 0.0
    )
    return h @ np.asarray(params["dense2"]["kernel"]) + np.asarray(params["dense2"]["bias"])


@pytest.mark.parametrize("conv_impl", ["auto", "flax", "fused", "fused_xla_conv"])
def test_model_matches_a_numpy_reference(conv_impl):
    if conv_impl == "fused_xla_conv":  # what "auto" builds on a GPU, run here on the CPU
        model = build_model(model_cfg(), 4).clone(conv_impl=conv_impl)
    else:
        model = build_model(model_cfg(conv_impl=conv_impl), 4)
    variables = model.init(jax.random.PRNGKey(3), X)
    # non-trivial running statistics, BN affine and biases, so every term shows
    rng = np.random.default_rng(7)
    params = jax.tree_util.tree_map(
        lambda a: a + 0.1 * rng.standard_normal(a.shape).astype(np.float32), variables["params"]
    )
    stats = {
        block: {
            "BatchNorm_0": {
                "mean": (0.05 * rng.standard_normal(s["BatchNorm_0"]["mean"].shape)).astype(
                    np.float32
                ),
                "var": (
                    1 + 0.3 * np.abs(rng.standard_normal(s["BatchNorm_0"]["var"].shape))
                ).astype(np.float32),
            }
        }
        for block, s in variables["batch_stats"].items()
    }
    got = np.asarray(model.apply({"params": params, "batch_stats": stats}, X))
    want = _numpy_forward(params, stats, np.asarray(X), eca_layers=(5, 6))
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    # the check has teeth: the samples differ, and leaving out an ECA block shows
    assert np.abs(got[0] - got[1]).max() > 1e-2
    assert np.abs(want - _numpy_forward(params, stats, np.asarray(X), eca_layers=(6,))).max() > 1e-3


def test_original_eca_batch_norm_keeps_float32_precision():
    """The original-ECA variant's BatchNorm normalises pooled channel means whose spread over
    the batch is small next to their size: the one-pass variance (E[x²] − E[x]²) in float32
    put 2.6e-4 relative error into these train-mode logits, the two-pass one 8e-6 (against
    the same model in float64)."""
    model = SERCNN(
        num_classes=4,
        widths=(4, 4, 8, 8, 8, 8),
        eca_layers=(1, 2, 3, 4, 5, 6),
        eca_kernels=(3,) * 6,
        eca_batch_norm=True,
    )
    x = np.random.default_rng(0).standard_normal((32, 32, 32)).astype(np.float32)
    variables = model.init(jax.random.PRNGKey(0), jnp.asarray(x))
    f32 = model.apply(variables, jnp.asarray(x), train=True, mutable=["batch_stats"])[0]
    assert f32.dtype == jnp.float32
    with jax.enable_x64(True):  # this block only: no other test sees 64-bit types
        as64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), variables)
        f64 = model.apply(as64, jnp.asarray(x, jnp.float64), train=True, mutable=["batch_stats"])[0]
        assert f64.dtype == jnp.float64
        f64 = np.asarray(f64)
    assert not jax.config.jax_enable_x64
    error = np.abs(np.asarray(f32) - f64).max() / np.abs(f64).max()
    assert error < 3e-5, error


def test_he_normal_initialisation():
    """Kaiming normal, fan-in, untruncated: std sqrt(2 / fan_in) where fan-in and fan-out
    differ, normal tails (not truncated, not uniform), for conv, dense and ECA kernels."""
    model = SERCNN(
        num_classes=4, widths=(16, 32, 64, 64, 128, 128), eca_layers=(6,), eca_kernels=(7,)
    )
    params = jax.jit(model.init)(jax.random.PRNGKey(0), X)["params"]
    for kernel, fan_in in (
        (params["block3"]["Conv_0"]["kernel"], 9 * 32),  # fan-out 9·64
        (params["block5"]["Conv_0"]["kernel"], 9 * 64),  # fan-out 9·128
        (params["dense1"]["kernel"], 128),
    ):  # fan-out 128
        w = np.asarray(kernel).ravel()
        std = np.sqrt(2 / fan_in)
        assert abs(w.std() / std - 1) < 0.05
        assert np.abs(w).max() > 3 * std  # untruncated tails
        kurtosis = np.mean((w - w.mean()) ** 4) / w.var() ** 2
        assert 2.7 < kurtosis < 3.3  # normal (uniform: 1.8)
    dense2 = np.asarray(params["dense2"]["kernel"])  # 128 → 4: fan-in 128, not 4
    assert abs(dense2.std() / np.sqrt(2 / 128) - 1) < 0.25
    eca = np.asarray(params["eca6"]["kernel"])
    assert eca.shape == (7,) and 0.1 < eca.std() < 3 * np.sqrt(2 / 7)
    for block in range(1, 7):
        assert not np.any(
            np.asarray(params[f"block{block}"]["Conv_0"]["bias"])
        )  # biases start at 0


def test_bad_model_fields_name_themselves():
    with pytest.raises(SerjaxError, match="model.eca_layers"):
        build_model(model_cfg(eca_layers=(0, 7)), 4)
    with pytest.raises(SerjaxError, match="model.eca_kernels"):
        build_model(model_cfg(eca_kernels=(3, 5, 7)), 4)
    assert build_model(model_cfg(eca_kernels=(3, 9)), 4).eca_kernels == (3, 9)
    with pytest.raises(SerjaxError, match="model.eca_kernel"):
        build_model(model_cfg(eca_kernel=4), 4)
    with pytest.raises(SerjaxError, match="model.base_widths"):
        build_model(model_cfg(base_widths=(8, 16)), 4)


@pytest.mark.parametrize("conv_impl", ["auto", "flax"])
def test_bfloat16_compute_keeps_parameters_statistics_and_logits_float32(conv_impl):
    """model.compute_dtype=bfloat16: the same parameter tree, float32 parameters, batch
    statistics, gradients and logits; logits finite and close to float32's (bfloat16 keeps
    8 bits of mantissa: a few per cent of the logits' scale after six blocks)."""
    x = jnp.asarray(np.random.default_rng(4).standard_normal((4, 32, 48)), jnp.float32)
    runs = {}
    for dtype in ("float32", "bfloat16"):
        model = build_model(model_cfg(conv_impl=conv_impl, compute_dtype=dtype), 4)
        assert model.compute_dtype == dtype
        variables = model.init(jax.random.PRNGKey(0), x)

        def loss(params, model=model, variables=variables):
            logits, upd = model.apply(
                {"params": params, "batch_stats": variables["batch_stats"]},
                x,
                train=True,
                mutable=["batch_stats"],
            )
            return jnp.sum(logits**2), (logits, upd)

        (_, (logits, upd)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
            variables["params"]
        )
        runs[dtype] = variables, logits, upd, grads, jax.jit(model.apply)(variables, x)
    f32, bf16 = runs["float32"], runs["bfloat16"]
    # same initial parameters and statistics: checkpoints move between the two
    for a, b in zip(jax.tree_util.tree_leaves(f32[0]), jax.tree_util.tree_leaves(bf16[0])):
        np.testing.assert_array_equal(a, b)
    for leaf in jax.tree_util.tree_leaves(bf16):
        assert leaf.dtype == jnp.float32
    for train_logits, eval_logits in ((f32[1], f32[4]), (bf16[1], bf16[4])):
        assert np.isfinite(np.asarray(train_logits)).all()
        assert np.isfinite(np.asarray(eval_logits)).all()
    for a, b in ((f32[1], bf16[1]), (f32[4], bf16[4])):
        assert float(jnp.abs(a - b).max()) < 0.05 * float(jnp.abs(a).max())
    # and it does compute in bfloat16: not float32's logits bit for bit
    assert float(jnp.abs(f32[1] - bf16[1]).max()) > 0
    # the gradient points the same way (its error: bfloat16 cotangents through six
    # BatchNorms, whose backward pass cancels large terms; serjax.layers' BatchNorm runs that
    # pass in float32, flax's partly in bfloat16)
    flat = [
        jnp.concatenate(
            [
                g.ravel()
                for path, g in jax.tree_util.tree_leaves_with_path(run[3])
                # zero in exact arithmetic (a BatchNorm follows): rounding only
                if not jax.tree_util.keystr(path).endswith("['Conv_0']['bias']")
            ]
        )
        for run in (f32, bf16)
    ]
    cosine = float(flat[0] @ flat[1] / jnp.linalg.norm(flat[0]) / jnp.linalg.norm(flat[1]))
    assert cosine > (0.99 if conv_impl == "auto" else 0.9), cosine


def test_compute_dtype_is_checked_and_defaults_to_float32():
    with pytest.raises(SerjaxError, match="config field model.compute_dtype: 'float16'"):
        build_model(model_cfg(compute_dtype="float16"), 4)
    # a config saved before the field existed computes in float32
    assert build_model(model_cfg(), 4).compute_dtype == "float32"
    assert build_model(model_cfg(), 4) == build_model(model_cfg(compute_dtype="float32"), 4)
