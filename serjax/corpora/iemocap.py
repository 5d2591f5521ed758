"""IEMOCAP (IEMOCAP_full_release) reader, per SPEC §1.

Reads `Session{n}/dialog/EmoEvaluation/<dialog>.txt` (only the files directly in that
folder: the per-annotator `Categorical/`, `Attribute/`, `Self-evaluation/` subfolders
and macOS `._*` files are not label files) and finds each turn's wav at
`Session{n}/sentences/wav/<dialog>/<utt>.wav`.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from serjax.corpora.records import CorpusListing, Skipped, Utterance
from serjax.errors import SerjaxError

# `[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]`
_LABEL_LINE = re.compile(
    r"^\[(?P<start>\d+(?:\.\d+)?) - (?P<end>\d+(?:\.\d+)?)\]\t(?P<utt>Ses\d\d[FM]_\S+_[FM]\d+)\t"
    r"(?P<label>[a-z]+)\t\[(?P<vad>[^\]]*)\]\s*$"
)
_UTTERANCE_ID = re.compile(
    r"^Ses(?P<session>\d\d)[FM]_(?P<kind>impro|script)\S*_(?P<speaker>[FM])\d+$"
)

SELECTIONS = ("improvised", "scripted", "all")
PAPER_LABEL_MAP = {"ang": "ang", "sad": "sad", "hap": "hap", "exc": "hap", "neu": "neu"}

# The paper's subset (improvised, 4 classes, exc -> hap) and the common 4-class set with
# scripted dialogs, as counted on the real release (SPEC §1).
PAPER_COUNTS = {
    "improvised": {"total": 2943, "labels": {"ang": 289, "sad": 608, "hap": 947, "neu": 1099}},
    "all": {
        "total": 5531,
        "sessions": {"Ses01": 1085, "Ses02": 1023, "Ses03": 1151, "Ses04": 1031, "Ses05": 1241},
    },
}


def speaker_of(utt_id: str) -> str:
    """`Ses03M_impro05a_F012` -> `Ses03_F`: the letter of the turn suffix, not the mocap wearer."""
    match = _UTTERANCE_ID.match(utt_id)
    if match is None:
        raise ValueError(f"not an IEMOCAP utterance id: {utt_id!r}")
    return f"Ses{match['session']}_{match['speaker']}"


def _label_files(eval_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in eval_dir.iterdir()
        if p.is_file() and p.suffix == ".txt" and not p.name.startswith(".")
    )


def _is_selected(utt_id: str, selection: str) -> bool:
    kind = _UTTERANCE_ID.match(utt_id)["kind"]
    return selection == "all" or (kind == "impro") == (selection == "improvised")


@dataclasses.dataclass
class _Scan:
    """What reading the label files of a tree has found so far."""

    selection: str
    label_map: dict[str, str]
    utterances: list[Utterance] = dataclasses.field(default_factory=list)
    problems: list[Skipped] = dataclasses.field(default_factory=list)
    excluded: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    seen: set[str] = dataclasses.field(default_factory=set)


def _read_label_line(scan: _Scan, line: str, where: str, session_dir: Path, n: int) -> None:
    """One `[start - end]` line: its turn becomes an utterance, an exclusion or a problem."""
    match = _LABEL_LINE.match(line)
    if match is None:
        scan.problems.append(Skipped(where, f"malformed label line {line.strip()!r}"))
        return
    utt_id, raw = match["utt"], match["label"]
    if _UTTERANCE_ID.match(utt_id) is None:
        scan.problems.append(
            Skipped(
                where,
                f"utterance id {utt_id!r} is not "
                "SesNN[FM]_impro…_[FM]NNN or SesNN[FM]_script…_[FM]NNN",
            )
        )
        return
    if utt_id in scan.seen:
        scan.problems.append(Skipped(where, f"utterance {utt_id} is labelled twice"))
        return
    scan.seen.add(utt_id)
    if not _is_selected(utt_id, scan.selection):
        scan.excluded[f"not {scan.selection}"] += 1
        return
    if raw not in scan.label_map:
        scan.excluded[f"label {raw}"] += 1
        return
    dialog = utt_id.rsplit("_", 1)[0]
    wav = session_dir / "sentences" / "wav" / dialog / f"{utt_id}.wav"
    if not wav.is_file():
        scan.problems.append(Skipped(where, f"the wav of {utt_id} is missing: {wav}"))
        return
    scan.utterances.append(
        Utterance(
            utt_id=utt_id,
            path=str(wav),
            label=scan.label_map[raw],
            speaker=speaker_of(utt_id),
            session=f"Ses{n:02d}",
            raw_label=raw,
        )
    )


def _read_session(scan: _Scan, root: Path, n: int) -> None:
    """Every label line of session `n`'s label files, in file and line order."""
    session_dir = root / f"Session{n}"
    eval_dir = session_dir / "dialog" / "EmoEvaluation"
    if not eval_dir.is_dir():
        scan.problems.append(
            Skipped(str(eval_dir), f"session {n} has no dialog/EmoEvaluation folder")
        )
        return
    for label_file in _label_files(eval_dir):
        lines = label_file.read_text(encoding="utf-8", errors="replace").splitlines()
        for line_no, line in enumerate(lines, start=1):
            if not line.startswith("["):
                continue  # header (`%`), annotator lines (`C-E2:`, `A-F1:`), blanks
            _read_label_line(scan, line, f"{label_file}:{line_no}", session_dir, n)


