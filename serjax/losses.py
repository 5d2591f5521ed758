"""Weighted focal loss (SPEC §4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from serjax.errors import SerjaxError

WEIGHTINGS = ("inverse_frequency", "none")


def class_weights(
    train_labels: np.ndarray, num_classes: int, weighting: str = "inverse_frequency"
) -> np.ndarray:
    """w_c ∝ 1/n_c on the training fold, scaled so the mean weight over training samples is 1."""
    if weighting == "none":
        return np.ones(num_classes, np.float32)
    if weighting != "inverse_frequency":
        raise SerjaxError(
            f"config field train.class_weighting: {weighting!r} is not one of {WEIGHTINGS}"
        )
    counts = np.bincount(train_labels, minlength=num_classes).astype(np.float64)
    if np.any(counts == 0):
        raise SerjaxError(
            f"a training fold has no sample of class(es) {np.flatnonzero(counts == 0).tolist()}"
        )
    return (len(train_labels) / (num_classes * counts)).astype(np.float32)


def check_focal_gamma(gamma: float) -> None:
    if not gamma >= 0:
        raise SerjaxError(f"config field train.focal_gamma: need γ >= 0, got {gamma}")


def focal_loss(logits: jax.Array, labels: jax.Array, weights: jax.Array, gamma: float) -> jax.Array:
    """Per-sample −w_y · (1 − p_y)^γ · log p_y for integer labels; γ = 0, w = 1 is cross-entropy."""
    check_focal_gamma(gamma)
    log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1)[:, 0]
    # 1 − p_y is exactly 0 once p_y rounds to 1, where (·)^γ has an infinite slope for γ < 1
    # (a NaN gradient); the floor changes no other value (1 − p_y is 0 or ≥ 2^-24 in float32),
    # though XLA fuses the step differently, so training rounds differently from before it
    modulation = jnp.maximum(1.0 - jnp.exp(log_p), 1e-12) ** gamma if gamma else 1.0
    return -weights[labels] * modulation * log_p
