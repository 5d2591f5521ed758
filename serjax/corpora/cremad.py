"""CREMA-D reader, per SPEC §1.

Reads `<root>/AudioWAV/1001_DFA_ANG_XX.wav` (or the wavs directly under `<root>` when it
has no `AudioWAV/`): speaker id 1001-1091, sentence code (one of twelve), emotion
(ANG DIS FEA HAP NEU SAD) and intensity (LO MD HI, XX = unspecified). Speaker = session =
the 4-digit id. The raw label is the emotion's IEMOCAP-style name (`ANG` -> `ang`).
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

EMOTIONS = {"ANG": "ang", "DIS": "dis", "FEA": "fea", "HAP": "hap", "NEU": "neu", "SAD": "sad"}
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
INTENSITIES = ("LO", "MD", "HI", "XX")
SPEAKER_IDS = range(1001, 1092)
# Clips per emotion in the release (7442 in all, 91 speakers).
RELEASE_COUNTS = {"ang": 1271, "dis": 1271, "fea": 1271, "hap": 1271, "neu": 1087, "sad": 1271}

_NAME = re.compile(
    r"^(?P<speaker>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_"
    r"(?P<intensity>[A-Z]{1,2})$"
)


def parse_name(stem: str) -> tuple[str, str, bool]:
    """`1001_DFA_ANG_XX` -> (`1001`, `ang`, False); ValueError saying what is wrong otherwise.

    The third value says the intensity was a lone `X`, read as unspecified: some copies of
    the release have one clip named that way (`1040_ITH_SAD_X.wav`).
    """
    match = _NAME.match(stem)
    if match is None:
        raise ValueError(
            "name does not follow CREMA-D's pattern SPKR_SEN_EMO_IN (e.g. 1001_DFA_ANG_XX)"
        )
    if int(match["speaker"]) not in SPEAKER_IDS:
        raise ValueError(f"speaker {match['speaker']} is not one of 1001..1091")
    if match["sentence"] not in SENTENCES:
        raise ValueError(f"sentence {match['sentence']} is not one of {' '.join(SENTENCES)}")
    if match["emotion"] not in EMOTIONS:
        raise ValueError(f"emotion {match['emotion']} is not one of {' '.join(EMOTIONS)}")
    lone_x = match["intensity"] == "X"
    if match["intensity"] not in INTENSITIES and not lone_x:
        raise ValueError(f"intensity {match['intensity']} is not one of {' '.join(INTENSITIES)}")
    return match["speaker"], EMOTIONS[match["emotion"]], lone_x


def load_cremad(
    root: str | os.PathLike,
    label_map: Mapping[str, str],
    on_bad_file: str = "error",
    audio_check: bool = False,
) -> CorpusListing:
    """Read a CREMA-D tree. `label_map` maps `ang dis fea hap neu sad` to classes; clips whose
    label it lacks are excluded and counted. Bad names are problems (see load_iemocap)."""
    check_on_bad_file(on_bad_file)
    root = corpus_dir(root, "CREMA-D", "your CREMA-D folder (the one holding AudioWAV/)")
    folder = root / "AudioWAV" if (root / "AudioWAV").is_dir() else root
    files = wav_files(folder)
    if not files:
        raise SerjaxError(
            f"CREMA-D root {root} (config field data.root) holds no wav file (looked in {folder})"
        )

    def parse(path, _):
        speaker, raw, lone_x = parse_name(path.stem)
        note = f"{path.name}: intensity 'X' read as unspecified (XX)." if lone_x else ""
        return NamedFile(speaker=speaker, raw_label=raw, note=note)

    utterances, problems, excluded, found, notes = read_named_files(
        [(path, None) for path in files], parse, label_map, audio_check
    )
    notes.append(compare_with_release("CREMA-D", found, RELEASE_COUNTS))
    return finish_listing(
        "cremad",
        "CREMA-D tree",
        root,
        utterances,
        problems,
        excluded,
        on_bad_file,
        label_map,
        notes,
    )
