"""vmap rules that keep each seed's work apart.

JAX batches a function of several seeds' stacked arrays operation by operation: each
convolution becomes a grouped one, and each seed's activations live in one stacked array
(sliced out before a convolution, stacked back after it). Both are slow on XLA's CPU and GPU
backends (results/bench/seeds.md). `per_index_when_batched` gives a function a vmap rule that
instead calls it once per index, on that index's slices, and stacks its outputs: the program
`train.seed_strategy=unroll` writes, reached through `jax.vmap`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap


def per_index_when_batched(fn: Callable, per_index: int) -> Callable:
    """fn with a vmap rule: where every array of its first `per_index` arguments is batched
    (a vmap over seeds: each seed its parameters, or its activations and kernel), one call
    per index on that index's slices (any other batched argument sliced too, the unbatched
    ones shared), outputs stacked; otherwise JAX's own batching of fn.

    Nested vmaps apply the rule level by level. fn itself must not need differentiating
    through the rule (custom_vmap has no autodiff rule): wrap a whole gradient computation,
    or put the rule inside a custom_vjp, as serjax.layers.conv3x3 does."""
    batched_fn = custom_vmap(fn)

    @batched_fn.def_vmap
    def rule(axis_size, in_batched, *args):
        in_batched = tuple(in_batched)
        leaves = jax.tree_util.tree_leaves(in_batched[:per_index])
        if leaves and all(leaves):
            outs = [batched_fn(*_index(in_batched, args, i)) for i in range(axis_size)]
            out = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)
            return out, jax.tree_util.tree_map(lambda _: True, out)
        if not any(jax.tree_util.tree_leaves(in_batched)):
            out = batched_fn(*args)
            return out, jax.tree_util.tree_map(lambda _: False, out)
        in_axes = jax.tree_util.tree_map(lambda b: 0 if b else None, in_batched)
        out = jax.vmap(fn, in_axes=in_axes)(*args)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return batched_fn


def _index(in_batched: tuple, args: tuple, i: int) -> tuple:
    """args with every batched array replaced by its slice i."""
    return jax.tree_util.tree_map(lambda b, a: a[i] if b else a, in_batched, args)
