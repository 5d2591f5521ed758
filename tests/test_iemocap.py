import collections
import re

import pytest
from helpers import quirky_iemocap_tree, write_dialog

from serjax.corpora.iemocap import check_paper_counts, load_iemocap, speaker_of
from serjax.corpora.records import Utterance
from serjax.errors import SerjaxError


@pytest.fixture
def tree(tmp_path):
    return quirky_iemocap_tree(tmp_path / "IEMOCAP_full_release")


def test_improvised_subset_reads_each_quirk(tree):
    listing = load_iemocap(tree)
    by_id = {u.utt_id: u for u in listing.utterances}
    assert sorted(by_id) == sorted(
        [
            "Ses01F_impro01_F000",
            "Ses01F_impro01_M000",
            "Ses01F_impro01_F001",
            "Ses02F_impro02_F000",
            "Ses02F_impro02_M000",
            "Ses03M_impro05a_F000",
            "Ses03M_impro05a_M000",
            "Ses03M_impro05b_M000",
            "Ses04F_impro02_F000",
            "Ses04F_impro02_M000",
        ]
    )
    # exc is merged into hap; the raw label is kept.
    assert by_id["Ses01F_impro01_F001"].label == "hap"
    assert by_id["Ses01F_impro01_F001"].raw_label == "exc"
    # Speaker from the turn suffix, not from the mocap wearer in the dialog name.
    assert by_id["Ses01F_impro01_M000"].speaker == "Ses01_M"
    assert by_id["Ses03M_impro05a_F000"].speaker == "Ses03_F"
    assert by_id["Ses03M_impro05a_F000"].session == "Ses03"
    assert by_id["Ses03M_impro05b_M000"].path.endswith(
        "Session3/sentences/wav/Ses03M_impro05b/Ses03M_impro05b_M000.wav"
    )
    # Nothing from Categorical/ (which labels F000 'ang') or the ._ file.
    assert by_id["Ses01F_impro01_F000"].label == "neu"
    assert collections.Counter(u.label for u in listing.utterances) == {
        "neu": 4,
        "ang": 1,
        "hap": 2,
        "sad": 3,
    }
    assert listing.excluded == {"label fru": 1, "label xxx": 1, "not improvised": 4}
    assert listing.skipped == []


def test_selection_scripted_and_all(tree):
    scripted = load_iemocap(tree, selection="scripted")
    assert sorted(u.utt_id for u in scripted.utterances) == [
        "Ses01F_script01_1_F000",
        "Ses01F_script01_1_M000",
        "Ses05M_script01_1b_F000",
        "Ses05M_script01_1b_M000",
    ]
    everything = load_iemocap(tree, selection="all")
    assert len(everything.utterances) == 14
    assert {u.speaker for u in everything.utterances if u.session == "Ses05"} == {
        "Ses05_F",
        "Ses05_M",
    }


def test_custom_label_map_and_sessions(tree):
    listing = load_iemocap(tree, label_map={"neu": "neutral", "fru": "frustrated"}, sessions=(1,))
    assert sorted((u.utt_id, u.label) for u in listing.utterances) == [
        ("Ses01F_impro01_F000", "neutral"),
        ("Ses01F_impro01_M001", "frustrated"),
    ]


def test_speaker_of():
    assert speaker_of("Ses05M_script01_1b_F012") == "Ses05_F"
    assert speaker_of("Ses01F_impro01_M000") == "Ses01_M"
    with pytest.raises(ValueError):
        speaker_of("Ses01F_impro01")


def test_missing_wav_and_malformed_line_listed_together(tmp_path):
    root = tmp_path / "iemocap"
    label_file = write_dialog(root, 1, "Ses01F_impro01", [("F000", "neu"), ("M000", "sad")])
    (root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M000.wav").unlink()
    with open(label_file, "a") as f:
        f.write("[7.0000 - oops]\tSes01F_impro01_F009\tneu\t[2, 2, 2]\n")
        # a well-formed line whose id is neither impro nor script (a hand-edited tree)
        f.write("[8.0000 - 9.0000]\tSes01F_Impro01_F010\tneu\t[2, 2, 2]\n")
    with pytest.raises(SerjaxError) as err:
        load_iemocap(root, sessions=(1,))
    message = str(err.value)
    assert "3 problem(s)" in message
    assert "Ses01F_impro01_M000.wav" in message
    assert f"{label_file}:" in message and "malformed label line" in message
    assert re.search(
        re.escape(str(label_file)) + r":\d+: utterance id 'Ses01F_Impro01_F010' is not", message
    )
    listing = load_iemocap(root, sessions=(1,), on_bad_file="skip")
    assert [u.utt_id for u in listing.utterances] == ["Ses01F_impro01_F000"]
    assert len(listing.skipped) == 3


def test_missing_root_and_session_are_clear(tmp_path):
    with pytest.raises(SerjaxError, match="is not a directory"):
        load_iemocap(tmp_path / "nowhere")
    root = tmp_path / "iemocap"
    write_dialog(root, 1, "Ses01F_impro01", [("F000", "neu")])
    with pytest.raises(SerjaxError, match="session 2 has no dialog/EmoEvaluation"):
        load_iemocap(root, sessions=(1, 2))
    with pytest.raises(SerjaxError, match="data.selection"):
        load_iemocap(root, selection="improv")


def test_paper_count_check():
    def utts(counts, session="Ses01"):
        return [
            Utterance(f"u{label}{i}", "p", label, "s", session)
            for label, n in counts.items()
            for i in range(n)
        ]

    good = utts({"ang": 289, "sad": 608, "hap": 947, "neu": 1099})
    assert "match" in check_paper_counts(good, "improvised")[0]
    bad = utts({"ang": 290, "sad": 608, "hap": 947, "neu": 1099})
    note = check_paper_counts(bad, "improvised")[0]
    assert "differ" in note and "2944" in note
