"""`--mode=inspect`: what a corpus holds, as printed text and corpus.json."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import soundfile as sf

from serjax.corpora.records import CorpusListing
from serjax.errors import SerjaxError


def summarize(listing: CorpusListing, classes) -> dict:
    """Counts per label, session and speaker, durations, and what was skipped or excluded."""
    durations = []
    for u in listing.utterances:
        try:
            durations.append(sf.info(u.path).duration)
        except Exception as err:
            raise SerjaxError(f"cannot read audio file {u.path}: {err}") from None
    labels = collections.Counter(u.label for u in listing.utterances)
    return {
        "corpus": listing.name,
        "counts": {c: labels.get(c, 0) for c in classes},
        "total": len(listing.utterances),
        "raw_labels": dict(
            sorted(collections.Counter(u.raw_label for u in listing.utterances).items())
        ),
        "sessions": dict(
            sorted(collections.Counter(u.session for u in listing.utterances).items())
        ),
        "speakers": dict(
            sorted(collections.Counter(u.speaker for u in listing.utterances).items())
        ),
        "durations": {
            "min": float(np.min(durations)),
            "mean": float(np.mean(durations)),
            "max": float(np.max(durations)),
        },
        "skipped": [dataclasses.asdict(s) for s in listing.skipped],
        "excluded": listing.excluded,
        "notes": listing.notes,
    }


def format_summary(summary: dict) -> str:
    lines = [f"corpus {summary['corpus']}: {summary['total']} utterances"]
    width = max(len(k) for k in summary["counts"])
    for label, n in summary["counts"].items():
        lines.append(f"  {label:<{width}}  {n:6d}  ({100 * n / summary['total']:.1f} %)")
    lines.append("sessions: " + ", ".join(f"{k} {v}" for k, v in summary["sessions"].items()))
    lines.append(f"speakers: {len(summary['speakers'])}")
    d = summary["durations"]
    lines.append(f"durations: min {d['min']:.2f} s, mean {d['mean']:.2f} s, max {d['max']:.2f} s")
    if summary["excluded"]:
        lines.append(
            "excluded by design: " + ", ".join(f"{k} {v}" for k, v in summary["excluded"].items())
        )
    if summary["skipped"]:
        lines.append(f"skipped ({len(summary['skipped'])}):")
        lines.extend(f"  {s['item']}: {s['reason']}" for s in summary["skipped"])
    lines.extend(summary["notes"])
    return "\n".join(lines)
