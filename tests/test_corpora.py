"""The EmoDB, RAVDESS, CREMA-D and CSV-manifest readers on fixture trees, and their configs."""

import collections
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from helpers import write_wav

from serjax import data as data_lib
from serjax.corpora import CORPORA, audio_file_problem, load_corpus
from serjax.corpora.cremad import load_cremad
from serjax.corpora.emodb import load_emodb
from serjax.corpora.manifest import load_manifest
from serjax.corpora.ravdess import load_ravdess
from serjax.errors import SerjaxError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
FOUR = {"ang": "ang", "sad": "sad", "hap": "hap", "neu": "neu"}


def tiny_wav(path, seed=0):
    return write_wav(path, seconds=0.05, seed=seed)


def write_tree(folder, stems):
    for i, stem in enumerate(stems):
        tiny_wav(Path(folder) / f"{stem}.wav", seed=i)


def identity(labels):
    return {label: label for label in labels}


def labels_of(listing):
    return dict(collections.Counter(u.label for u in listing.utterances))


def load_config(name, arg=""):
    spec = importlib.util.spec_from_file_location(f"config_{name}", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg)
    config.lock()  # as launch.py does
    return config


# ----------------------------------------------------------------------------- EmoDB

EMODB_ALL = identity(["ang", "bor", "dis", "fea", "hap", "sad", "neu"])
EMODB_STEMS = [
    "03a01Wa",
    "03a01La",
    "03a02Fb",
    "03b01Nc",
    "08a01Ta",
    "08a01Ea",
    "08b02Aa",
    "10a01Wb",
    "10a05Fa",
    "10b03Nb",
]


@pytest.fixture
def emodb(tmp_path):
    root = tmp_path / "emodb"
    write_tree(root / "wav", EMODB_STEMS)
    tiny_wav(root / "silb" / "03a01Xa.wav")  # not in wav/: never read
    (root / "wav" / "._03a01Wa.wav").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    (root / "wav" / "notes.txt").write_text("not audio")
    return root


def test_emodb_all_labels(emodb):
    listing = load_emodb(emodb, EMODB_ALL)
    by_id = {u.utt_id: u for u in listing.utterances}
    assert sorted(by_id) == sorted(EMODB_STEMS)
    assert labels_of(listing) == {
        "ang": 2,
        "bor": 1,
        "dis": 1,
        "fea": 1,
        "hap": 2,
        "sad": 1,
        "neu": 2,
    }
    assert by_id["08a01Ta"].speaker == by_id["08a01Ta"].session == "08"
    assert by_id["03a01La"].raw_label == "bor"
    assert by_id["10a05Fa"].path == str(emodb / "wav" / "10a05Fa.wav")
    assert collections.Counter(u.speaker for u in listing.utterances) == {"03": 4, "08": 3, "10": 3}
    assert listing.name == "emodb" and listing.skipped == [] and listing.excluded == {}
    assert listing.notes == [
        "EmoDB: 10 utterances found (before data.label_map), the full release "
        "has 535 (found/expected per label: ang 2/127, bor 1/81, dis 1/46, fea 1/69, "
        "hap 2/71, sad 1/62, neu 2/79)."
    ]


def test_emodb_four_classes_exclude_boredom_disgust_fear(emodb):
    listing = load_emodb(emodb, FOUR)
    assert labels_of(listing) == {"ang": 2, "hap": 2, "neu": 2, "sad": 1}
    assert listing.excluded == {"label bor": 1, "label dis": 1, "label fea": 1}


def test_emodb_bad_names_listed_together_or_skipped(emodb):
    wav = emodb / "wav"
    tiny_wav(wav / "03a01Xa.wav")
    tiny_wav(wav / "05a01Fa.wav")
    tiny_wav(wav / "anger_01.wav")
    (wav / "03a03Wa.wav").write_bytes(b"")
    (wav / "08a04Wa.wav").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n"
    )
    with pytest.raises(SerjaxError) as err:
        load_emodb(emodb, EMODB_ALL)
    message = str(err.value)
    assert message.startswith(
        f"EmoDB tree {emodb} has 5 problem(s) (set --config.data.on_bad_file=skip"
    )
    assert f"{wav / '03a01Xa.wav'}: emotion letter 'X' is not one of W L E A F T N" in message
    assert f"{wav / '05a01Fa.wav'}: speaker 05 is not one of EmoDB's ten" in message
    assert f"{wav / 'anger_01.wav'}: name does not follow EmoDB's pattern" in message
    assert f"{wav / '03a03Wa.wav'}: holds no audio (0 bytes)" in message
    assert f"{wav / '08a04Wa.wav'}: is a git-lfs pointer" in message

    listing = load_emodb(emodb, EMODB_ALL, on_bad_file="skip")
    assert len(listing.utterances) == 10
    assert sorted(Path(s.item).name for s in listing.skipped) == [
        "03a01Xa.wav",
        "03a03Wa.wav",
        "05a01Fa.wav",
        "08a04Wa.wav",
        "anger_01.wav",
    ]


