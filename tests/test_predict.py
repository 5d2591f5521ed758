import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from serjax.audio import fix_length, read_audio
from serjax.corpora import load_corpus
from serjax.errors import SerjaxError
from serjax.predict import predict_files, windows


def test_windows():
    signal = np.arange(14.0)
    starts = [w[0] for w in windows(signal, 6, 3)]
    assert starts == [0, 3, 6, 8]  # the last window ends at the last sample
    assert [w[0] for w in windows(np.arange(12.0), 6, 3)] == [0, 3, 6]
    short = windows(np.ones(4), 6, 3)
    assert short.shape == (1, 6) and short[0].tolist() == [0, 1, 1, 1, 1, 0]


@pytest.fixture(scope="module")
def paths(finished_run):
    config, workdir, _ = finished_run
    listing = load_corpus(config.data, config.cache_dir, progress=False)
    return {u.utt_id: u.path for u in listing.utterances}


def test_predict_matches_eval_predictions(finished_run, paths, tmp_path):
    config, workdir, _ = finished_run
    fold0 = json.loads((workdir / "folds" / "fold0.json").read_text())
    length = int(config.features.duration_s * config.features.sample_rate)
    files, expected = [], []
    for i in range(3):
        utt = fold0["test_utterances"][i]
        # the exact clip the pipeline scored: centre pad/crop to the configured length
        clip = fix_length(read_audio(paths[utt]), length)
        path = tmp_path / f"{utt}.wav"
        sf.write(path, clip, 16000, subtype="FLOAT")
        files.append(str(path))
        expected.append(fold0["probabilities"][0][i])
    got = predict_files(config, workdir, files, fold="fold0", seed_index=0)
    for path, want in zip(files, expected):
        probs = list(got[path]["probabilities"].values())
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(probs, want, atol=2e-4)
        assert got[path]["top"] == list(config.data.classes)[int(np.argmax(want))]
        assert got[path]["windows"] == 1


def test_default_prediction_averages_every_fold_and_seed(finished_run, paths, tmp_path):
    config, workdir, _ = finished_run
    path = str(tmp_path / "clip.wav")
    sf.write(path, read_audio(next(iter(paths.values()))), 16000, subtype="FLOAT")
    ensemble = list(predict_files(config, workdir, [path])[path]["probabilities"].values())
    members = [
        list(
            predict_files(config, workdir, [path], fold=f, seed_index=0)[path][
                "probabilities"
            ].values()
        )
        for f in ("fold0", "fold1")
    ]
    np.testing.assert_allclose(ensemble, np.mean(members, axis=0), atol=1e-6)
    assert np.abs(np.subtract(*members)).max() > 1e-4  # the two folds' models disagree


@pytest.fixture(scope="module")
def two_seed_run(cache, tmp_path_factory):
    from conftest import tiny_config

    from serjax import experiment

    workdir = tmp_path_factory.mktemp("two-seeds")
    config = tiny_config(cache)
    config.num_seeds = 2
    experiment.run(config, workdir, progress=False)
    return config, workdir


def test_each_seed_predicts_what_eval_scored_and_the_ensemble_averages_all(
    two_seed_run, paths, tmp_path
):
    config, workdir = two_seed_run
    fold0 = json.loads((workdir / "folds" / "fold0.json").read_text())
    length = int(config.features.duration_s * config.features.sample_rate)
    utt = fold0["test_utterances"][0]
    path = str(tmp_path / f"{utt}.wav")
    sf.write(path, fix_length(read_audio(paths[utt]), length), 16000, subtype="FLOAT")

    def probs(**which):
        return list(predict_files(config, workdir, [path], **which)[path]["probabilities"].values())

    for s in (0, 1):  # seed s's model is row s of the stacked states
        np.testing.assert_allclose(
            probs(fold="fold0", seed_index=s), fold0["probabilities"][s][0], atol=2e-4
        )
    members = [probs(fold=f, seed_index=s) for f in ("fold0", "fold1") for s in (0, 1)]
    assert np.abs(np.subtract(members[0], members[1])).max() > 1e-4  # the seeds disagree
    np.testing.assert_allclose(probs(), np.mean(members, axis=0), atol=1e-6)


