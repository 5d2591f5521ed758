"""--mode=export: the ONNX model, run by onnxruntime without JAX, gives --mode=predict's
probabilities; a workdir without trained models gives predict's clear error."""

import json
import shutil

import numpy as np
import pytest
from helpers import write_wav

from serjax import cli, features
from serjax.errors import SerjaxError
from serjax.predict import predict_files, windows

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("jax2onnx")


def _onnx_probabilities(session, config, path, hop):
    """What a user does: the test version's log-Mel of each window, then the ONNX model,
    then the mean over the file's windows."""
    from serjax.audio import read_audio

    settings = features.FeatureSettings.from_config(config.features)
    length = int(round(settings.duration_s * settings.sample_rate))
    signal = read_audio(path, settings.sample_rate)
    x = features.extract(
        windows(signal, length, hop),
        config.experiment.test_version,
        settings,
        progress=False,
        out_dtype=np.float16,
    )
    return session.run(None, {"log_mel": np.asarray(x, np.float32)})[0].mean(axis=0)


@pytest.fixture(scope="module")
def exported(finished_run, tmp_path_factory):
    config, workdir, _ = finished_run
    copy = tmp_path_factory.mktemp("export") / "run"
    shutil.copytree(workdir, copy)
    cli.run("export", config, copy, {})
    return config, copy


def test_onnx_equals_predict_for_the_ensemble_and_one_model(exported, tmp_path):
    config, workdir = exported
    info = json.loads((workdir / "export" / "model.json").read_text())
    assert info["output"]["classes"] == list(config.data.classes)
    assert info["models"]["folds"] == ["fold0", "fold1"] and info["corpus"] == "synthetic"
    assert info["features"]["version"] == 8 and set(info["normalisation"]["per_fold"]) == {
        "fold0",
        "fold1",
    }
    wavs = [
        str(write_wav(tmp_path / "short.wav", seconds=0.3, freq=180.0)),
        str(write_wav(tmp_path / "long.wav", seconds=1.1, seed=3, freq=300.0)),
    ]
    settings = features.FeatureSettings.from_config(config.features)
    hop = int(round(settings.duration_s * settings.sample_rate)) // 2
    session = ort.InferenceSession(str(workdir / "export" / "model.onnx"))
    predicted = predict_files(config, workdir, wavs)
    for path in wavs:
        got = _onnx_probabilities(session, config, path, hop)
        want = [predicted[path]["probabilities"][c] for c in config.data.classes]
        np.testing.assert_allclose(got, want, atol=1e-4)
    # one fold's one seed
    cli.run("export", config, workdir, {"fold": "fold1", "seed_index": 0})
    session = ort.InferenceSession(str(workdir / "export" / "model.onnx"))
    one = predict_files(config, workdir, wavs[:1], fold="fold1", seed_index=0)[wavs[0]]
    got = _onnx_probabilities(session, config, wavs[0], hop)
    np.testing.assert_allclose(
        got, [one["probabilities"][c] for c in config.data.classes], atol=1e-4
    )


def test_export_needs_trained_models(finished_run, tmp_path):
    config, workdir, _ = finished_run
    committed = tmp_path / "committed"  # what git keeps of a run: no checkpoints, no folds
    committed.mkdir()
    for name in ("config.json", "summary.json", "report.md"):
        shutil.copy(workdir / name, committed / name)
    with pytest.raises(SerjaxError, match="holds a finished run's results but not its trained"):
        cli.run("export", config, committed, {})
    assert not (committed / "export").exists()


def test_the_readme_example_feeds_the_onnx_model(exported, tmp_path, capsys):
    """The README's librosa example, run as written on an exported model, prints
    --mode=predict's probabilities (a one-window clip)."""
    from pathlib import Path

    config, workdir = exported
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme.split("```python\nimport json, librosa")[1].split("```")[0]
    wav = str(write_wav(tmp_path / "speech.wav", seconds=0.3, freq=210.0))
    cli.run("export", config, workdir, {})
    code = "import json, librosa" + code.replace("W/export", str(workdir / "export"))
    exec(code.replace('"speech.wav"', repr(wav)), {})
    out = capsys.readouterr().out.strip().splitlines()[-1]
    printed = eval(out.replace("np.float32", ""))
    want = predict_files(config, workdir, [wav])[wav]["probabilities"]
    np.testing.assert_allclose([printed[c] for c in want], list(want.values()), atol=2e-3)
