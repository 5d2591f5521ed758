"""Concurrent use, changed inputs and file-system faults (the reliability issue, round two):
each case gives one clear line, and nothing in the workdir is mixed or lost."""

import errno
import hashlib
import json
import shutil
import subprocess
import sys

import pytest
from conftest import tiny_config, train_and_report

from serjax import cli, experiment, locks
from serjax.configlib import sweep_config
from serjax.errors import SerjaxError
from serjax.feature_cache import load_features
from serjax.sweeps import run_config
from serjax.workdir import comparable_config


def _digest(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not locks.is_lock_file(p)
    }


def _hold_lock_in_child(folder):
    """A child process that takes `folder`'s workdir lock and keeps it until killed."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from serjax import locks\n"
            "with locks.exclusive(sys.argv[1], 'workdir'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(600)\n",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_process_on_a_workdir_is_refused_and_a_dead_holder_taken_over(
    finished_run, tmp_path
):
    config, workdir, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    before = _digest(copy)
    child = _hold_lock_in_child(copy)
    try:
        for mode in ("train", "eval", "report"):
            with pytest.raises(SerjaxError, match=rf"workdir {copy} is in use by pid {child.pid}"):
                cli.run(mode, config, copy)
        assert _digest(copy) == before  # nothing was written, no metrics line duplicated
    finally:
        child.kill()
        child.wait()
    cli.run("report", config, copy)  # the lock of a killed process is taken over
    assert _digest(copy)["summary.json"] == before["summary.json"]


def test_a_sweep_folder_is_refused_for_another_sweep(tmp_path):
    table5 = sweep_config("table5", "small")
    for name in ("cnn", "ours"):
        member = tmp_path / name
        member.mkdir()
        saved = json.loads(run_config(table5, {}).to_json())  # a stand-in run config
        (member / "config.json").write_text(json.dumps({"config": saved}))
    before = _digest(tmp_path)
    for other in (sweep_config("fig7", "small"), sweep_config("table5", "")):
        with pytest.raises(SerjaxError, match="use the sweep's own --config, or another"):
            cli.run("report", other, tmp_path)
        with pytest.raises(SerjaxError, match=f"workdir {tmp_path}"):
            cli.run("train", other, tmp_path)
    assert _digest(tmp_path) == before
    # once recorded (sweep.json), another sweep's config is named as such
    (tmp_path / "cnn" / "config.json").unlink()
    (tmp_path / "ours" / "config.json").unlink()
    from serjax.sweeps import expand
    from serjax.workdir import check_sweep_workdir

    members = {n: run_config(table5, o) for n, o, _ in expand(table5.sweep)}
    check_sweep_workdir(table5, tmp_path, members, write=True)
    with pytest.raises(SerjaxError, match=r"holds the sweep table5 \(small\), not fig7 \(small\)"):
        cli.run("report", sweep_config("fig7", "small"), tmp_path)
    with pytest.raises(SerjaxError, match="holds a sweep"):
        experiment.run(tiny_config(tmp_path / "cache"), tmp_path, progress=False)


def _with_changed_corpus(workdir, copy):
    """A copy of a run whose corpus, as recorded when it started, differs from today's:
    one label since changed, one utterance since removed. Returns the changed label's id."""
    shutil.copytree(workdir, copy)
    path = copy / "corpus_fingerprint.json"
    saved = json.loads(path.read_text())
    first = sorted(saved["utterances"])[0]
    label = saved["utterances"][first][0]
    saved["utterances"][first][0] = "neu" if label != "neu" else "ang"
    saved["utterances"]["Ses09F_impro01_F000"] = ["ang", "F", "9", 10, "0"]
    path.write_text(json.dumps(saved))
    return first


