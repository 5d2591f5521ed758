"""Log-Mel features: shapes, agreement with librosa, per-utterance floor, settings errors."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from serjax import features
from serjax.errors import SerjaxError
from serjax.features import FeatureSettings

# One second keeps the librosa comparison fast; every numeric test below uses
# [2, 16000] batches so each version compiles once.
SHORT = FeatureSettings(duration_s=1.0)
N = SHORT.num_samples
TOL_DB = 0.05


def speech_like(n, seed, amplitude, sr=16000):
    """Harmonic tone with a gliding f0, amplitude modulation, noise and a silent stretch."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 120.0 + 60.0 * np.sin(2 * np.pi * (0.8 + 0.3 * seed) * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 30))
    y *= 0.6 + 0.4 * np.sin(2 * np.pi * 4.0 * t)
    y += 0.05 * rng.standard_normal(n)
    y[n // 3 : n // 3 + n // 5] = 0.0  # silence: the top_db floor must be hit
    return (amplitude * y / np.abs(y).max()).astype(np.float32)


@pytest.fixture(scope="module")
def signals():
    return np.stack([speech_like(N, 0, 0.5), speech_like(N, 1, 0.2)])


def test_versions_table():
    # SPEC §2: (window, overlap) in ms for v1..v8
    assert features.STFT_VERSIONS == {
        1: (15, 5),
        2: (20, 10),
        3: (25, 15),
        4: (30, 20),
        5: (35, 25),
        6: (40, 30),
        7: (45, 35),
        8: (50, 40),
    }
    assert [features.stft_params(v) for v in range(1, 9)] == [
        (w, 160, w) for w in range(240, 801, 80)
    ]
    for window, overlap in features.STFT_VERSIONS.values():
        assert window - overlap == 10


@pytest.mark.parametrize("version", range(1, 9))
def test_default_shape_is_64_by_601(version):
    settings = FeatureSettings()
    assert features.num_frames(settings) == 601
    assert features.output_shape(version, settings) == (64, 601)
    spec = jax.ShapeDtypeStruct((3, 96000), jnp.float32)
    out = jax.eval_shape(lambda x: features.log_mel_jax(x, version, settings), spec)
    assert out.shape == (3, 64, 601)
    assert out.dtype == jnp.float32


def test_uncentred_stft_frames_per_version():
    # 1 + (96000 - n_fft) // 160: one version at a time works; versions that differ cannot
    # share a model
    uncentred = FeatureSettings(center=False)
    assert features.num_frames(uncentred, 1) == 599 and features.num_frames(uncentred, 8) == 596
    assert features.num_frames(uncentred, [8]) == 596
    assert features.num_frames(FeatureSettings(), [1, 8]) == 601
    with pytest.raises(SerjaxError, match=r"features.center: .*v1: 599, v8: 596"):
        features.num_frames(uncentred, [8, 1])


def test_stft_params_default_nfft_is_window_length():
    assert features.stft_params(1) == (240, 160, 240)
    assert features.stft_params(4) == (480, 160, 480)
    assert features.stft_params(8) == (800, 160, 800)
    fixed = FeatureSettings(n_fft=1024)
    assert features.stft_params(1, fixed) == (240, 160, 1024)
    assert features.stft_params(8, fixed) == (800, 160, 1024)
    with pytest.raises(SerjaxError, match="n_fft"):
        features.stft_params(8, FeatureSettings(n_fft=512))


@pytest.mark.parametrize("version", range(1, 9))
def test_jax_matches_librosa(signals, version):
    got = np.asarray(features.log_mel_jax(signals, version, SHORT))
    assert got.shape == (2, 64, features.num_frames(SHORT)) == (2, 64, 101)
    assert got.dtype == np.float32
    for row in range(2):
        want = features.log_mel_librosa(signals[row], version, SHORT)
        floor = want.max() - SHORT.top_db
        above = want > floor
        assert 0.5 < above.mean() < 1.0  # the floor is hit, yet most bins are above it
        err = np.abs(got[row] - want)
        assert err[above].max() <= TOL_DB, (version, row, err[above].max())
        # Floored bins sit on the JAX floor, which follows the JAX maximum.
        np.testing.assert_allclose(got[row][~above], got[row].max() - SHORT.top_db, atol=1e-4)


def test_fixed_nfft_matches_librosa(signals):
    settings = FeatureSettings(duration_s=1.0, n_fft=1024)
    got = np.asarray(features.log_mel_jax(signals, 1, settings))
    want = features.log_mel_librosa(signals[0], 1, settings)
    above = want > want.max() - settings.top_db
    assert np.abs(got[0] - want)[above].max() <= TOL_DB
    # A 1024-point FFT of the same 240-sample window is a different spectrum.
    assert np.abs(got[0] - np.asarray(features.log_mel_jax(signals, 1, SHORT))[0]).max() > 0.1


@pytest.mark.parametrize(
    "changed",
    [
        {"fmin": 50.0, "fmax": 4000.0, "htk": True},  # trims the FFT bins above fmax
        {"mel_norm": "none", "window": "hamming"},
    ],
)
def test_other_mel_settings_match_librosa(signals, changed):
    settings = FeatureSettings(duration_s=1.0, **changed)  # version 8: every Mel filter full
    got = np.asarray(features.log_mel_jax(signals, 8, settings))
    want = features.log_mel_librosa(signals[0], 8, settings)
    above = want > want.max() - settings.top_db
    assert np.abs(got[0] - want)[above].max() <= TOL_DB
    # and the settings changed the numbers (the defaults' features are not these)
    default = np.asarray(features.log_mel_jax(signals, 8, FeatureSettings(duration_s=1.0)))
    assert np.abs(got[0] - default[0]).max() > 0.1


def test_reflect_padding_matches_librosa(signals):
    settings = FeatureSettings(duration_s=1.0, pad_mode="reflect")
    got = np.asarray(features.log_mel_jax(signals, 2, settings))[1]
    want = features.log_mel_librosa(signals[1], 2, settings)
    above = want > want.max() - settings.top_db
    assert np.abs(got - want)[above].max() <= TOL_DB
    # Reflection fills the first frames' left halves, so they differ from zero padding.
    assert not np.allclose(
        got[:, 0], features.log_mel_librosa(signals[1], 2, SHORT)[:, 0], atol=0.5
    )


def test_floor_is_per_utterance():
    loud = speech_like(N, 2, 10.0)  # peaks near +37 dB
    quiet = speech_like(N, 3, 0.1)  # 40 dB down, yet its own floor lies above amin's -100 dB
    mixed = np.asarray(features.log_mel_jax(np.stack([loud, quiet]), 3, SHORT))
    loud_alone = np.asarray(features.log_mel_jax(np.stack([loud, loud]), 3, SHORT))[0]
    quiet_alone = np.asarray(features.log_mel_jax(np.stack([quiet, quiet]), 3, SHORT))[1]
    np.testing.assert_array_equal(mixed[0], loud_alone)
    np.testing.assert_array_equal(mixed[1], quiet_alone)
    # The quiet one keeps its own 80 dB range below its own maximum.
    assert mixed[1].min() == pytest.approx(mixed[1].max() - 80.0, abs=1e-4)
    assert mixed[0].max() - mixed[1].max() > 30.0
    # librosa on the stacked batch floors the quiet utterance against the loud maximum:
    # the per-utterance result must differ from that, and match librosa on it alone.
    import librosa

    unfloored = dataclasses.replace(SHORT, top_db=1e9)
    power = np.stack(
        [librosa.db_to_power(features.log_mel_librosa(x, 3, unfloored)) for x in (loud, quiet)]
    )
    batch_floor = librosa.power_to_db(power, ref=1.0, amin=SHORT.amin, top_db=SHORT.top_db)
    assert np.abs(batch_floor[1] - mixed[1]).max() > 10.0
    want = features.log_mel_librosa(quiet, 3, SHORT)
    above = want > want.max() - 80.0
    assert np.abs(mixed[1] - want)[above].max() <= TOL_DB


def test_extract_batches_pads_and_compiles_once(signals):
    waveforms = np.concatenate([signals, signals[::-1], signals[:1]])  # 5 utterances
    out = features.extract(waveforms, 2, SHORT, batch_size=2, progress=False)
    assert out.shape == (5, 64, 101) and out.dtype == np.float16
    ref = np.asarray(features.log_mel_jax(signals, 2, SHORT)).astype(np.float16)
    np.testing.assert_array_equal(out[0], ref[0])
    np.testing.assert_array_equal(out[3], ref[0])
    np.testing.assert_array_equal(out[4], ref[0])
    np.testing.assert_array_equal(out[2], ref[1])
    assert features._compiled(2, SHORT, "float16")._cache_size() == 1
    out32 = features.extract(
        waveforms[:3], 2, SHORT, batch_size=2, progress=False, out_dtype=np.float32
    )
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32[1], ref[1].astype(np.float32), atol=0.05)


