"""RAVDESS reader (the audio-only speech files), per SPEC §1.

Reads `<root>/Actor_XX/03-01-EE-II-SS-RR-AA.wav`, or the zip's nesting
`<root>/Audio_Speech_Actors_01-24/Actor_XX/…` (any one folder level between the root and
the `Actor_*` folders). The seven fields: modality (03 = audio-only), vocal channel
(01 = speech, 02 = song: song files are excluded by design, so a root holding both zips
works), emotion, intensity (01 normal, 02 strong), statement (01, 02), repetition (01, 02),
actor (01-24; odd male, even female). Speaker = session = `Actor_XX`; the actor in a file's
name must be that of its folder. The raw label is the emotion's IEMOCAP-style name
(`05` -> `ang`). The files are 48 kHz; `serjax.audio.read_audio` resamples them later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from serjax.corpora.common import (
    NamedFile,
    check_on_bad_file,
    compare_with_release,
    corpus_dir,
    finish_listing,
    read_named_files,
    wav_files,
)
from serjax.corpora.records import CorpusListing
from serjax.errors import SerjaxError

EMOTIONS = {
    "01": "neu",
    "02": "cal",
    "03": "hap",
    "04": "sad",
    "05": "ang",
    "06": "fea",
    "07": "dis",
    "08": "sur",
}
NUM_ACTORS = 24
# Speech utterances per emotion in the release (1440 in all: 24 actors × 60; neutral has
# no strong intensity).
RELEASE_COUNTS = {
    "neu": 96,
    "cal": 192,
    "hap": 192,
    "sad": 192,
    "ang": 192,
    "fea": 192,
    "dis": 192,
    "sur": 192,
}

_NAME = re.compile(
    r"^(?P<modality>\d\d)-(?P<channel>\d\d)-(?P<emotion>\d\d)-(?P<intensity>\d\d)-"
    r"(?P<statement>\d\d)-(?P<repetition>\d\d)-(?P<actor>\d\d)$"
)
_ACTOR_DIR = re.compile(r"^Actor_(?P<actor>\d\d)$")


def actor_dirs(root: Path) -> list[Path]:
    """The `Actor_XX` folders directly under `root`, else those one level down."""

    def actors_in(folder: Path) -> list[Path]:
        return [d for d in folder.iterdir() if d.is_dir() and _ACTOR_DIR.match(d.name)]

    found = actors_in(root)
    if not found:
        for sub in sorted(root.iterdir()):
            if sub.is_dir() and not sub.name.startswith("."):
                found.extend(actors_in(sub))
    return sorted(found)


def parse_name(stem: str) -> dict[str, str]:
    """The fields of `03-01-05-01-02-01-12`; ValueError saying what is wrong otherwise.

    `channel` is returned as found: the caller excludes song (02).
    """
    match = _NAME.match(stem)
    if match is None:
        raise ValueError("name does not follow RAVDESS's pattern 03-01-EE-II-SS-RR-AA")
    fields = match.groupdict()
    if fields["modality"] != "03":
        raise ValueError(f"modality {fields['modality']} is not audio-only (03)")
    if fields["channel"] not in ("01", "02"):
        raise ValueError(f"vocal channel {fields['channel']} is neither speech (01) nor song (02)")
    if fields["emotion"] not in EMOTIONS:
        raise ValueError(f"emotion {fields['emotion']} is not one of 01..08")
    for field in ("intensity", "statement", "repetition"):
        if fields[field] not in ("01", "02"):
            raise ValueError(f"{field} {fields[field]} is not 01 or 02")
    if not 1 <= int(fields["actor"]) <= NUM_ACTORS:
        raise ValueError(f"actor {fields['actor']} is not one of 01..{NUM_ACTORS}")
    return fields


def load_ravdess(
    root: str | os.PathLike,
    label_map: Mapping[str, str],
    on_bad_file: str = "error",
    audio_check: bool = False,
) -> CorpusListing:
    """Read a RAVDESS tree. `label_map` maps `neu cal hap sad ang fea dis sur` to classes;
    utterances whose label it lacks, and song files, are excluded and counted. Bad names and
    files in another actor's folder are problems (see load_iemocap)."""
    check_on_bad_file(on_bad_file)
    root = corpus_dir(root, "RAVDESS", "your RAVDESS folder (the one holding Actor_01 … Actor_24)")
    folders = actor_dirs(root)
    files = [(folder, path) for folder in folders for path in wav_files(folder)]
    if not files:
        raise SerjaxError(
            f"RAVDESS root {root} (config field data.root) holds no wav file in an "
            "Actor_XX folder (looked directly under it and one folder level down)"
        )

    def parse(path, folder):
        fields = parse_name(path.stem)
        folder_actor = _ACTOR_DIR.match(folder.name)["actor"]
        if fields["actor"] != folder_actor:
            raise ValueError(
                f"actor {fields['actor']} in the name, but the file "
                f"is in the folder of actor {folder_actor}"
            )
        if fields["channel"] == "02":
            return NamedFile(excluded="song")
        return NamedFile(speaker=f"Actor_{fields['actor']}", raw_label=EMOTIONS[fields["emotion"]])

    utterances, problems, excluded, found, _ = read_named_files(
        [(path, folder) for folder, path in files], parse, label_map, audio_check
    )
    notes = [compare_with_release("RAVDESS speech", found, RELEASE_COUNTS)]
    return finish_listing(
        "ravdess",
        "RAVDESS tree",
        root,
        utterances,
        problems,
        excluded,
        on_bad_file,
        label_map,
        notes,
    )
