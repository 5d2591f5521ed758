"""The jit-compiled train and eval steps, and `train_fold`, the epoch loop of one fold.

`train_step` and `eval_step` see one seed; `Trainer` lifts them over S stacked seeds
(serjax/seeds.py) and jit-compiles them once per model, optimizer and loss. Their shapes
do not depend on the fold: every fold of a run, and every run of a sweep with the same
model, reuses the compiled steps.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from tqdm.auto import tqdm

from serjax import selection
from serjax.batching import per_index_when_batched
from serjax.checkpoints import FoldCheckpoints
from serjax.data import FoldData
from serjax.errors import SerjaxError
from serjax.interrupts import Interrupted, StopNow, StopRequest
from serjax.losses import focal_loss
from serjax.metrics import METRICS, MetricsWriter, score_seeds
from serjax.seeds import jit_over_seeds, over_seeds, resolve_seed_strategy, seed_keys
from serjax.xla_options import compiler_options


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


def _one_seed_train_step(state: TrainState, rows, data: FoldData, lr, *, model, gamma: float):
    x, y = data.inputs(rows), data.labels[rows]

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return focal_loss(logits, y, data.class_weights, gamma).mean(), (updates, logits)

    (loss, (updates, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    hyper = dict(state.opt_state.hyperparams, learning_rate=lr)
    state = state.replace(opt_state=state.opt_state._replace(hyperparams=hyper))
    state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    correct = jnp.sum(jnp.argmax(logits, -1) == y)
    return state, jnp.stack([loss, correct.astype(jnp.float32)])


def _one_seed_logits(state: TrainState, rows, data: FoldData, *, model):
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return model.apply(variables, data.inputs(rows))


# The steps' vmap rules (serjax.batching): under a vmap over seeds (each seed its state) one
# step per seed on its slice of the state, outputs stacked, which is the program `unroll`
# writes; no seed's feature maps are ever stacked with another's. rule=False: JAX's own
# batching (for benchmarks and tests).
@functools.lru_cache(maxsize=16)
def _train_fn(model, gamma: float, rule: bool = True) -> Callable:
    fn = functools.partial(_one_seed_train_step, model=model, gamma=gamma)
    return per_index_when_batched(fn, 2) if rule else fn


@functools.lru_cache(maxsize=16)
def _eval_fn(model, rule: bool = True) -> Callable:
    fn = functools.partial(_one_seed_logits, model=model)
    return per_index_when_batched(fn, 1) if rule else fn


def train_step(state: TrainState, rows, data: FoldData, lr, *, model, gamma: float):
    """One Adam step of one seed on the table rows `rows` [B]: weighted focal loss, BatchNorm
    statistics updated, learning rate `lr` (the epoch's). Returns the new state and
    [loss, correct predictions]. A jax.vmap of it over stacked states and rows runs one step
    per seed (its vmap rule), as fast as `unroll` and equal to it."""
    return _train_fn(model, gamma)(state, rows, data, lr)


def eval_step(state: TrainState, rows, data: FoldData, *, model):
    """Logits [B, classes] of one seed's model (BatchNorm on its running statistics); under a
    vmap over seeds one forward pass per seed."""
    return _eval_fn(model)(state, rows, data)


def eca_step(state: TrainState, rows, data: FoldData, *, model) -> dict:
    """The ECA blocks' channel weights, {"eca5": [B, channels], ...} (paper Fig. 14)."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    _, inter = model.apply(variables, data.inputs(rows), mutable=["intermediates"])
    return {
        name: value["channel_weights"][0] for name, value in inter.get("intermediates", {}).items()
    }


class Trainer:
    """The steps of one model, optimizer and loss over S stacked seeds, jit-compiled."""

    def __init__(self, model, tx, gamma: float, seed_strategy: str = "auto", options=None):
        self.model, self.tx = model, tx
        self.strategy = resolve_seed_strategy(seed_strategy)

        def jit(fn, per_seed, **jit_args):
            return jit_over_seeds(fn, self.strategy, per_seed, compiler_options=options, **jit_args)

        # (state, rows) per seed in training; the data and learning rate are shared
        step = functools.partial(train_step, model=model, gamma=gamma)
        self.train_step = jit(step, 2, donate_argnums=0)
        lifted = over_seeds(step, "unroll" if self.strategy == "chunks" else self.strategy, 2)

        def epoch(states, batches, data, lr):
            return jax.lax.scan(lambda st, rows: lifted(st, rows, data, lr), states, batches)

        # an epoch's steps as one loop on the device: batches [steps, S, B] -> stats [steps, S, 2]
        self.train_epoch = jax.jit(epoch, donate_argnums=0, compiler_options=options)
        # evaluation: the state per seed, the rows shared
        self.eval_step = jit(functools.partial(eval_step, model=model), 1)
        self.eca_step = jit(functools.partial(eca_step, model=model), 1)

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

    def _batched(self, step, states, data: FoldData, rows: np.ndarray, batch_size: int):
        """step over rows in fixed-size batches (the last one padded, so one shape compiles),
        outputs joined along the sample axis (axis 1, after the seeds). The padding is cut
        and the batches joined in NumPy after one transfer: slicing or concatenating on the
        device would compile once per fold size."""
        outputs, sizes = [], []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            padded = np.pad(chunk, (0, batch_size - len(chunk)))
            outputs.append(step(states, jnp.asarray(padded), data))
            sizes.append(len(chunk))
        host = jax.device_get(outputs)
        parts = [jax.tree_util.tree_map(lambda a, n=n: a[:, :n], o) for o, n in zip(host, sizes)]
        return jax.tree_util.tree_map(lambda *p: np.concatenate(p, axis=1), *parts)

    def predict(self, states, data: FoldData, rows: np.ndarray, batch_size: int) -> np.ndarray:
        """Logits [S, len(rows), classes]."""
        return self._batched(self.eval_step, states, data, rows, batch_size)

    def channel_weights(self, states, data: FoldData, rows: np.ndarray, batch_size: int):
        """ECA channel weights per ECA block: {"eca5": [S, len(rows), C], ...}."""
        return self._batched(self.eca_step, states, data, rows, batch_size)


@functools.lru_cache(maxsize=8)
def _cached_trainer(model, adam_args: tuple, gamma: float, strategy: str, options) -> Trainer:
    lr, b1, b2, eps = adam_args
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=b1, b2=b2, eps=eps)
    return Trainer(model, tx, gamma, strategy, None if options is None else dict(options))


