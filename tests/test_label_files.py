"""Label and manifest files in other encodings (reliability issue #20, item 7), and one
listing, one count of bad files (item 9): label-file and audio problems together with
`data.on_bad_file=error`; the same count printed and written to corpus.json with `skip`."""

import codecs
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HEADER, label_block, quirky_iemocap_tree, write_dialog, write_wav

from serjax.configlib import base_config
from serjax.corpora import load_corpus
from serjax.corpora.iemocap import load_iemocap
from serjax.corpora.manifest import load_manifest
from serjax.errors import SerjaxError
from serjax.inspect_corpus import format_summary, summarize

LAUNCH = Path(__file__).resolve().parent.parent / "launch.py"
FOUR = {"ang": "ang", "sad": "sad", "hap": "hap", "neu": "neu"}
TURNS = [("F000", "neu"), ("M000", "sad")]


def dialog_text(dialog, turns=TURNS, header=True):
    return (HEADER if header else "") + "".join(
        label_block(f"{dialog}_{suffix}", label, 1.0 + 2 * i, 2.5 + 2 * i)
        for i, (suffix, label) in enumerate(turns)
    )


def two_dialogs(root):
    """A good dialog and a second one whose label file the test rewrites."""
    write_dialog(root, 1, "Ses01F_impro01", TURNS)
    return write_dialog(root, 1, "Ses01F_impro02", TURNS)


def ids(listing):
    return sorted(u.utt_id for u in listing.utterances)


ALL_FOUR = [f"Ses01F_impro0{d}_{s}" for d in (1, 2) for s in ("F000", "M000")]

# ------------------------------------------------------------------ item 7: encodings


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
        lambda t: t.encode("utf-16"),  # BOM in the machine's byte order
        lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"),
        lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
        lambda t: codecs.BOM_UTF16_LE + t.replace("\n", "\r\n").encode("utf-16-le"),  # Notepad
    ],
    ids=["utf8-bom", "utf16", "utf16le-bom", "utf16be-bom", "utf16le-crlf"],
)
def test_label_files_in_utf8_with_bom_and_utf16_are_read(tmp_path, encode):
    label_file = two_dialogs(tmp_path)
    label_file.write_bytes(encode(dialog_text("Ses01F_impro02")))
    listing = load_iemocap(tmp_path, sessions=(1,))
    assert ids(listing) == ALL_FOUR
    assert listing.skipped == [] and listing.excluded == {}


def test_a_bom_before_a_label_line_keeps_its_utterance(tmp_path):
    label_file = two_dialogs(tmp_path)
    # No header: the BOM sits right before the first label line. Then a second file's text,
    # BOM and all, appended (`cat a.txt b.txt` of two BOM-writing editors' files).
    first = dialog_text("Ses01F_impro02", TURNS[:1], header=False)
    second = dialog_text("Ses01F_impro02", TURNS[1:], header=False)
    label_file.write_bytes(codecs.BOM_UTF8 + (first + "\ufeff" + second).encode("utf-8"))
    listing = load_iemocap(tmp_path, sessions=(1,))
    assert ids(listing) == ALL_FOUR
    assert listing.skipped == [] and listing.excluded == {}


BAD_LABEL_FILES = [
    pytest.param(b"", "is empty", id="empty"),
    pytest.param(b"\n  \r\n\t\n", "is empty", id="blank"),
    pytest.param(codecs.BOM_UTF8, "is empty", id="utf8-bom-only"),
    pytest.param("\ufeff\n".encode("utf-16"), "is empty", id="utf16-blank"),
    pytest.param(HEADER.encode(), "holds no label line", id="header-only"),
    # UTF-16 without its byte-order mark: every other byte is NUL
    pytest.param(dialog_text("Ses01F_impro02").encode("utf-16-le"), "holds NUL", id="utf16-no-bom"),
    pytest.param(dialog_text("Ses01F_impro02").encode("utf-32"), "is UTF-32", id="utf32"),
    # Latin-1 (or cp1252) text: not UTF-8; the line with the first bad byte is named
    pytest.param(
        (HEADER + "C-E2:\tNeutral;\t(\u00e7a va)\n").encode("latin-1")
        + dialog_text("Ses01F_impro02", header=False).encode(),
        "is not UTF-8 text (line 3: byte 0xe7",
        id="latin1",
    ),
    pytest.param(
        codecs.BOM_UTF16_LE + "[1.0 - 2.0]".encode("utf-16-le") + b"\x00",
        "is not UTF-16 text",
        id="odd-utf16",
    ),
]


