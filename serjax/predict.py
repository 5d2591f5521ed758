"""A trained workdir + audio files → emotion probabilities.

Restores the run's final checkpoints (every fold and seed as an ensemble, or one chosen),
applies the training preprocessing (16 kHz mono, 6-s windows, the test version's log-Mel,
float16 as in the feature cache, the fold's training normalisation) and averages the
softmax over windows, seeds and folds. Audio longer than one window is scored in windows
every `hop_s` seconds (default: half a window) and averaged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from serjax import features
from serjax.audio import audio_problem, fix_length, read_audio
from serjax.checkpoints import restore_final_states
from serjax.data import FoldData
from serjax.errors import SerjaxError
from serjax.metrics import softmax
from serjax.model import build_model
from serjax.seeds import seeds_of
from serjax.train import trainer_for


def windows(signal: np.ndarray, length: int, hop: int) -> np.ndarray:
    """[n, length] windows: one centre-padded window for short audio; otherwise windows every
    `hop` samples from the start, plus one ending at the last sample if that is not covered."""
    if len(signal) <= length:
        return fix_length(signal, length)[None]
    starts = list(range(0, len(signal) - length + 1, hop))
    if starts[-1] + length < len(signal):
        starts.append(len(signal) - length)
    return np.stack([signal[s : s + length] for s in starts])


def _fold_members(workdir: Path, config, fold: str | None, seed_index: int | None):
    """(the run's fold names, the folds whose models predict); a bad choice stops here."""
    if not (workdir / "folds.json").exists():
        raise SerjaxError(f"{workdir} holds no folds.json: is it a finished serjax run?")
    names = json.loads((workdir / "folds.json").read_text())["names"]
    if fold and fold not in names:
        raise SerjaxError(f"--predict_fold {fold!r}: the run's folds are {names}")
    num_seeds = len(seeds_of(config))
    if seed_index is not None and not 0 <= seed_index < num_seeds:
        raise SerjaxError(f"--predict_seed {seed_index}: the run has seeds 0..{num_seeds - 1}")
    return names, [fold] if fold else names


def predict_files(
    config,
    workdir: Path,
    paths: Sequence[str],
    fold: str | None = None,
    seed_index: int | None = None,
    hop_s: float = 0.0,
) -> dict:
    """{path: {"probabilities": {class: p}, "top": class, "windows": n, "duration_s": d,
    "models": {"folds": [...], "seeds": [...]}, "hop_s": h}}: the probabilities averaged over
    the chosen folds' and seeds' models, then over the file's windows."""
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
    # Check and read every file first (as training checks its corpus: a truncated wav is
    # refused, not scored): a bad one stops here, naming it, before any model work.
    for path in paths:
        problem = audio_problem(path)
        if problem:
            raise SerjaxError(f"audio file {path}: {problem}")
    signals = {p: read_audio(p, settings.sample_rate) for p in paths}
    per_file = {p: windows(s, length, hop) for p, s in signals.items()}
    stacked = np.concatenate(list(per_file.values()))
    table = jnp.asarray(
        features.extract(
            stacked, version, settings, progress=False, out_dtype=np.dtype(config.data.cache_dtype)
        )
    )
    rows = np.arange(len(stacked))

    trainer = trainer_for(build_model(config.model, len(classes)), config.train)
    seeds = seeds_of(config)
    probabilities = []
    for name in folds:
        result_path = workdir / "folds" / f"{name}.json"
        if not result_path.exists():
            raise SerjaxError(f"fold {name} is not finished in {workdir} (no {result_path.name})")
        norm = json.loads(result_path.read_text())["normalisation"]
        states = restore_final_states(
            trainer, config, workdir, name, fold_names.index(name), seeds, table.shape[1:]
        )
        # the windows are the table's rows; they have no labels and no class weights
        data = FoldData.of(
            table,
            np.zeros(len(stacked), np.int32),
            np.asarray(norm["mean"], np.float32),
            np.asarray(norm["std"], np.float32),
            np.ones(len(classes), np.float32),
        )
        logits = trainer.predict(states, data, rows, config.train.eval_batch_size)
        probs = softmax(logits)  # [S, windows, classes]
        probabilities.append(probs if seed_index is None else probs[seed_index : seed_index + 1])
    mean = np.concatenate(probabilities).mean(axis=0)  # over folds × seeds
    out, start = {}, 0
    for path, win in per_file.items():
        p = mean[start : start + len(win)].mean(axis=0)
        start += len(win)
        out[path] = {
            "probabilities": {c: float(v) for c, v in zip(classes, p)},
            "top": classes[int(np.argmax(p))],
            "windows": int(len(win)),
            "duration_s": round(len(signals[path]) / settings.sample_rate, 3),
            "models": {
                "folds": list(folds),
                "seeds": seeds if seed_index is None else [seeds[seed_index]],
            },
            "hop_s": round(hop / settings.sample_rate, 4),
        }
    return out
