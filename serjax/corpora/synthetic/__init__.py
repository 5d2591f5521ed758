"""A synthetic IEMOCAP: speech-like signals whose emotion shows in prosody.

The project's default run must work without the licensed IEMOCAP corpus, so this
package writes a tree in the exact layout of `IEMOCAP_full_release` (see SPEC §1)
that the IEMOCAP loader reads like the real thing. Its parts, bottom up:

* `config`: the knobs (`default_config`), their check, and the hash naming a corpus;
* `plan`: label counts, the ten speakers, the dialogs and every turn (no audio);
* `prosody`: each emotion's prosodic profile, and one utterance's draw around it;
* `acoustics`: the source-filter synthesis of one turn (`render`);
* `layout`: the label files, resource forks, wav paths and the `SYNTHETIC.json` marker.

This module is the public face (everything other code uses is re-exported here) and
runs a generation: `generate` writes a tree, `ensure` reuses a cached one. The audio is
rendered through this module's `render`, so a test can substitute it here.

Determinism
-----------
Everything is drawn from `numpy.random.Generator`s seeded with `cfg.seed` plus a
purpose tag plus an index (the utterance's global index, the speaker's index), so
an utterance's audio does not depend on the order in which utterances are made.
The same config gives byte-identical files (on the same platform and NumPy).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pathlib
import shutil
import types
import uuid

import soundfile as sf

from serjax.corpora.synthetic.acoustics import _channels, render
from serjax.corpora.synthetic.config import (
    GENERATOR_VERSION,
    MARKER,
    NUM_SESSIONS,
    SAMPLE_RATE,
    _cfg_dict,
    _check_config,
    config_hash,
    default_config,
)
from serjax.corpora.synthetic.layout import (
    HEADER,
    _is_complete,
    _wav_path,
    _write_marker,
    _write_text_files,
)
from serjax.corpora.synthetic.plan import (
    DISTRACTOR_LABELS,
    DISTRACTOR_WEIGHTS,
    PAPER_CLASSES,
    PAPER_PROPORTIONS,
    SCRIPTED_LABELS,
    SCRIPTED_WEIGHTS,
    _plan,
    _speakers,
    apportion,
    paper_class_counts,
    raw_label_counts,
)
from serjax.errors import SerjaxError

__all__ = [
    "DISTRACTOR_LABELS",
    "DISTRACTOR_WEIGHTS",
    "GENERATOR_VERSION",
    "HEADER",
    "MARKER",
    "NUM_SESSIONS",
    "PAPER_CLASSES",
    "PAPER_PROPORTIONS",
    "SAMPLE_RATE",
    "SCRIPTED_LABELS",
    "SCRIPTED_WEIGHTS",
    "apportion",
    "config_hash",
    "default_config",
    "ensure",
    "generate",
    "paper_class_counts",
    "raw_label_counts",
    "render",
]

_CHUNK = 32


def _render_chunk(jobs) -> int:
    """Render and write a few turns (runs in a worker process when parallel)."""
    for turn, speaker, channel, knobs, path in jobs:
        sf.write(path, render(turn, speaker, channel, knobs), SAMPLE_RATE, subtype="PCM_16")
    return len(jobs)


def _render_jobs(tree: pathlib.Path, turns, speakers, cfg) -> list[tuple]:
    """One (turn, speaker, channel, knobs, wav path) per turn; the knobs are the config as
    plain data, so the jobs pickle for worker processes."""
    channels = _channels(cfg.seed)
    knobs = types.SimpleNamespace(**_cfg_dict(cfg))
    return [
        (
            turn,
            speakers[(turn.session, turn.sex)],
            channels[turn.session - 1],
            knobs,
            str(_wav_path(tree, turn)),
        )
        for turn in turns
    ]


def _render_all(jobs: list[tuple], workers: int, progress: bool) -> None:
    """Write every job's wav, in chunks, here or in `workers` spawned processes."""
    from tqdm.auto import tqdm

    chunks = [jobs[i : i + _CHUNK] for i in range(0, len(jobs), _CHUNK)]
    workers = max(1, int(workers or 1))
    with tqdm(total=len(jobs), desc="synthetic IEMOCAP", unit="utt", disable=not progress) as bar:
        if workers <= 1:
            for chunk in chunks:
                bar.update(_render_chunk(chunk))
        else:
            context = multiprocessing.get_context("spawn")  # safe beside threaded libraries
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                for done in pool.map(_render_chunk, chunks):
                    bar.update(done)


def _write_tree(tree: pathlib.Path, cfg, progress: bool, workers: int) -> None:
    """Plan the corpus and write all of it under `tree`, the marker last."""
    turns, counts = _plan(cfg)
    speakers = _speakers(cfg)
    dialogs = _write_text_files(tree, turns, cfg)
    _render_all(_render_jobs(tree, turns, speakers, cfg), workers, progress)
    _write_marker(tree, cfg, turns, counts, len(dialogs), speakers)


def generate(root, cfg, progress: bool = True, workers: int = 1) -> pathlib.Path:
    """Write the synthetic IEMOCAP tree under `root` (which must not exist yet).

    The tree is built in a temporary sibling folder and renamed into place at the
    end, so an interrupted run never leaves a corpus that looks complete.

    `workers` > 1 renders the audio in that many processes (started with 'spawn',
    so a calling script needs the usual `if __name__ == "__main__":` guard); the
    files are byte-identical whatever the number. The default, 1, renders in this
    process: about 11 ms per utterance, 55 s for the default corpus (5003 files)
    on one core, 27 s with workers=2.
    """
    _check_config(cfg)
    root = pathlib.Path(root)
    if root.exists():
        raise SerjaxError(f"cannot generate the synthetic corpus into {root}: it already exists")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_tree(tmp, cfg, progress, workers)
        try:
            tmp.rename(root)
        except OSError:
            if _is_complete(root):  # someone else finished the same corpus first
                shutil.rmtree(tmp, ignore_errors=True)
                return root
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def ensure(cache_dir, cfg, progress: bool = True, workers: int = 1) -> pathlib.Path:
    """`<cache_dir>/synthetic-<hash of cfg>`, generated only if not already complete."""
    _check_config(cfg)
    path = pathlib.Path(cache_dir) / f"synthetic-{config_hash(cfg)}"
    if _is_complete(path):
        return path
    if path.exists():
        raise SerjaxError(
            f"{path} exists but holds no {MARKER}, so it is not a complete synthetic "
            "corpus; delete it and run again"
        )
    return generate(path, cfg, progress=progress, workers=workers)
