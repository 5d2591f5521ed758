"""Emotion in prosody: each class's profile of prosodic and voice-quality parameters, and
one utterance's parameters drawn around its class's profile for its speaker.

Emotion shows the way the SER literature describes it:

* anger: high F0 level and range, fast, loud, flat tilt (bright), abrupt contours;
* happiness (`hap` and `exc`): high F0, the widest range, rising phrase ends, fairly
  fast, moderately loud;
* sadness: low F0, narrow range, falling, slow, quiet, steep tilt (dull), long
  pauses, more jitter and breathiness;
* neutral: middle values, flat contour.

Every utterance draws its own parameters around its class's profile
(`within_class_spread`), and a fraction (`ambiguity`) is blended towards another class,
as real annotations are. So the classes overlap: a simple log-Mel-statistics baseline is
well above chance and well below perfect.
"""

from __future__ import annotations

import math

import numpy as np

from serjax.corpora.synthetic.plan import _Speaker

# Prosodic profile per emotion. Each entry: the class mean of one parameter; the
# per-utterance spread is _SPREAD. Units: f0 in semitones re the speaker's baseline,
# rate in syllables/s, level in dB, tilt as log2 of the glottal corner frequency (Hz),
# pause in seconds between phrases, formant as a log scale factor.
_PARAMS = (
    "f0",
    "range",
    "slope",
    "final",
    "rate",
    "level",
    "tilt",
    "jitter",
    "shimmer",
    "breath",
    "pause",
    "abrupt",
    "formant",
    "cons_db",
)
# fmt: off
_PROFILE = {
    #         f0  range  slope  final  rate  level             tilt
    #       jitter  shimmer  breath  pause  abrupt  formant  cons_db
    "neu": ( 0.0,   3.0,  -1.5,  -1.0,  4.3,   0.0, math.log2(1500),
             0.010,    0.06,   0.08,  0.32,   0.20,    0.00,   -15.0),
    "ang": ( 3.0,   5.5,  -2.5,  -2.0,  5.1,   6.0, math.log2(4500),
             0.014,    0.09,   0.05,  0.22,   0.70,    0.05,   -10.0),
    "hap": ( 2.6,   6.5,   0.5,   2.0,  4.9,   3.0, math.log2(2600),
             0.010,    0.07,   0.06,  0.24,   0.35,   0.035,   -13.0),
    "sad": (-1.8,   1.6,  -3.0,  -1.5,  3.4,  -4.5,  math.log2(600),
             0.020,    0.10,   0.14,  0.55,   0.10,   -0.03,   -22.0),
    "fru": ( 1.2,   3.5,  -2.0,  -1.5,  4.6,   3.0, math.log2(2800),
             0.013,    0.08,   0.08,  0.28,   0.45,    0.02,   -13.0),
    "sur": ( 4.0,   7.0,   1.5,   3.0,  4.4,   2.0, math.log2(2200),
             0.010,    0.07,   0.07,  0.30,   0.40,    0.03,   -14.0),
    "fea": ( 3.5,   3.0,   0.0,   1.0,  5.0,  -1.0, math.log2(1500),
             0.025,    0.12,   0.15,  0.30,   0.30,    0.02,   -15.0),
    "dis": (-0.8,   2.5,  -2.5,  -2.0,  3.7,   0.0, math.log2(1100),
             0.015,    0.08,   0.12,  0.40,   0.30,   -0.01,   -15.0),
}
# fmt: on
_PROFILE["exc"] = _PROFILE["hap"]
_SPREAD = (1.6, 1.2, 1.3, 1.3, 0.5, 2.5, 0.45, 0.004, 0.025, 0.04, 0.10, 0.15, 0.02, 2.5)


def _utterance_params(label: str, spk: _Speaker, cfg, rng: np.random.Generator) -> dict:
    """One utterance's parameters (by `_PARAMS` name): its class's profile (a random blend
    for `xxx`/`oth`, sometimes blended towards another class), scaled from neutral by the
    emotion strength and the speaker's expressiveness, jittered, then fitted to the speaker
    and clipped to plausible ranges."""
    neutral = np.array(_PROFILE["neu"])
    if label in _PROFILE:
        own = np.array(_PROFILE[label])
    else:  # xxx / oth: annotators disagreed; prosody of a random blend of two classes
        keys = ("neu", "ang", "hap", "sad", "fru", "sur")
        a, b = rng.choice(len(keys), size=2, replace=False)
        w = rng.uniform(0.2, 0.8)
        own = (1 - w) * np.array(_PROFILE[keys[a]]) + w * np.array(_PROFILE[keys[b]])
    if rng.random() < float(cfg.ambiguity):
        others = [k for k in ("neu", "ang", "hap", "sad") if _PROFILE[k] != _PROFILE.get(label)]
        other = np.array(_PROFILE[others[int(rng.integers(len(others)))]])
        w = rng.uniform(0.25, 0.7)
        own = (1 - w) * own + w * other
    strength = float(cfg.emotion_strength) * spk.expressiveness
    values = neutral + strength * (own - neutral)
    values = values + float(cfg.within_class_spread) * np.array(_SPREAD) * rng.standard_normal(
        len(_SPREAD)
    )
    p = dict(zip(_PARAMS, values.tolist()))
    p["range"] = max(0.3, p["range"]) * spk.range_scale
    p["rate"] = float(np.clip(p["rate"] * spk.rate_scale, 2.0, 8.0))
    p["tilt"] = float(np.clip(p["tilt"] + spk.tilt_offset, math.log2(250), math.log2(7500)))
    p["jitter"] = float(np.clip(p["jitter"], 0.002, 0.05))
    p["shimmer"] = float(np.clip(p["shimmer"], 0.01, 0.3))
    p["breath"] = float(np.clip(p["breath"] + spk.breath - 0.06, 0.0, 0.6))
    p["pause"] = float(np.clip(p["pause"], 0.08, 1.5))
    p["abrupt"] = float(np.clip(p["abrupt"], 0.0, 1.0))
    return p
