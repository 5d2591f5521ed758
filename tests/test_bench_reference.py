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
    x = np.random.default_rng(seed).standard_normal((8, *SHAPE)).astype(np.float32)
    # random weights of serjax's shapes (cheaper than compiling model.init), with
    # non-trivial BatchNorm affine and running statistics so eval mode checks them too
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.asarray(x)))
    rng = np.random.default_rng(seed + 1)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        if "var" in name:
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32))
        scale = 1.0 if "scale" in name else np.sqrt(2.0 / max(1, np.prod(leaf.shape[:-1])))
        return jnp.asarray(
            (scale * rng.standard_normal(leaf.shape) + 0.1 * ("scale" in name)).astype(np.float32)
        )

    variables = jax.tree_util.tree_map_with_path(fill, shapes)
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
        ours, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
            variables, x
        )
        tmodel.train()
    else:
        ours = jax.jit(model.apply)(variables, x)
        tmodel.eval()
    with torch.no_grad():
        theirs = tmodel(torch.from_numpy(x)).numpy()
    # float32 rounding in a training-mode BatchNorm over few values (block 6 sees 8 × 1 × 2)
    # is amplified, so the tolerance is relative to the largest logit
    np.testing.assert_allclose(
        np.asarray(ours), theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max()
    )


def test_one_train_step_equal():
    """Focal loss, every gradient, one Adam step and the BN running means agree. In float64:
    in float32 the training-mode BatchNorm's cancellations leave gradients that differ by
    rounding (~1 % on small entries), while in float64 they agree to ~1e-13."""
    with jax.enable_x64(True):
        model, variables, tmodel, x = _pair()
        variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), variables)
        tmodel = tmodel.double()
        x = x.astype(np.float64)
        labels = np.array([0, 3, 1, 2, 2, 0, 1, 3])
        weights = np.array([1.5, 0.5, 1.0, 2.0])

        def loss_fn(params):
            logits, updates = model.apply(
                {"params": params, "batch_stats": variables["batch_stats"]},
                jnp.asarray(x),
                train=True,
                mutable=["batch_stats"],
            )
            return focal_loss(
                logits, jnp.asarray(labels), jnp.asarray(weights), 2.0
            ).mean(), updates

        tx = optax.adam(1e-3)

        @jax.jit
        def step(params):
            (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            return (
                loss,
                updates,
                grads,
                optax.apply_updates(params, tx.update(grads, tx.init(params))[0]),
            )

        loss, updates, grads, new_params = step(variables["params"])

    opt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
    tmodel.train()
    tloss = ref.focal_loss(
        tmodel(torch.from_numpy(x)), torch.from_numpy(labels), torch.from_numpy(weights), 2.0
    ).mean()
    opt.zero_grad()
    tloss.backward()
    np.testing.assert_allclose(float(loss), float(tloss.detach()), rtol=1e-10)

    def as_torch(params, batch_stats):
        """serjax's tree in torch's layout (load_flax_variables does the transposes)."""
        m = ref.TorchSERCNN(4, tmodel.widths).double()
        ref.load_flax_variables(m, {"params": params, "batch_stats": batch_stats}, dtype=np.float64)
        return m

    for (name, a), g in zip(
        tmodel.named_parameters(), as_torch(grads, variables["batch_stats"]).parameters()
    ):
        # a conv bias right before a training-mode BatchNorm has a true gradient of 0 (only
        # rounding is left), hence the absolute tolerance
        np.testing.assert_allclose(
            a.grad.numpy(), g.detach().numpy(), rtol=1e-8, atol=1e-12, err_msg=name
        )
    opt.step()
    after = as_torch(new_params, updates["batch_stats"])
    for (name, a), b in zip(tmodel.named_parameters(), after.parameters()):
        np.testing.assert_allclose(
            a.detach().numpy(), b.detach().numpy(), rtol=1e-8, atol=1e-8, err_msg=name
        )
    for a, b in zip(tmodel.blocks, after.blocks):
        # running means move alike (running variances differ by design: unbiased vs biased)
        np.testing.assert_allclose(
            a.bn.running_mean.numpy(), b.bn.running_mean.numpy(), rtol=1e-10, atol=1e-12
        )
