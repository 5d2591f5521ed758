"""The record every corpus loader returns, whatever the corpus."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One labelled utterance.

    `label` is the class after the config's label map (e.g. `exc` -> `hap`);
    `raw_label` is what the corpus itself says.
    """

    utt_id: str
    path: str
    label: str
    speaker: str
    session: str
    raw_label: str = ""


@dataclasses.dataclass(frozen=True)
class Skipped:
    """Something a loader saw and did not use, with the reason (reported in corpus.json)."""

    item: str
    reason: str


@dataclasses.dataclass
class CorpusListing:
    """What a loader found: the utterances it keeps and everything it skipped."""

    name: str
    utterances: list[Utterance]
    skipped: list[Skipped] = dataclasses.field(default_factory=list)
    excluded: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> count, by design
    notes: list[str] = dataclasses.field(default_factory=list)
