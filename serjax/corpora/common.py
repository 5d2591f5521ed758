"""Helpers the corpus readers share: checking config fields and roots, listing wav files,
reading label and manifest text in any of the encodings serjax takes, spotting files that
cannot hold audio, the file-name readers' loop, and finishing a listing.

They live apart from the package face (`serjax.corpora`) and from the dispatch
(`serjax.corpora.loading`) so the readers can import them without importing either: the
readers sit below this module, the dispatch above them.
"""

from __future__ import annotations

import codecs
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
            f"config field data.classes: need two or more distinct classes, got {classes} "
            "(on the command line, quoted: --config.data.classes=\"('ang','sad')\")"
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


# Said with every text file serjax cannot decode.
_TEXT_ENCODINGS = "serjax reads UTF-8 (with or without a BOM) and UTF-16 with its BOM"
EMPTY_TEXT = "is empty"


def decode_text(data: bytes) -> str:
    """The text of a label file or manifest: UTF-8 with or without a byte-order mark, or
    UTF-16 in the byte order its BOM says (the BOM is dropped). ValueError saying why not:
    another encoding (UTF-32, undecodable bytes, NUL characters: UTF-16 without its BOM), or
    `is empty` (nothing but blanks)."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16 LE's
        raise ValueError(f"is UTF-32 text; {_TEXT_ENCODINGS}")
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    try:
        text = data.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as err:
        if utf16:
            where = f"{err.reason} at byte {err.start}"
        else:
            line = data.count(b"\n", 0, err.start) + 1
            where = f"line {line}: byte 0x{data[err.start]:02x} is not UTF-8; Latin-1 or cp1252?"
        raise ValueError(
            f"is not {'UTF-16' if utf16 else 'UTF-8'} text ({where}); {_TEXT_ENCODINGS}"
        ) from None
    if "\x00" in text:
        raise ValueError(
            f"holds NUL characters (UTF-16 without its byte-order mark?); {_TEXT_ENCODINGS}"
        )
    if not text.replace("\ufeff", "").strip():
        raise ValueError(EMPTY_TEXT)
    return text


def read_text_file(path: Path) -> str:
    """`decode_text` of a file's bytes; ValueError saying why it cannot be read as text."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot be read ({err.strerror or err})") from None
    return decode_text(data)


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


def audio_problem(path: str | os.PathLike) -> str | None:
    """`serjax.audio.audio_problem`: the look into an audio file a reader makes, when asked
    (`audio_check`), at each file it will use, so bad audio is listed with the other
    problems (imported on first use)."""
    from serjax.audio import audio_problem as look_into

    return look_into(path)


@dataclasses.dataclass
class NamedFile:
    """What a corpus's file name says: the speaker and raw label, or why the file is excluded
    by design (`excluded`, e.g. RAVDESS song), and an optional note."""

    speaker: str = ""
    raw_label: str = ""
    excluded: str = ""
    note: str = ""


def read_named_files(items, parse, label_map: Mapping[str, str], audio_check: bool = False):
    """The loop the file-name corpora share. `items`: (path, context) pairs; `parse(path,
    context)` -> NamedFile, or ValueError saying what is wrong (a problem). `audio_check`:
    look into each file that would be used (`audio_problem`); a bad one is a problem, not
    counted as found. Returns (utterances, problems, excluded counts, raw-label counts,
    notes)."""
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
        if named.raw_label not in label_map:
            found[named.raw_label] += 1
            excluded[f"label {named.raw_label}"] += 1
            continue
        bad_audio = audio_problem(path) if audio_check else None
        if bad_audio:
            problems.append(Skipped(str(path), bad_audio))
            continue
        found[named.raw_label] += 1
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


def raise_problems(title: str, root: Path, problems: list[Skipped], on_bad_file: str) -> None:
    """With `on_bad_file=error`, one error listing every problem a reader found: label
    lines and files, names, and (read with `audio_check`) audio, all at once."""
    if problems and on_bad_file == "error":
        listed = "\n".join(f"  {p.item}: {p.reason}" for p in problems)
        raise SerjaxError(
            f"{title} {root} has {len(problems)} problem(s) "
            f"(set --config.data.on_bad_file=skip to leave them out):\n{listed}"
        )


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
    raise_problems(title, root, problems, on_bad_file)
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
    """Look at every audio file of a listing made without the readers' `audio_check`: with
    `error`, stop listing every bad file at once; with `skip`, leave them out and list them
    in `listing.skipped`. (`load_corpus` has the readers look instead, so that audio and
    the other problems come in one listing, and release-count notes count usable files.)"""
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
