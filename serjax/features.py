"""Log-Mel spectrograms at the paper's eight STFT settings (SPEC §2).

`log_mel_jax` is what the pipeline uses (jit-compiled, batched, per-utterance
80 dB floor); `log_mel_librosa` is the reference it is tested against.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from serjax.errors import SerjaxError

# Dataset version -> (window, overlap) in milliseconds; hop = window - overlap = 10 ms.
STFT_VERSIONS: dict[int, tuple[float, float]] = {
    1: (15.0, 5.0),
    2: (20.0, 10.0),
    3: (25.0, 15.0),
    4: (30.0, 20.0),
    5: (35.0, 25.0),
    6: (40.0, 30.0),
    7: (45.0, 35.0),
    8: (50.0, 40.0),
}

# Padding modes that librosa.stft accepts for centring and jnp.pad implements alike.
_PAD_MODES = ("constant", "edge", "reflect", "symmetric")
_MEL_NORMS = ("slaney", "none")


@dataclasses.dataclass(frozen=True)
class FeatureSettings:
    """Everything that shapes the log-Mel numbers, apart from the version's window."""

    sample_rate: int = 16000
    duration_s: float = 6.0
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float = 8000.0
    n_fft: int = 0  # 0: n_fft = window length in samples (MATLAB's default)
    window: str = "hann"
    top_db: float = 80.0
    amin: float = 1e-10
    mel_norm: str = "slaney"  # "slaney" or "none"
    htk: bool = False
    center: bool = True
    pad_mode: str = "constant"

    def __post_init__(self):
        def bad(field, why):
            raise SerjaxError(f"features.{field} = {getattr(self, field)!r}: {why}")

        for name in ("sample_rate", "n_mels", "n_fft"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                bad(name, "must be an integer")
        for name in ("duration_s", "fmin", "fmax", "top_db", "amin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                bad(name, "must be a number")
        for name in ("window", "mel_norm", "pad_mode"):
            if not isinstance(getattr(self, name), str):
                bad(name, "must be a string")
        for name in ("htk", "center"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                bad(name, "must be true or false")
        # Store canonical Python types so equal settings hash and serialise alike
        # (duration_s = 6 and 6.0 must name the same feature cache).
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            cast = {"int": int, "float": float, "bool": bool, "str": str}[f.type]
            object.__setattr__(self, f.name, cast(value))
        if self.sample_rate <= 0:
            bad("sample_rate", "must be positive")
        if not self.duration_s > 0:
            bad("duration_s", "must be positive")
        if self.n_mels <= 0:
            bad("n_mels", "must be positive")
        if self.n_fft < 0:
            bad("n_fft", "must be 0 (window length) or a positive FFT size")
        if not 0 <= self.fmin < self.fmax:
            bad("fmin", f"must satisfy 0 <= fmin < fmax (fmax = {self.fmax})")
        if self.fmax > self.sample_rate / 2:
            bad("fmax", f"must not exceed the Nyquist frequency {self.sample_rate / 2:g} Hz")
        if not self.top_db > 0:
            bad("top_db", "must be positive")
        if not self.amin > 0:
            bad("amin", "must be positive")
        if self.mel_norm not in _MEL_NORMS:
            bad("mel_norm", f"must be one of {_MEL_NORMS}")
        if self.pad_mode not in _PAD_MODES:
            bad("pad_mode", f"must be one of {_PAD_MODES}")
        try:
            import scipy.signal

            scipy.signal.get_window(self.window, 16, fftbins=True)
        except Exception:  # scipy raises ValueError or others for unknown names
            bad("window", "is not a window name that scipy.signal.get_window knows")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | ml_collections.ConfigDict) -> FeatureSettings:
        """Build settings from a ConfigDict or mapping; unknown keys are an error."""
        items = dict(cfg.items())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(items) - known)
        if unknown:
            raise SerjaxError(
                f"unknown features setting(s) {', '.join(unknown)}; "
                f"known settings are {', '.join(sorted(known))}"
            )
        return cls(**items)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def num_samples(self) -> int:
        return int(round(self.duration_s * self.sample_rate))


def default_config() -> ml_collections.ConfigDict:
    """The feature settings as a ConfigDict (embedded by the lead as `config.features`)."""
    return ml_collections.ConfigDict(FeatureSettings().to_dict())


def _check_version(version) -> int:
    if (
        isinstance(version, bool)
        or not isinstance(version, (int, np.integer))
        or int(version) not in STFT_VERSIONS
    ):
        raise SerjaxError(
            f"version = {version!r} is not a dataset version; "
            f"valid versions are {min(STFT_VERSIONS)}..{max(STFT_VERSIONS)}"
        )
    return int(version)


def stft_params(
    version: int, settings: FeatureSettings = FeatureSettings()
) -> tuple[int, int, int]:
    """(win_length, hop_length, n_fft) in samples for a dataset version."""
    version = _check_version(version)
    window_ms, overlap_ms = STFT_VERSIONS[version]
    win_length = int(round(window_ms * settings.sample_rate / 1000.0))
    hop_length = int(round((window_ms - overlap_ms) * settings.sample_rate / 1000.0))
    n_fft = settings.n_fft or win_length
    if n_fft < win_length:
        raise SerjaxError(
            f"features.n_fft = {settings.n_fft} is shorter than version {version}'s window "
            f"of {win_length} samples; use 0 (n_fft = window length) or at least {win_length}"
        )
    return win_length, hop_length, n_fft


def _frames_for(num_samples: int, hop_length: int, n_fft: int, center: bool) -> int:
    padded = num_samples + 2 * (n_fft // 2) if center else num_samples
    if padded < n_fft:
        raise SerjaxError(f"{num_samples} samples are too few for an FFT of {n_fft}")
    return 1 + (padded - n_fft) // hop_length


def num_frames(settings: FeatureSettings = FeatureSettings(), version=None) -> int:
    """Frames per utterance of a version, or of versions that must agree (all eight when
    None); with a centred STFT every version gives the same count."""
    if version is None:
        versions = sorted(STFT_VERSIONS)
    elif isinstance(version, (int, np.integer)):
        versions = [version]
    else:
        versions = sorted(set(int(v) for v in version))
    counts = {}
    for v in versions:
        _, hop, n_fft = stft_params(_check_version(v), settings)
        counts[v] = _frames_for(settings.num_samples, hop, n_fft, settings.center)
    if len(set(counts.values())) != 1:
        listed = ", ".join(f"v{v}: {c}" for v, c in counts.items())
        raise SerjaxError(
            f"config field features.center: with center = false the versions used give "
            f"different frame counts ({listed}) and cannot share one model input; "
            "use one version (experiment.train_versions = [test_version]) or center = true"
        )
    return counts[versions[0]]


def output_shape(version: int, settings: FeatureSettings = FeatureSettings()) -> tuple[int, int]:
    """(n_mels, frames) of one utterance's log-Mel spectrogram."""
    return settings.n_mels, num_frames(settings, version)


@functools.cache
def _constants(version: int, settings: FeatureSettings):
    """Analysis window (padded to n_fft) and the Mel matrix trimmed to its nonzero bins."""
    import librosa

    win_length, _, n_fft = stft_params(version, settings)
    window = librosa.filters.get_window(settings.window, win_length, fftbins=True)
    window = librosa.util.pad_center(window, size=n_fft).astype(np.float32)
    mel = librosa.filters.mel(
        sr=settings.sample_rate,
        n_fft=n_fft,
        n_mels=settings.n_mels,
        fmin=settings.fmin,
        fmax=settings.fmax,
        htk=settings.htk,
        norm=None if settings.mel_norm == "none" else settings.mel_norm,
    ).astype(np.float32)
    # Bins outside [fmin, fmax] carry no weight: skipping them saves matmul work.
    used = np.flatnonzero(mel.any(axis=0))
    lo, hi = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
    return window, np.ascontiguousarray(mel[:, lo:hi].T), lo, hi


def _frame(padded: jax.Array, n_frames: int, hop: int, n_fft: int) -> jax.Array:
    """[B, L] -> [B, n_frames, n_fft] overlapping frames.

    One gather whose slices are whole frames: XLA copies each as a contiguous row.
    Fancy indexing (padded[:, index]) gathers sample by sample and was 4-5x slower
    on CPU; stacking hop-sized chunks was slower still for long windows.
    """
    starts = (np.arange(n_frames, dtype=np.int32) * hop)[:, None]
    dims = jax.lax.GatherDimensionNumbers(
        offset_dims=(0, 2), collapsed_slice_dims=(), start_index_map=(1,)
    )
    return jax.lax.gather(
        padded,
        jnp.asarray(starts),
        dims,
        slice_sizes=(padded.shape[0], n_fft),
        mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )


def _build(version: int, settings: FeatureSettings, out_dtype) -> Any:
    win_length, hop, n_fft = stft_params(version, settings)
    window, mel_t, lo, hi = _constants(version, settings)

    def log_mel(waveforms):
        if settings.center:
            pad = n_fft // 2
            padded = jnp.pad(waveforms, ((0, 0), (pad, pad)), mode=settings.pad_mode)
        else:
            padded = waveforms
        n_frames = 1 + (padded.shape[1] - n_fft) // hop
        frames = _frame(padded, n_frames, hop, n_fft) * window
        spectrum = jnp.fft.rfft(frames, axis=-1)[..., lo:hi]
        power = jnp.square(spectrum.real) + jnp.square(spectrum.imag)
        # HIGHEST keeps float32 on accelerators that would otherwise use TF32/bf16.
        mel = jnp.einsum("btf,fm->btm", power, mel_t, precision=jax.lax.Precision.HIGHEST)
        db = 10.0 * jnp.log10(jnp.maximum(mel, settings.amin))
        # ref = 1.0 contributes 10*log10(1) = 0. The floor is per utterance, unlike
        # librosa.power_to_db on a batch, which floors against the batch maximum.
        floor = jnp.max(db, axis=(1, 2), keepdims=True) - settings.top_db
        db = jnp.maximum(db, floor)
        return jnp.swapaxes(db, 1, 2).astype(out_dtype)

    return jax.jit(log_mel)


@functools.cache
def _compiled(version: int, settings: FeatureSettings, out_dtype: str):
    return _build(version, settings, jnp.dtype(out_dtype))


def _check_waveforms(shape, settings: FeatureSettings) -> None:
    if len(shape) != 2:
        raise SerjaxError(f"waveforms must be a 2-D [utterances, samples] array, got shape {shape}")
    if shape[1] != settings.num_samples:
        raise SerjaxError(
            f"waveforms hold {shape[1]} samples each, but features.duration_s = "
            f"{settings.duration_s} at {settings.sample_rate} Hz needs {settings.num_samples}; "
            "pad or cut them first (serjax.audio.fix_length)"
        )


def log_mel_jax(
    waveforms, version: int, settings: FeatureSettings = FeatureSettings()
) -> jax.Array:
    """float32 [B, N] waveforms -> float32 [B, n_mels, frames] log-Mel in dB (jit, cached)."""
    version = _check_version(version)
    waveforms = jnp.asarray(waveforms, dtype=jnp.float32)
    _check_waveforms(waveforms.shape, settings)
    return _compiled(version, settings, "float32")(waveforms)


def log_mel_librosa(
    waveform: np.ndarray, version: int, settings: FeatureSettings = FeatureSettings()
) -> np.ndarray:
    """Reference log-Mel of one utterance [N] -> [n_mels, frames], computed by librosa."""
    import librosa

    win_length, hop, n_fft = stft_params(version, settings)
    power = librosa.feature.melspectrogram(
        y=np.asarray(waveform, dtype=np.float32),
        sr=settings.sample_rate,
        n_fft=n_fft,
        hop_length=hop,
        win_length=win_length,
        window=settings.window,
        center=settings.center,
        pad_mode=settings.pad_mode,
        power=2.0,
        n_mels=settings.n_mels,
        fmin=settings.fmin,
        fmax=settings.fmax,
        htk=settings.htk,
        norm=None if settings.mel_norm == "none" else settings.mel_norm,
    )
    return librosa.power_to_db(power, ref=1.0, amin=settings.amin, top_db=settings.top_db)


def default_batch_size() -> int:
    # Small batches keep the frames of a batch in the CPU caches, which beats the
    # per-call overhead; accelerators want big batches.
    return 4 if jax.default_backend() == "cpu" else 128


def extract(
    waveforms: np.ndarray,
    version: int,
    settings: FeatureSettings = FeatureSettings(),
    batch_size: int | None = None,
    progress: bool = True,
    out_dtype=np.float16,
) -> np.ndarray:
    """Log-Mel of every row of `waveforms` [U, N] -> NumPy [U, n_mels, frames] of `out_dtype`.

    Every batch has the same shape (the last one is zero-padded), so each version
    compiles once.
    """
    from tqdm.auto import tqdm

    version = _check_version(version)
    _check_waveforms(np.shape(waveforms), settings)
    batch_size = default_batch_size() if batch_size is None else int(batch_size)
    if batch_size <= 0:
        raise SerjaxError(f"batch_size = {batch_size} must be positive")
    out_dtype = np.dtype(out_dtype)
    if out_dtype.kind != "f":
        raise SerjaxError(f"out_dtype = {out_dtype} must be a floating-point type")
    total = len(waveforms)
    out = np.empty((total, *output_shape(version, settings)), dtype=out_dtype)
    if total == 0:
        return out
    fn = _compiled(version, settings, out_dtype.name)
    pending: collections.deque = collections.deque()

    def collect():
        start, stop, result = pending.popleft()
        out[start:stop] = np.asarray(result)[: stop - start]
        bar.update(stop - start)

    with tqdm(total=total, desc=f"log-Mel v{version}", unit="utt", disable=not progress) as bar:
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            batch = np.asarray(waveforms[start:stop], dtype=np.float32)
            if stop - start < batch_size:
                batch = np.pad(batch, ((0, batch_size - (stop - start)), (0, 0)))
            # Dispatch is asynchronous: keep a few batches in flight so copying
            # results out overlaps with computing the next ones.
            pending.append((start, stop, fn(batch)))
            if len(pending) > 2:
                collect()
        while pending:
            collect()
    return out
