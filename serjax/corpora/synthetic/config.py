"""The generator's settings: the fixed facts of the corpus it writes, its config (every knob,
with defaults), the config's check, and the hash that names a generated corpus's folder.

`_cfg_dict` casts each field to its default's type, so configs that mean the same thing
(a command line's `(10, 35)` and the default `(10.0, 35.0)`) hash, and so cache, alike.
"""

from __future__ import annotations

import hashlib
import json

import ml_collections

from serjax.errors import SerjaxError

# Bump when the generator's output changes for the same config: it is part of the
# cache hash, so `ensure` regenerates instead of reusing a stale corpus.
GENERATOR_VERSION = 1
SAMPLE_RATE = 16_000
NUM_SESSIONS = 5
MARKER = "SYNTHETIC.json"


def default_config() -> ml_collections.ConfigDict:
    """Every knob of the generator (embedded by the lead as `config.data.synthetic`)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Improvised utterances carrying one of the four paper classes (2943 in the paper).
    c.num_utterances = 2943
    # Share of the paper's happiness class written as `exc` (663 / 947 on real IEMOCAP).
    c.exc_fraction = 0.7
    # Extra improvised turns with labels the paper drops (fru, xxx, sur, fea, dis, oth),
    # as a fraction of num_utterances.
    c.distractor_fraction = 0.35
    # Scripted turns (all labels; the improvised-only subset drops them), same unit.
    c.scripted_fraction = 0.35
    # Durations: log-normal truncated (redrawn) to [min, max], its location set so
    # that the truncated distribution's mean is mean_duration_s.
    c.mean_duration_s = 4.5
    c.duration_log_std = 0.55
    c.min_duration_s = 1.0
    c.max_duration_s = 12.0
    # Background noise level below the speaker's neutral speech level, in dB.
    c.snr_db_range = (10.0, 35.0)
    # Difficulty knobs. emotion_strength scales the class differences (0: none);
    # within_class_spread scales the per-utterance randomness; ambiguity is the
    # fraction of turns whose prosody is blended part-way towards another class;
    # speaker_variability scales the differences between the ten voices.
    c.emotion_strength = 1.0
    c.within_class_spread = 1.25
    c.ambiguity = 0.2
    c.speaker_variability = 1.0
    # Each dialog gets at least this many turns (so both speakers appear); small
    # corpora use fewer dialogs.
    c.min_turns_per_dialog = 4
    # Quirks of the real release that a loader must tolerate: per-annotator
    # Categorical/ and Attribute/ files, and macOS `._*` resource forks.
    c.annotation_subfolders = True
    c.apple_double_files = True
    return c


def _check_config(cfg) -> None:
    def fail(msg):
        raise SerjaxError(f"config.data.synthetic: {msg}")

    if int(cfg.seed) < 0:
        fail(f"seed must be >= 0, got {cfg.seed}")
    if int(cfg.num_utterances) < 6:
        # Below 6 the largest-remainder split leaves ang empty (5 -> 0/1/2/2).
        fail(
            "num_utterances must be at least 6 (so each class, and both hap and exc, "
            f"get an utterance), got {cfg.num_utterances}"
        )
    if not 0.0 <= float(cfg.exc_fraction) <= 1.0:
        fail(f"exc_fraction must be in [0, 1], got {cfg.exc_fraction}")
    for name in (
        "distractor_fraction",
        "scripted_fraction",
        "emotion_strength",
        "within_class_spread",
        "speaker_variability",
        "duration_log_std",
    ):
        if float(cfg[name]) < 0:
            fail(f"{name} must be >= 0, got {cfg[name]}")
    if not 0.0 <= float(cfg.ambiguity) <= 1.0:
        fail(f"ambiguity must be in [0, 1], got {cfg.ambiguity}")
    lo, hi, mean = float(cfg.min_duration_s), float(cfg.max_duration_s), float(cfg.mean_duration_s)
    if not 0.3 <= lo < hi:
        fail(f"need 0.3 <= min_duration_s < max_duration_s, got {lo} and {hi}")
    if not lo <= mean <= hi:
        fail(f"mean_duration_s {mean} is outside [min_duration_s, max_duration_s]")
    if len(tuple(cfg.snr_db_range)) != 2 or cfg.snr_db_range[0] > cfg.snr_db_range[1]:
        fail(f"snr_db_range must be (low, high), got {cfg.snr_db_range}")
    if int(cfg.min_turns_per_dialog) < 2:
        fail(f"min_turns_per_dialog must be at least 2, got {cfg.min_turns_per_dialog}")


def _cfg_dict(cfg) -> dict:
    """The config as plain JSON data, each known field cast to its default's type
    (so `snr_db_range=(10, 35)` from a command line hashes like `(10.0, 35.0)`)."""
    d = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)
    defaults = default_config().to_dict()
    for key, default in defaults.items():
        if key not in d:
            continue
        if isinstance(default, bool):
            d[key] = bool(d[key])
        elif isinstance(default, (int, float)):
            d[key] = type(default)(d[key])
        elif isinstance(default, tuple):
            d[key] = [type(x)(v) for x, v in zip(default, d[key])] + list(d[key])[len(default) :]
    return json.loads(json.dumps(d, sort_keys=True, default=list))


def config_hash(cfg) -> str:
    """Short hash of the config and the generator version (names the cache folder)."""
    payload = json.dumps({"version": GENERATOR_VERSION, "config": _cfg_dict(cfg)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]
