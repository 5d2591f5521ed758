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
    cfg = ml_collections.ConfigDict(dict(width_scale=1, base_widths=(8, 16, 32, 32, 64, 64),
                                         eca_layers=(5, 6), eca_kernel=7, eca_kernels=(), eca_batch_norm=False,
                                         eca_gamma=2.0, eca_b=1.0))
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
    model = build_model(model_cfg(eca_layers=(1, 2, 3, 4, 5, 6), eca_kernel=0, eca_batch_norm=True), 4)
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
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)),
                                     variables["batch_stats"], updates["batch_stats"])
    assert all(jax.tree_util.tree_leaves(changed))
    # eval mode uses running statistics: deterministic and per-sample independent
    one = model.apply(variables, X[:1])
    both = model.apply(variables, X)
    np.testing.assert_allclose(one[0], both[0], rtol=1e-5, atol=1e-6)


def test_he_normal_initialisation():
    model = SERCNN(num_classes=4, widths=(64,) * 6, eca_layers=(), eca_kernels=())
    params = model.init(jax.random.PRNGKey(0), X)["params"]
    kernel = np.asarray(params["block3"]["Conv_0"]["kernel"])  # fan-in 9·64
    assert abs(kernel.std() - np.sqrt(2 / (9 * 64))) < 0.01 * np.sqrt(2 / (9 * 64)) * 10


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