def _count_unlabelled(scan: _Scan, root: Path, sessions: tuple[int, ...]) -> None:
    """Wavs no label line mentions are not used; they are counted, not silently dropped."""
    for n in sessions:
        wav_root = root / f"Session{n}" / "sentences" / "wav"
        if wav_root.is_dir():
            unlabelled = sum(
                1
                for wav in wav_root.glob("*/*.wav")
                if not wav.name.startswith(".") and wav.stem not in scan.seen
            )
            if unlabelled:
                scan.excluded["wav without a label line"] += unlabelled


def _listing(scan: _Scan, root: Path, on_bad_file: str) -> CorpusListing:
    """Raise every problem at once (`on_bad_file=error`), or an empty result; else the listing."""
    problems = scan.problems
    if problems and on_bad_file == "error":
        listed = "\n".join(f"  {p.item}: {p.reason}" for p in problems)
        raise SerjaxError(
            f"IEMOCAP tree {root} has {len(problems)} problem(s) "
            f"(set --config.data.on_bad_file=skip to leave them out):\n{listed}"
        )
    if not scan.utterances:
        raise SerjaxError(
            f"IEMOCAP root {root} holds no labelled utterance for selection "
            f"{scan.selection!r} and labels {sorted(scan.label_map)}"
        )
    return CorpusListing(
        name="iemocap",
        utterances=scan.utterances,
        skipped=problems,
        excluded=dict(sorted(scan.excluded.items())),
    )


def load_iemocap(
    root: str | os.PathLike,
    selection: str = "improvised",
    label_map: Mapping[str, str] | None = None,
    sessions: Iterable[int] = (1, 2, 3, 4, 5),
    on_bad_file: str = "error",
    check_counts: bool = True,
) -> CorpusListing:
    """Read the labelled turns of an IEMOCAP-layout tree.

    `label_map` maps the corpus's labels to classes (default: the paper's 4 classes with
    `exc` merged into `hap`); turns whose label it lacks are excluded and counted.
    `on_bad_file`: `error` stops listing every problem at once; `skip` keeps going and
    lists them in the result's `skipped`. `check_counts`: compare a full five-session
    listing with the real release's counts (a note in the result).
    """
    if selection not in SELECTIONS:
        raise SerjaxError(f"config field data.selection: {selection!r} is not one of {SELECTIONS}")
    if on_bad_file not in ("error", "skip"):
        raise SerjaxError(
            f"config field data.on_bad_file: {on_bad_file!r} is not 'error' or 'skip'"
        )
    label_map = dict(PAPER_LABEL_MAP if label_map is None else label_map)
    root = Path(root).expanduser()
    if not str(root) or not root.is_dir():
        raise SerjaxError(
            f"IEMOCAP root {str(root)!r} is not a directory "
            "(set --config.data.root to your IEMOCAP_full_release folder)"
        )
    sessions = tuple(int(s) for s in sessions)
    scan = _Scan(selection, label_map)
    for n in sessions:
        _read_session(scan, root, n)
    _count_unlabelled(scan, root, sessions)
    listing = _listing(scan, root, on_bad_file)
    if check_counts and sessions == (1, 2, 3, 4, 5) and label_map == PAPER_LABEL_MAP:
        listing.notes.extend(check_paper_counts(scan.utterances, selection))
    return listing


def check_paper_counts(utterances: list[Utterance], selection: str) -> list[str]:
    """Compare a full five-session listing with the counts the paper's subsets have."""
    expected = PAPER_COUNTS.get(selection)
    if expected is None:
        return []
    found = {
        "total": len(utterances),
        "labels": collections.Counter(u.label for u in utterances),
        "sessions": collections.Counter(u.session for u in utterances),
    }
    mismatches = []
    for key, want in expected.items():
        got = found[key] if key == "total" else {k: found[key].get(k, 0) for k in want}
        if got != want:
            mismatches.append(f"{key}: expected {want}, found {got}")
    name = f"IEMOCAP {selection} 4-class set"
    if not mismatches:
        return [f"{name}: counts match the real release ({expected['total']} utterances)."]
    return [f"{name}: counts differ from the real release ({'; '.join(mismatches)})."]
