"""The on-disk feature cache: one memory-mapped .npy per (corpus, version, feature settings).

A cache file is written to a temporary name and renamed when complete, so a file under
its final name is always whole; one that fails to open with the expected shape is rebuilt.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from serjax import features, locks
from serjax.audio import load_fixed
from serjax.corpora.records import Utterance
from serjax.errors import SerjaxError
from serjax.fileio import write_problem

_CHUNK = 256  # utterances read and transformed at a time; bounds memory during extraction


def _digest(payload) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def corpus_fingerprint(utterances: Sequence[Utterance]) -> str:
    """Changes when an utterance, its audio file's size or its modification time changes."""
    rows = []
    for u in utterances:
        try:
            stat = os.stat(u.path)
        except OSError as err:
            raise SerjaxError(f"cannot read audio file {u.path}: {err.strerror}") from None
        rows.append((u.utt_id, u.path, stat.st_size, stat.st_mtime_ns))
    return _digest(rows)


def cache_path(
    cache_dir,
    corpus_name: str,
    utterances,
    version: int,
    settings: features.FeatureSettings,
    dtype: str,
) -> Path:
    folder = (
        Path(cache_dir).expanduser()
        / "features"
        / f"{corpus_name}-{corpus_fingerprint(utterances)[:12]}"
    )
    key = _digest({"version": version, "settings": settings.to_dict(), "dtype": dtype})[:12]
    return folder / f"v{version}-{key}.npy"


def _open_valid(path: Path, shape: tuple, dtype) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as err:
        logging.warning("feature cache %s is unreadable (%s); rebuilding it", path, err)
        return None
    if array.shape != shape or array.dtype != dtype:
        logging.warning(
            "feature cache %s has shape %s %s, expected %s %s; rebuilding it",
            path,
            array.shape,
            array.dtype,
            shape,
            np.dtype(dtype),
        )
        return None
    return array


def load_features(
    utterances: Sequence[Utterance],
    versions: Sequence[int],
    settings,
    cache_dir,
    corpus_name: str,
    dtype: str = "float16",
    load_workers: int = 4,
    progress: bool = True,
) -> dict[int, np.ndarray]:
    """Features [U, n_mels, frames] for each version, computed once and then memory-mapped."""
    dtype = np.dtype(dtype)
    shape = (len(utterances), settings.n_mels, features.num_frames(settings, versions))
    paths = {
        v: cache_path(cache_dir, corpus_name, utterances, v, settings, dtype.name)
        for v in sorted(set(versions))
    }
    result = {v: _open_valid(p, shape, dtype) for v, p in paths.items()}
    if all(array is not None for array in result.values()):
        return result
    folder = next(iter(paths.values())).parent
    # one builder per cache folder: a second process waits, then uses what the first built
    with locks.exclusive(folder, "feature cache", wait=True, name=".build.lock"):
        _remove_stale_temporaries(folder)
        for v, p in paths.items():
            result[v] = result[v] if result[v] is not None else _open_valid(p, shape, dtype)
        missing = [v for v, array in result.items() if array is None]
        if missing:
            _build(utterances, missing, settings, paths, shape, dtype, load_workers, progress)
            for v in missing:
                result[v] = np.load(paths[v], mmap_mode="r")
    return result


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files of a build that was killed (SIGKILL leaves them): only the lock's
    holder builds here, so any that remain belong to a dead process."""
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _build(utterances, versions, settings, paths, shape, dtype, load_workers, progress):
    num_samples = int(round(settings.duration_s * settings.sample_rate))
    tmp_paths = {v: paths[v].with_name(f".{paths[v].name}.{os.getpid()}.tmp") for v in versions}
    paths[versions[0]].parent.mkdir(parents=True, exist_ok=True)
    outputs = {
        v: np.lib.format.open_memmap(tmp_paths[v], mode="w+", dtype=dtype, shape=shape)
        for v in versions
    }
    names = ",".join(f"v{v}" for v in versions)
    try:
        with (
            concurrent.futures.ThreadPoolExecutor(max(1, load_workers)) as pool,
            tqdm(
                total=len(utterances), desc=f"log-Mel {names}", unit="utt", disable=not progress
            ) as bar,
        ):
            for start in range(0, len(utterances), _CHUNK):
                chunk = utterances[start : start + _CHUNK]
                waves = np.stack(
                    list(
                        pool.map(
                            lambda u: load_fixed(u.path, settings.sample_rate, settings.duration_s),
                            chunk,
                        )
                    )
                )
                assert waves.shape[1] == num_samples
                for v in versions:
                    outputs[v][start : start + len(chunk)] = features.extract(
                        waves, v, settings, progress=False, out_dtype=dtype
                    )
                bar.update(len(chunk))
        for v in versions:
            outputs[v].flush()
            del outputs[v]
            os.replace(tmp_paths[v], paths[v])
    finally:
        for tmp in tmp_paths.values():
            if tmp.exists():
                tmp.unlink()


def check_cache_dir(cache_dir) -> None:
    """The cache folder (generated corpora, features) must be writable: one line naming
    it and what sets it, before any work."""
    folder = Path(cache_dir).expanduser()
    problem = write_problem(folder)
    if problem:
        raise SerjaxError(
            f"cache directory {folder} cannot be written ({problem}); it is the config "
            "field cache_dir, by default $SERJAX_CACHE or ~/.cache/serjax: set either to a "
            "writable folder"
        ) from None