def test_log_mel_jax_is_cached(signals):
    features.log_mel_jax(signals, 5, SHORT)
    features.log_mel_jax(signals + 0.01, 5, SHORT)
    assert features._compiled(5, SHORT, "float32")._cache_size() == 1


@pytest.mark.parametrize("bad", [0, 9, -1, "3", 2.0, True])
def test_bad_version_raises(bad):
    with pytest.raises(SerjaxError, match=r"version.*1\.\.8"):
        features.stft_params(bad)
    with pytest.raises(SerjaxError, match="version"):
        features.log_mel_jax(np.zeros((1, N), np.float32), bad, SHORT)


def test_wrong_length_raises():
    with pytest.raises(SerjaxError, match="16000"):
        features.log_mel_jax(np.zeros((1, 1000), np.float32), 1, SHORT)
    with pytest.raises(SerjaxError, match="2-D"):
        features.extract(np.zeros(N, np.float32), 1, SHORT)


def test_config_round_trip_and_unknown_field():
    cfg = features.default_config()
    assert isinstance(cfg, ml_collections.ConfigDict)
    assert cfg.to_dict() == FeatureSettings().to_dict()
    assert cfg.n_mels == 64 and cfg.n_fft == 0 and cfg.top_db == 80.0
    assert FeatureSettings.from_config(cfg) == FeatureSettings()
    cfg.n_fft = 1024
    assert FeatureSettings.from_config(cfg).n_fft == 1024
    assert FeatureSettings.from_config({"n_mels": 40}).n_mels == 40
    with pytest.raises(SerjaxError, match="n_mel\\b"):
        FeatureSettings.from_config({"n_mel": 40})
    # Equal settings are equal whatever numeric types the config used.
    coerced = FeatureSettings.from_config({"duration_s": 6, "fmax": 8000, "n_mels": np.int64(64)})
    assert coerced == FeatureSettings() and hash(coerced) == hash(FeatureSettings())
    assert coerced.to_dict() == FeatureSettings().to_dict()
    assert isinstance(coerced.duration_s, float) and type(coerced.n_mels) is int
    with pytest.raises(SerjaxError, match="n_mels"):
        FeatureSettings(n_mels=2.5)
    with pytest.raises(SerjaxError, match="pad_mode"):
        FeatureSettings.from_config({"pad_mode": "wrap"})
    with pytest.raises(SerjaxError, match="fmax"):
        FeatureSettings(fmax=9000.0)
    with pytest.raises(SerjaxError, match="n_mels"):
        FeatureSettings(n_mels=0)