def trainer_for(model, train_cfg) -> Trainer:
    """The Trainer for this model and optimizer, shared by every run of a process that
    uses the same ones, so a sweep or a test suite compiles each step once."""
    adam_args = tuple(
        float(train_cfg[f]) for f in ("learning_rate", "adam_b1", "adam_b2", "adam_eps")
    )
    options = compiler_options(deterministic=bool(train_cfg.get("deterministic", False)))
    return _cached_trainer(
        model,
        adam_args,
        float(train_cfg.focal_gamma),
        resolve_seed_strategy(train_cfg.seed_strategy),
        None if options is None else tuple(sorted(options.items())),
    )


def epoch_batches(train_rows: np.ndarray, batch_size: int, seeds, fold_index: int, epoch: int):
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


@dataclasses.dataclass(frozen=True)
class FoldRows:
    """One fold's table rows: training (all training versions), inner validation and test
    (the test version), with the labels of the validation and test rows."""

    name: str
    index: int
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    validation_labels: np.ndarray
    test_labels: np.ndarray


@dataclasses.dataclass
class FoldOutcome:
    """What `train_fold` leaves: the last epoch's states and, with a validation split, the
    best epoch per seed and its states."""

    states: TrainState
    best: dict
    best_states: TrainState | None


def _epoch_records(fold: FoldRows, seeds, epoch: int, lr, stats, batch_size: int) -> list[dict]:
    diverged = [seed for s, seed in enumerate(seeds) if not np.isfinite(stats[:, s, 0]).all()]
    if diverged:
        raise SerjaxError(
            f"{fold.name}, epoch {epoch}: the training loss of seed(s) {diverged} "
            "is not finite (training diverged); try a lower train.learning_rate "
            "in a new --workdir"
        )
    return [
        {
            "fold": fold.name,
            "seed": seed,
            "epoch": epoch,
            "lr": float(lr),
            "train_loss": float(stats[:, s, 0].mean()),
            "train_acc": float(stats[:, s, 1].sum() / (stats.shape[0] * batch_size)),
        }
        for s, seed in enumerate(seeds)
    ]


def _add_scores(records, prefix: str, logits, labels, num_classes: int) -> list[dict]:
    scored = score_seeds(logits, labels, num_classes)
    for record, score in zip(records, scored):
        record.update({f"{prefix}_{m}": score[m] for m in METRICS})
    return scored


