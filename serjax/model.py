"""The 6-layer CNN with Efficient Channel Attention (SPEC §3), as pure flax.linen modules."""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from serjax.errors import SerjaxError

NUM_BLOCKS = 6
# He (Kaiming) normal, untruncated, fan-in: PyTorch's kaiming_normal_ default.
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def _eca_kernel_init(key, shape, dtype=jnp.float32):
    """He normal for the 1-D channel kernel, whose fan-in is its length."""
    return jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / shape[0])


def adaptive_eca_kernel(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """ECA-Net's rule: k = |log2(C)/γ + b/γ|, rounded to an odd number."""
    t = int(abs(math.log2(channels) / gamma + b / gamma))
    return t if t % 2 else t + 1


def channel_conv1d(pooled: jax.Array, kernel: jax.Array) -> jax.Array:
    """Cross-correlate [B, C] along C with one filter, zero 'SAME' padding, no bias."""
    k = kernel.shape[0]
    padded = jnp.pad(pooled, ((0, 0), (k // 2, k - 1 - k // 2)))
    channels = pooled.shape[-1]
    return sum(kernel[j] * padded[:, j : j + channels] for j in range(k))


def avg_pool_2x2(x: jax.Array) -> jax.Array:
    """2×2 average pooling, stride 2, 'VALID' (an odd trailing row or column is dropped):
    nn.avg_pool's result as a reshape and a mean, which XLA's CPU backend runs faster than
    nn.avg_pool's reduce_window and its gradient (results/bench/train.md)."""
    b, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3×3 cross-correlation, stride 1, 'SAME' zero padding, NHWC × HWIO (nn.Conv's)."""
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _conv3x3_shifted_sum(x, kernel):
    """conv3x3 of a one-channel map as the sum of its nine shifted copies, each times its
    tap's row of output-channel weights: one elementwise loop for XLA, where its CPU
    convolution packs nine-element patches (2-4× slower, results/bench/layers.md)."""
    h, w = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return functools.reduce(
        operator.add,
        (padded[:, i : i + h, j : j + w] * kernel[i, j] for i in range(3) for j in range(3)),
    )


@jax.custom_vjp
def single_channel_conv3x3(x, kernel):
    """conv3x3 for a one-channel input (block 1's log-Mel map): the shifted sum where the
    default backend is the CPU, XLA's convolution elsewhere (cuDNN's on a GPU); the
    gradients are always conv3x3's own. Chosen when traced: jax.lax.platform_dependent keeps
    both as an XLA conditional, which the CPU backend ran 3× slower than the shifted sum."""
    forward = _conv3x3_shifted_sum if jax.default_backend() == "cpu" else conv3x3
    return forward(x, kernel)


def _single_channel_conv3x3_fwd(x, kernel):
    return single_channel_conv3x3(x, kernel), (x, kernel)


def _single_channel_conv3x3_bwd(residuals, g):
    # conv3x3's VJP; the input's cotangent is dead code (and dropped by XLA) when x is data
    return jax.vjp(conv3x3, *residuals)[1](g)


single_channel_conv3x3.defvjp(_single_channel_conv3x3_fwd, _single_channel_conv3x3_bwd)


def serjax_conv3x3(x, kernel):
    """The 3×3 convolution serjax's blocks run: single_channel_conv3x3 for a one-channel
    input, conv3x3 otherwise (the same mathematics)."""
    return (single_channel_conv3x3 if x.shape[-1] == 1 else conv3x3)(x, kernel)


class Conv3x3(nn.Module):
    """nn.Conv(features, (3, 3), padding 'SAME') with its parameters ("kernel" [3, 3, in, out],
    "bias"), initialisers and dtype promotion, computed by serjax_conv3x3."""

    features: int
    kernel_init: nn.initializers.Initializer = he_normal

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)  # as nn.Conv does
        return serjax_conv3x3(x, kernel) + bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_relu(x, scale, bias, epsilon):
    """Training-mode BatchNorm over all axes but the last, then ReLU, as one custom-VJP op.

    Returns (relu(y), batch mean, batch variance). The same mathematics as nn.BatchNorm
    (variance E[x²] − E[x]², clipped at 0) followed by nn.relu; its backward pass is the
    closed-form BatchNorm gradient, which needs two reductions where autodiff of the
    forward pass makes XLA emit four.
    """
    return _bn_relu_fwd(x, scale, bias, epsilon)[0]


def _bn_relu_fwd(x, scale, bias, epsilon):
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes)
    var = jnp.maximum((x * x).mean(axes) - mean * mean, 0.0)
    inv = jax.lax.rsqrt(var + epsilon)
    out = _normalize_relu(x, mean, inv, scale, bias)
    return (out, mean, var), (x, mean, inv, scale, out)


def _normalize_relu(x, mean, inv_std, scale, bias):
    """relu((x − mean) / std · scale + bias), as nn.BatchNorm normalises."""
    return nn.relu((x - mean) * (inv_std * scale) + bias)


def _bn_relu_bwd(epsilon, residuals, cotangents):
    x, mean, inv, scale, out = residuals
    g, g_mean, g_var = cotangents
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    dy = jnp.where(out > 0, g, 0.0)
    xhat = (x - mean) * inv
    d_bias = dy.sum(axes)
    d_scale = (dy * xhat).sum(axes)
    dx = (scale * inv / n) * (n * dy - d_bias - xhat * d_scale)
    # the batch statistics are outputs too (for the running averages): their gradients
    dx = dx + (g_mean + 2.0 * g_var * (x - mean)) / n
    return dx, d_scale, d_bias


batch_norm_relu.defvjp(_bn_relu_fwd, _bn_relu_bwd)


class BatchNormReLU(nn.Module):
    """nn.BatchNorm(momentum, epsilon) then ReLU, with the same parameters ("scale", "bias")
    and batch statistics ("mean", "var"), so checkpoints are interchangeable; training mode
    runs batch_norm_relu (tested equal to the flax pair, outputs and gradients)."""

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
            )
        out, mean, var = batch_norm_relu(x, scale, bias, self.epsilon)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * var
        return out


class ConvBlock(nn.Module):
    """Conv 3×3 (stride 1, SAME) → BatchNorm → ReLU."""

    features: int

    @nn.compact
    def __call__(self, x, train: bool):
        # named as flax names an nn.Conv here, so parameters and checkpoints are nn.Conv's
        x = Conv3x3(self.features, name="Conv_0")(x)
        # momentum 0.9 here is PyTorch's 0.1: the running statistics move 10 % per step.
        return BatchNormReLU(momentum=0.9, epsilon=1e-5, name="BatchNorm_0")(x, train)


class ECA(nn.Module):
    """y = x · sigmoid(conv1d_k(GAP_hw(x))). `batch_norm` adds a BatchNorm on the pooled
    vector (the "original ECA" switch; the paper's own block has none)."""

    kernel_size: int
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x, train: bool):
        pooled = x.mean(axis=(1, 2))
        if self.batch_norm:
            pooled = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(pooled)
        kernel = self.param("kernel", _eca_kernel_init, (self.kernel_size,))
        weights = nn.sigmoid(channel_conv1d(pooled, kernel))
        self.sow("intermediates", "channel_weights", weights)
        return x * weights[:, None, None, :]


class SERCNN(nn.Module):
    """Six conv blocks (avg-pool 2×2 after 1-5, global average after 6), ECA after the
    blocks in `eca_layers`, then Dense(C6) → ReLU → Dense(classes).

    Input: [B, n_mels, frames] log-Mel features; output: [B, classes] logits.
    """

    num_classes: int
    widths: Sequence[int]
    eca_layers: Sequence[int] = (5, 6)
    eca_kernels: Sequence[int] = (7, 7)
    eca_batch_norm: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input_size(*x.shape[1:3], poolings=len(self.widths) - 1)
        x = x[..., None]
        kernels = dict(zip(self.eca_layers, self.eca_kernels))
        for block, width in enumerate(self.widths, start=1):
            x = ConvBlock(width, name=f"block{block}")(x, train)
            if block in kernels:
                x = ECA(kernels[block], self.eca_batch_norm, name=f"eca{block}")(x, train)
            if block < len(self.widths):
                x = avg_pool_2x2(x)
        x = x.mean(axis=(1, 2))
        x = nn.relu(nn.Dense(self.widths[-1], kernel_init=he_normal, name="dense1")(x))
        return nn.Dense(self.num_classes, kernel_init=he_normal, name="dense2")(x)


def check_input_size(n_mels: int, frames: int, poolings: int = NUM_BLOCKS - 1) -> None:
    """The five 2×2 poolings need at least 32 × 32 (a smaller map pools to nothing, and the
    global average of nothing is NaN: training would run on NaN without a word)."""
    need = 2**poolings
    if n_mels < need:
        raise SerjaxError(
            f"config field features.n_mels: {n_mels} Mel bands do not survive the model's "
            f"{poolings} 2×2 poolings; use at least {need}"
        )
    if frames < need:
        raise SerjaxError(
            f"config field features.duration_s: {frames} frames do not survive the model's "
            f"{poolings} 2×2 poolings; need at least {need} frames "
            f"({need * 10} ms at the 10-ms hop)"
        )


def build_model(model_cfg, num_classes: int) -> SERCNN:
    """The model a config's `model` section describes (fields checked, errors name them)."""
    base = tuple(int(b) for b in model_cfg.base_widths)
    if len(base) != NUM_BLOCKS or min(base) < 1:
        raise SerjaxError(
            f"config field model.base_widths: need {NUM_BLOCKS} positive widths, got {base}"
        )
    if int(model_cfg.width_scale) < 1:
        raise SerjaxError(
            f"config field model.width_scale: need n >= 1, got {model_cfg.width_scale}"
        )
    widths = tuple(int(model_cfg.width_scale) * b for b in base)
    layers = tuple(int(b) for b in model_cfg.eca_layers)
    if any(not 1 <= b <= NUM_BLOCKS for b in layers) or len(set(layers)) != len(layers):
        raise SerjaxError(
            f"config field model.eca_layers: need distinct blocks in 1..{NUM_BLOCKS}, got {layers}"
        )
    # eca_kernels (one per ECA block) wins over eca_kernel (one size for all) when given.
    kernels = tuple(model_cfg.eca_kernels) or (model_cfg.eca_kernel,) * len(layers)
    if len(kernels) != len(layers):
        raise SerjaxError(
            f"config field model.eca_kernels: {len(kernels)} sizes for {len(layers)} ECA blocks"
        )
    # 0 means ECA-Net's adaptive rule, from the width of the block the ECA follows.
    kernels = tuple(
        int(k)
        if int(k) > 0
        else adaptive_eca_kernel(widths[b - 1], model_cfg.eca_gamma, model_cfg.eca_b)
        for k, b in zip(kernels, layers)
    )
    if any(k % 2 == 0 for k in kernels):
        raise SerjaxError(f"config field model.eca_kernel: sizes must be odd, got {kernels}")
    return SERCNN(
        num_classes=num_classes,
        widths=widths,
        eca_layers=layers,
        eca_kernels=kernels,
        eca_batch_norm=bool(model_cfg.eca_batch_norm),
    )


def count_params(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