@pytest.mark.parametrize("content, reason", BAD_LABEL_FILES)
def test_unreadable_or_empty_label_file_is_a_named_bad_file(tmp_path, content, reason):
    label_file = two_dialogs(tmp_path)
    label_file.write_bytes(content)
    with pytest.raises(SerjaxError) as err:
        load_iemocap(tmp_path, sessions=(1,))
    message = str(err.value)
    assert message.startswith(f"IEMOCAP tree {tmp_path} has 1 problem(s)")
    assert f"\n  {label_file}: {reason}" in message
    listing = load_iemocap(tmp_path, sessions=(1,), on_bad_file="skip")
    assert ids(listing) == ALL_FOUR[:2]
    assert len(listing.skipped) == 1 and listing.skipped[0].item == str(label_file)
    assert listing.skipped[0].reason.startswith(reason)
    # Its wavs have a label file (a bad one): not counted again as "wav without a label line".
    assert listing.excluded == {}


def test_label_file_that_cannot_be_opened_is_a_named_bad_file(tmp_path, monkeypatch):
    label_file = two_dialogs(tmp_path)
    read_bytes = Path.read_bytes

    def denied(path):
        if path == label_file:  # as chmod 000 would, for a user other than root
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(SerjaxError) as err:
        load_iemocap(tmp_path, sessions=(1,))
    assert f"\n  {label_file}: cannot be read (Permission denied)" in str(err.value)
    listing = load_iemocap(tmp_path, sessions=(1,), on_bad_file="skip")
    assert ids(listing) == ALL_FOUR[:2] and listing.excluded == {}


def test_decode_text():
    from serjax.corpora.common import decode_text

    assert decode_text(b"a\nb") == "a\nb"
    assert decode_text(codecs.BOM_UTF8 + "é".encode()) == "é"
    assert decode_text("é\n".encode("utf-16")) == "é\n"
    assert decode_text(codecs.BOM_UTF16_BE + "é".encode("utf-16-be")) == "é"
    for data, reason in [(b"", "is empty"), (b"a\n\xff", "line 2: byte 0xff")]:
        with pytest.raises(ValueError, match=re.escape(reason)):
            decode_text(data)


def manifest_dir(tmp_path):
    for name in ("a", "b"):
        write_wav(tmp_path / f"{name}.wav", seconds=0.05)
    return tmp_path


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be-bom"])
def test_manifest_in_utf8_with_bom_and_utf16_is_read(tmp_path, encoding):
    text = "path,label\r\na.wav,ang\r\nb.wav,sad\r\n"
    data = (
        codecs.BOM_UTF16_BE + text.encode("utf-16-be")
        if encoding == "utf-16-be-bom"
        else text.encode(encoding)
    )
    csv_path = manifest_dir(tmp_path) / "m.csv"
    csv_path.write_bytes(data)
    listing = load_manifest(csv_path, FOUR)
    assert [(u.utt_id, u.label) for u in listing.utterances] == [("a", "ang"), ("b", "sad")]


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "is empty"),
        ("path,label\na.wav,ang\n".encode("utf-16-le"), "holds NUL"),
        ("path,label\na.wav,ang\nb.wav,séd\n".encode("latin-1"), "is not UTF-8 text (line 3"),
    ],
)
def test_manifest_that_cannot_be_decoded_is_one_error_naming_it(tmp_path, content, reason):
    csv_path = manifest_dir(tmp_path) / "m.csv"
    csv_path.write_bytes(content)
    for on_bad_file in ("error", "skip"):
        with pytest.raises(SerjaxError) as err:
            load_manifest(csv_path, FOUR, on_bad_file=on_bad_file)
        assert str(err.value).startswith(f"manifest {csv_path}") and reason in str(err.value)
        assert "\n" not in str(err.value)


# ------------------------------------------------------- item 9: one listing, one count


def iemocap_config(root, on_bad_file):
    config = base_config()
    config.data.corpus = "iemocap"
    config.data.root = str(root)
    config.data.on_bad_file = on_bad_file
    return config