def test_the_feature_cache_key_follows_every_setting_and_the_audio(tmp_path):
    """A cached feature file is reused only for the same settings, version, dtype and audio
    files: any setting that shapes the numbers, or an edited wav, names another file."""
    import os

    import soundfile as sf

    from serjax.corpora.records import Utterance
    from serjax.feature_cache import cache_path

    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    utts = [Utterance("a", str(wav), "ang", "F", "1")]
    base = FeatureSettings(duration_s=1.0)
    path = cache_path(tmp_path, "c", utts, 8, base, "float16")
    assert cache_path(tmp_path, "c", utts, 8, FeatureSettings(duration_s=1), "float16") == path
    changed = {
        "sample_rate": 22050, "duration_s": 2.0, "n_mels": 32, "fmin": 50.0, "fmax": 4000.0,
        "n_fft": 1024, "window": "hamming", "top_db": 60.0, "amin": 1e-5, "mel_norm": "none",
        "htk": True, "center": False, "pad_mode": "reflect",
    }  # fmt: skip
    assert set(changed) == {f.name for f in dataclasses.fields(FeatureSettings)}
    others = {cache_path(tmp_path, "c", utts, 8, dataclasses.replace(base, **{k: v}), "float16")
              for k, v in changed.items()}  # fmt: skip
    others |= {cache_path(tmp_path, "c", utts, 6, base, "float16")}
    others |= {cache_path(tmp_path, "c", utts, 8, base, "float32")}
    assert len(others) == len(changed) + 2 and path not in others
    stat = wav.stat()
    os.utime(wav, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the wav edited in place
    assert cache_path(tmp_path, "c", utts, 8, base, "float16").parent != path.parent
