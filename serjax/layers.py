"""Fast layers for serjax.model on XLA's CPU backend: the plain flax layers' mathematics with
their parameter names ("Conv_0", "BatchNorm_0"; "kernel", "bias", "scale", "mean", "var"), so
checkpoints move freely between them. The config field model.conv_impl chooses (CONV_IMPLS).

Why each exists: results/bench/train.md (whole train steps, with the fast path taken apart)
and results/bench/layers.md (each convolution alone). Tested equal to the flax layers,
outputs and gradients, in tests/test_layers.py.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from serjax.batching import per_index_when_batched
from serjax.errors import SerjaxError

# The config field model.conv_impl: "flax" (plain linen), "fused" (these layers in every block,
# block 1's convolution as a shifted sum), "auto" (these layers; the shifted sum on the CPU
# backend only, XLA's convolution elsewhere).
CONV_IMPLS = ("auto", "flax", "fused")
# What a built model runs: "auto" resolved for a backend ("fused_xla_conv": these layers,
# every convolution XLA's own).
RESOLVED_IMPLS = ("flax", "fused", "fused_xla_conv")


def resolve_conv_impl(impl: str, backend: str | None = None) -> str:
    """The layer set a model runs (a RESOLVED_IMPLS value) for model.conv_impl on `backend`
    (default: JAX's default backend, asked once here rather than inside traced code)."""
    if impl in RESOLVED_IMPLS:
        return impl
    if impl != "auto":
        raise SerjaxError(f"config field model.conv_impl: {impl!r}; use one of {CONV_IMPLS}")
    return "fused" if (backend or jax.default_backend()) == "cpu" else "fused_xla_conv"


def avg_pool_2x2(x: jax.Array) -> jax.Array:
    """nn.avg_pool(x, (2, 2), strides=(2, 2)) ('VALID': an odd trailing row or column is
    dropped) as a reshape and a mean, which XLA's CPU backend runs faster than reduce_window
    and its gradient."""
    b, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _conv(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _conv_input_grad(g, kernel):
    """The input cotangent of _conv(·, kernel) for the output cotangent g (XLA's transposed
    convolution, as autodiff emits it)."""
    x_shape = jax.ShapeDtypeStruct((*g.shape[:-1], kernel.shape[2]), g.dtype)
    return jax.linear_transpose(lambda x: _conv(x, kernel), x_shape)(g)[0]


def _conv_kernel_grad(x, g):
    """The kernel cotangent of _conv(x, ·) for the output cotangent g (autodiff's)."""
    k_shape = jax.ShapeDtypeStruct((3, 3, x.shape[-1], g.shape[-1]), g.dtype)
    return jax.linear_transpose(lambda k: _conv(x, k), k_shape)(g)[0]


# both operands batched (a vmap over seeds): one plain convolution per seed, where JAX would
# fold the seeds into the channels of one grouped convolution (feature_group_count = S); one
# operand batched: JAX's own batching (the axis folded into the batch or feature dimension)
_conv_per_seed = per_index_when_batched(_conv, 2)
_conv_input_grad_per_seed = per_index_when_batched(_conv_input_grad, 2)
_conv_kernel_grad_per_seed = per_index_when_batched(_conv_kernel_grad, 2)


@jax.custom_vjp
def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3×3 cross-correlation, stride 1, 'SAME' zero padding, NHWC × HWIO (nn.Conv's).

    The mathematics and the XLA convolutions (forward, input and kernel gradients) of
    jax.lax.conv_general_dilated and its autodiff, each with a vmap rule that runs one
    convolution per index where activations and kernel are both batched: under a user's vmap
    over seeds of code around the model (serjax's own steps have a rule of their own,
    serjax.train) these stay plain convolutions instead of grouped ones."""
    return _conv_per_seed(x, kernel)


def _conv3x3_fwd(x, kernel):
    return _conv_per_seed(x, kernel), (x, kernel)


def _conv3x3_bwd(residuals, g):
    x, kernel = residuals
    # the input's cotangent is dead code (and dropped by XLA) when x is data
    return _conv_input_grad_per_seed(g, kernel), _conv_kernel_grad_per_seed(x, g)


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


def _conv3x3_shifted_sum(x, kernel):
    """conv3x3 of a one-channel map as the sum of its nine shifted copies, each times its
    tap's row of output-channel weights: one elementwise loop, where XLA's CPU convolution
    packs nine-element patches."""
    h, w = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return functools.reduce(
        operator.add,
        (padded[:, i : i + h, j : j + w] * kernel[i, j] for i in range(3) for j in range(3)),
    )


@jax.custom_vjp
def single_channel_conv3x3(x, kernel):
    """conv3x3 for a one-channel input (block 1's log-Mel map): the shifted sum forward,
    conv3x3's own gradients."""
    return _conv3x3_shifted_sum(x, kernel)


def _single_channel_conv3x3_fwd(x, kernel):
    return single_channel_conv3x3(x, kernel), (x, kernel)


single_channel_conv3x3.defvjp(_single_channel_conv3x3_fwd, _conv3x3_bwd)  # conv3x3's VJP


class Conv3x3(nn.Module):
    """nn.Conv(features, (3, 3), padding="SAME", dtype=dtype) with its parameters ("kernel"
    [3, 3, in, out], "bias"; float32), initialisers and dtype promotion. `shifted_sum`: a
    one-channel input goes through single_channel_conv3x3 (every other input, and every input
    without it, through conv3x3)."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init
    shifted_sum: bool = True
    dtype: Any = None  # computation dtype; None: promoted from the input's and the kernel's

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)  # nn.Conv's
        conv = single_channel_conv3x3 if self.shifted_sum and x.shape[-1] == 1 else conv3x3
        return conv(x, kernel) + bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_relu(x, scale, bias, epsilon):
    """Training-mode BatchNorm over all axes but the last, then ReLU, as one custom-VJP op.

    Returns (relu(y), batch mean, batch variance). nn.BatchNorm's mathematics (variance
    E[x²] − E[x]², clipped at 0) followed by nn.relu; the backward pass is the closed-form
    BatchNorm gradient, two reductions where autodiff of the forward pass makes XLA emit four.
    A bfloat16 x is normalised in float32 (statistics float32, relu(y) in x's dtype).
    """
    return _bn_relu_fwd(x, scale, bias, epsilon)[0]


def _bn_relu_fwd(x, scale, bias, epsilon):
    axes = tuple(range(x.ndim - 1))
    xf = x.astype(_at_least_float32(x.dtype))  # a no-op for float32
    mean = xf.mean(axes)
    var = jnp.maximum((xf * xf).mean(axes) - mean * mean, 0.0)
    inv = jax.lax.rsqrt(var + epsilon)
    out = _normalize_relu(xf, mean, inv, scale, bias).astype(x.dtype)
    return (out, mean, var), (x, mean, inv, scale, out)


def _at_least_float32(dtype):
    """float32 for bfloat16 (the statistics' precision), else dtype itself."""
    return jnp.promote_types(dtype, jnp.float32)


def _normalize_relu(x, mean, inv_std, scale, bias):
    """relu((x − mean) / std · scale + bias), as nn.BatchNorm normalises."""
    return nn.relu((x - mean) * (inv_std * scale) + bias)


def _bn_relu_bwd(epsilon, residuals, cotangents):
    x, mean, inv, scale, out = residuals
    g, g_mean, g_var = cotangents
    dtype, wide = x.dtype, _at_least_float32(x.dtype)
    x, g = x.astype(wide), g.astype(wide)
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    dy = jnp.where(out > 0, g, 0.0)
    xhat = (x - mean) * inv
    d_bias = dy.sum(axes)
    d_scale = (dy * xhat).sum(axes)
    dx = (scale * inv / n) * (n * dy - d_bias - xhat * d_scale)
    # the batch statistics are outputs too (for the running averages): their gradients
    dx = dx + (g_mean + 2.0 * g_var * (x - mean)) / n
    return dx.astype(dtype), d_scale, d_bias


batch_norm_relu.defvjp(_bn_relu_fwd, _bn_relu_bwd)


class BatchNormReLU(nn.Module):
    """nn.BatchNorm(momentum, epsilon) then ReLU, with its parameters ("scale", "bias") and
    batch statistics ("mean", "var"); training mode runs batch_norm_relu. Parameters and
    statistics are float32; the output has the input's dtype (normalised in float32)."""

    momentum: float = 0.9
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool):
        features = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        if not train:
            return _normalize_relu(
                x, ra_mean.value, jax.lax.rsqrt(ra_var.value + self.epsilon), scale, bias
            ).astype(x.dtype)
        out, mean, var = batch_norm_relu(x, scale, bias, self.epsilon)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * var
        return out
