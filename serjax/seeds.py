"""Several seeds in one jitted step: a function of one seed's arguments lifted to stacked
per-seed arguments (axis 0). How (`train.seed_strategy`), measured in results/bench/train.md,
results/bench/seeds.md and results/bench/gpu.md: `unroll` writes the S single-seed
computations out in one program (the default); `vmap` (jax.vmap); `map` (lax.map, a loop);
`chunks` (unroll over at most SEED_CHUNK seeds per call).

serjax's steps carry a vmap rule (serjax.train, serjax.batching): a jax.vmap of a step over
stacked seeds runs one step per seed, so `vmap` compiles to `unroll`'s program and trains
as fast, with equal results. Without it JAX would batch each convolution into a grouped one
(0.53-0.65× `unroll` on the CPU, 0.08-0.19× on an H200); serjax's convolutions have a rule
of their own for a user's vmap of other code around the model (0.88-0.91× on the CPU).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from serjax.errors import SerjaxError

SEED_STRATEGIES = ("auto", "vmap", "unroll", "map", "chunks")
SEED_CHUNK = 2  # seeds per jitted call under "chunks"


def resolve_seed_strategy(strategy: str) -> str:
    """`auto` is `unroll`, on the CPU and on accelerators (results/bench/seeds.md, gpu.md)."""
    if strategy not in SEED_STRATEGIES:
        raise SerjaxError(
            f"config field train.seed_strategy: {strategy!r} is not one of {SEED_STRATEGIES}"
        )
    return "unroll" if strategy == "auto" else strategy


def seeds_of(config) -> list[int]:
    """The run's training seeds: seed, seed + 1, ..., seed + num_seeds - 1."""
    if config.num_seeds < 1:
        raise SerjaxError(f"config field num_seeds: need at least 1, got {config.num_seeds}")
    return [config.seed + s for s in range(config.num_seeds)]


def seed_keys(seeds, fold_index: int) -> jax.Array:
    """One initialisation key per seed, distinct per fold."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(int(s)), fold_index) for s in seeds])


def _num_seeds(per_seed_args) -> int:
    return jax.tree_util.tree_leaves(per_seed_args[0])[0].shape[0]


def _seed(tree, s: int):
    return jax.tree_util.tree_map(lambda x: x[s], tree)


def over_seeds(fn: Callable, strategy: str, per_seed: int) -> Callable:
    """fn(a_1..a_p, shared...) → f(A_1..A_p, shared...), where the first `per_seed`
    arguments carry a leading seed axis and the others are shared by every seed."""
    if strategy == "vmap":
        return lambda *args: jax.vmap(
            fn, in_axes=(0,) * per_seed + (None,) * (len(args) - per_seed)
        )(*args)

    if strategy == "unroll":

        def unrolled(*args):
            stacked, shared = args[:per_seed], args[per_seed:]
            outs = [fn(*_seed(stacked, s), *shared) for s in range(_num_seeds(stacked))]
            return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)

        return unrolled

    if strategy == "map":

        def mapped(*args):
            stacked, shared = args[:per_seed], args[per_seed:]
            return jax.lax.map(lambda xs: fn(*xs, *shared), stacked)

        return mapped
    raise ValueError(f"no seed strategy {strategy!r} inside a jitted step")


@functools.partial(jax.jit, static_argnums=1)
def _split_seeds(tree, chunk: int) -> tuple:
    """A stacked pytree cut into consecutive slices of `chunk` seeds, in one jitted call
    (slicing leaf by leaf outside jit costs a dispatch per leaf and slice: more than a whole
    step on a GPU)."""
    seeds = jax.tree_util.tree_leaves(tree)[0].shape[0]
    return tuple(
        jax.tree_util.tree_map(lambda x, s=s: x[s : s + chunk], tree)
        for s in range(0, seeds, chunk)
    )


@jax.jit
def _join_seeds(parts: tuple):
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts)


def in_chunks(jitted: Callable, per_seed: int, chunk: int = SEED_CHUNK) -> Callable:
    """Call jitted on at most `chunk` seeds at a time, the outputs concatenated back along
    the seed axis (the split and the join are one jitted call each)."""

    def run(*args):
        stacked, shared = args[:per_seed], args[per_seed:]
        seeds = _num_seeds(stacked)
        if seeds <= chunk:
            return jitted(*args)
        pieces = [_split_seeds(a, chunk) for a in stacked]
        outs = [jitted(*[p[c] for p in pieces], *shared) for c in range(-(-seeds // chunk))]
        return _join_seeds(tuple(outs))

    return run


def jit_over_seeds(fn: Callable, strategy: str, per_seed: int, **jit_args) -> Callable:
    """fn lifted over seeds by `strategy` (already resolved) and jit-compiled."""
    inner = "unroll" if strategy == "chunks" else strategy
    jitted = jax.jit(over_seeds(fn, inner, per_seed), **jit_args)
    return in_chunks(jitted, per_seed) if strategy == "chunks" else jitted