def test_long_audio_is_the_mean_of_its_windows(finished_run, paths, tmp_path):
    config, workdir, _ = finished_run
    signal = read_audio(next(p for p in paths.values() if sf.info(p).duration > 2.0))[:16000]
    long_path = tmp_path / "long.wav"
    sf.write(long_path, signal, 16000, subtype="FLOAT")  # 1 s = windows of 0.4 s, hop 0.2 s
    pieces = windows(signal, 6400, 3200)
    assert len(pieces) == 4
    piece_paths = []
    for i, piece in enumerate(pieces):
        piece_paths.append(str(tmp_path / f"piece{i}.wav"))
        sf.write(piece_paths[-1], piece, 16000, subtype="FLOAT")
    whole = predict_files(config, workdir, [str(long_path)])[str(long_path)]
    parts = predict_files(config, workdir, piece_paths)
    assert whole["windows"] == 4 and whole["duration_s"] == 1.0
    mean = np.mean([list(parts[p]["probabilities"].values()) for p in piece_paths], axis=0)
    np.testing.assert_allclose(list(whole["probabilities"].values()), mean, atol=1e-5)
    assert sum(whole["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_bad_file_and_bad_choices_are_named(finished_run, tmp_path):
    config, workdir, _ = finished_run
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(SerjaxError, match="broken.wav"):
        predict_files(config, workdir, [str(bad)])
    good = tmp_path / "ok.wav"
    sf.write(good, np.zeros(8000, np.float32), 16000)
    with pytest.raises(SerjaxError, match="predict_fold"):
        predict_files(config, workdir, [str(good)], fold="fold9")
    with pytest.raises(SerjaxError, match="predict_seed"):
        predict_files(config, workdir, [str(good)], seed_index=3)

    with pytest.raises(SerjaxError, match=r"audio file .*nope.wav: no such file"):
        predict_files(config, workdir, [str(tmp_path / "nope.wav")])


def test_truncated_audio_and_bad_hops_are_refused_before_any_model_work(finished_run, tmp_path):
    config, workdir, _ = finished_run
    good = tmp_path / "ok.wav"
    sf.write(good, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])  # header says 1 s, holds 0.5
    with pytest.raises(SerjaxError, match=r"audio file .*cut.wav: truncated"):
        predict_files(config, workdir, [str(good), str(cut)])
    for hop in (1e-6, 0.5, -0.1):  # rounds to 0 samples; longer than the 0.4-s window; negative
        with pytest.raises(SerjaxError, match="--predict_hop_s"):
            predict_files(config, workdir, [str(good)], hop_s=hop)


def test_predictions_json_keeps_earlier_files_and_names_the_models(finished_run, tmp_path):
    from serjax import cli

    config, workdir, _ = finished_run
    run = tmp_path / "run"
    shutil.copytree(workdir, run)
    first, second = tmp_path / "a.wav", tmp_path / "b.wav"
    for i, path in enumerate((first, second)):
        sf.write(
            path, np.random.default_rng(i).standard_normal(8000).astype(np.float32) * 0.1, 16000
        )
    options = {"fold": "fold1", "seed_index": 0, "hop_s": 0.0}
    cli.run("predict", config, run, {**options, "wavs": [str(first)]})
    cli.run("predict", config, run, {**options, "wavs": [str(second)], "fold": None})
    saved = json.loads((run / "predictions.json").read_text())
    assert set(saved) == {str(first.resolve()), str(second.resolve())}
    assert saved[str(first.resolve())]["models"] == {"folds": ["fold1"], "seeds": [0]}
    assert saved[str(second.resolve())]["models"] == {"folds": ["fold0", "fold1"], "seeds": [0]}
    assert saved[str(second.resolve())]["hop_s"] == 0.2


def test_results_without_checkpoints_say_how_to_get_them(finished_run, tmp_path):
    # a results folder as git keeps it: config, summary and report, no checkpoints or folds
    from serjax import cli

    config, workdir, _ = finished_run
    committed = tmp_path / "committed"
    committed.mkdir()
    for name in ("config.json", "summary.json", "report.md"):
        shutil.copy(workdir / name, committed / name)
    for mode in ("eval", "predict"):
        with pytest.raises(
            SerjaxError,
            match=r"holds a finished run's results but not its trained models "
            r"\(no folds.json or checkpoints",
        ):
            cli.run(
                mode,
                config,
                committed,
                {"wavs": ["x.wav"], "fold": None, "seed_index": None, "hop_s": 0},
            )
    assert sorted(p.name for p in committed.iterdir()) == [
        "config.json",
        "report.md",
        "summary.json",
    ]
    with pytest.raises(SerjaxError, match="--workdir .* does not exist"):
        cli.run("eval", config, tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


# --- issue #20 item 11: long files stream, short clips warn, the training corpus is named ---


def whole_file_probabilities(config, workdir, path, fold=None):
    """What predict_files computed before it streamed: the whole file read, every window's
    features extracted at once, each fold's models scoring them all, averaged."""
    import jax.numpy as jnp

    from serjax import features
    from serjax.checkpoints import restore_final_states
    from serjax.data import FoldData
    from serjax.metrics import softmax
    from serjax.model import build_model
    from serjax.seeds import seeds_of
    from serjax.train import trainer_for

    settings = features.FeatureSettings.from_config(config.features)
    length = int(round(settings.duration_s * settings.sample_rate))
    pieces = windows(read_audio(path), length, length // 2)
    table = jnp.asarray(
        features.extract(pieces, config.experiment.test_version, settings, progress=False)
    )
    classes = list(config.data.classes)
    trainer = trainer_for(build_model(config.model, len(classes)), config.train)
    names = json.loads((workdir / "folds.json").read_text())["names"]
    probs = []
    for k, name in enumerate(names):
        if fold and name != fold:
            continue
        norm = json.loads((workdir / "folds" / f"{name}.json").read_text())["normalisation"]
        states = restore_final_states(
            trainer, config, workdir, name, k, seeds_of(config), table.shape[1:]
        )
        data = FoldData.of(
            table,
            np.zeros(len(pieces), np.int32),
            np.asarray(norm["mean"], np.float32),
            np.asarray(norm["std"], np.float32),
            np.ones(len(classes), np.float32),
        )
        probs.append(softmax(trainer.predict(states, data, np.arange(len(pieces)), 16)))
    return np.concatenate(probs).mean(axis=0).mean(axis=0), len(pieces)


@pytest.fixture(scope="module")
def long_signal(paths):
    rng = np.random.default_rng(7)
    parts = [read_audio(p) for p in list(paths.values())[:12]]
    return np.concatenate(parts + [0.05 * rng.standard_normal(3000).astype(np.float32)])


def test_long_audio_streams_in_chunks_with_the_whole_files_numbers(
    finished_run, long_signal, tmp_path, monkeypatch
):
    import serjax.predict as predict

    config, workdir, _ = finished_run
    monkeypatch.setattr(predict, "BLOCK_FRAMES", 5003)  # blocks that split windows anywhere
    plain = tmp_path / "long16k.wav"
    sf.write(plain, long_signal, 16000, subtype="FLOAT")
    # 22.05 kHz stereo: downmixed and resampled block by block, as read_audio does it whole
    stereo = np.stack([long_signal, 0.5 * long_signal[::-1]], axis=1)
    resampled = tmp_path / "long22k.wav"
    import librosa

    sf.write(resampled, librosa.resample(stereo.T, orig_sr=16000, target_sr=22050).T, 22050)
    for path in (plain, resampled):
        streamed = list(predict.file_windows(str(path), 16000, 6400, 3200))
        np.testing.assert_array_equal(np.stack(streamed), windows(read_audio(path), 6400, 3200))
    got = predict_files(config, workdir, [str(plain), str(resampled)], chunk_windows=7)
    for path in (plain, resampled):
        want, count = whole_file_probabilities(config, workdir, path)
        assert count > 3 * 7 and got[str(path)]["windows"] == count  # several chunks
        np.testing.assert_allclose(list(got[str(path)]["probabilities"].values()), want, atol=1e-6)
    # one fold's models, files sharing chunks: the same numbers
    mixed = predict_files(config, workdir, [str(resampled), str(plain)], fold="fold1")
    want, _ = whole_file_probabilities(config, workdir, plain, fold="fold1")
    np.testing.assert_allclose(list(mixed[str(plain)]["probabilities"].values()), want, atol=1e-6)


def test_a_long_file_takes_bounded_memory_and_shows_progress(finished_run, tmp_path, capsys):
    import tracemalloc

    config, workdir, _ = finished_run
    seconds = 300  # 1499 windows of 0.4 s; read whole and windowed, it took over 57 MB
    signal = 0.1 * np.random.default_rng(3).standard_normal(seconds * 16000).astype(np.float32)
    path = tmp_path / "five_minutes.wav"
    sf.write(path, signal, 16000, subtype="PCM_16")
    predict_files(config, workdir, [str(path)], fold="fold0")  # compile outside the trace
    capsys.readouterr()
    tracemalloc.start()
    try:
        result = predict_files(config, workdir, [str(path)], fold="fold0")[str(path)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["windows"] == 1499 and result["duration_s"] == seconds
    assert peak < signal.nbytes / 4, f"peak {peak / 1e6:.1f} MB, audio {signal.nbytes / 1e6} MB"
    assert "1499/1499" in capsys.readouterr().err  # the progress bar over the windows
    predict_files(config, workdir, [str(path)], fold="fold0", progress=False)
    assert "1499/1499" not in capsys.readouterr().err


def test_short_clips_are_scored_with_a_warning(finished_run, tmp_path):
    config, workdir, _ = finished_run
    short, long = tmp_path / "short.wav", tmp_path / "long.wav"
    sf.write(short, 0.1 * np.ones(4800, np.float32), 16000)  # 0.3 s
    sf.write(long, 0.1 * np.ones(9600, np.float32), 16000)  # 0.6 s
    got = predict_files(config, workdir, [str(short), str(long)])
    warning = got[str(short)]["warning"]
    assert "0.30 s of audio, under the 0.5-s minimum (--predict_min_s)" in warning
    assert "warning" not in got[str(long)]
    assert "warning" not in predict_files(config, workdir, [str(short)], min_s=0.25)[str(short)]
    assert "warning" in predict_files(config, workdir, [str(long)], min_s=1.0)[str(long)]
    with pytest.raises(SerjaxError, match="--predict_min_s"):
        predict_files(config, workdir, [str(short)], min_s=-1)


def test_the_output_names_the_corpus_and_marks_a_synthetic_one(finished_run, tmp_path, capsys):
    from serjax import cli
    from serjax.predict import SYNTHETIC_WARNING, trained_on

    config, workdir, _ = finished_run
    run = tmp_path / "run"
    shutil.copytree(workdir, run)
    short = tmp_path / "short.wav"
    sf.write(short, 0.1 * np.ones(4800, np.float32), 16000)
    options = {"fold": None, "seed_index": None, "hop_s": 0.0, "min_s": 0.5}
    cli.run("predict", config, run, {**options, "wavs": [str(short)]})
    out = capsys.readouterr().out
    assert f"*** WARNING: {SYNTHETIC_WARNING} ***" in out
    assert "[SYNTHETIC-corpus model]" in out.splitlines()[1]
    assert "  warning: 0.30 s of audio" in out
    saved = json.loads((run / "predictions.json").read_text())[str(short.resolve())]
    assert saved["trained_on"] == {
        "corpus": "synthetic",
        "synthetic": True,
        "utterances": 80,
        "warning": SYNTHETIC_WARNING,
    }
    assert saved["warning"].startswith("0.30 s of audio")
    real = config.copy_and_resolve_references()
    real.data.corpus, real.data.root = "emodb", "/data/emodb"
    assert trained_on(real, run) == {
        "corpus": "emodb",
        "synthetic": False,
        "root": "/data/emodb",
        "utterances": 80,
    }


def test_an_unfinished_fold_is_never_scored(finished_run, paths, tmp_path):
    """eval and predict refuse a run whose fold lacks its last epoch's checkpoint or its
    results (a half-trained model would be scored without a word)."""
    from serjax import cli

    config, workdir, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    shutil.rmtree(copy / "checkpoints" / "fold1" / str(config.train.epochs))
    with pytest.raises(
        SerjaxError, match=r"fold fold1 has no final checkpoint .*\(latest: epoch 2,"
    ):
        cli.run("eval", config, copy)
    (copy / "folds" / "fold1.json").unlink()
    clip = str(next(iter(paths.values())))
    with pytest.raises(SerjaxError, match="fold fold1 is not finished"):
        predict_files(config, copy, [clip], fold="fold1")
