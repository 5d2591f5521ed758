"""The corpus a run was started on, as a fingerprint kept in its workdir: per utterance its
label, speaker, session, audio size and a digest of the audio's first and last 4 KiB. A run
resumed, evaluated or reported on a corpus that changed since stops with one line naming
what changed, before anything in the workdir is rewritten."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from serjax.corpora import load_corpus
from serjax.errors import SerjaxError
from serjax.fileio import read_json, write_json

FILE = "corpus_fingerprint.json"
_EDGE = 4096


def _audio_digest(path: str) -> list:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(_EDGE)
            f.seek(max(size - _EDGE, 0))
            tail = f.read(_EDGE)
    except OSError:
        return [None, None]
    return [size, hashlib.sha1(head + tail).hexdigest()[:16]]


def fingerprint(utterances) -> dict:
    """{utterance id: [label, speaker, session, audio size, audio digest]}."""
    return {u.utt_id: [u.label, u.speaker, u.session, *_audio_digest(u.path)] for u in utterances}


def _changes(saved: dict, now: dict) -> list[str]:
    removed = sorted(set(saved) - set(now))
    added = sorted(set(now) - set(saved))
    changes = [f"{len(removed)} utterance(s) removed (e.g. {removed[0]})"] if removed else []
    if added:
        changes.append(f"{len(added)} utterance(s) added (e.g. {added[0]})")
    fields = ("label", "speaker", "session", "audio size", "audio")
    for utt in sorted(set(saved) & set(now)):
        for field, old, new in zip(fields, saved[utt], now[utt]):
            if old != new:
                what = f"{old!r} -> {new!r}" if field in fields[:3] else "changed"
                changes.append(f"{utt}: {field} {what}")
                break
    return changes


def check_corpus(workdir: Path, utterances, record: bool) -> None:
    """Compare the corpus with the one the workdir's run was started on; with `record`,
    keep this one's fingerprint when the workdir has none yet."""
    path = Path(workdir) / FILE
    now = fingerprint(utterances)
    if path.is_file():
        changes = _changes(read_json(path)["utterances"], now)
        if changes:
            more = f"; and {len(changes) - 3} more" if len(changes) > 3 else ""
            listed = "; ".join(changes[:3]) + more
            raise SerjaxError(
                f"the corpus changed since the run in {workdir} started ({listed}); "
                "restore it, or train in a new --workdir"
            )
    elif record:
        write_json(path, {"utterances": now})


def check_saved_runs(items) -> None:
    """Report mode: each (config, workdir) whose run kept a fingerprint is checked against
    its corpus as it is now (read once per data config), before any report is rewritten.
    Committed results keep no fingerprint (it is per machine) and are not checked."""
    listings = {}
    for config, workdir in items:
        if not (Path(workdir) / FILE).is_file():
            continue
        key = json.dumps(json.loads(config.data.to_json()), sort_keys=True)
        if key not in listings:
            listings[key] = load_corpus(config.data, config.cache_dir, progress=False)
        check_corpus(workdir, listings[key].utterances, record=False)
