import numpy as np
import pytest
import soundfile as sf
from helpers import write_wav

from serjax.audio import fix_length, load_fixed, read_audio
from serjax.errors import SerjaxError


@pytest.mark.parametrize(
    "length,target,left,right",
    [
        (10, 16, 3, 3),  # even remainder: split equally
        (10, 17, 3, 4),  # odd remainder: the extra zero goes to the end
        (16, 16, 0, 0),
    ],
)
def test_pad_is_centred(length, target, left, right):
    x = np.arange(1, length + 1, dtype=np.float32)
    y = fix_length(x, target)
    assert y.shape == (target,)
    assert np.all(y[:left] == 0) and np.all(y[target - right :] == 0)
    np.testing.assert_array_equal(y[left : target - right], x)


@pytest.mark.parametrize(
    "length,target,start",
    [
        (20, 16, 2),  # cut 2 at each end
        (21, 16, 2),  # odd excess: 2 cut at the start, 3 at the end
        (96_001, 96_000, 0),
    ],
)
def test_crop_keeps_the_middle(length, target, start):
    x = np.arange(length, dtype=np.float32)
    y = fix_length(x, target)
    np.testing.assert_array_equal(y, x[start : start + target])


def test_six_seconds_exactly(tmp_path):
    short = load_fixed(write_wav(tmp_path / "short.wav", seconds=1.5))
    long = load_fixed(write_wav(tmp_path / "long.wav", seconds=7.25))
    assert short.shape == long.shape == (96_000,)
    assert short.dtype == np.float32
    # 1.5 s = 24000 samples: 36000 zeros at each end.
    assert np.all(short[:36_000] == 0) and np.all(short[-36_000:] == 0) and short[36_000] != 0


def test_stereo_is_downmixed(tmp_path):
    path = tmp_path / "stereo.wav"
    left = np.full(1600, 0.2, dtype=np.float32)
    sf.write(path, np.stack([left, 3 * left], axis=1), 16_000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(path), 0.4, rtol=1e-6)


def test_resampled_to_16k(tmp_path):
    path = write_wav(tmp_path / "a44.wav", seconds=0.5, rate=44_100, freq=440.0)
    signal = read_audio(path)
    assert signal.shape == (8000,)
    spectrum = np.abs(np.fft.rfft(signal))
    assert abs(np.argmax(spectrum) * 16_000 / 8000 - 440.0) <= 2.0


def test_flac_is_read(tmp_path):
    wav = write_wav(tmp_path / "x.wav", seconds=0.25)
    data, rate = sf.read(wav)
    sf.write(tmp_path / "x.flac", data, rate)
    np.testing.assert_allclose(read_audio(tmp_path / "x.flac"), read_audio(wav), atol=1e-4)


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(SerjaxError, match="broken.wav"):
        read_audio(bad)