def test_emodb_wavs_directly_under_root_and_missing_root(tmp_path):
    write_tree(tmp_path / "flat", ["11a01Wa", "16b10Tb"])
    listing = load_emodb(tmp_path / "flat", FOUR)
    assert [(u.utt_id, u.label, u.speaker) for u in listing.utterances] == [
        ("11a01Wa", "ang", "11"),
        ("16b10Tb", "sad", "16"),
    ]
    with pytest.raises(
        SerjaxError, match=r"EmoDB root '.*nowhere' is not a directory \(set --config.data.root"
    ):
        load_emodb(tmp_path / "nowhere", FOUR)
    (tmp_path / "empty" / "wav").mkdir(parents=True)
    with pytest.raises(SerjaxError, match=r"\(config field data.root\) holds no wav file"):
        load_emodb(tmp_path / "empty", FOUR)
    # All files read, none with a label in the map.
    write_tree(tmp_path / "bored" / "wav", ["03a01La"])
    with pytest.raises(SerjaxError, match=r"holds no utterance whose label is in data.label_map"):
        load_emodb(tmp_path / "bored", FOUR)


# --------------------------------------------------------------------------- RAVDESS

RAVDESS_ALL = identity(["neu", "cal", "hap", "sad", "ang", "fea", "dis", "sur"])
RAVDESS_SPEECH = {
    "Actor_01": ["03-01-01-01-01-01-01", "03-01-05-02-01-01-01", "03-01-02-01-02-02-01"],
    "Actor_02": ["03-01-04-01-01-01-02", "03-01-03-02-02-01-02", "03-01-08-01-01-01-02"],
    "Actor_13": ["03-01-06-01-01-01-13", "03-01-07-01-01-01-13", "03-01-05-01-01-02-13"],
}


@pytest.fixture
def ravdess(tmp_path):
    """Both zips unpacked under one root, as a user would: speech and song."""
    root = tmp_path / "ravdess"
    for actor, stems in RAVDESS_SPEECH.items():
        write_tree(root / "Audio_Speech_Actors_01-24" / actor, stems)
    write_tree(root / "Audio_Song_Actors_01-24" / "Actor_01", ["03-02-05-01-01-01-01"])
    write_tree(root / "Audio_Song_Actors_01-24" / "Actor_02", ["03-02-03-01-01-01-02"])
    return root


def test_ravdess_nested_zip_layout_all_labels(ravdess):
    listing = load_ravdess(ravdess, RAVDESS_ALL)
    by_id = {u.utt_id: u for u in listing.utterances}
    assert len(by_id) == 9
    assert labels_of(listing) == {
        "neu": 1,
        "ang": 2,
        "cal": 1,
        "sad": 1,
        "hap": 1,
        "sur": 1,
        "fea": 1,
        "dis": 1,
    }
    assert listing.excluded == {"song": 2}
    assert collections.Counter(u.speaker for u in listing.utterances) == {
        "Actor_01": 3,
        "Actor_02": 3,
        "Actor_13": 3,
    }
    ang = by_id["03-01-05-01-01-02-13"]
    assert (ang.label, ang.raw_label, ang.speaker, ang.session) == (
        "ang",
        "ang",
        "Actor_13",
        "Actor_13",
    )
    assert ang.path == str(
        ravdess / "Audio_Speech_Actors_01-24" / "Actor_13" / "03-01-05-01-01-02-13.wav"
    )
    assert listing.skipped == [] and listing.name == "ravdess"
    assert listing.notes[0].startswith(
        "RAVDESS speech: 9 utterances found (before data.label_map), the full release has 1440"
    )


