"""The synthetic IEMOCAP generator: determinism, layout, counts, durations, caching."""

import collections
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serjax.corpora import synthetic
from serjax.errors import SerjaxError

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
LABEL_LINE = re.compile(
    r"^\[(?P<start>\d+\.\d{4}) - (?P<end>\d+\.\d{4})\]\t"
    r"(?P<utt>(?P<dialog>Ses0(?P<session>[1-5])[FM]_(?P<kind>impro|script)[0-9_]+[ab]?)_"
    r"(?P<sex>[FM])\d{3})\t(?P<label>[a-z]{3})\t\[\d\.\d{4}, \d\.\d{4}, \d\.\d{4}\]$"
)
ANNOTATOR_LINE = re.compile(
    r"^(C-(E[1-4]|[FM]1):\t([A-Z][a-z]+; )*[A-Z][a-z]+;\t\([a-z]*\)"
    r"|A-(E[1-4]|[FM]1):\tval [1-5]; act [1-5]; dom  [1-5];\t\(\))$"
)
DIALOG_NAME = re.compile(r"^Ses0[1-5][FM]_(impro0[1-8][ab]?|script0[1-3]_[1-3]b?)$")
PAPER_MAP = {"ang": "ang", "sad": "sad", "neu": "neu", "hap": "hap", "exc": "hap"}
# 60 split 289:608:947:1099 by largest remainder: quotas 5.892, 12.395, 19.306, 22.406;
# floors 5+12+19+22 = 58; the 2 left go to the largest remainders (.892 ang, .406 neu).
EXPECTED_60 = {"ang": 6, "sad": 12, "hap": 19, "neu": 23}


def small_config(num_utterances=60, seed=0):
    cfg = synthetic.default_config()
    cfg.num_utterances = num_utterances
    cfg.seed = seed
    return cfg


def file_hashes(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    }


def parse_label_files(root):
    """Every turn of every EmoEvaluation/<dialog>.txt, checking the exact file format."""
    turns = []
    for eval_dir in sorted(Path(root).glob("Session*/dialog/EmoEvaluation")):
        for path in sorted(eval_dir.glob("*.txt")):
            if path.name.startswith("._"):
                continue
            text = path.read_text()
            assert text.startswith(HEADER + "\n\n"), path
            assert text.endswith("\n\n"), path
            blocks = text[len(HEADER) + 2 : -2].split("\n\n")
            for block in blocks:
                lines = block.split("\n")
                match = LABEL_LINE.match(lines[0])
                assert match, (path, lines[0])
                assert len(lines) >= 3, (path, block)
                for line in lines[1:]:
                    assert ANNOTATOR_LINE.match(line), (path, line)
                assert match["dialog"] == path.stem
                assert int(match["session"]) == int(eval_dir.parts[-3][len("Session") :])
                turns.append(
                    {
                        "utt": match["utt"],
                        "dialog": match["dialog"],
                        "session": int(match["session"]),
                        "kind": match["kind"],
                        "sex": match["sex"],
                        "label": match["label"],
                        "start": float(match["start"]),
                        "end": float(match["end"]),
                        "wav": eval_dir.parent.parent
                        / "sentences"
                        / "wav"
                        / match["dialog"]
                        / f"{match['utt']}.wav",
                    }
                )
    return turns


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return synthetic.generate(
        tmp_path_factory.mktemp("synthetic") / "corpus", small_config(), progress=False, workers=1
    )


@pytest.fixture(scope="module")
def turns(corpus):
    return parse_label_files(corpus)


def test_same_seed_gives_byte_identical_tree_whatever_the_workers(corpus, tmp_path):
    again = synthetic.generate(tmp_path / "again", small_config(), progress=False, workers=2)
    first, second = file_hashes(corpus), file_hashes(again)
    assert len([k for k in first if k.endswith(".wav")]) == 60 + 21 + 21
    assert first == second


def test_different_seed_gives_different_audio(corpus, tmp_path):
    other = synthetic.generate(tmp_path / "seed1", small_config(seed=1), progress=False)
    wavs = {h for k, h in file_hashes(corpus).items() if k.endswith(".wav")}
    other_wavs = {h for k, h in file_hashes(other).items() if k.endswith(".wav")}
    assert len(other_wavs) == len(wavs) == 102
    assert not wavs & other_wavs
    # The same class counts, though: only the draws change.
    counts = collections.Counter(
        t["label"] for t in parse_label_files(other) if t["kind"] == "impro"
    )
    assert {
        c: sum(n for k, n in counts.items() if PAPER_MAP.get(k) == c) for c in EXPECTED_60
    } == EXPECTED_60


