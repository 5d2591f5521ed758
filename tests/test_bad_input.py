"""Every bad input of the reliability issue: one clear error naming it, or a documented,
reported handling. (Bad config overrides: test_launch.py; missing wav, malformed label line,
missing session or root: test_iemocap.py; manifest errors: test_corpora.py; label files and
manifests in other encodings, label-file and audio problems in one listing: test_label_files.py.)"""

import hashlib
import shutil

import numpy as np
import pytest
import soundfile as sf
from helpers import write_dialog, write_wav

from serjax import features
from serjax.audio import audio_problem, load_fixed, read_audio
from serjax.corpora import check_audio
from serjax.corpora.iemocap import load_iemocap
from serjax.corpora.records import CorpusListing, Utterance
from serjax.errors import SerjaxError
from serjax.feature_cache import cache_path, load_features


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_sample_formats(tmp_path, subtype):
    path = write_wav(tmp_path / f"{subtype}.wav", seconds=0.5, subtype=subtype)
    reference = read_audio(write_wav(tmp_path / "ref.wav", seconds=0.5, subtype="FLOAT"))
    signal = read_audio(path)
    assert audio_problem(path) is None
    tolerance = {"PCM_U8": 1e-2}.get(subtype, 1e-4)
    np.testing.assert_allclose(signal, reference, atol=tolerance)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_rates_and_channels(tmp_path, rate, channels):
    path = write_wav(tmp_path / "x.wav", seconds=1.0, rate=rate, channels=channels)
    signal = read_audio(path)
    assert signal.shape == (16000,) and np.all(np.isfinite(signal))
    assert load_fixed(path).shape == (96000,)


def test_unreadable_truncated_empty_and_nan_files(tmp_path):
    good = write_wav(tmp_path / "good.wav", seconds=1.0)
    data = good.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(data[:30])
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.1, np.nan, 0.2] * 100, np.float32), 16000, subtype="FLOAT")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    assert audio_problem(good) is None
    assert audio_problem(cut).startswith("truncated: its header declares 32000 bytes")
    assert audio_problem(header_only).startswith("cannot read audio file")
    assert audio_problem(empty) == "holds no samples"
    assert audio_problem(nan) == "holds NaN or infinite samples"
    assert audio_problem(text).startswith("cannot read audio file")
    for bad in (header_only, empty, nan, text):
        with pytest.raises(SerjaxError, match=bad.name):
            read_audio(bad)


def test_all_bad_files_listed_at_once_or_skipped(tmp_path):
    good = write_wav(tmp_path / "good.wav")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF1234WAVEjunk")
    utts = [Utterance(p.stem, str(p), "neu", "s", "s") for p in (good, empty, broken)]
    with pytest.raises(SerjaxError) as err:
        check_audio(CorpusListing("test", list(utts)), "error")
    assert "2 audio file(s)" in str(err.value)
    assert "empty.wav: holds no samples" in str(err.value) and "broken.wav: cannot read" in str(
        err.value
    )
    listing = check_audio(CorpusListing("test", list(utts)), "skip")
    assert [u.utt_id for u in listing.utterances] == ["good"]
    assert sorted(s.item for s in listing.skipped) == sorted([str(empty), str(broken)])


def test_silent_audio_gives_finite_features():
    silent = np.zeros((2, 96000), np.float32)
    out = np.asarray(features.log_mel_jax(silent, 8))
    assert np.all(np.isfinite(out)) and np.all(out == out.flat[0])


def test_iemocap_wav_without_label_line_is_counted(tmp_path):
    root = tmp_path / "iemocap"
    write_dialog(root, 1, "Ses01F_impro01", [("F000", "neu"), ("M000", "sad")])
    write_wav(root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F009.wav")
    write_wav(root / "Session1/sentences/wav/Ses01F_impro01/._Ses01F_impro01_F000.wav")
    listing = load_iemocap(root, sessions=(1,))
    assert len(listing.utterances) == 2
    assert listing.excluded == {"wav without a label line": 1}


def test_empty_root_lists_every_missing_session(tmp_path):
    with pytest.raises(SerjaxError) as err:
        load_iemocap(tmp_path)
    assert "5 problem(s)" in str(err.value) and "session 5 has no dialog/EmoEvaluation" in str(
        err.value
    )


def test_corrupted_feature_cache_is_rebuilt(tmp_path, caplog):
    utts = [
        Utterance(
            f"u{i}",
            str(write_wav(tmp_path / f"u{i}.wav", seconds=0.3, seed=i, freq=200 + 50 * i)),
            "neu",
            "s",
            "s",
        )
        for i in range(3)
    ]
    settings = features.FeatureSettings(n_mels=32, duration_s=0.4)
    first = np.array(load_features(utts, [8], settings, tmp_path / "cache", "t", progress=False)[8])
    path = cache_path(tmp_path / "cache", "t", utts, 8, settings, "float16")
    for damage in (lambda b: b[: len(b) // 2], lambda b: b"garbage" + b[7:]):
        path.write_bytes(damage(path.read_bytes()))
        again = np.array(
            load_features(utts, [8], settings, tmp_path / "cache", "t", progress=False)[8]
        )
        np.testing.assert_array_equal(again, first)
    assert "rebuilding it" in caplog.text


def test_uncentred_features_for_one_version(tmp_path):
    # center = false: each version has its own frame count, so one version at a time
    utts = [
        Utterance(
            f"u{i}", str(write_wav(tmp_path / f"u{i}.wav", seconds=0.3, seed=i)), "neu", "s", "s"
        )
        for i in range(2)
    ]
    settings = features.FeatureSettings(n_mels=32, duration_s=0.4, center=False)
    got = load_features(utts, [8], settings, tmp_path / "cache", "t", progress=False)[8]
    assert got.shape == (2, 32, 1 + (6400 - 800) // 160)
    with pytest.raises(SerjaxError, match="features.center"):
        load_features(utts, [1, 8], settings, tmp_path / "cache", "t", progress=False)


def test_corrupted_checkpoint_is_a_clear_error_and_other_folds_stay_intact(finished_run, tmp_path):
    from serjax.cli import evaluate

    config, workdir, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)

    def digest(folder):
        return {
            str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    fold0_before = digest(copy / "checkpoints" / "fold0")
    final = copy / "checkpoints" / "fold1" / str(config.train.epochs)
    for f in final.rglob("*"):
        if f.is_file() and f.stat().st_size > 100:
            f.write_bytes(b"\0" * 64)
    with pytest.raises(SerjaxError) as err:
        evaluate(config, copy)
    assert f"checkpoint {final} cannot be restored" in str(err.value)
    assert digest(copy / "checkpoints" / "fold0") == fold0_before
