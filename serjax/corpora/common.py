"""Helpers the corpus readers share: checking config fields and roots, listing wav files,
spotting files that cannot hold audio, the file-name readers' loop, and finishing a listing.

They live apart from the package face (`serjax.corpora`) and from the dispatch
(`serjax.corpora.loading`) so the readers can import them without importing either: the
readers sit below this module, the dispatch above them.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from serjax.corpora.records import CorpusListing, Skipped, Utterance
from serjax.errors import SerjaxError

# What data.root must point at, per corpus (said when it is empty).
ROOT_HINTS = {
    "iemocap": "your IEMOCAP_full_release folder",
    "emodb": "your EmoDB folder (the one holding wav/)",
    "ravdess": "your RAVDESS folder (the one holding Actor_01 … Actor_24)",
    "cremad": "your CREMA-D folder (the one holding AudioWAV/)",
    "manifest": "your CSV manifest (a file with the header path,label[,speaker][,session])",
}

_LFS_POINTER = b"version https://git-lfs"
_WAV_HEADER_BYTES = 44


def check_label_map(data_cfg) -> dict[str, str]:
    """The label map as a dict, after checking it against `data.classes`."""
    label_map = dict(data_cfg.label_map)
    classes = tuple(data_cfg.classes)
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise SerjaxError(
            f"config field data.classes: need two or more distinct classes, got {classes}"
        )
    unknown = sorted(set(label_map.values()) - set(classes))
    if unknown:
        raise SerjaxError(
            f"config field data.label_map maps to {unknown}, which are not in "
            f"data.classes {classes}"
        )
    unmapped = sorted(set(classes) - set(label_map.values()))
    if unmapped:
        raise SerjaxError(
            f"config field data.classes: no label of data.label_map maps to {unmapped}"
        )
    return label_map


def check_on_bad_file(on_bad_file: str) -> None:
    if on_bad_file not in ("error", "skip"):
        raise SerjaxError(
            f"config field data.on_bad_file: {on_bad_file!r} is not 'error' or 'skip'"
        )


def corpus_dir(root: str | os.PathLike, title: str, hint: str) -> Path:
    """`root` as a Path, or an error naming data.root when it is not a directory."""
    path = Path(root).expanduser()
    if not str(root) or not path.is_dir():
        raise SerjaxError(
            f"{title} root {str(root)!r} is not a directory (set --config.data.root to {hint})"
        )
    return path


def wav_files(folder: Path) -> list[Path]:
    """The .wav files directly in `folder`, sorted; macOS `._*` resource forks left out."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() == ".wav" and not p.name.startswith(".") and p.is_file()
    )


def audio_file_problem(path: Path) -> str | None:
    """Why `path` cannot hold audio (empty, a bare header, a git-lfs pointer), else None.

    Only the size is looked at, and the first bytes of files under 1 KiB: the readers never
    read audio (the pipeline does, later), but these copies are common and cheap to catch.
    """
    try:
        size = path.stat().st_size
        if size < 1024:
            with open(path, "rb") as f:
                if f.read(len(_LFS_POINTER)) == _LFS_POINTER:
                    return "is a git-lfs pointer, not audio (fetch the audio with `git lfs pull`)"
    except OSError as err:
        return f"cannot read {path}: {err.strerror}"
    if size <= _WAV_HEADER_BYTES:
        return f"holds no audio ({size} bytes)"
    return None


@dataclasses.dataclass
class NamedFile:
    """What a corpus's file name says: the speaker and raw label, or why the file is excluded
    by design (`excluded`, e.g. RAVDESS song), and an optional note."""

    speaker: str = ""
    raw_label: str = ""
    excluded: str = ""
    note: str = ""


