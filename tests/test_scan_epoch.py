"""train.scan_epoch: an epoch's steps as one jitted lax.scan compute the per-step loop's
training, within float tolerance on the CPU (XLA orders the sums differently in a loop)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

from serjax import experiment
from serjax.data import FoldData
from serjax.model import SERCNN
from serjax.seeds import seed_keys
from serjax.train import Trainer, epoch_batches


def test_a_scanned_epoch_equals_its_steps():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((40, 32, 41)).astype(np.float16)
    data = FoldData.of(table, rng.integers(0, 4, 40), np.zeros(32), np.ones(32), np.ones(4))
    model = SERCNN(num_classes=4, widths=(4, 4, 8, 8, 8, 8))
    # plain SGD: Adam turns float noise in a near-zero gradient into a whole step of ±lr
    trainer = Trainer(model, optax.inject_hyperparams(optax.sgd)(learning_rate=1e-3), 2.0)
    batches = epoch_batches(np.arange(40), 8, [0, 1], fold_index=0, epoch=0)  # 5 steps, 2 seeds
    lr = jnp.float32(0.1)
    looped = trainer.init(seed_keys([0, 1], 0), (32, 41))
    scanned = jax.tree_util.tree_map(jnp.copy, looped)
    step_stats = []
    for rows in batches:
        looped, stats = trainer.train_step(looped, jnp.asarray(rows), data, lr)
        step_stats.append(np.asarray(stats))
    scanned, scan_stats = trainer.train_epoch(scanned, jnp.asarray(batches), data, lr)
    np.testing.assert_allclose(np.asarray(scan_stats), np.stack(step_stats), rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(looped), jax.tree_util.tree_leaves(scanned)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_a_run_with_scanned_epochs_logs_the_same_epochs(finished_run, tmp_path):
    config, workdir, _ = finished_run
    config = config.copy_and_resolve_references()
    config.train.scan_epoch = True
    experiment.run(config, tmp_path, progress=False)
    logs = [
        [json.loads(line) for line in (w / "metrics.jsonl").read_text().splitlines()]
        for w in (workdir, tmp_path)
    ]
    assert [(r["fold"], r["epoch"]) for r in logs[0]] == [(r["fold"], r["epoch"]) for r in logs[1]]
    for a, b in zip(*logs):
        np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-4)