def test_layout_and_label_file_format(corpus, turns):
    assert sorted(p.name for p in corpus.iterdir() if p.is_dir()) == [
        f"Session{n}" for n in range(1, 6)
    ]
    assert len(turns) == 102
    assert len({t["utt"] for t in turns}) == len(turns)
    wavs_on_disk = sorted(corpus.glob("Session*/sentences/wav/*/*.wav"))
    assert sorted(t["wav"] for t in turns) == wavs_on_disk  # no wav without a label, and back
    by_dialog = collections.defaultdict(list)
    for t in turns:
        by_dialog[t["dialog"]].append(t)
        info = sf.info(t["wav"])
        assert (info.samplerate, info.channels, info.subtype, info.format) == (
            16000,
            1,
            "PCM_16",
            "WAV",
        )
        assert abs((t["end"] - t["start"]) - info.frames / 16000) < 2e-4
    for dialog, dturns in by_dialog.items():
        assert DIALOG_NAME.match(dialog), dialog
        assert {t["sex"] for t in dturns} == {"F", "M"}, dialog  # both speakers take turns
        starts = [t["start"] for t in dturns]
        assert starts == sorted(starts) and len(set(starts)) == len(starts)
        assert all(a["end"] <= b["start"] for a, b in zip(dturns, dturns[1:]))
        for sex in "FM":  # per-speaker numbering in time order: F000, F001, ...
            assert [t["utt"][-4:] for t in dturns if t["sex"] == sex] == [
                f"{sex}{i:03d}" for i in range(sum(t["sex"] == sex for t in dturns))
            ]
    assert {"Ses03M_impro05a", "Ses03M_impro05b", "Ses05M_script01_1b"} <= set(by_dialog)
    assert {t["session"] for t in turns if t["kind"] == "impro"} == {1, 2, 3, 4, 5}
    assert {t["session"] for t in turns if t["kind"] == "script"} == {1, 2, 3, 4, 5}
    for n in range(1, 6):
        eval_dir = corpus / f"Session{n}" / "dialog" / "EmoEvaluation"
        for sub, suffix in (("Categorical", "_cat.txt"), ("Attribute", "_atr.txt")):
            files = sorted((eval_dir / sub).iterdir())
            assert files and all(p.name.endswith(suffix) for p in files)
            first = files[0].read_text().splitlines()[0]
            assert re.match(r"^Ses0\d[FM]_\S+_[FM]\d{3} :", first), first
        forks = list(eval_dir.glob("._*.txt"))
        assert len(forks) == 1 and b"\x00" in forks[0].read_bytes()


def test_class_counts_follow_the_paper_proportions(corpus, turns):
    impro = collections.Counter(t["label"] for t in turns if t["kind"] == "impro")
    merged = {c: sum(n for k, n in impro.items() if PAPER_MAP.get(k) == c) for c in EXPECTED_60}
    assert merged == EXPECTED_60
    assert (impro["hap"], impro["exc"]) == (6, 13)  # exc = round(19 * 0.7) = 13
    # 21 distractor turns (round(60 * 0.35)) with labels the paper drops.
    assert sum(n for k, n in impro.items() if k not in PAPER_MAP) == 21
    assert {"fru", "xxx", "sur"} <= set(impro)
    scripted = collections.Counter(t["label"] for t in turns if t["kind"] == "script")
    assert sum(scripted.values()) == 21 and len(scripted) >= 4
    summary = json.loads((corpus / "SYNTHETIC.json").read_text())
    assert summary["counts_improvised"] == dict(sorted(impro.items()))
    assert summary["counts_scripted"] == dict(sorted(scripted.items()))
    assert summary["paper_class_counts"] == EXPECTED_60
    assert summary["config"]["num_utterances"] == 60 and summary["num_files"] == 102


def test_apportion_is_largest_remainder():
    assert synthetic.apportion(2943, synthetic.PAPER_PROPORTIONS) == [289, 608, 947, 1099]
    assert synthetic.apportion(60, synthetic.PAPER_PROPORTIONS) == [6, 12, 19, 23]
    # quotas 9.820, 20.659, 32.178, 37.343: the two seats left go to ang and sad.
    assert synthetic.apportion(100, synthetic.PAPER_PROPORTIONS) == [10, 21, 32, 37]
    assert synthetic.apportion(3, [1, 1, 1, 1]) == [1, 1, 1, 0]  # ties: earlier entry first
    assert synthetic.paper_class_counts(5) == {
        "ang": 0,
        "sad": 1,
        "hap": 2,
        "neu": 2,
    }  # why 6 is the minimum
    assert synthetic.paper_class_counts(6) == {"ang": 1, "sad": 1, "hap": 2, "neu": 2}