def test_ravdess_four_classes(ravdess):
    listing = load_ravdess(ravdess, FOUR)
    assert labels_of(listing) == {"neu": 1, "ang": 2, "sad": 1, "hap": 1}
    assert listing.excluded == {
        "label cal": 1,
        "label dis": 1,
        "label fea": 1,
        "label sur": 1,
        "song": 2,
    }


def test_ravdess_actor_mismatch_and_bad_names(ravdess):
    speech = ravdess / "Audio_Speech_Actors_01-24"
    write_tree(speech / "Actor_02", ["03-01-05-01-01-01-03"])  # actor 03's file in Actor_02
    write_tree(
        speech / "Actor_01",
        [
            "01-01-05-01-01-01-01",  # video modality
            "03-01-09-01-01-01-01",  # emotion 09
            "03-03-05-01-01-01-01",
        ],
    )  # vocal channel 03
    write_tree(speech / "Actor_13", ["03-01-05-03-01-01-13", "Actor_13_take1"])
    with pytest.raises(SerjaxError) as err:
        load_ravdess(ravdess, RAVDESS_ALL)
    message = str(err.value)
    assert "has 6 problem(s)" in message
    assert (
        f"{speech / 'Actor_02' / '03-01-05-01-01-01-03.wav'}: actor 03 in the name, but the file "
        "is in the folder of actor 02"
    ) in message
    assert "01-01-05-01-01-01-01.wav: modality 01 is not audio-only (03)" in message
    assert "03-01-09-01-01-01-01.wav: emotion 09 is not one of 01..08" in message
    assert (
        "03-03-05-01-01-01-01.wav: vocal channel 03 is neither speech (01) nor song (02)" in message
    )
    assert "03-01-05-03-01-01-13.wav: intensity 03 is not 01 or 02" in message
    assert "Actor_13_take1.wav: name does not follow RAVDESS's pattern" in message

    listing = load_ravdess(ravdess, RAVDESS_ALL, on_bad_file="skip")
    assert len(listing.utterances) == 9 and len(listing.skipped) == 6
    assert listing.excluded == {"song": 2}


def test_ravdess_actor_folders_directly_under_root(tmp_path):
    root = tmp_path / "ravdess"
    write_tree(root / "Actor_05", ["03-01-05-01-01-01-05", "03-01-04-02-02-02-05"])
    write_tree(root / "Actor_24", ["03-01-01-01-01-01-24"])
    # With Actor_* folders at the root, nothing deeper is searched.
    write_tree(root / "extra" / "Actor_07", ["03-01-05-01-01-01-07"])
    listing = load_ravdess(root, FOUR)
    assert [(u.utt_id, u.label, u.speaker) for u in listing.utterances] == [
        ("03-01-04-02-02-02-05", "sad", "Actor_05"),
        ("03-01-05-01-01-01-05", "ang", "Actor_05"),
        ("03-01-01-01-01-01-24", "neu", "Actor_24"),
    ]
    (tmp_path / "none" / "Audio_Speech_Actors_01-24").mkdir(parents=True)
    with pytest.raises(
        SerjaxError,
        match=r"RAVDESS root .* \(config field data.root\) holds no wav file "
        r"in an Actor_XX folder",
    ):
        load_ravdess(tmp_path / "none", FOUR)


# --------------------------------------------------------------------------- CREMA-D

CREMAD_ALL = identity(["ang", "dis", "fea", "hap", "neu", "sad"])
CREMAD_STEMS = [
    "1001_DFA_ANG_XX",
    "1001_IEO_HAP_HI",
    "1001_TIE_NEU_XX",
    "1002_IOM_SAD_LO",
    "1002_MTI_DIS_MD",
    "1002_WSI_FEA_HI",
    "1091_ITS_ANG_LO",
    "1040_ITH_SAD_X",
]


@pytest.fixture
def cremad(tmp_path):
    root = tmp_path / "CREMA-D"
    write_tree(root / "AudioWAV", CREMAD_STEMS)
    return root


