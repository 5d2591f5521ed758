"""Shared fixtures: one tiny synthetic corpus and one tiny finished run per test session
(JAX compiles per shape, so the suite trains as little and as few shapes as it can)."""

import pytest

from serjax import cli, experiment
from serjax.configlib import base_config

EPOCHS = 3


def tiny_config(cache_dir, **train):
    config = base_config()
    config.cache_dir = str(cache_dir)
    config.data.synthetic.num_utterances = 80
    config.data.synthetic.distractor_fraction = 0.1
    config.data.synthetic.scripted_fraction = 0.1
    config.features.n_mels = 32  # 32 × 41 survives the five 2×2 poolings
    config.features.duration_s = 0.4
    config.protocol.num_folds = 2
    config.model.width_scale = 1
    config.model.base_widths = (4, 4, 8, 8, 8, 8)
    config.train.epochs = EPOCHS
    config.train.batch_size = 16
    config.train.checkpoint_every = 1
    config.train.update(train)
    return config


def train_and_report(config, workdir, **kwargs) -> dict:
    """What `--mode=train` does for one run: train it (experiment.run), then write its
    report (the command layer's job)."""
    summary = experiment.run(config, workdir, progress=False, **kwargs)
    cli.write_run_report(workdir, config, summary)
    return summary


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def finished_run(cache, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    config = tiny_config(cache, validation_fraction=0.2)
    summary = train_and_report(config, workdir)
    return config, workdir, summary
