"""The 6-layer CNN with Efficient Channel Attention (SPEC §3), as flax.linen modules.

The blocks are plain linen (nn.Conv, nn.BatchNorm, nn.relu, nn.avg_pool); the config field
model.conv_impl may swap in serjax.layers' faster CPU twins, which compute the same with the
same parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from serjax import layers
from serjax.errors import SerjaxError

NUM_BLOCKS = 6
# The config field model.compute_dtype: what the layers compute in. Parameters, BatchNorm
# statistics, the ECA weights and the logits (so the loss) stay float32 either way.
COMPUTE_DTYPES = ("float32", "bfloat16")
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


class ConvBlock(nn.Module):
    """Conv 3×3 (stride 1, SAME) → BatchNorm → ReLU. `conv_impl`: "flax" (nn.Conv,
    nn.BatchNorm, nn.relu) or serjax.layers' fast twins (same parameters)."""

    features: int
    conv_impl: str = "flax"  # a layers.RESOLVED_IMPLS value
    dtype: Any = None  # computation dtype (None: the inputs' and parameters', float32)

    @nn.compact
    def __call__(self, x, train: bool):
        # momentum 0.9 here is PyTorch's 0.1: the running statistics move 10 % per step.
        if self.conv_impl == "flax":
            x = nn.Conv(
                self.features,
                (3, 3),
                padding="SAME",
                kernel_init=he_normal,
                dtype=self.dtype,
                name="Conv_0",
            )(x)
            bn = nn.BatchNorm(
                use_running_average=not train,
                momentum=0.9,
                epsilon=1e-5,
                dtype=self.dtype,
                name="BatchNorm_0",
            )
            return nn.relu(bn(x))
        shifted_sum = self.conv_impl == "fused"
        x = layers.Conv3x3(self.features, he_normal, shifted_sum, self.dtype, name="Conv_0")(x)
        return layers.BatchNormReLU(momentum=0.9, epsilon=1e-5, name="BatchNorm_0")(x, train)


def pool_2x2(x: jax.Array, conv_impl: str = "flax") -> jax.Array:
    """2×2 average pooling, stride 2, 'VALID' (an odd trailing row or column is dropped)."""
    if conv_impl == "flax":
        return nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))  # keywords: jax2onnx too
    return layers.avg_pool_2x2(x)


class ECA(nn.Module):
    """y = x · sigmoid(conv1d_k(GAP_hw(x))). `batch_norm` adds a BatchNorm on the pooled
    vector (the "original ECA" switch; the paper's own block has none)."""

    kernel_size: int
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x, train: bool):
        # in float32 at least, whatever the blocks compute in (a no-op for float32 maps)
        pooled = x.astype(jnp.promote_types(x.dtype, jnp.float32)).mean(axis=(1, 2))
        if self.batch_norm:
            # two-pass variance: the pooled channels' spread over a batch is small next to
            # their mean, and E[x²] − E[x]² in float32 cancels most of its digits
            pooled = nn.BatchNorm(
                use_running_average=not train, momentum=0.9, epsilon=1e-5, use_fast_variance=False
            )(pooled)
        kernel = self.param("kernel", _eca_kernel_init, (self.kernel_size,))
        weights = nn.sigmoid(channel_conv1d(pooled, kernel))
        self.sow("intermediates", "channel_weights", weights)
        return x * weights.astype(x.dtype)[:, None, None, :]


