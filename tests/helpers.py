"""Small builders shared by the tests: wav files and IEMOCAP-layout fixture trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def write_wav(path, seconds=1.0, rate=16_000, channels=1, subtype="PCM_16", seed=0, freq=220.0):
    """A short tone plus noise, written with soundfile; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    mono = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(n)
    data = np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1)
    sf.write(path, data.astype(np.float32), rate, subtype=subtype)
    return path


def label_block(utt, label, start=1.0, end=2.5):
    """One turn of an EmoEvaluation file, with annotator lines as in the real release."""
    return (
        f"[{start:.4f} - {end:.4f}]\t{utt}\t{label}\t[2.5000, 3.0000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\n"
        "C-E3:\tAnger; Frustration;\t(annoyed)\n"
        "A-E3:\tval 3; act 2; dom  2;\t()\n\n"
    )


def write_dialog(root, session, dialog, turns, with_wavs=True):
    """turns: [(utt_suffix, label)]; writes the EmoEvaluation file and the wavs."""
    root = Path(root)
    eval_dir = root / f"Session{session}" / "dialog" / "EmoEvaluation"
    eval_dir.mkdir(parents=True, exist_ok=True)
    text = HEADER + "".join(
        label_block(f"{dialog}_{suffix}", label, 1.0 + 2 * i, 2.5 + 2 * i)
        for i, (suffix, label) in enumerate(turns)
    )
    (eval_dir / f"{dialog}.txt").write_text(text)
    if with_wavs:
        for i, (suffix, _) in enumerate(turns):
            write_wav(
                root
                / f"Session{session}"
                / "sentences"
                / "wav"
                / dialog
                / f"{dialog}_{suffix}.wav",
                seconds=0.5,
                seed=i,
            )
    return eval_dir / f"{dialog}.txt"


def quirky_iemocap_tree(root):
    """A tiny tree holding each quirk of the real release (see test_iemocap.py)."""
    root = Path(root)
    write_dialog(
        root,
        1,
        "Ses01F_impro01",
        [("F000", "neu"), ("M000", "ang"), ("F001", "exc"), ("M001", "fru"), ("F002", "xxx")],
    )
    write_dialog(root, 1, "Ses01F_script01_1", [("F000", "sad"), ("M000", "hap")])
    write_dialog(root, 3, "Ses03M_impro05a", [("F000", "sad"), ("M000", "hap")])
    write_dialog(root, 3, "Ses03M_impro05b", [("M000", "neu")])
    write_dialog(root, 5, "Ses05M_script01_1b", [("F000", "ang"), ("M000", "neu")])
    for n in (2, 4):
        write_dialog(root, n, f"Ses0{n}F_impro02", [("F000", "neu"), ("M000", "sad")])
    eval_dir = root / "Session1" / "dialog" / "EmoEvaluation"
    # Per-annotator folders and macOS resource forks hold label-like lines that are not labels.
    for sub in ("Categorical", "Attribute", "Self-evaluation"):
        (eval_dir / sub).mkdir()
        (eval_dir / sub / "Ses01F_impro01_e2_cat.txt").write_text(
            "[1.0000 - 2.5000]\tSes01F_impro01_F000\tang\t[1.0, 1.0, 1.0]\n"
        )
    (eval_dir / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05\x16\x07 not text")
    return root