def tree_with_every_kind_of_problem(root):
    """The quirky tree (all five sessions) plus: a label line whose wav is missing, a wav
    that is not audio, a truncated wav, and a label file in no encoding serjax reads."""
    root = quirky_iemocap_tree(root)
    write_dialog(root, 2, "Ses02F_impro03", [("F000", "neu"), ("M000", "ang"), ("F001", "sad")])
    wavs = root / "Session2/sentences/wav/Ses02F_impro03"
    (wavs / "Ses02F_impro03_M000.wav").unlink()
    (wavs / "Ses02F_impro03_F000.wav").write_bytes(b"RIFF\x00\x10\x00\x00WAVEjunk" * 200)
    truncated = wavs / "Ses02F_impro03_F001.wav"
    truncated.write_bytes(truncated.read_bytes()[:-2000])
    bad_label_file = write_dialog(root, 4, "Ses04F_impro03", [("F000", "neu")])
    bad_label_file.write_bytes(b"\xff\xfe\x00\x00" + b"\x00" * 8)  # UTF-32
    return root, {
        f"{root}/Session2/dialog/EmoEvaluation/Ses02F_impro03.txt:8": "the wav of",
        str(wavs / "Ses02F_impro03_F000.wav"): "cannot read audio file",
        str(truncated): "truncated: its header declares",
        str(bad_label_file): "is UTF-32",
    }


def test_label_file_and_audio_problems_are_listed_at_once(tmp_path):
    root, expected = tree_with_every_kind_of_problem(tmp_path / "iemocap")
    with pytest.raises(SerjaxError) as err:
        load_corpus(iemocap_config(root, "error").data, tmp_path / "cache")
    message = str(err.value)
    assert message.startswith(f"IEMOCAP tree {root} has 4 problem(s)")
    listed = message.splitlines()[1:]
    assert len(listed) == 4
    for item, reason in expected.items():
        assert any(line.startswith(f"  {item}: {reason}") for line in listed), item


def test_skipped_count_agrees_everywhere(tmp_path):
    root, expected = tree_with_every_kind_of_problem(tmp_path / "iemocap")
    config = iemocap_config(root, "skip")
    listing = load_corpus(config.data, tmp_path / "cache")
    summary = summarize(listing, config.data.classes)
    text = format_summary(summary)
    assert sorted(s["item"] for s in summary["skipped"]) == sorted(expected)
    assert f"skipped ({len(expected)}):" in text
    assert summary["total"] == 10
    # The release-count note counts what is used, not what the reader saw before the audio
    # check left the bad wavs out (it said 12 found where the listing held 10).
    (note,) = [n for n in summary["notes"] if "counts differ" in n]
    assert f"found {summary['total']};" in note
    assert f"'neu': {summary['counts']['neu']}" in note


def test_named_corpus_note_counts_what_is_used(tmp_path):
    """EmoDB (a file-name corpus): the release note agrees with the listing too."""
    root = tmp_path / "emodb"
    for stem in ("03a01Wa", "03a01Fa", "08a01Na", "08a02Ta"):
        write_wav(root / "wav" / f"{stem}.wav", seconds=0.05)
    (root / "wav" / "08a02Ta.wav").write_bytes(b"RIFF\x00\x10\x00\x00WAVEjunk" * 200)
    config = base_config()
    config.data.corpus, config.data.root, config.data.on_bad_file = "emodb", str(root), "error"
    with pytest.raises(SerjaxError, match=r"EmoDB tree .* has 1 problem\(s\)"):
        load_corpus(config.data, tmp_path / "cache")
    config.data.on_bad_file = "skip"
    listing = load_corpus(config.data, tmp_path / "cache")
    assert len(listing.utterances) == 3 and len(listing.skipped) == 1
    assert listing.notes[0].startswith("EmoDB: 3 utterances found")


def test_inspect_lists_every_problem_once_and_counts_agree(tmp_path):
    """As a user runs it: no traceback; one listing with `error`; with `skip` the printed
    count is corpus.json's."""
    root, expected = tree_with_every_kind_of_problem(tmp_path / "iemocap")

    def inspect(on_bad_file, workdir):
        return subprocess.run(
            [
                sys.executable,
                str(LAUNCH),
                "--mode=inspect",
                "--config.data.corpus=iemocap",
                f"--config.data.root={root}",
                f"--config.data.on_bad_file={on_bad_file}",
                f"--workdir={workdir}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "SERJAX_MALLOC": "default"},
        )

    failed = inspect("error", tmp_path / "w1")
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.startswith(f"serjax: error: IEMOCAP tree {root} has 4 problem(s)")
    assert all(item in failed.stderr for item in expected)
    done = inspect("skip", tmp_path / "w2")
    assert done.returncode == 0, done.stderr
    corpus = json.loads((tmp_path / "w2" / "corpus.json").read_text())
    printed = re.search(r"^skipped \((\d+)\):$", done.stdout, re.M)
    assert int(printed[1]) == len(corpus["skipped"]) == len(expected)
    assert f"found {corpus['total']};" in corpus["notes"][0]
