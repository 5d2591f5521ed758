"""A trained workdir + audio files → emotion probabilities.

Restores the run's final checkpoints (every fold and seed as an ensemble, or one chosen),
applies the training preprocessing (16 kHz mono, 6-s windows, the test version's log-Mel,
float16 as in the feature cache, the fold's training normalisation) and averages the
softmax over windows, seeds and folds. Audio longer than one window is scored in windows
every `hop_s` seconds (default: half a window) and averaged.

Long audio streams: it is read in blocks (resampled as it is read), cut into windows, and
scored a chunk of windows at a time, so an hour-long file takes the memory of one chunk,
not of the file. The numbers are those of reading the whole file at once. A clip shorter
than `min_s` seconds is still scored, with a warning; every result names the corpus the
models were trained on (a synthetic-corpus model says so).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import soundfile as sf

from serjax import features
from serjax.audio import (
    _FLOAT_SUBTYPES,
    _not_a_file,
    _wav_truncation,
    audio_problem,
    fix_length,
    read_audio,
)
from serjax.checkpoints import restore_final_states
from serjax.data import FoldData
from serjax.errors import SerjaxError
from serjax.fileio import read_json
from serjax.metrics import softmax
from serjax.model import build_model
from serjax.seeds import seeds_of
from serjax.train import trainer_for

DEFAULT_MIN_S = 0.5  # a clip shorter than this holds too little speech for a label to mean much
# windows whose features are extracted and scored together (on an accelerator, at least
# one batch of feature extraction: features.default_batch_size)
CHUNK_WINDOWS = 64
BLOCK_FRAMES = 1 << 16  # audio frames read at a time
PROGRESS_FROM = 128  # a progress bar over the windows from this many on
SYNTHETIC_WARNING = (
    "model trained on serjax's SYNTHETIC corpus: these labels say nothing about real speech"
)


def window_starts(num_samples: int, length: int, hop: int) -> list[int]:
    """The first sample of each window of a signal longer than one window: every `hop`
    samples from the start, plus one ending at the last sample if that is not covered.
    Empty for audio of at most one window (scored as one centre-padded window)."""
    if num_samples <= length:
        return []
    starts = list(range(0, num_samples - length + 1, hop))
    if starts[-1] + length < num_samples:
        starts.append(num_samples - length)
    return starts


def windows(signal: np.ndarray, length: int, hop: int) -> np.ndarray:
    """[n, length] windows: one centre-padded window for short audio; otherwise windows every
    `hop` samples from the start, plus one ending at the last sample if that is not covered."""
    if len(signal) <= length:
        return fix_length(signal, length)[None]
    return np.stack([signal[s : s + length] for s in window_starts(len(signal), length, hop)])


def num_samples(path: str, sample_rate: int) -> int:
    """The file's length at `sample_rate`, as read_audio would return it (librosa's
    resampling gives ceil(frames × ratio) samples)."""
    info = sf.info(path)
    if info.samplerate == sample_rate:
        return int(info.frames)
    return int(math.ceil(info.frames * (float(sample_rate) / info.samplerate)))


def file_problem(path: str) -> str | None:
    """serjax.audio.audio_problem in bounded memory: a float file's samples are checked block
    by block (audio_problem reads it whole), the rest is audio_problem's own check."""
    missing = _not_a_file(path)
    if missing:
        return missing
    try:
        info = sf.info(path)
    except Exception:  # soundfile raises several types for bad files: audio_problem names it
        return audio_problem(path)
    if info.subtype not in _FLOAT_SUBTYPES or info.frames == 0:
        return audio_problem(path)  # reads the header only
    if info.format == "WAV":
        truncated = _wav_truncation(path)
        if truncated:
            return truncated
    try:
        for block in sf.blocks(path, blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
            if not np.all(np.isfinite(block)):
                return "holds NaN or infinite samples"
    except Exception as err:
        return f"cannot read audio file: {err}"
    return None


def _blocks(path: str, sample_rate: int, total: int) -> Iterator[np.ndarray]:
    """The file as float32 mono at `sample_rate`, block by block: read_audio's samples
    (the same downmix; soxr's streaming resampler gives its one-shot output), cut or
    zero-padded to `total` samples as librosa fixes the resampled length."""
    import soxr

    with sf.SoundFile(path) as f:
        stream = None
        if f.samplerate != sample_rate:  # librosa's res_type="soxr_hq" is soxr's HQ
            stream = soxr.ResampleStream(f.samplerate, sample_rate, 1, "float32", quality="HQ")
        produced, last = 0, False
        while not last:
            try:
                data = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
            except Exception as err:  # soundfile raises several types for bad files
                raise SerjaxError(f"cannot read audio file {path}: {err}") from None
            last = len(data) < BLOCK_FRAMES
            mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
            if not np.all(np.isfinite(mono)):
                raise SerjaxError(f"audio file {path} holds NaN or infinite samples")
            if stream is not None:
                mono = stream.resample_chunk(np.ascontiguousarray(mono), last=last)
            mono = np.ascontiguousarray(mono[: total - produced], dtype=np.float32)
            produced += len(mono)
            yield mono
    if produced < total:
        yield np.zeros(total - produced, np.float32)


def file_windows(path: str, sample_rate: int, length: int, hop: int) -> Iterator[np.ndarray]:
    """windows(read_audio(path), length, hop), one window at a time, in the memory of about
    a window and a block."""
    total = num_samples(path, sample_rate)
    starts = window_starts(total, length, hop)
    if not starts:  # at most one window: small enough to read whole
        yield fix_length(read_audio(path, sample_rate), length)
        return
    blocks = _blocks(path, sample_rate, total)
    buffer, offset = np.zeros(0, np.float32), 0  # buffer holds samples offset, offset + 1, ...
    for i, start in enumerate(starts):
        while offset + len(buffer) < start + length:
            buffer = np.concatenate([buffer, next(blocks)])
        yield buffer[start - offset : start - offset + length]  # a view: copy to keep it
        if i + 1 < len(starts):
            buffer, offset = buffer[starts[i + 1] - offset :], starts[i + 1]


def _fold_members(workdir: Path, config, fold: str | None, seed_index: int | None):
    """(the run's fold names, the folds whose models predict); a bad choice stops here."""
    if not (workdir / "folds.json").exists():
        raise SerjaxError(f"{workdir} holds no folds.json: is it a finished serjax run?")
    names = read_json(workdir / "folds.json")["names"]
    if fold and fold not in names:
        raise SerjaxError(f"--predict_fold {fold!r}: the run's folds are {names}")
    num_seeds = len(seeds_of(config))
    if seed_index is not None and not 0 <= seed_index < num_seeds:
        raise SerjaxError(f"--predict_seed {seed_index}: the run has seeds 0..{num_seeds - 1}")
    return names, [fold] if fold else names


def trained_on(config, workdir: Path) -> dict:
    """The corpus the run's models learnt from (its config, and its summary.json where there
    is one); a synthetic corpus carries SYNTHETIC_WARNING."""
    corpus = str(config.data.corpus)
    out = {"corpus": corpus, "synthetic": corpus == "synthetic"}
    if corpus != "synthetic" and config.data.get("root"):
        out["root"] = str(config.data.root)
    summary = Path(workdir) / "summary.json"
    if summary.is_file():
        out["utterances"] = read_json(summary).get("num_utterances")
    if out["synthetic"]:
        out["warning"] = SYNTHETIC_WARNING
    return out


def _window_stream(paths, sample_rate: int, length: int, hop: int, chunk: int):
    """(file index of each window, [n, length] windows) in chunks of up to `chunk` windows,
    across files in order. The windows are one buffer, filled again for the next chunk:
    use them before asking for it."""
    owners, pieces, n = np.zeros(chunk, np.int64), np.zeros((chunk, length), np.float32), 0
    for i, path in enumerate(paths):
        for window in file_windows(path, sample_rate, length, hop):
            owners[n], pieces[n] = i, window
            n += 1
            if n == chunk:
                yield owners, pieces
                n = 0
    if n:
        yield owners[:n], pieces[:n]


def predict_files(
    config,
    workdir: Path,
    paths: Sequence[str],
    fold: str | None = None,
    seed_index: int | None = None,
    hop_s: float = 0.0,
    min_s: float = DEFAULT_MIN_S,
    chunk_windows: int | None = None,
    progress: bool | None = None,
) -> dict:
    """{path: {"probabilities": {class: p}, "top": class, "windows": n, "duration_s": d,
    "models": {"folds": [...], "seeds": [...]}, "hop_s": h, "trained_on": {...}[, "warning":
    why the label is weak]}}: the probabilities averaged over the chosen folds' and seeds'
    models, then over the file's windows. Windows are scored `chunk_windows` at a time
    (default: CHUNK_WINDOWS, or one feature batch if that is more); a progress bar runs over
    them when there are PROGRESS_FROM or more (progress=None)."""
    workdir = Path(workdir)
    if not paths:
        raise SerjaxError(
            "no audio file given: pass --wav FILE (repeatable) or files after the flags"
        )
    settings = features.FeatureSettings.from_config(config.features)
    classes = list(config.data.classes)
    version = int(config.experiment.test_version)
    length = int(round(settings.duration_s * settings.sample_rate))
    fold_names, folds = _fold_members(
        workdir, config, fold, seed_index
    )  # bad choices: before any work
    if hop_s < 0:
        raise SerjaxError(f"--predict_hop_s {hop_s}: need a hop > 0 s (0: half a window)")
    hop = int(round(hop_s * settings.sample_rate)) if hop_s > 0 else length // 2
    if not 1 <= hop <= length:
        raise SerjaxError(
            f"--predict_hop_s {hop_s}: the hop must be between one sample and one window "
            f"({settings.duration_s} s), or windows would skip audio"
        )
    if not min_s >= 0:
        raise SerjaxError(f"--predict_min_s {min_s}: need a duration >= 0 s (0: no warning)")
    if chunk_windows is None:
        chunk_windows = max(CHUNK_WINDOWS, features.default_batch_size())
    if chunk_windows < 1:
        raise SerjaxError(f"chunk_windows = {chunk_windows}: need at least one window")
    # Check every file first (as training checks its corpus: a truncated wav is refused, not
    # scored): a bad one stops here, naming it, before any model work.
    for path in paths:
        problem = file_problem(path)
        if problem:
            raise SerjaxError(f"audio file {path}: {problem}")
    sizes = [num_samples(p, settings.sample_rate) for p in paths]
    counts = [max(1, len(window_starts(n, length, hop))) for n in sizes]

    trainer = trainer_for(build_model(config.model, len(classes)), config.train)
    seeds = seeds_of(config)
    input_shape = features.output_shape(version, settings)
    members = []  # (normalisation mean, std, the fold's states) of every fold that predicts
    for name in folds:
        result_path = workdir / "folds" / f"{name}.json"
        if not result_path.exists():
            raise SerjaxError(f"fold {name} is not finished in {workdir} (no {result_path.name})")
        norm = read_json(result_path)["normalisation"]
        states = restore_final_states(
            trainer, config, workdir, name, fold_names.index(name), seeds, input_shape
        )
        mean, std = (np.asarray(norm[k], np.float32) for k in ("mean", "std"))
        members.append((mean, std, states))

    from tqdm.auto import tqdm

    sums = np.zeros((len(paths), len(classes)), np.float64)
    show = sum(counts) >= PROGRESS_FROM if progress is None else progress
    # the windows have no labels and no class weights; every chunk's table has the same
    # shape (zero rows pad the last one), so the model compiles once
    no_labels = np.zeros(chunk_windows, np.int32)
    no_weights = np.ones(len(classes), np.float32)
    dtype = np.dtype(config.data.cache_dtype)
    with tqdm(total=sum(counts), desc="predict", unit="window", disable=not show) as bar:
        for owners, chunk in _window_stream(
            paths, settings.sample_rate, length, hop, chunk_windows
        ):
            table = np.zeros((chunk_windows, *input_shape), dtype)
            table[: len(chunk)] = features.extract(
                chunk, version, settings, progress=False, out_dtype=dtype
            )
            table = jnp.asarray(table)
            rows = np.arange(len(chunk))
            probabilities = []
            for mean, std, states in members:
                data = FoldData.of(table, no_labels, mean, std, no_weights)
                probs = softmax(trainer.predict(states, data, rows, config.train.eval_batch_size))
                probabilities.append(
                    probs if seed_index is None else probs[seed_index : seed_index + 1]
                )
            per_window = np.concatenate(probabilities).mean(axis=0)  # over folds × seeds
            np.add.at(sums, owners, per_window)
            bar.update(len(chunk))

    source = trained_on(config, workdir)
    out = {}
    for i, path in enumerate(paths):
        p = sums[i] / counts[i]
        duration = sizes[i] / settings.sample_rate
        out[path] = {
            "probabilities": {c: float(v) for c, v in zip(classes, p)},
            "top": classes[int(np.argmax(p))],
            "windows": int(counts[i]),
            "duration_s": round(duration, 3),
            "models": {
                "folds": list(folds),
                "seeds": seeds if seed_index is None else [seeds[seed_index]],
            },
            "hop_s": round(hop / settings.sample_rate, 4),
            "trained_on": source,
        }
        if duration < min_s:
            out[path]["warning"] = (
                f"{duration:.2f} s of audio, under the {min_s:g}-s minimum (--predict_min_s): "
                "too short for a reliable label"
            )
    return out