def train_fold(
    trainer: Trainer,
    data: FoldData,
    fold: FoldRows,
    seeds,
    train_cfg,
    num_classes: int,
    checkpoints: FoldCheckpoints,
    metrics: MetricsWriter,
    progress: bool = True,
    on_checkpoint: Callable[[], object] | None = None,
) -> FoldOutcome:
    """Train every seed on one fold for train_cfg.epochs epochs, resuming from the fold's
    latest checkpoint. Per epoch: a step per batch, the metrics line of each seed (train
    loss and accuracy, validation and test scores), the best epoch on the validation rows,
    a checkpoint every train_cfg.checkpoint_every epochs (`on_checkpoint` runs after each).
    Ctrl-C or SIGTERM saves the last whole epoch and raises Interrupted."""
    schedule = learning_rate_schedule(train_cfg)
    validates = len(fold.validation) > 0
    states = trainer.init(seed_keys(seeds, fold.index), data.features.shape[1:])
    best = selection.new_best(len(seeds))
    # a copy: the train step donates (frees) the buffers of the states it is given
    best_states = jax.tree_util.tree_map(jnp.copy, states) if validates else None
    template = selection.best_extras(best)
    if validates:
        template["best_state"] = selection.weights_of(best_states)
    start_epoch, states, extras = checkpoints.restore_latest_intact(states, template)
    start_epoch = start_epoch or 0
    if start_epoch:
        best = selection.best_from_extras(extras)
        if validates:
            best_states = selection.with_weights(states, extras["best_state"])
    metrics.resume(fold.name, start_epoch)

    def save(epoch_done, states_done, best_done, best_states_done):
        extras = selection.best_extras(best_done)
        if best_states_done is not None:
            extras["best_state"] = selection.weights_of(best_states_done)
        checkpoints.save(epoch_done, states_done, extras)
        if on_checkpoint is not None:
            on_checkpoint()

    saved_epoch = start_epoch
    epochs = train_cfg.epochs
    scan = bool(train_cfg.get("scan_epoch", False))
    bar = tqdm(
        range(start_epoch, epochs),
        initial=start_epoch,
        total=epochs,
        desc=f"{fold.name} ({len(seeds)} seed{'s' * (len(seeds) > 1)})",
        unit="epoch",
        disable=not progress,
    )
    snapshot = (start_epoch, states, dict(best), best_states)
    with StopRequest() as stop:
        try:
            for epoch in bar:
                # What `epoch` finished epochs left, kept whole while this epoch runs (the
                # steps donate their input): an interruption saves it, so Ctrl-C loses at
                # most this epoch.
                snapshot = (epoch, states, dict(best), best_states)
                states = jax.tree_util.tree_map(jnp.copy, states)
                lr = jnp.float32(schedule(epoch))
                batches = epoch_batches(fold.train, train_cfg.batch_size, seeds, fold.index, epoch)
                states, stats = _run_epoch(trainer, states, batches, data, lr, stop, scan)
                records = _epoch_records(fold, seeds, epoch + 1, lr, stats, train_cfg.batch_size)
                last_epoch = epoch + 1 == epochs
                if validates:
                    logits = trainer.predict(
                        states, data, fold.validation, train_cfg.eval_batch_size
                    )
                    scored = _add_scores(
                        records, "val", logits, fold.validation_labels, num_classes
                    )
                    best, improved = selection.update_best(
                        best, [v["ua"] for v in scored], epoch + 1
                    )
                    if improved.any():
                        best_states = selection.select_improved(improved, states, best_states)
                every = train_cfg.eval_every
                if every and ((epoch + 1) % every == 0 or last_epoch):
                    logits = trainer.predict(states, data, fold.test, train_cfg.eval_batch_size)
                    _add_scores(records, "test", logits, fold.test_labels, num_classes)
                metrics.write(records)
                bar.set_postfix(_postfix(records))
                if (epoch + 1) % train_cfg.checkpoint_every == 0 or last_epoch or stop.requested:
                    save(epoch + 1, states, best, best_states)
                    saved_epoch = epoch + 1
                if stop.requested and not last_epoch:
                    raise StopNow
        except StopNow:
            done, done_states, done_best, done_best_states = snapshot
            if done > saved_epoch:
                save(done, done_states, done_best, done_best_states)
                saved_epoch = done
            bar.close()
            raise Interrupted(fold.name, saved_epoch) from None
        finally:
            checkpoints.close()
            metrics.close()
    return FoldOutcome(states, best, best_states)


def _run_epoch(trainer, states, batches, data, lr, stop, scan: bool):
    """(states, stats [steps, S, 2] in NumPy) after one epoch's batches [steps, S, B]."""
    if scan:
        if stop.requested:
            raise StopNow
        states, stats = trainer.train_epoch(states, jnp.asarray(batches), data, lr)
        return states, np.asarray(jax.device_get(stats))
    step_stats = []
    for rows in batches:
        if stop.requested:
            raise StopNow
        states, stats = trainer.train_step(states, jnp.asarray(rows), data, lr)
        step_stats.append(stats)
    # fetched once per epoch, stacked in NumPy (a jnp.stack would compile again for each
    # new number of steps per epoch, i.e. per fold size)
    return states, np.stack(jax.device_get(step_stats))


def _postfix(records: list[dict]) -> dict:
    postfix = {"loss": f"{np.mean([r['train_loss'] for r in records]):.3f}"}
    if "test_ua" in records[0]:
        postfix["test UA"] = f"{np.mean([r['test_ua'] for r in records]):.3f}"
    return postfix
