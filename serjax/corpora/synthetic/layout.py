"""Writing the IEMOCAP-like tree: label files (with annotator lines), per-annotator files,
macOS resource forks, the wav folders, and the marker that says the tree is complete.

    Session{n}/dialog/EmoEvaluation/<dialog>.txt            label files
    Session{n}/dialog/EmoEvaluation/{Categorical,Attribute}/ per-annotator files (not labels)
    Session{n}/sentences/wav/<dialog>/<utt>.wav             16 kHz mono PCM_16
    SYNTHETIC.json                                          settings and counts

The audio itself is rendered by `serjax.corpora.synthetic.acoustics`; this module only
says where each wav goes.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np

from serjax.corpora.synthetic.config import (
    GENERATOR_VERSION,
    MARKER,
    NUM_SESSIONS,
    SAMPLE_RATE,
    _cfg_dict,
    config_hash,
)
from serjax.corpora.synthetic.plan import _rng, _Speaker, _Turn, paper_class_counts

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"

# Category words used on the annotator lines, as in the release.
_CATEGORY = {
    "neu": "Neutral",
    "ang": "Anger",
    "sad": "Sadness",
    "hap": "Happiness",
    "exc": "Excited",
    "fru": "Frustration",
    "sur": "Surprise",
    "fea": "Fear",
    "dis": "Disgust",
    "oth": "Other",
}
# Typical annotator valence / activation / dominance (1..5) per label.
_VAD = {
    "neu": (3.0, 2.3, 2.6),
    "ang": (1.8, 3.8, 3.7),
    "sad": (2.0, 2.0, 2.1),
    "hap": (4.0, 3.1, 3.0),
    "exc": (3.9, 3.7, 3.3),
    "fru": (2.0, 3.2, 3.2),
    "sur": (3.3, 3.6, 2.8),
    "fea": (2.1, 3.3, 2.2),
    "dis": (2.0, 2.9, 3.1),
    "oth": (3.0, 2.8, 2.8),
    "xxx": (2.7, 2.9, 2.9),
}


def _annotations(turn: _Turn, rng: np.random.Generator):
    """Annotator category lines, attribute lines and the mean [V, A, D]."""
    label = turn.label
    evaluators = ["E1", "E2", "E3", "E4"]
    rng.shuffle(evaluators)
    evaluators = sorted(evaluators[: int(rng.integers(3, 5)) - 1])  # 2 or 3 evaluators
    self_eval = turn.sex + "1"
    categories = list(_CATEGORY.values())
    cat_lines = []
    for who in evaluators + [self_eval]:
        if label == "xxx":
            first = categories[int(rng.integers(len(categories)))]
        elif who == self_eval and rng.random() < 0.4:
            first = categories[int(rng.integers(len(categories)))]
        else:
            first = _CATEGORY[label]
        words = [first]
        if rng.random() < 0.2:
            second = categories[int(rng.integers(len(categories)))]
            if second != first:
                words.append(second)
        note = (
            "()"
            if rng.random() < 0.8
            else f"({rng.choice(['annoyed', 'curious', 'bored', 'amused', 'tense'])})"
        )
        cat_lines.append((who, "".join(f"{w}; " for w in words).rstrip(), note))
    mean = np.array(_VAD.get(label, _VAD["oth"]))
    attr_lines, ratings = [], []
    for who in evaluators + [self_eval]:
        v, a, d = (int(x) for x in np.clip(np.round(mean + rng.normal(0, 0.6, 3)), 1, 5))
        attr_lines.append((who, v, a, d))
        if who != self_eval:
            ratings.append((v, a, d))
    vad = np.mean(np.array(ratings, dtype=float), axis=0)
    return cat_lines, attr_lines, vad


def _write_label_files(
    eval_dir: pathlib.Path, dialog: str, turns: list[_Turn], seed: int, subfolders: bool
) -> None:
    rng = _rng(seed, 5, *(ord(c) for c in dialog))
    blocks = []
    per_eval_cat: dict[str, list[str]] = {}
    per_eval_atr: dict[str, list[str]] = {}
    for turn in turns:
        end = turn.start + turn.num_samples / SAMPLE_RATE
        cat_lines, attr_lines, vad = _annotations(turn, rng)
        lines = [
            f"[{turn.start:.4f} - {end:.4f}]\t{turn.utt_id}\t{turn.label}\t"
            f"[{vad[0]:.4f}, {vad[1]:.4f}, {vad[2]:.4f}]"
        ]
        lines += [f"C-{who}:\t{words}\t{note}" for who, words, note in cat_lines]
        lines += [f"A-{who}:\tval {v}; act {a}; dom  {d};\t()" for who, v, a, d in attr_lines]
        blocks.append("\n".join(lines) + "\n\n")
        for who, words, _ in cat_lines:
            if who.startswith("E"):
                per_eval_cat.setdefault(who, []).append(f"{turn.utt_id} :{words} ()")
        for who, v, a, d in attr_lines:
            if who.startswith("E"):
                per_eval_atr.setdefault(who, []).append(
                    f"{turn.utt_id} :act {a}; val {v}; dom  {d};  ()"
                )
    (eval_dir / f"{dialog}.txt").write_text(HEADER + "".join(blocks))
    if subfolders:
        for sub, table, suffix in (
            ("Categorical", per_eval_cat, "cat"),
            ("Attribute", per_eval_atr, "atr"),
        ):
            folder = eval_dir / sub
            folder.mkdir(exist_ok=True)
            for who in sorted(table):
                (folder / f"{dialog}_{who.lower()}_{suffix}.txt").write_text(
                    "\n".join(table[who]) + "\n"
                )


def _apple_double(name: str) -> bytes:
    """A stand-in macOS AppleDouble resource fork (binary, not text)."""
    head = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02"
    return head + hashlib.sha256(name.encode()).digest() + b"\x00" * 32 + b"\xff\xfe\x80"


def _eval_dir(tree: pathlib.Path, session: int) -> pathlib.Path:
    return tree / f"Session{session}" / "dialog" / "EmoEvaluation"


def _wav_path(tree: pathlib.Path, turn: _Turn) -> pathlib.Path:
    """Where `turn`'s audio goes: Session{n}/sentences/wav/<dialog>/<utt>.wav."""
    return (
        tree / f"Session{turn.session}" / "sentences" / "wav" / turn.dialog / f"{turn.utt_id}.wav"
    )


