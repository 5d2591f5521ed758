"""EmoDB (Berlin Database of Emotional Speech) reader, per SPEC §1.

Reads `<root>/wav/03a01Fa.wav` (or the wavs directly under `<root>` when it has no `wav/`):
letters 1-2 are the speaker (ten: 03 08 09 10 11 12 13 14 15 16), letters 3-5 the text
(`a01` … `b10`), letter 6 the emotion (German initials: W Wut, L Langeweile, E Ekel,
A Angst, F Freude, T Trauer, N neutral) and letter 7 the version. The raw label of an
utterance is the emotion's IEMOCAP-style name (`W` -> `ang`), so IEMOCAP's 4-class map
applies as it is. There are no sessions: session = speaker.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

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

EMOTIONS = {"W": "ang", "L": "bor", "E": "dis", "A": "fea", "F": "hap", "T": "sad", "N": "neu"}
SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
# Utterances per emotion in the release (535 in all).
RELEASE_COUNTS = {"ang": 127, "bor": 81, "dis": 46, "fea": 69, "hap": 71, "sad": 62, "neu": 79}

_NAME = re.compile(r"^(?P<speaker>\d\d)(?P<text>[a-z]\d\d)(?P<emotion>[A-Za-z])(?P<version>[a-z])$")


def parse_name(stem: str) -> tuple[str, str]:
    """`03a01Fa` -> (`03`, `hap`); ValueError saying what is wrong otherwise."""
    match = _NAME.match(stem)
    if match is None:
        raise ValueError(
            "name does not follow EmoDB's pattern SSTTTEV (e.g. 03a01Fa: speaker, "
            "text, emotion, version)"
        )
    if match["speaker"] not in SPEAKERS:
        raise ValueError(
            f"speaker {match['speaker']} is not one of EmoDB's ten {' '.join(SPEAKERS)}"
        )
    if match["emotion"] not in EMOTIONS:
        raise ValueError(f"emotion letter {match['emotion']!r} is not one of {' '.join(EMOTIONS)}")
    return match["speaker"], EMOTIONS[match["emotion"]]


def load_emodb(
    root: str | os.PathLike,
    label_map: Mapping[str, str],
    on_bad_file: str = "error",
    audio_check: bool = False,
) -> CorpusListing:
    """Read an EmoDB tree. `label_map` maps `ang bor dis fea hap sad neu` to classes; utterances
    whose label it lacks are excluded and counted. Bad names are problems (see load_iemocap)."""
    check_on_bad_file(on_bad_file)
    root = corpus_dir(root, "EmoDB", "your EmoDB folder (the one holding wav/)")
    folder = root / "wav" if (root / "wav").is_dir() else root
    files = wav_files(folder)
    if not files:
        raise SerjaxError(
            f"EmoDB root {root} (config field data.root) holds no wav file (looked in {folder})"
        )

    def parse(path, _):
        speaker, raw = parse_name(path.stem)
        return NamedFile(speaker=speaker, raw_label=raw)

    utterances, problems, excluded, found, _ = read_named_files(
        [(path, None) for path in files], parse, label_map, audio_check
    )
    notes = [compare_with_release("EmoDB", found, RELEASE_COUNTS)]
    return finish_listing(
        "emodb", "EmoDB tree", root, utterances, problems, excluded, on_bad_file, label_map, notes
    )
