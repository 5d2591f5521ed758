"""IEMOCAP (IEMOCAP_full_release) reader, per SPEC §1.

Reads `Session{n}/dialog/EmoEvaluation/<dialog>.txt` (only the files directly in that
folder: the per-annotator `Categorical/`, `Attribute/`, `Self-evaluation/` subfolders
and macOS `._*` files are not label files) and finds each turn's wav at
`Session{n}/sentences/wav/<dialog>/<utt>.wav`. A label file may be UTF-8, with or without a
byte-order mark, or UTF-16 with its BOM (`serjax.corpora.common.decode_text`); one that
cannot be read, is in another encoding, or holds no label line is a problem, named (its
dialog's wavs are then not counted again as wavs without a label line).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from serjax.corpora.common import (
    audio_problem,
    check_on_bad_file,
    corpus_dir,
    raise_problems,
    read_text_file,
)
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
    audio_check: bool = False
    utterances: list[Utterance] = dataclasses.field(default_factory=list)
    problems: list[Skipped] = dataclasses.field(default_factory=list)
    excluded: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    seen: set[str] = dataclasses.field(default_factory=set)
    # dialogs whose label file is a problem: their wavs are not "without a label line"
    bad_dialogs: set[str] = dataclasses.field(default_factory=set)


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
    bad_audio = audio_problem(wav) if scan.audio_check else None
    if bad_audio:
        scan.problems.append(Skipped(str(wav), bad_audio))
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
    try:
        label_files = _label_files(eval_dir)
    except OSError as err:
        scan.problems.append(Skipped(str(eval_dir), f"cannot be listed ({err.strerror or err})"))
        return
    for label_file in label_files:
        _read_label_file(scan, label_file, session_dir, n)


def _read_label_file(scan: _Scan, label_file: Path, session_dir: Path, n: int) -> None:
    """Every label line of one label file; the file itself is a problem when it cannot be
    read as text or holds no label line."""
    try:
        lines = read_text_file(label_file).splitlines()
    except ValueError as err:
        scan.problems.append(Skipped(str(label_file), str(err)))
        scan.bad_dialogs.add(label_file.stem)
        return
    label_lines = 0
    for line_no, line in enumerate(lines, start=1):
        line = line.lstrip("\ufeff")  # a BOM inside the file: files joined by `cat`
        if not line.startswith("["):
            continue  # header (`%`), annotator lines (`C-E2:`, `A-F1:`), blanks
        label_lines += 1
        _read_label_line(scan, line, f"{label_file}:{line_no}", session_dir, n)
    if not label_lines:
        scan.problems.append(
            Skipped(str(label_file), "holds no label line ([START - END] TURN EMOTION [V, A, D])")
        )
        scan.bad_dialogs.add(label_file.stem)


def _count_unlabelled(scan: _Scan, root: Path, sessions: tuple[int, ...]) -> None:
    """Wavs no label line mentions are not used; they are counted, not silently dropped."""
    for n in sessions:
        wav_root = root / f"Session{n}" / "sentences" / "wav"
        if wav_root.is_dir():
            unlabelled = sum(
                1
                for wav in wav_root.glob("*/*.wav")
                if not wav.name.startswith(".")
                and wav.stem not in scan.seen
                and wav.parent.name not in scan.bad_dialogs
            )
            if unlabelled:
                scan.excluded["wav without a label line"] += unlabelled


def _listing(scan: _Scan, root: Path, on_bad_file: str) -> CorpusListing:
    """Raise every problem at once (`on_bad_file=error`), or an empty result; else the listing."""
    raise_problems("IEMOCAP tree", root, scan.problems, on_bad_file)
    if not scan.utterances:
        raise SerjaxError(
            f"IEMOCAP root {root} holds no labelled utterance for selection "
            f"{scan.selection!r} and labels {sorted(scan.label_map)}"
        )
    return CorpusListing(
        name="iemocap",
        utterances=scan.utterances,
        skipped=scan.problems,
        excluded=dict(sorted(scan.excluded.items())),
    )


def load_iemocap(
    root: str | os.PathLike,
    selection: str = "improvised",
    label_map: Mapping[str, str] | None = None,
    sessions: Iterable[int] = (1, 2, 3, 4, 5),
    on_bad_file: str = "error",
    check_counts: bool = True,
    audio_check: bool = False,
) -> CorpusListing:
    """Read the labelled turns of an IEMOCAP-layout tree.

    `label_map` maps the corpus's labels to classes (default: the paper's 4 classes with
    `exc` merged into `hap`); turns whose label it lacks are excluded and counted.
    `on_bad_file`: `error` stops listing every problem at once; `skip` keeps going and
    lists them in the result's `skipped`. `check_counts`: compare a full five-session
    listing with the real release's counts (a note in the result). `audio_check`: look into
    each wav that would be used (`serjax.audio.audio_problem`; `load_corpus` asks for it), so
    bad audio is a problem listed with the others and the count note counts usable turns.
    """
    if selection not in SELECTIONS:
        raise SerjaxError(f"config field data.selection: {selection!r} is not one of {SELECTIONS}")
    check_on_bad_file(on_bad_file)
    label_map = dict(PAPER_LABEL_MAP if label_map is None else label_map)
    root = corpus_dir(root, "IEMOCAP", "your IEMOCAP_full_release folder")
    sessions = tuple(int(s) for s in sessions)
    scan = _Scan(selection, label_map, audio_check)
    for n in sessions:
        _read_session(scan, root, n)
    _count_unlabelled(scan, root, sessions)
    listing = _listing(scan, root, on_bad_file)
    if check_counts and sessions == (1, 2, 3, 4, 5) and label_map == PAPER_LABEL_MAP:
        listing.notes.extend(check_paper_counts(listing.utterances, selection))
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
