"""bench/torch_reference.py computes serjax's mathematics, so bench/bench_train.py compares the
speed of the same computation. Skipped where PyTorch is not installed (a benchmark dependency)."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import torch_reference as ref  # noqa: E402

from serjax.configlib import base_config  # noqa: E402
from serjax.losses import focal_loss  # noqa: E402
from serjax.model import build_model  # noqa: E402

# 32 Mel bands × 72 frames survive five 2×2 poolings (→ 1 × 2); odd sizes check floor pooling.
SHAPE = (32, 74)


def _pair(width_scale=1, seed=0):
    cfg = base_config()
    cfg.model.width_scale = width_scale
    model = build_model(cfg.model, 4)
    x = np.random.default_rng(seed).standard_normal((3, *SHAPE)).astype(np.float32)
    variables = jax.jit(model.init)(jax.random.PRNGKey(seed), jnp.asarray(x))
    # non-trivial BatchNorm affine and running statistics, so eval mode checks them too
    rng = np.random.default_rng(seed + 1)
    variables = jax.tree_util.tree_map(
        lambda a: jnp.asarray(np.asarray(a) + 0.1 * rng.standard_normal(a.shape).astype(np.float32)), variables)
    variables["batch_stats"] = jax.tree_util.tree_map(jnp.abs, variables["batch_stats"])
    tmodel, _ = ref.build(width_scale)
    ref.load_flax_variables(tmodel, variables)
    return model, variables, tmodel, x


def test_parameter_counts_equal():
    for n in (1, 2):
        assert ref.param_count(ref.build(n)[0]) == ref.serjax_param_count(n, input_shape=SHAPE)


@pytest.mark.parametrize("train", [False, True])
def test_forward_equal(train):
    model, variables, tmodel, x = _pair()
    if train:
        ours, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
        tmodel.train()
    else:
        ours = jax.jit(model.apply)(variables, x)
        tmodel.eval()
    with torch.no_grad():
        theirs = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-4, atol=1e-4)


def test_one_train_step_equal():
    """Focal loss, gradients and one Adam step agree, as do the BN running means."""
    model, variables, tmodel, x = _pair()
    labels = np.array([0, 3, 1])
    weights = np.array([1.5, 0.5, 1.0, 2.0], np.float32)

    def loss_fn(params):
        logits, updates = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                      jnp.asarray(x), train=True, mutable=["batch_stats"])
        return focal_loss(logits, jnp.asarray(labels), jnp.asarray(weights), 2.0).mean(), updates

    tx = optax.adam(1e-3)

    @jax.jit
    def step(params):
        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return loss, updates, grads, optax.apply_updates(params, tx.update(grads, tx.init(params))[0])

    loss, updates, grads, new_params = step(variables["params"])

    opt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
    tmodel.train()
    tloss = ref.focal_loss(tmodel(torch.from_numpy(x)), torch.from_numpy(labels),
                           torch.from_numpy(weights), 2.0).mean()
    opt.zero_grad()
    tloss.backward()
    np.testing.assert_allclose(float(loss), float(tloss.detach()), rtol=1e-5)
    # every gradient, through torch's parameter layout (load_flax_variables does the transposes)
    as_torch = ref.TorchSERCNN(4, tmodel.widths)
    ref.load_flax_variables(as_torch, {"params": grads, "batch_stats": variables["batch_stats"]})
    for (name, a), g in zip(tmodel.named_parameters(), as_torch.parameters()):
        if name.startswith("blocks.") and name.endswith("conv.bias"):
            continue                                  # mathematically 0 (see below)
        g = g.detach().numpy()
        np.testing.assert_allclose(a.grad.numpy(), g, rtol=1e-3, atol=1e-4 * np.abs(g).max(), err_msg=name)
    opt.step()
    after = ref.TorchSERCNN(4, tmodel.widths)
    ref.load_flax_variables(after, {"params": new_params, "batch_stats": updates["batch_stats"]})
    for (name, a), b in zip(tmodel.named_parameters(), after.parameters()):
        # Adam's first step is about lr · sign(g), so tiny gradients can differ by ~1 % of lr;
        # a conv bias right before a training-mode BatchNorm has a true gradient of 0: both
        # frameworks get rounding noise, which that step scales to about ±lr.
        atol = 2e-3 if name.endswith("conv.bias") and name.startswith("blocks.") else 1e-5
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-4, atol=atol, err_msg=name)
    # running means move alike (running variances differ by design: unbiased vs biased)
    np.testing.assert_allclose(tmodel.blocks[2].bn.running_mean.numpy(), after.blocks[2].bn.running_mean.numpy(),
                               rtol=1e-4, atol=1e-6)