def read_named_files(items, parse, label_map: Mapping[str, str]):
    """The loop the file-name corpora share. `items`: (path, context) pairs; `parse(path,
    context)` -> NamedFile, or ValueError saying what is wrong (a problem). Returns
    (utterances, problems, excluded counts, raw-label counts, notes)."""
    utterances: list[Utterance] = []
    problems: list[Skipped] = []
    excluded: collections.Counter = collections.Counter()
    found: collections.Counter = collections.Counter()
    notes: list[str] = []
    seen: dict[str, Path] = {}
    for path, context in items:
        if path.stem in seen:
            problems.append(
                Skipped(str(path), f"utterance {path.stem} is there twice (also {seen[path.stem]})")
            )
            continue
        seen[path.stem] = path
        try:
            named = parse(path, context)
        except ValueError as err:
            problems.append(Skipped(str(path), str(err)))
            continue
        bad_audio = audio_file_problem(path)
        if bad_audio:
            problems.append(Skipped(str(path), bad_audio))
            continue
        if named.note:
            notes.append(named.note)
        if named.excluded:
            excluded[named.excluded] += 1
            continue
        found[named.raw_label] += 1
        if named.raw_label not in label_map:
            excluded[f"label {named.raw_label}"] += 1
            continue
        utterances.append(
            Utterance(
                utt_id=path.stem,
                path=str(path),
                label=label_map[named.raw_label],
                speaker=named.speaker,
                session=named.speaker,
                raw_label=named.raw_label,
            )
        )
    return utterances, problems, excluded, found, notes


def finish_listing(
    name: str,
    title: str,
    root: Path,
    utterances: list[Utterance],
    problems: list[Skipped],
    excluded: Mapping[str, int],
    on_bad_file: str,
    label_map: Mapping[str, str],
    notes: list[str] | None = None,
) -> CorpusListing:
    """Raise every problem at once (`on_bad_file=error`), or an empty result; else the listing."""
    if problems and on_bad_file == "error":
        listed = "\n".join(f"  {p.item}: {p.reason}" for p in problems)
        raise SerjaxError(
            f"{title} {root} has {len(problems)} problem(s) "
            f"(set --config.data.on_bad_file=skip to leave them out):\n{listed}"
        )
    if not utterances:
        why = f" ({len(problems)} file(s) skipped as problems)" if problems else ""
        raise SerjaxError(
            f"{title} {root} (config field data.root) holds no utterance whose label "
            f"is in data.label_map {sorted(label_map)}{why}"
        )
    return CorpusListing(
        name=name,
        utterances=utterances,
        skipped=problems,
        excluded=dict(sorted(excluded.items())),
        notes=list(notes or []),
    )


def compare_with_release(
    title: str, found: collections.Counter, expected: Mapping[str, int]
) -> str:
    """A note comparing the raw-label counts a reader found with the full release's."""
    total = sum(expected.values())
    if dict(found) == dict(expected):
        return f"{title}: counts match the full release ({total} utterances)."
    got = ", ".join(f"{k} {found.get(k, 0)}/{v}" for k, v in expected.items())
    return (
        f"{title}: {sum(found.values())} utterances found (before data.label_map), the full "
        f"release has {total} (found/expected per label: {got})."
    )


def check_audio(listing: CorpusListing, on_bad_file: str) -> CorpusListing:
    """Look at every audio file before any work is done: with `error`, stop listing every
    bad file at once; with `skip`, leave them out and list them in `listing.skipped`."""
    from serjax.audio import audio_problem

    bad = [(u, audio_problem(u.path)) for u in listing.utterances]
    bad = [(u, why) for u, why in bad if why]
    if not bad:
        return listing
    if on_bad_file == "error":
        listed = "\n".join(f"  {u.path}: {why}" for u, why in bad)
        raise SerjaxError(
            f"{len(bad)} audio file(s) of corpus {listing.name} cannot be used "
            f"(set --config.data.on_bad_file=skip to leave them out):\n{listed}"
        )
    dropped = {u.utt_id for u, _ in bad}
    listing.utterances = [u for u in listing.utterances if u.utt_id not in dropped]
    listing.skipped.extend(Skipped(u.path, why) for u, why in bad)
    if not listing.utterances:
        raise SerjaxError(f"no usable audio file is left in corpus {listing.name}")
    return listing
