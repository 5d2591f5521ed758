"""Jit-compiled train and eval steps for S seeds at once, and the per-fold epoch loop.

The whole corpus's features sit on the device once as a [V·U, mels, frames] float16 table
(V STFT versions × U utterances); a step receives only row indices and gathers its batch
inside the jitted function. Its shapes do not depend on the fold, so each step compiles
once per experiment and is reused by every fold.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from serjax.cpu_tuning import compiler_options
from serjax.errors import SerjaxError
from serjax.losses import focal_loss

SEED_STRATEGIES = ("auto", "vmap", "unroll", "map", "chunks")
SEED_CHUNK = 2  # seeds per jitted call under "chunks"


class TrainState(train_state.TrainState):
    batch_stats: Any


def learning_rate_schedule(train_cfg) -> optax.Schedule:
    """Learning rate as a function of the epoch: lr · decay^epoch."""
    return optax.exponential_decay(
        train_cfg.learning_rate,
        transition_steps=1,
        decay_rate=train_cfg.lr_decay_per_epoch,
        staircase=True,
    )


def resolve_seed_strategy(strategy: str) -> str:
    """`auto`: unroll, on the CPU and on accelerators (measured).

    On 2 CPU cores (results/bench/train.md, n = 1, 64 × 601, huge pages for malloc): `unroll`
    (the S single-seed steps written out in one jitted function) gives 0.98-1.22× the
    throughput of S separate runs for S = 1-8 over two benchmark runs; `chunks` (two seeds
    per jitted call) 0.94-1.14×; vmapping S seeds makes XLA's convolutions grouped ones,
    0.43-0.74× for S = 2-8; lax.map runs its loop body at 0.05-0.06× (~18-20× slower).
    (Measured earlier under the mallopt-tuned allocator, SERJAX_MALLOC=tuned, unrolling lost
    from S = 4 on, 0.6× at S = 8; `chunks` was then the CPU's choice and remains one for that
    setting.)
    On an H200 (results/bench/gpu.md, n = 4): `unroll` 0.98-1.06×, vmap 0.08-0.19×.
    """
    if strategy not in SEED_STRATEGIES:
        raise SerjaxError(
            f"config field train.seed_strategy: {strategy!r} is not one of {SEED_STRATEGIES}"
        )
    return "unroll" if strategy == "auto" else strategy


def _num_seeds(args, shared: tuple[int, ...]) -> int:
    """S, the leading axis of the first per-seed (not shared) argument."""
    first = next(i for i in range(len(args)) if i not in shared)
    return jax.tree_util.tree_leaves(args[first])[0].shape[0]


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


def _in_chunks(jitted: Callable, shared: tuple[int, ...], chunk: int) -> Callable:
    """Call jitted (stacked per-seed arguments on axis 0) on at most `chunk` seeds at a time,
    the outputs concatenated back along the seed axis (the split and the join are one jitted
    call each)."""

    def run(*args):
        seeds = _num_seeds(args, shared)
        if seeds <= chunk:
            return jitted(*args)
        pieces = {i: _split_seeds(a, chunk) for i, a in enumerate(args) if i not in shared}
        outs = [
            jitted(*[a if i in shared else pieces[i][c] for i, a in enumerate(args)])
            for c in range(-(-seeds // chunk))
        ]
        return _join_seeds(tuple(outs))

    return run


def _over_seeds(fn: Callable, strategy: str, shared: tuple[int, ...], num_args: int) -> Callable:
    """Lift fn(per_seed..., shared...) to stacked per-seed arguments (axis 0)."""
    if strategy == "vmap":
        return jax.vmap(fn, in_axes=tuple(None if i in shared else 0 for i in range(num_args)))

    def per_seed_args(args, pick):
        return [args[i] if i in shared else pick(args[i]) for i in range(num_args)]

    if strategy == "unroll":

        def unrolled(*args):
            seeds = _num_seeds(args, shared)
            outs = [
                fn(
                    *per_seed_args(
                        args, lambda tree, s=s: jax.tree_util.tree_map(lambda x: x[s], tree)
                    )
                )
                for s in range(seeds)
            ]
            return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)

        return unrolled

    def mapped(*args):
        per_seed = [a for i, a in enumerate(args) if i not in shared]

        def one(xs):
            it = iter(xs)
            return fn(*per_seed_args(args, lambda _: next(it)))

        return jax.lax.map(one, per_seed)

    return mapped


def _normalise(data, rows, mean, std):
    x = data[rows].astype(jnp.float32)
    return (x - mean[:, None]) / std[:, None]


class Trainer:
    """The jitted steps for one model, optimizer and loss; reused across folds."""

    def __init__(
        self,
        model,
        tx,
        gamma: float,
        num_utterances: int,
        seed_strategy: str = "auto",
        compiler_options: dict | None = None,
    ):
        self.model = model
        self.tx = tx
        self.strategy = resolve_seed_strategy(seed_strategy)
        U = num_utterances

        def train_step(state, rows, data, labels, weights, mean, std, lr):
            x = _normalise(data, rows, mean, std)
            y = labels[rows % U]

            def loss_fn(params):
                logits, updates = model.apply(
                    {"params": params, "batch_stats": state.batch_stats},
                    x,
                    train=True,
                    mutable=["batch_stats"],
                )
                return focal_loss(logits, y, weights, gamma).mean(), (updates, logits)

            (loss, (updates, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state.params
            )
            hyper = dict(state.opt_state.hyperparams, learning_rate=lr)
            state = state.replace(opt_state=state.opt_state._replace(hyperparams=hyper))
            state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
            correct = jnp.sum(jnp.argmax(logits, -1) == y)
            return state, jnp.stack([loss, correct.astype(jnp.float32)])

        def eval_step(state, rows, data, mean, std):
            x = _normalise(data, rows, mean, std)
            return model.apply({"params": state.params, "batch_stats": state.batch_stats}, x)

        def eca_step(state, rows, data, mean, std):
            x = _normalise(data, rows, mean, std)
            _, inter = model.apply(
                {"params": state.params, "batch_stats": state.batch_stats},
                x,
                mutable=["intermediates"],
            )
            return {
                name: value["channel_weights"][0]
                for name, value in inter.get("intermediates", {}).items()
            }

        inner = "unroll" if self.strategy == "chunks" else self.strategy

        def compiled(fn, shared, num_args, **jit_args):
            jitted = jax.jit(
                _over_seeds(fn, inner, shared, num_args),
                compiler_options=compiler_options,
                **jit_args,
            )
            return _in_chunks(jitted, shared, SEED_CHUNK) if self.strategy == "chunks" else jitted

        self.train_step = compiled(train_step, (2, 3, 4, 5, 6, 7), 8, donate_argnums=0)
        self.eval_step = compiled(eval_step, (1, 2, 3, 4), 5)
        self.eca_step = compiled(eca_step, (1, 2, 3, 4), 5)

        def init_one(key, input_shape):
            variables = model.init(key, jnp.zeros((1, *input_shape), jnp.float32))
            return TrainState.create(
                apply_fn=model.apply,
                params=variables["params"],
                batch_stats=variables["batch_stats"],
                tx=tx,
            )

        self._init = jax.jit(
            lambda keys, shape: jax.vmap(lambda k: init_one(k, shape))(keys), static_argnums=1
        )

    def init(self, keys: jax.Array, input_shape: tuple[int, int]) -> TrainState:
        """S freshly initialised states, stacked on axis 0 (one per key)."""
        return self._init(keys, tuple(int(d) for d in input_shape))

    def _batched(self, step, states, data, rows, mean, std, batch_size):
        """step over rows in fixed-size batches (the last one padded, so one shape compiles),
        outputs concatenated along the sample axis (axis 1, after the seeds). The padding is
        cut off and the batches joined in NumPy, after one transfer of them all: slicing or
        concatenating on the device would compile once per fold size."""
        outputs, sizes = [], []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            padded = np.pad(chunk, (0, batch_size - len(chunk)))
            outputs.append(step(states, jnp.asarray(padded), data, mean, std))
            sizes.append(len(chunk))
        host = jax.device_get(outputs)
        parts = [
            jax.tree_util.tree_map(lambda a, n=n: a[:, :n], out) for out, n in zip(host, sizes)
        ]
        return jax.tree_util.tree_map(lambda *p: np.concatenate(p, axis=1), *parts)

    def predict(self, states, data, rows: np.ndarray, mean, std, batch_size: int) -> np.ndarray:
        """Logits [S, len(rows), classes]."""
        return self._batched(self.eval_step, states, data, rows, mean, std, batch_size)

    def channel_weights(self, states, data, rows: np.ndarray, mean, std, batch_size: int) -> dict:
        """ECA channel weights per ECA block: {"eca5": [S, len(rows), C], ...}."""
        return self._batched(self.eca_step, states, data, rows, mean, std, batch_size)


@functools.lru_cache(maxsize=8)
def _cached_trainer(
    model, adam: tuple, gamma: float, num_utterances: int, strategy: str, options: tuple | None
) -> Trainer:
    lr, b1, b2, eps = adam
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=b1, b2=b2, eps=eps)
    return Trainer(
        model, tx, gamma, num_utterances, strategy, None if options is None else dict(options)
    )


def trainer_for(model, train_cfg, num_utterances: int) -> Trainer:
    """The Trainer for this model and optimizer, shared by every run of a process that
    uses the same ones, so a sweep or a test suite compiles each step once."""
    adam = (
        float(train_cfg.learning_rate),
        float(train_cfg.adam_b1),
        float(train_cfg.adam_b2),
        float(train_cfg.adam_eps),
    )
    options = compiler_options()
    return _cached_trainer(
        model,
        adam,
        float(train_cfg.focal_gamma),
        int(num_utterances),
        resolve_seed_strategy(train_cfg.seed_strategy),
        None if options is None else tuple(sorted(options.items())),
    )


def epoch_batches(
    train_rows: np.ndarray, batch_size: int, seeds, fold_index: int, epoch: int
) -> np.ndarray:
    """[steps, S, batch] row indices: each seed its own shuffle of the training rows, the last
    batch filled with extra rows drawn from the same seed's stream. Derived from
    (seed, fold, epoch) alone, so a resumed run draws the same batches."""
    if batch_size < 1:
        raise SerjaxError(f"config field train.batch_size: need >= 1, got {batch_size}")
    if not len(train_rows):
        raise SerjaxError(f"fold {fold_index} has no training utterance")
    steps = -(-len(train_rows) // batch_size)
    per_seed = []
    for seed in seeds:
        rng = np.random.default_rng([int(seed), fold_index, epoch])
        order = rng.permutation(train_rows)
        missing = steps * batch_size - len(order)
        # without replacement unless the fold is smaller than the gap (under half a batch)
        fill = rng.choice(train_rows, missing, replace=missing > len(train_rows))
        per_seed.append(np.concatenate([order, fill]).reshape(steps, batch_size))
    return np.stack(per_seed, axis=1)


def seed_keys(seeds, fold_index: int) -> jax.Array:
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(int(s)), fold_index) for s in seeds])
