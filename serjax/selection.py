"""Honest model selection: per seed, the epoch with the best UA on an inner validation split
of the training fold (never the test fold), and that epoch's parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def new_best(num_seeds: int) -> dict:
    """Per seed, the best validation UA so far and its epoch. float64 in memory and in the
    checkpoint: a resumed run must compare later epochs against the exact bests (a float32
    copy rounds them, and an exact tie then counts as an improvement about half the time)."""
    return {"score": np.full(num_seeds, -1.0, np.float64), "epoch": np.zeros(num_seeds, np.int32)}


def update_best(best: dict, val_uas, epoch: int) -> tuple[dict, np.ndarray]:
    """(new bests, improved mask): a seed improves on a strictly higher validation UA."""
    uas = np.asarray(val_uas, np.float64)
    improved = uas > best["score"]
    new = {
        "score": np.where(improved, uas, best["score"]),
        "epoch": np.where(improved, np.int32(epoch), best["epoch"]).astype(np.int32),
    }
    return new, improved


def best_extras(best: dict) -> dict:
    """The bests as a checkpoint's extras."""
    return {"best_score": best["score"], "best_epoch": best["epoch"]}


def best_from_extras(extras: dict) -> dict:
    return {
        "score": np.asarray(extras["best_score"], np.float64),
        "epoch": np.asarray(extras["best_epoch"], np.int32),
    }


def weights_of(states) -> dict:
    """The parameters and BatchNorm statistics of stacked states (what a best epoch keeps)."""
    return {"params": states.params, "batch_stats": states.batch_stats}


def with_weights(states, tree: dict):
    return states.replace(params=tree["params"], batch_stats=tree["batch_stats"])


def select_improved(mask: np.ndarray, new, old):
    """Per seed, the new state's weights where mask is set, else the old one's."""
    pick = jnp.asarray(mask)

    def choose(a, b):
        return jnp.where(pick.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

    return old.replace(
        params=jax.tree_util.tree_map(choose, new.params, old.params),
        batch_stats=jax.tree_util.tree_map(choose, new.batch_stats, old.batch_stats),
    )
