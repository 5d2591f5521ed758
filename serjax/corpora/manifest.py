"""A generic corpus: a CSV manifest, one utterance per row.

`data.root` is the CSV file. Its header names the columns, in any order: `path` and `label`
(required), `speaker` and `session` (optional); nothing else. A relative path is relative
to the CSV's folder; any format soundfile reads will do. The CSV may be UTF-8, with or
without a byte-order mark (spreadsheet exports write one), or UTF-16 with its BOM; in any
other encoding it is an error naming it.

Choices, each because the manifest's author wrote both the labels and the label map:
- A label that `data.label_map` lacks is a problem (reported with its line; with
  `data.on_bad_file=skip` the row is left out and listed in `skipped`), not an exclusion
  by design as in the other corpora: in a hand-made list it is more likely a typo
  (`angry` for `ang`) than a class left out on purpose. To leave a class out, leave its
  rows out of the CSV.
- No `speaker` column: every speaker is "" (one unknown speaker), said in the listing's
  notes. Speaker-independent protocols then have one speaker to split and cannot be used:
  set `--config.protocol.name=stratified_kfold`.
- No `session` column: session = speaker.
- An empty speaker or session cell in a column that exists is a problem.
- `utt_id` is the path as written, normalised, without its extension (`spk1/001`).
"""

from __future__ import annotations

import collections
import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path

from serjax.corpora.common import (
    EMPTY_TEXT,
    audio_file_problem,
    audio_problem,
    check_on_bad_file,
    finish_listing,
    read_text_file,
)
from serjax.corpora.records import CorpusListing, Skipped, Utterance
from serjax.errors import SerjaxError

REQUIRED = ("path", "label")
OPTIONAL = ("speaker", "session")
HEADER_HELP = "the header must name the columns path,label and optionally speaker,session"


def _read_rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank row."""
    try:
        text = read_text_file(csv_path)
    except ValueError as err:
        if str(err) == EMPTY_TEXT:
            return []  # said by the caller, with what the file must hold
        raise SerjaxError(f"manifest {csv_path} (config field data.root) {err}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as err:
        raise SerjaxError(f"manifest {csv_path}:{reader.line_num}: not valid CSV ({err})") from None


def _columns(csv_path: Path, line: int, header: list[str]) -> list[str]:
    names = [cell.strip().lower() for cell in header]
    unknown = [n for n in names if n not in REQUIRED + OPTIONAL]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    missing = [n for n in REQUIRED if n not in names]
    if unknown or duplicated or missing:
        what = "; ".join(
            part
            for part in (
                f"unknown column(s) {unknown}" if unknown else "",
                f"repeated column(s) {duplicated}" if duplicated else "",
                f"missing column(s) {missing}" if missing else "",
            )
            if part
        )
        raise SerjaxError(
            f"manifest {csv_path}:{line}: bad header {','.join(header)!r} ({what}): {HEADER_HELP}"
        )
    return names


def _open_manifest(root: str | os.PathLike) -> tuple[Path, list[str], list]:
    """The CSV's path, its column names and its (line, cells) rows, each checked present."""
    csv_path = Path(root).expanduser()
    if not str(root) or not csv_path.is_file():
        what = "a directory, not a CSV file" if csv_path.is_dir() else "not a file"
        raise SerjaxError(
            f"manifest {str(root)!r} is {what} (set --config.data.root to your CSV "
            "manifest, with the header path,label[,speaker][,session])"
        )
    rows = _read_rows(csv_path)
    if not rows:
        raise SerjaxError(
            f"manifest {csv_path} (config field data.root) is empty: "
            f"{HEADER_HELP}, and one row per utterance must follow"
        )
    (header_line, header), rows = rows[0], rows[1:]
    names = _columns(csv_path, header_line, header)
    if not rows:
        raise SerjaxError(f"manifest {csv_path} (config field data.root) has a header but no rows")
    return csv_path, names, rows


