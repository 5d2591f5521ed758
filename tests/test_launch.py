"""The command line as a user runs it (subprocesses: slow-ish, so only a few)."""

import json
import subprocess
import sys
from pathlib import Path

from helpers import quirky_iemocap_tree

LAUNCH = Path(__file__).resolve().parent.parent / "launch.py"


def launch(*args, cwd=None):
    return subprocess.run(
        [sys.executable, str(LAUNCH), *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_bad_override_fails_with_one_clear_line(tmp_path):
    result = launch("--mode=inspect", "--config.data.corpuss=iemocap", f"--workdir={tmp_path}")
    assert result.returncode == 2
    assert "bad config override --config.data.corpuss=iemocap" in result.stderr
    assert 'Did you mean "corpus"' in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "corpus.json").exists()


def test_bad_override_of_an_explicit_config_file_is_one_line_too(tmp_path):
    result = launch(
        "--mode=describe",
        "--config=configs/table5.py",
        "--config.train.epochs=2",  # valid, and holds the typo's text: not the one named
        "--config.train.epoch=3",
        f"--workdir={tmp_path}",
        cwd=LAUNCH.parent,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("serjax: error: bad config override --config.train.epoch=3")
    assert 'Did you mean "epochs"' in result.stderr


def test_unloadable_config_file_fails_with_one_clear_line(tmp_path):
    missing = launch(
        "--mode=describe", "--config=configs/defualt.py", f"--workdir={tmp_path / 'w'}"
    )
    assert missing.returncode == 2
    assert missing.stderr.strip() == "serjax: error: --config configs/defualt.py: no such file"
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config(:\n")
    result = launch("--mode=describe", f"--config={broken}", f"--workdir={tmp_path / 'w'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        "the config file does not load: SyntaxError" in result.stderr
        and "broken.py, line 1" in result.stderr
    )
    assert not (tmp_path / "w").exists()


def test_inspect_reports_exact_counts_on_an_iemocap_tree(tmp_path):
    root = quirky_iemocap_tree(tmp_path / "IEMOCAP_full_release")
    workdir = tmp_path / "work"
    result = launch(
        "--mode=inspect",
        "--config.data.corpus=iemocap",
        f"--config.data.root={root}",
        f"--workdir={workdir}",
    )
    assert result.returncode == 0, result.stderr
    corpus = json.loads((workdir / "corpus.json").read_text())
    assert corpus["counts"] == {"ang": 1, "sad": 3, "hap": 2, "neu": 4}
    assert corpus["total"] == 10
    assert corpus["sessions"] == {"Ses01": 3, "Ses02": 2, "Ses03": 3, "Ses04": 2}
    assert corpus["speakers"]["Ses01_M"] == 1 and len(corpus["speakers"]) == 8
    assert corpus["durations"]["min"] == corpus["durations"]["max"] == 0.5
    assert corpus["excluded"] == {"label fru": 1, "label xxx": 1, "not improvised": 4}
    assert "corpus iemocap: 10 utterances" in result.stdout

    missing = launch(
        "--mode=inspect",
        "--config.data.corpus=iemocap",
        f"--config.data.root={tmp_path / 'nowhere'}",
        f"--workdir={workdir}",
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("serjax: error: IEMOCAP root") and "nowhere" in missing.stderr


def test_describe_counts_the_default_model(tmp_path):
    result = launch(
        "--mode=describe", "--config=configs/default.py", f"--workdir={tmp_path}", cwd=LAUNCH.parent
    )
    assert result.returncode == 0, result.stderr
    model = json.loads((tmp_path / "model.json").read_text())
    widths = [4 * b for b in (8, 16, 32, 32, 64, 64)]
    cins = [1] + widths[:-1]
    expected = sum(9 * ci * co + co + 2 * co for ci, co in zip(cins, widths))
    expected += widths[-1] ** 2 + widths[-1] + 4 * widths[-1] + 4 + 14
    assert model["params"] == expected
    assert f"trainable parameters: {expected}" in result.stdout