def test_cremad_all_labels(cremad):
    listing = load_cremad(cremad, CREMAD_ALL)
    by_id = {u.utt_id: u for u in listing.utterances}
    assert sorted(by_id) == sorted(CREMAD_STEMS)
    assert labels_of(listing) == {"ang": 2, "hap": 1, "neu": 1, "sad": 2, "dis": 1, "fea": 1}
    assert collections.Counter(u.speaker for u in listing.utterances) == {
        "1001": 3,
        "1002": 3,
        "1040": 1,
        "1091": 1,
    }
    assert by_id["1002_IOM_SAD_LO"].session == "1002"
    assert by_id["1001_DFA_ANG_XX"].path == str(cremad / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    assert listing.notes[0] == "1040_ITH_SAD_X.wav: intensity 'X' read as unspecified (XX)."
    assert listing.notes[1].startswith(
        "CREMA-D: 8 utterances found (before data.label_map), the full release has 7442"
    )
    assert listing.skipped == [] and listing.excluded == {}


def test_cremad_four_classes_and_flat_layout(cremad, tmp_path):
    listing = load_cremad(cremad, FOUR)
    assert labels_of(listing) == {"ang": 2, "hap": 1, "neu": 1, "sad": 2}
    assert listing.excluded == {"label dis": 1, "label fea": 1}
    write_tree(tmp_path / "flat", ["1050_TSI_NEU_XX", "1051_IWL_ANG_MD"])
    flat = load_cremad(tmp_path / "flat", FOUR)
    assert [(u.utt_id, u.label, u.speaker) for u in flat.utterances] == [
        ("1050_TSI_NEU_XX", "neu", "1050"),
        ("1051_IWL_ANG_MD", "ang", "1051"),
    ]


def test_cremad_bad_names(cremad):
    audio = cremad / "AudioWAV"
    write_tree(
        audio,
        [
            "1000_DFA_ANG_XX",
            "1001_ABC_ANG_XX",
            "1001_DFA_SUR_XX",
            "1001_DFA_ANG_ZZ",
            "1001-DFA-ANG-XX",
        ],
    )
    (audio / "1003_DFA_ANG_HI.wav").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(SerjaxError) as err:
        load_cremad(cremad, CREMAD_ALL)
    message = str(err.value)
    assert message.startswith(f"CREMA-D tree {cremad} has 6 problem(s)")
    assert "1000_DFA_ANG_XX.wav: speaker 1000 is not one of 1001..1091" in message
    assert "1001_ABC_ANG_XX.wav: sentence ABC is not one of IEO TIE" in message
    assert "1001_DFA_SUR_XX.wav: emotion SUR is not one of ANG DIS FEA HAP NEU SAD" in message
    assert "1001_DFA_ANG_ZZ.wav: intensity ZZ is not one of LO MD HI XX" in message
    assert "1001-DFA-ANG-XX.wav: name does not follow CREMA-D's pattern" in message
    assert (
        "1003_DFA_ANG_HI.wav: is a git-lfs pointer, not audio (fetch the audio with `git lfs pull`)"
        in message
    )
    listing = load_cremad(cremad, CREMAD_ALL, on_bad_file="skip")
    assert len(listing.utterances) == 8 and len(listing.skipped) == 6


# -------------------------------------------------------------------------- manifest


@pytest.fixture
def manifest_dir(tmp_path):
    folder = tmp_path / "mine"
    for i, name in enumerate(["s1_a", "s1_b", "s2_a", "s2_b"]):
        tiny_wav(folder / "audio" / f"{name}.wav", seed=i)
    write_wav(folder / "audio" / "s3, take 1.flac", seconds=0.05)
    return folder


def write_csv(folder, text, name="manifest.csv"):
    path = Path(folder) / name
    path.write_text(text)
    return path


def test_manifest_with_speakers_and_sessions(manifest_dir, tmp_path):
    absolute = write_wav(tmp_path / "elsewhere" / "x.wav", seconds=0.05)
    csv_path = write_csv(
        manifest_dir,
        (
            "\ufeffpath,label,speaker,session\n"  # a BOM, as spreadsheets write
            "audio/s1_a.wav,ang,s1,day1\n"
            "audio/s1_b.wav, hap ,s1,day1\n"
            "\n"
            "./audio/s2_a.wav,sad,s2,day2\n"
            '"audio/s3, take 1.flac",neu,s3,day2\n'
            f"{absolute},exc,s4,day3\n"
        ),
    )
    listing = load_manifest(csv_path, {**FOUR, "exc": "hap"})
    assert [(u.utt_id, u.label, u.raw_label, u.speaker, u.session) for u in listing.utterances] == [
        ("audio/s1_a", "ang", "ang", "s1", "day1"),
        ("audio/s1_b", "hap", "hap", "s1", "day1"),
        ("audio/s2_a", "sad", "sad", "s2", "day2"),
        ("audio/s3, take 1", "neu", "neu", "s3", "day2"),
        (str(absolute.with_suffix("")), "hap", "exc", "s4", "day3"),
    ]
    assert listing.utterances[0].path == str(manifest_dir / "audio" / "s1_a.wav")
    assert listing.utterances[4].path == str(absolute)
    assert listing.name == "manifest" and listing.skipped == [] and listing.notes == []


def test_manifest_columns_in_any_order_without_speaker(manifest_dir):
    csv_path = write_csv(manifest_dir, "Label,Path\nang,audio/s1_a.wav\nsad,audio/s2_a.wav\n")
    listing = load_manifest(csv_path, FOUR)
    assert [(u.label, u.speaker, u.session) for u in listing.utterances] == [
        ("ang", "", ""),
        ("sad", "", ""),
    ]
    assert len(listing.notes) == 1
    assert "has no speaker column" in listing.notes[0]
    assert "set --config.protocol.name=stratified_kfold" in listing.notes[0]
    # Speaker folds cannot be made from one unknown speaker: an error, not silent leakage.
    with pytest.raises(SerjaxError):
        data_lib.speaker_kfold([u.speaker for u in listing.utterances], 5, seed=0)
    # A session column without speakers still allows leave-one-session-out.
    csv_path = write_csv(
        manifest_dir, "path,label,session\naudio/s1_a.wav,ang,a\naudio/s2_a.wav,sad,b\n"
    )
    listing = load_manifest(csv_path, FOUR)
    assert [u.session for u in listing.utterances] == ["a", "b"]
    assert (
        "leave_one_session_out runs, but cannot check that no speaker is in two sessions"
        in listing.notes[0]
    )


def test_manifest_problems_name_file_and_line(manifest_dir):
    csv_path = write_csv(
        manifest_dir,
        (
            "path,label,speaker\n"
            "audio/s1_a.wav,ang,s1\n"
            "audio/missing.wav,sad,s1\n"  # line 3: missing file
            "audio/s1_b.wav,angry,s1\n"  # line 4: label not in the map
            "audio/s2_a.wav,neu\n"  # line 5: too few fields
            "audio/s1_a.wav,ang,s1\n"  # line 6: listed twice
            "audio/s2_b.wav,hap,\n"
        ),
    )  # line 7: empty speaker
    with pytest.raises(SerjaxError) as err:
        load_manifest(csv_path, FOUR)
    message = str(err.value)
    assert message.startswith(
        f"manifest {csv_path} has 5 problem(s) (set --config.data.on_bad_file=skip"
    )
    assert f"{csv_path}:3: file {manifest_dir / 'audio' / 'missing.wav'} does not exist" in message
    assert (
        f"{csv_path}:4: label 'angry' is not in data.label_map ['ang', 'hap', 'neu', 'sad'] "
        "(a manifest's labels are its author's, so an unknown one is taken for a mistake"
    ) in message
    assert f"{csv_path}:5: 2 field(s), the header has 3" in message
    assert f"{csv_path}:6: path audio/s1_a.wav is listed twice (first on line 2)" in message
    assert f"{csv_path}:7: empty speaker" in message

    listing = load_manifest(csv_path, FOUR, on_bad_file="skip")
    assert [u.utt_id for u in listing.utterances] == ["audio/s1_a"]
    assert [s.item for s in listing.skipped] == [f"{csv_path}:{n}" for n in (3, 4, 5, 6, 7)]
    assert listing.excluded == {}


@pytest.mark.parametrize(
    "header, why",
    [
        ("file,label", "unknown column(s) ['file']; missing column(s) ['path']"),
        ("path,label,label", "repeated column(s) ['label']"),
        ("path,speaker", "missing column(s) ['label']"),
        (
            "audio/s1_a.wav,ang",
            "unknown column(s) ['audio/s1_a.wav', 'ang']; missing column(s) ['path', 'label']",
        ),
    ],
)
def test_manifest_bad_header(manifest_dir, header, why):
    csv_path = write_csv(manifest_dir, f"\n{header}\naudio/s1_a.wav,ang\n")
    with pytest.raises(SerjaxError) as err:
        load_manifest(csv_path, FOUR)
    assert str(err.value) == (
        f"manifest {csv_path}:2: bad header {header!r} ({why}): the header must "
        "name the columns path,label and optionally speaker,session"
    )


def test_manifest_empty_or_missing(manifest_dir):
    empty = write_csv(manifest_dir, "\n\n", name="empty.csv")
    with pytest.raises(
        SerjaxError, match=r"manifest .*empty.csv \(config field data.root\) is empty"
    ):
        load_manifest(empty, FOUR)
    header_only = write_csv(manifest_dir, "path,label\n", name="header.csv")
    with pytest.raises(
        SerjaxError, match=r"header.csv \(config field data.root\) has a header but no rows"
    ):
        load_manifest(header_only, FOUR)
    with pytest.raises(
        SerjaxError,
        match=r"manifest '.*mine' is a directory, not a CSV file \(set --config.data.root",
    ):
        load_manifest(manifest_dir, FOUR)
    with pytest.raises(SerjaxError, match=r"manifest '.*nope.csv' is not a file"):
        load_manifest(manifest_dir / "nope.csv", FOUR)


def test_audio_file_problem(tmp_path):
    assert audio_file_problem(tiny_wav(tmp_path / "ok.wav")) is None
    (tmp_path / "header.wav").write_bytes(b"RIFF" + bytes(40))
    assert audio_file_problem(tmp_path / "header.wav") == "holds no audio (44 bytes)"
    assert audio_file_problem(tmp_path / "gone.wav").startswith("cannot read")


# ------------------------------------------------------- configs and load_corpus dispatch


def emodb_full_speakers(root):
    speakers = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
    write_tree(root / "wav", [f"{s}a0{i}{e}a" for s in speakers for i, e in enumerate("WLTFN", 1)])
    return root


def ravdess_six_actors(root):
    for a in range(1, 7):
        write_tree(
            root / "Audio_Speech_Actors_01-24" / f"Actor_{a:02d}",
            [f"03-01-{e:02d}-01-01-01-{a:02d}" for e in (1, 2, 3, 4, 5)],
        )
    return root


def cremad_five_speakers(root):
    write_tree(
        root / "AudioWAV",
        [f"{1001 + s}_DFA_{e}_XX" for s in range(5) for e in ("ANG", "SAD", "HAP", "NEU", "FEA")],
    )
    return root


def manifest_five_speakers(root):
    rows = []
    for s in range(5):
        for label in ("ang", "sad", "hap", "neu"):
            rows.append(f"spk{s}/{label}.wav,{label},spk{s}")
            tiny_wav(root / f"spk{s}" / f"{label}.wav")
    return write_csv(root, "path,label,speaker\n" + "\n".join(rows) + "\n")


@pytest.mark.parametrize(
    "name, arg, build, counts, excluded, folds",
    [
        (
            "emodb",
            "",
            emodb_full_speakers,
            {"ang": 10, "bor": 10, "sad": 10, "hap": 10, "neu": 10},
            {},
            10,
        ),
        (
            "emodb",
            "4class",
            emodb_full_speakers,
            {"ang": 10, "sad": 10, "hap": 10, "neu": 10},
            {"label bor": 10},
            10,
        ),
        (
            "ravdess",
            "",
            ravdess_six_actors,
            {"neu": 6, "cal": 6, "hap": 6, "sad": 6, "ang": 6},
            {},
            6,
        ),
        (
            "ravdess",
            "4class",
            ravdess_six_actors,
            {"neu": 6, "hap": 6, "sad": 6, "ang": 6},
            {"label cal": 6},
            6,
        ),
        (
            "cremad",
            "all",
            cremad_five_speakers,
            {"ang": 5, "sad": 5, "hap": 5, "neu": 5, "fea": 5},
            {},
            5,
        ),
        (
            "cremad",
            "4class",
            cremad_five_speakers,
            {"ang": 5, "sad": 5, "hap": 5, "neu": 5},
            {"label fea": 5},
            5,
        ),
        ("manifest", "", manifest_five_speakers, {"ang": 5, "sad": 5, "hap": 5, "neu": 5}, {}, 5),
    ],
)
def test_configs_dispatch_and_speaker_independent_folds(
    tmp_path, name, arg, build, counts, excluded, folds
):
    config = load_config(name, arg)
    assert config.data.corpus == name
    config.data.root = str(build(tmp_path / name))
    listing = load_corpus(config.data, tmp_path / "cache")
    assert listing.name == name
    assert labels_of(listing) == counts
    assert listing.excluded == excluded
    assert set(labels_of(listing)) <= set(config.data.classes)
    labels = np.array([list(config.data.classes).index(u.label) for u in listing.utterances])
    fold, fold_names = data_lib.assign_folds(
        listing.utterances, labels, config.protocol, config.protocol.fold_seed
    )
    assert len(fold_names) == folds
    speakers_per_fold = [
        {u.speaker for u, k in zip(listing.utterances, fold) if k == f} for f in range(folds)
    ]
    assert sum(len(s) for s in speakers_per_fold) == len({u.speaker for u in listing.utterances})


def test_config_label_sets():
    four = ("ang", "sad", "hap", "neu")
    expected = {
        ("emodb", ""): (("ang", "bor", "dis", "fea", "hap", "sad", "neu"), "leave_one_speaker_out"),
        ("ravdess", "all"): (
            ("neu", "cal", "hap", "sad", "ang", "fea", "dis", "sur"),
            "speaker_kfold",
        ),
        ("cremad", ""): (("ang", "dis", "fea", "hap", "neu", "sad"), "speaker_kfold"),
        ("manifest", ""): (four, "speaker_kfold"),
    }
    for (name, arg), (classes, protocol) in expected.items():
        config = load_config(name, arg)
        assert tuple(config.data.classes) == classes
        assert dict(config.data.label_map) == {c: c for c in classes}
        assert config.protocol.name == protocol
        four_config = load_config(name, "4class")
        assert tuple(four_config.data.classes) == four
        assert dict(four_config.data.label_map) == {c: c for c in four}
    assert load_config("ravdess").protocol.num_folds == 6
    assert load_config("cremad").protocol.num_folds == 5
    custom = load_config("manifest", "angry=ang,sad,happy=hap,excited=hap,neutral=neu")
    assert tuple(custom.data.classes) == four
    assert dict(custom.data.label_map) == {
        "angry": "ang",
        "sad": "sad",
        "happy": "hap",
        "excited": "hap",
        "neutral": "neu",
    }
    for name in ("emodb", "ravdess", "cremad"):
        with pytest.raises(ValueError, match="takes '', 'all' or '4class'"):
            load_config(name, "5class")
    with pytest.raises(ValueError, match="bad label set"):
        load_config("manifest", "ang,,sad")


def test_load_corpus_errors(tmp_path):
    assert CORPORA == ("synthetic", "iemocap", "emodb", "ravdess", "cremad", "manifest")
    config = load_config("cremad")
    with pytest.raises(
        SerjaxError, match=r"^config field data.root is empty: point it at your CREMA-D folder"
    ):
        load_corpus(config.data, tmp_path)
    config.data.root = str(tmp_path / "nowhere")
    with pytest.raises(
        SerjaxError, match=r"^CREMA-D root '.*nowhere' is not a directory \(set --config.data.root"
    ):
        load_corpus(config.data, tmp_path)
    config.data.corpus = "savee"
    with pytest.raises(
        SerjaxError,
        match=r"unknown corpus 'savee'; choose one of \('synthetic', 'iemocap', "
        r"'emodb', 'ravdess', 'cremad', 'manifest'\)",
    ):
        load_corpus(config.data, tmp_path)
    config = load_config("emodb")
    config.data.on_bad_file = "ignore"
    config.data.root = str(tmp_path)
    with pytest.raises(SerjaxError, match="config field data.on_bad_file: 'ignore'"):
        load_corpus(config.data, tmp_path)


def test_release_counts_note():
    from serjax.corpora import compare_with_release, cremad, emodb, ravdess

    assert sum(emodb.RELEASE_COUNTS.values()) == 535
    assert sum(ravdess.RELEASE_COUNTS.values()) == 1440
    assert sum(cremad.RELEASE_COUNTS.values()) == 7442
    assert compare_with_release(
        "EmoDB", collections.Counter(emodb.RELEASE_COUNTS), emodb.RELEASE_COUNTS
    ) == ("EmoDB: counts match the full release (535 utterances).")


def test_ravdess_same_file_in_two_copies(tmp_path):
    root = tmp_path / "ravdess"
    write_tree(root / "Audio_Speech_Actors_01-24" / "Actor_01", ["03-01-05-01-01-01-01"])
    write_tree(root / "copy" / "Actor_01", ["03-01-05-01-01-01-01", "03-01-04-01-01-01-01"])
    with pytest.raises(
        SerjaxError,
        match=r"copy/Actor_01/03-01-05-01-01-01-01.wav: utterance "
        r"03-01-05-01-01-01-01 is there twice \(also .*Audio_Speech",
    ):
        load_ravdess(root, FOUR)