def _path_problem(path: Path, written: str, first: int | None) -> str | None:
    """Why the row's file cannot be used (listed before, missing, not audio), else None."""
    if first is not None:
        return f"path {written} is listed twice (first on line {first})"
    if not path.is_file():
        return f"file {path} does not exist"
    bad_audio = audio_file_problem(path)
    return f"file {path} {bad_audio}" if bad_audio else None


def _read_row(
    cells: dict[str, str],
    line: int,
    base: Path,
    label_map: Mapping[str, str],
    first_line: dict[str, int],
) -> tuple[str | None, Path | None, list[str]]:
    """(utt_id, path, problems) of one row with the right number of fields; notes the
    row's path in `first_line` (utt_id -> the line that first listed it)."""
    reasons = []
    for column in cells:
        if not cells[column]:
            reasons.append(f"empty {column}")
    raw = cells["label"]
    if raw and raw not in label_map:
        reasons.append(
            f"label {raw!r} is not in data.label_map {sorted(label_map)} (a manifest's "
            "labels are its author's, so an unknown one is taken for a mistake, not "
            "left out: fix the row, or choose the labels with configs/manifest.py:<labels>)"
        )
    written = cells["path"]
    utt_id = path = None
    if written:
        utt_id = Path(os.path.normpath(written)).with_suffix("").as_posix()
        path = Path(written).expanduser()
        path = path if path.is_absolute() else base / path
        problem = _path_problem(path, written, first_line.get(utt_id))
        if problem:
            reasons.append(problem)
        first_line.setdefault(utt_id, line)
    return utt_id, path, reasons


def _speaker_note(csv_path: Path, has_session: bool) -> str:
    """What a manifest without a speaker column rules out."""
    return (
        f'manifest {csv_path.name} has no speaker column: every utterance has speaker "", '
        "so speaker-independent protocols (speaker_kfold, leave_one_speaker_out"
        + ("" if has_session else ", leave_one_session_out")
        + ") cannot be used; set --config.protocol.name=stratified_kfold"
        + (
            " (leave_one_session_out runs, but cannot check that no speaker is in two "
            "sessions: the report says so)."
            if has_session
            else "."
        )
    )


def load_manifest(
    root: str | os.PathLike,
    label_map: Mapping[str, str],
    on_bad_file: str = "error",
    audio_check: bool = False,
) -> CorpusListing:
    """Read a CSV manifest (`root` is the CSV file). Every problem (missing file, unknown
    label, wrong number of fields, repeated path, and with `audio_check` a file that is not
    usable audio) names its line; see the module docstring."""
    check_on_bad_file(on_bad_file)
    csv_path, names, rows = _open_manifest(root)
    has_speaker, has_session = "speaker" in names, "session" in names
    utterances: list[Utterance] = []
    problems: list[Skipped] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        where = f"{csv_path}:{line}"
        if len(row) != len(names):
            problems.append(Skipped(where, f"{len(row)} field(s), the header has {len(names)}"))
            continue
        cells = dict(zip(names, (cell.strip() for cell in row)))
        utt_id, path, reasons = _read_row(cells, line, csv_path.parent, label_map, first_line)
        bad_audio = audio_problem(path) if audio_check and not reasons else None
        if bad_audio:
            reasons.append(f"file {path}: {bad_audio}")
        if reasons:
            problems.append(Skipped(where, "; ".join(reasons)))
            continue
        speaker = cells["speaker"] if has_speaker else ""
        session = cells["session"] if has_session else speaker
        utterances.append(
            Utterance(
                utt_id=utt_id,
                path=str(path),
                label=label_map[cells["label"]],
                speaker=speaker,
                session=session,
                raw_label=cells["label"],
            )
        )
    notes = [] if has_speaker else [_speaker_note(csv_path, has_session)]
    return finish_listing(
        "manifest",
        "manifest",
        csv_path,
        utterances,
        problems,
        collections.Counter(),
        on_bad_file,
        label_map,
        notes,
    )
