"""TensorBoard event files: the same points as metrics.jsonl, each once, also after a
resume; none when log.tensorboard is off."""

import json
import shutil

import numpy as np
import pytest
from conftest import EPOCHS, tiny_config

from serjax import experiment
from serjax.tensorboard import SCALARS, read_scalars


def _check_events_equal_metrics(workdir):
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    runs = sorted({(r["fold"], r["seed"]) for r in records})
    assert runs and len(list((workdir / "tensorboard").glob("*/seed*"))) == len(runs)
    for fold, seed in runs:
        events = read_scalars(workdir / "tensorboard" / fold / f"seed{seed}")
        mine = sorted(
            (r for r in records if (r["fold"], r["seed"]) == (fold, seed)), key=lambda r: r["epoch"]
        )
        for key, tag in SCALARS.items():
            expected = [(r["epoch"], r[key]) for r in mine if key in r]
            got = events.get(tag, [])
            assert [step for step, _ in got] == [step for step, _ in expected], (fold, tag)
            np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-6)


def test_event_files_hold_the_metrics(finished_run):
    _, workdir, _ = finished_run
    _check_events_equal_metrics(workdir)
    tags = read_scalars(workdir / "tensorboard" / "fold0" / "seed0")
    assert {"train/loss", "train/learning_rate", "test/UA", "validation/WA"} <= set(tags)
    assert [step for step, _ in tags["train/loss"]] == list(range(1, EPOCHS + 1))


def test_a_resumed_fold_logs_each_epoch_once(finished_run, tmp_path):
    config, workdir, _ = finished_run
    resumed = tmp_path / "resumed"
    shutil.copytree(workdir, resumed)
    for name in ("summary.json", "folds/fold1.json"):
        (resumed / name).unlink()
    for epoch_dir in (resumed / "checkpoints" / "fold1").iterdir():
        if epoch_dir.name.isdigit() and int(epoch_dir.name) > 1:
            shutil.rmtree(epoch_dir)
    experiment.run(config, resumed, progress=False)
    _check_events_equal_metrics(resumed)


def test_tensorboard_can_be_turned_off(cache, tmp_path):
    config = tiny_config(cache, epochs=1)
    config.log.tensorboard = False
    experiment.run(config, tmp_path, progress=False)
    assert not (tmp_path / "tensorboard").exists()
    assert (tmp_path / "metrics.jsonl").exists()


@pytest.fixture(autouse=True)
def _tensorboardx():
    pytest.importorskip("tensorboardX")