class SERCNN(nn.Module):
    """Six conv blocks (avg-pool 2×2 after 1-5, global average after 6), ECA after the
    blocks in `eca_layers`, then Dense(C6) → ReLU → Dense(classes).

    Input: [B, n_mels, frames] log-Mel features; output: [B, classes] float32 logits.
    `conv_impl`: the blocks' layers (serjax.layers.resolve_conv_impl; build_model resolves
    "auto" for the backend when the model is built, a model made here directly when it is
    traced). `compute_dtype` (COMPUTE_DTYPES): what convolutions, normalisation outputs and
    dense layers compute in; parameters, BatchNorm statistics and logits are float32.
    """

    num_classes: int
    widths: Sequence[int]
    eca_layers: Sequence[int] = (5, 6)
    eca_kernels: Sequence[int] = (7, 7)
    eca_batch_norm: bool = False
    conv_impl: str = "auto"
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input_size(*x.shape[1:3], poolings=len(self.widths) - 1)
        impl = layers.resolve_conv_impl(self.conv_impl)
        # float32: None, flax's dtype inference, as before the field existed (the same program)
        dtype = None if self.compute_dtype == "float32" else jnp.dtype(self.compute_dtype)
        x = x[..., None]
        kernels = dict(zip(self.eca_layers, self.eca_kernels))
        for block, width in enumerate(self.widths, start=1):
            x = ConvBlock(width, impl, dtype, name=f"block{block}")(x, train)
            if block in kernels:
                x = ECA(kernels[block], self.eca_batch_norm, name=f"eca{block}")(x, train)
            if block < len(self.widths):
                x = pool_2x2(x, impl)
        x = x.mean(axis=(1, 2))
        x = nn.relu(nn.Dense(self.widths[-1], kernel_init=he_normal, dtype=dtype, name="dense1")(x))
        logits = nn.Dense(self.num_classes, kernel_init=he_normal, dtype=dtype, name="dense2")(x)
        # the loss and the scores in float32 (float32 or wider inputs keep their logits)
        return logits if dtype is None else logits.astype(jnp.float32)


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
    eca_layers = tuple(int(b) for b in model_cfg.eca_layers)
    if any(not 1 <= b <= NUM_BLOCKS for b in eca_layers) or len(set(eca_layers)) != len(eca_layers):
        raise SerjaxError(
            f"config field model.eca_layers: need distinct blocks in 1..{NUM_BLOCKS}, "
            f"got {eca_layers}"
        )
    # eca_kernels (one per ECA block) wins over eca_kernel (one size for all) when given.
    kernels = tuple(model_cfg.eca_kernels) or (model_cfg.eca_kernel,) * len(eca_layers)
    if len(kernels) != len(eca_layers):
        raise SerjaxError(
            f"config field model.eca_kernels: {len(kernels)} sizes for {len(eca_layers)} ECA blocks"
        )
    # 0 means ECA-Net's adaptive rule, from the width of the block the ECA follows.
    kernels = tuple(
        int(k)
        if int(k) > 0
        else adaptive_eca_kernel(widths[b - 1], model_cfg.eca_gamma, model_cfg.eca_b)
        for k, b in zip(kernels, eca_layers)
    )
    if any(k % 2 == 0 for k in kernels):
        raise SerjaxError(f"config field model.eca_kernel: sizes must be odd, got {kernels}")
    # a config saved before the field existed ran what "auto" runs
    conv_impl = getattr(model_cfg, "conv_impl", None) or "auto"
    if conv_impl not in layers.CONV_IMPLS:
        raise SerjaxError(
            f"config field model.conv_impl: {conv_impl!r}; use one of {layers.CONV_IMPLS}"
        )
    # a config saved before the field existed computed in float32
    compute_dtype = getattr(model_cfg, "compute_dtype", None) or "float32"
    if compute_dtype not in COMPUTE_DTYPES:
        raise SerjaxError(
            f"config field model.compute_dtype: {compute_dtype!r}; use one of {COMPUTE_DTYPES}"
        )
    return SERCNN(
        num_classes=num_classes,
        widths=widths,
        eca_layers=eca_layers,
        eca_kernels=kernels,
        eca_batch_norm=bool(model_cfg.eca_batch_norm),
        conv_impl=layers.resolve_conv_impl(conv_impl),
        compute_dtype=compute_dtype,
    )


def count_params(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