@pytest.mark.parametrize("mode", ["train", "eval", "report"])
def test_a_changed_corpus_stops_resume_and_eval_before_anything_is_rewritten(
    finished_run, tmp_path, mode
):
    config, workdir, _ = finished_run
    copy = tmp_path / "run"
    changed = _with_changed_corpus(workdir, copy)
    if mode == "train":  # a run stopped in its second fold, resumed
        (copy / "summary.json").unlink()
        (copy / "folds" / "fold1.json").unlink()
    before = _digest(copy)
    with pytest.raises(SerjaxError, match="the corpus changed since the run") as err:
        cli.run(mode, config, copy)
    assert "1 utterance(s) removed (e.g. Ses09F_impro01_F000)" in str(err.value)
    assert f"{changed}: label" in str(err.value)
    assert _digest(copy) == before  # corpus.json, metrics, checkpoints: all as they were


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("protocol.num_folds", 100, "protocol.num_folds: 100 folds, but class '[a-z]+' has"),
        ("train.seed_strategy", "bogus", "train.seed_strategy: 'bogus' is not one of"),
        ("num_seeds", 0, "num_seeds: need at least 1"),
        ("train.learning_rate", -1e-3, "train.learning_rate: need > 0"),
        ("train.epochs", 0, "train.epochs: need >= 1"),
        ("train.lr_decay_per_epoch", 0.0, "train.lr_decay_per_epoch"),
        ("train.validation_fraction", 1.0, "train.validation_fraction"),
    ],
)
def test_impossible_protocols_and_fields_stop_before_training(
    cache, tmp_path, field, value, message
):
    config = tiny_config(cache)
    *parents, leaf = field.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(SerjaxError, match=f"config field {message}"):
        cli.run("train", config, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_file_system_errors_are_one_line(cache, tmp_path, monkeypatch):
    config = tiny_config(cache)
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    with pytest.raises(SerjaxError, match="--workdir .* is a file, not a folder"):
        cli.run("train", config, a_file)
    with pytest.raises(SerjaxError, match="--workdir .*: cannot create it"):
        cli.run("train", config, a_file / "run")
    assert a_file.read_text() == "keep me"
    config.cache_dir = str(a_file / "cache")
    with pytest.raises(SerjaxError, match=r"cache directory .* \$SERJAX_CACHE"):
        cli.run("train", config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_full_disk_while_checkpointing_is_one_line(cache, tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.CheckpointManager, "save", full)
    with pytest.raises(SerjaxError, match=r"fold0/1 could not be written \(No space left"):
        cli.run("train", tiny_config(cache), tmp_path / "run")


def test_a_damaged_checkpoint_resumes_from_the_one_before(finished_run, tmp_path, capfd):
    config, workdir, summary = finished_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    (copy / "summary.json").unlink()
    (copy / "folds" / "fold1.json").unlink()
    ckpts = copy / "checkpoints" / "fold1"
    latest = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    for f in (ckpts / str(latest)).rglob("*"):
        if f.is_file() and f.stat().st_size > 100:
            f.write_bytes(b"\0" * 64)
    capfd.readouterr()
    again = train_and_report(config, copy)
    out, err = capfd.readouterr()
    assert f"checkpoint {ckpts / str(latest)} cannot be restored" in out
    assert "resuming before it" in out and len(err.strip().splitlines()) < 5
    assert list((copy / "checkpoints-damaged" / "fold1").iterdir())  # kept, not deleted
    assert again["ua"] == summary["ua"] and again["confusion"] == summary["confusion"]


@pytest.mark.parametrize(
    "damaged,modes",
    [
        ("config.json", ["eval", "predict", "report", "train"]),
        ("summary.json", ["eval", "report"]),
        ("predictions.json", ["predict"]),
    ],
)
def test_a_damaged_json_file_is_named_and_left_as_it_is(finished_run, tmp_path, damaged, modes):
    config, workdir, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    (copy / damaged).write_text('{"ua": ')
    before = _digest(copy)
    for mode in modes:  # each stops before any audio is read or anything is written
        options = {"wavs": [str(copy / "a.wav")], "fold": None, "seed_index": None, "hop_s": 0.0}
        with pytest.raises(SerjaxError, match="is damaged") as err:
            cli.run(mode, config, copy, options if mode == "predict" else None)
        assert str(copy / damaged) in str(err.value) and "line 1, column 8" in str(err.value)
        assert _digest(copy) == before, mode


def test_modes_that_read_a_run_back_refuse_what_they_would_ignore(finished_run, tmp_path):
    """eval scores the run as trained: an override of a field its config.json holds is
    refused, not dropped; fields it does not keep (executor, log) and equal values pass."""
    config, workdir, _ = finished_run
    given = config.copy_and_resolve_references()
    given.experiment.test_version = 6
    given.log.tensorboard = not given.log.tensorboard
    saved = cli.workdir_config(workdir, config)
    keep = ("log.tensorboard", "train.epochs", "cache_dir")
    cli.check_overrides_kept("eval", workdir, given, saved, keep)
    with pytest.raises(SerjaxError, match=r"--config.experiment.test_version would change it"):
        cli.check_overrides_kept("eval", workdir, given, saved, (*keep, "experiment.test_version"))
    with pytest.raises(SerjaxError, match="holds a single run, not the sweep fig6"):
        cli.run("report", sweep_config("fig6", "small"), workdir)


def test_eval_on_a_sweep_member_says_how_to_train_that_member(tmp_path):
    sweep = sweep_config("fig9", "small")
    (tmp_path / "sweep.json").write_text(
        json.dumps({"sweep": "fig9", "variant": "small", "config": {}})
    )
    member = tmp_path / "k3_v8"
    member.mkdir()
    (member / "summary.json").write_text("{}")
    (member / "config.json").write_text(
        json.dumps({"config": comparable_config(run_config(sweep, {}))})
    )
    with pytest.raises(SerjaxError) as err:
        cli.run("eval", sweep, member)
    assert f"--config configs/fig9.py:small --workdir {tmp_path.resolve()}" in str(err.value)


def test_stale_feature_temporaries_are_cleaned(cache, tmp_path):
    from pathlib import Path

    from serjax import features

    config = tiny_config(cache)
    run = experiment.prepare(config, tmp_path, progress=False, on_device=False)
    folder = Path(next(iter(run.arrays.values())).filename).parent
    stale = folder / ".v1-deadbeef.npy.12345.tmp"
    stale.write_bytes(b"\0" * 1000)  # what a build killed by SIGKILL leaves
    settings = features.FeatureSettings.from_config(config.features)
    utterances = run.listing.utterances
    load_features(utterances, [1], settings, config.cache_dir, run.listing.name, progress=False)
    assert not stale.exists()
