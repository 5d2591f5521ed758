"""Audio I/O: read any soundfile format, downmix, resample to 16 kHz, centre pad/crop."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from serjax.errors import SerjaxError

SAMPLE_RATE = 16_000


def fix_length(signal: np.ndarray, num_samples: int) -> np.ndarray:
    """Centre zero-pad or centre-crop a 1-D signal to exactly `num_samples`.

    Padding and cutting are split equally between both ends; an odd remainder
    goes to (is taken from) the end.
    """
    length = signal.shape[-1]
    if length < num_samples:
        total = num_samples - length
        left = total // 2
        return np.pad(signal, (left, total - left))
    start = (length - num_samples) // 2
    return signal[start : start + num_samples]


_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


def _wav_truncation(path: str) -> str | None:
    """A RIFF/WAVE file whose data chunk claims more bytes than the file holds was cut short
    (libsndfile would quietly read what is there)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
        size = f.seek(0, os.SEEK_END)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk, length = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            have = size - (pos + 8)
            if length != 0xFFFFFFFF and length > have:  # 0xFFFFFFFF: length unknown (streamed)
                return (
                    f"truncated: its header declares {length} bytes of audio, the file holds {have}"
                )
            return None
        pos += 8 + length + (length & 1)
    return None


def _not_a_file(path) -> str | None:
    """libsndfile says only "System error." for these."""
    if not os.path.exists(path):
        return "no such file"
    if not os.path.isfile(path):
        return "is not a file"
    return None


def audio_problem(path: str | os.PathLike) -> str | None:
    """Why a file cannot be used as audio, or None: unreadable, no samples, or (for float
    formats, the only ones that can hold them) NaN or infinite samples. Reads only the
    header of integer-PCM files."""
    missing = _not_a_file(path)
    if missing:
        return missing
    try:
        info = sf.info(os.fspath(path))
    except Exception as err:  # soundfile raises several types for bad files
        return f"cannot read audio file: {err}"
    if info.frames == 0:
        return "holds no samples"
    if info.format == "WAV":
        truncated = _wav_truncation(os.fspath(path))
        if truncated:
            return truncated
    if info.subtype in _FLOAT_SUBTYPES:
        try:
            data, _ = sf.read(os.fspath(path), dtype="float64", always_2d=True)
        except Exception as err:
            return f"cannot read audio file: {err}"
        if not np.all(np.isfinite(data)):
            return "holds NaN or infinite samples"
    return None


def read_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as float32 mono at `sample_rate` (downmixed and resampled)."""
    path = os.fspath(path)
    missing = _not_a_file(path)
    if missing:
        raise SerjaxError(f"cannot read audio file {path}: {missing}")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for bad files
        raise SerjaxError(f"cannot read audio file {path}: {err}") from None
    if data.shape[0] == 0:
        raise SerjaxError(f"audio file {path} holds no samples")
    signal = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(signal)):
        raise SerjaxError(f"audio file {path} holds NaN or infinite samples")
    if rate != sample_rate:
        import librosa  # imported lazily: its first resample call is slow to load

        signal = librosa.resample(signal, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(signal, dtype=np.float32)


def load_fixed(
    path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, duration_s: float = 6.0
) -> np.ndarray:
    """Read, downmix, resample and centre pad/crop to `duration_s` seconds."""
    return fix_length(read_audio(path, sample_rate), int(round(duration_s * sample_rate)))