def _write_text_files(tree: pathlib.Path, turns: list[_Turn], cfg) -> dict:
    """Every dialog's label files and empty wav folder, and (when `apple_double_files`) a
    resource fork beside each session's first label file; returns the turns per
    (session, dialog), in plan order."""
    dialogs: dict[tuple[int, str], list[_Turn]] = {}
    for turn in turns:
        dialogs.setdefault((turn.session, turn.dialog), []).append(turn)
    for (session, dialog), dturns in dialogs.items():
        eval_dir = _eval_dir(tree, session)
        eval_dir.mkdir(parents=True, exist_ok=True)
        _write_label_files(eval_dir, dialog, dturns, cfg.seed, bool(cfg.annotation_subfolders))
        (tree / f"Session{session}" / "sentences" / "wav" / dialog).mkdir(
            parents=True, exist_ok=True
        )
    if cfg.apple_double_files:
        for session in range(1, NUM_SESSIONS + 1):
            first = min(d for s, d in dialogs if s == session)
            (_eval_dir(tree, session) / f"._{first}.txt").write_bytes(_apple_double(first))
    return dialogs


def _summary(cfg, turns: list[_Turn], counts: dict, num_dialogs: int, speakers: dict) -> dict:
    """What the marker holds: the generator, the config and its hash, sizes, durations,
    label counts and the ten voices."""
    durations = [turn.num_samples / SAMPLE_RATE for turn in turns]
    total_samples = sum(turn.num_samples for turn in turns)
    overall: dict[str, int] = {}
    for part in counts.values():
        for label, k in part.items():
            overall[label] = overall.get(label, 0) + k
    return {
        "generator": "serjax.corpora.synthetic",
        "generator_version": GENERATOR_VERSION,
        "config_hash": config_hash(cfg),
        "config": _cfg_dict(cfg),
        "sample_rate": SAMPLE_RATE,
        "num_files": len(turns),
        "num_dialogs": num_dialogs,
        "total_duration_s": round(total_samples / SAMPLE_RATE, 4),
        "duration_s": {
            "min": round(min(durations), 4),
            "mean": round(float(np.mean(durations)), 4),
            "max": round(max(durations), 4),
        },
        "paper_class_counts": paper_class_counts(cfg.num_utterances),
        "counts": dict(sorted(overall.items())),
        "counts_improvised": dict(sorted(counts["improvised"].items())),
        "counts_scripted": dict(sorted(counts["scripted"].items())),
        "speakers": {
            f"Ses0{s}_{x}": {
                "f0_hz": round(v.f0, 1),
                "formant_scale": round(v.formant_scale, 3),
                "level_db": round(v.level_db, 2),
            }
            for (s, x), v in sorted(speakers.items())
        },
    }


def _write_marker(
    tree: pathlib.Path,
    cfg,
    turns: list[_Turn],
    counts: dict,
    num_dialogs: int,
    speakers: dict[tuple[int, str], _Speaker],
) -> None:
    """Write SYNTHETIC.json, last: its presence is what says the tree is complete."""
    summary = _summary(cfg, turns, counts, num_dialogs, speakers)
    (tree / MARKER).write_text(json.dumps(summary, indent=2) + "\n")


def _is_complete(path: pathlib.Path) -> bool:
    return (path / MARKER).is_file()