def test_durations_spread_around_the_mean(turns):
    seconds = np.array([sf.info(t["wav"]).frames / 16000 for t in turns])
    assert seconds.min() >= 1.0 and seconds.max() <= 12.0
    assert (seconds > 6.0).sum() >= 10 and (seconds < 3.0).sum() >= 10  # both cropped and padded
    assert 3.8 < seconds.mean() < 5.2
    # On the default-size corpus the planned mean is 4.5 s (the truncation is corrected for).
    planned, _ = synthetic._plan(synthetic.default_config())
    sizes = np.array([t.num_samples for t in planned]) / 16000
    assert len(planned) == 2943 + 1030 + 1030
    assert abs(sizes.mean() - 4.5) < 0.1 and sizes.min() >= 1.0 and sizes.max() <= 12.0
    assert 0.15 < (sizes > 6.0).mean() < 0.35


def test_emotion_shows_in_level_and_spectrum(turns):
    """Anger is louder and brighter than neutral, which is louder and brighter than sadness."""
    level, centroid = collections.defaultdict(list), collections.defaultdict(list)
    for t in turns:
        if t["kind"] != "impro" or t["label"] not in PAPER_MAP:
            continue
        x, _ = sf.read(t["wav"])
        frames = x[: len(x) // 400 * 400].reshape(-1, 400)
        energy = (frames**2).mean(axis=1)
        level[PAPER_MAP[t["label"]]].append(10 * np.log10(np.percentile(energy, 90)))
        power = np.abs(np.fft.rfft(frames[energy > np.percentile(energy, 50)], axis=1)) ** 2
        freqs = np.fft.rfftfreq(400, 1 / 16000)
        centroid[PAPER_MAP[t["label"]]].append((power @ freqs).sum() / power.sum())
    mean_level = {c: np.mean(v) for c, v in level.items()}
    mean_centroid = {c: np.mean(v) for c, v in centroid.items()}
    assert mean_level["ang"] > mean_level["neu"] > mean_level["sad"]
    assert mean_level["ang"] - mean_level["sad"] > 4.0
    assert mean_level["hap"] > mean_level["neu"]
    assert mean_centroid["ang"] > mean_centroid["neu"] > mean_centroid["sad"]


def test_ensure_generates_once_and_reuses(tmp_path):
    cfg = small_config(num_utterances=8)
    cfg.distractor_fraction, cfg.scripted_fraction = 0.25, 0.25
    path = synthetic.ensure(tmp_path, cfg, progress=False)
    assert path == tmp_path / f"synthetic-{synthetic.config_hash(cfg)}"
    marker, wav = path / "SYNTHETIC.json", next(path.glob("Session*/sentences/wav/*/*.wav"))
    stamps = (marker.stat().st_mtime_ns, wav.stat().st_mtime_ns)
    assert synthetic.ensure(tmp_path, cfg, progress=False) == path
    assert (marker.stat().st_mtime_ns, wav.stat().st_mtime_ns) == stamps
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    cfg.seed = 1
    assert synthetic.ensure(tmp_path, cfg, progress=False) != path
    # A command-line tuple of ints names the same corpus as the float default.
    cfg.seed, cfg.snr_db_range = 0, (10, 35)
    assert synthetic.ensure(tmp_path, cfg, progress=False) == path
    with pytest.raises(SerjaxError, match="already exists"):
        synthetic.generate(path, cfg, progress=False)


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    cfg = small_config(num_utterances=8)
    calls = []

    def failing_render(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_render(*args)

    real_render = synthetic.render
    monkeypatch.setattr(synthetic, "render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        synthetic.ensure(tmp_path, cfg, progress=False, workers=1)
    assert len(calls) == 5
    assert list(tmp_path.iterdir()) == []


def test_bad_config_is_a_clear_error(tmp_path):
    cfg = small_config()
    cfg.min_duration_s, cfg.max_duration_s = 8.0, 6.0
    with pytest.raises(SerjaxError, match="min_duration_s"):
        synthetic.generate(tmp_path / "x", cfg, progress=False)
    cfg = small_config(num_utterances=5)
    with pytest.raises(SerjaxError, match="num_utterances"):
        synthetic.ensure(tmp_path, cfg, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_iemocap_loader_reads_the_tree(corpus, turns):
    from serjax.corpora import iemocap

    listing = iemocap.load_iemocap(corpus, selection="improvised", label_map=PAPER_MAP)
    assert collections.Counter(u.label for u in listing.utterances) == EXPECTED_60
    assert collections.Counter(u.raw_label for u in listing.utterances)["exc"] == 13
    assert listing.skipped == []
    assert len({u.speaker for u in listing.utterances}) == 10
    expected = {t["utt"]: t for t in turns}
    for u in listing.utterances:
        t = expected[u.utt_id]
        assert (Path(u.path), u.session, u.speaker) == (
            t["wav"],
            f"Ses0{t['session']}",
            f"Ses0{t['session']}_{t['sex']}",
        )
    everything = iemocap.load_iemocap(corpus, selection="all", label_map=PAPER_MAP)
    scripted_4 = sum(t["label"] in PAPER_MAP for t in turns if t["kind"] == "script")
    assert len(everything.utterances) == 60 + scripted_4
