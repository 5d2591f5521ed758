"""Source-filter synthesis of one turn's audio from its class's prosody and its speaker.

Each utterance is a source-filter "speech" signal: a glottal pulse train at a
time-varying F0 (with jitter and shimmer) through a glottal low-pass, mixed with
aspiration noise (breathiness), through a one-pole tilt filter whose corner sets
how much high-frequency energy is left, then four formant resonators per vowel
(scaled by the speaker's vocal-tract length); vowels alternate with band-passed
noise consonants (syllables), grouped into phrases separated by pauses; then lip
radiation, a per-session microphone colouring and pink-to-brown background noise
at a random SNR (measured against the speaker's neutral level, so quiet speech
ends up noisier).

`_synthesise` runs these steps in order on one generator; each step takes its draws in
the order the one-piece original took them, so the audio is unchanged by the split.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.signal import lfilter

from serjax.corpora.synthetic.config import NUM_SESSIONS, SAMPLE_RATE
from serjax.corpora.synthetic.plan import _rng, _Speaker, _Turn
from serjax.corpora.synthetic.prosody import _utterance_params

# Formants (Hz) of a few vowels for an adult male vocal tract; scaled per speaker.
_VOWELS = np.array(
    [
        [730, 1090, 2440, 3400],  # a
        [270, 2290, 3010, 3700],  # i
        [300, 870, 2240, 3300],  # u
        [530, 1840, 2480, 3500],  # e
        [570, 840, 2410, 3300],  # o
        [660, 1720, 2410, 3400],  # ae
        [500, 1500, 2500, 3500],  # schwa
    ],
    dtype=np.float64,
)
_BANDWIDTHS = np.array([80.0, 100.0, 150.0, 220.0])

_GLOTTAL_CORNER_HZ = 150.0
_ASPIRATION_CORNER_HZ = 2000.0
_ASPIRATION_GAIN = 0.5


def _resonator_cascade(freqs, bands):
    """Coefficients of cascaded 2-pole resonators, each with unit gain at DC."""
    a = np.array([1.0])
    gain = 1.0
    for f, bw in zip(freqs, bands):
        r = math.exp(-math.pi * bw / SAMPLE_RATE)
        c1, c2 = -2 * r * math.cos(2 * math.pi * f / SAMPLE_RATE), r * r
        a = np.convolve(a, [1.0, c1, c2])
        gain *= 1.0 + c1 + c2
    return np.array([gain]), a


def _ramp(length: int, attack: int, release: int) -> np.ndarray:
    env = np.ones(length)
    attack, release = min(attack, length // 2), min(release, length // 2)
    if attack > 0:
        env[:attack] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(attack) + 0.5) / attack)
    if release > 0:
        env[length - release :] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(release) + 0.5) / release)
    return env


@dataclasses.dataclass
class _Timeline:
    """Where an utterance's syllables fall: seconds (`sy`: consonant start, vowel start,
    vowel end per syllable; `phrases`: start, end per phrase), the phrase of each syllable
    (`ph`), and the same syllable bounds in samples."""

    sy: np.ndarray
    ph: np.ndarray
    phrases: np.ndarray
    c_start: np.ndarray
    v_start: np.ndarray
    v_end: np.ndarray


def _syllables(lead: float, end: float, p: dict, rng: np.random.Generator):
    """Syllables (consonant start, vowel start, vowel end, phrase id) from `lead` to `end`
    seconds at the utterance's rate, in phrases of 3-8 with pauses; and each phrase's
    (start, end)."""
    syllables = []
    phrases = []  # (start, end) per phrase
    t, phrase, left = lead, 0, int(rng.integers(3, 9))
    phrase_start = t
    while True:
        dur = math.exp(rng.normal(0, 0.25)) / p["rate"]
        if t + dur > end:
            break
        cons = dur * rng.uniform(0.2, 0.4) if rng.random() < 0.75 else 0.0
        syllables.append((t, t + cons, t + dur, phrase))
        t += dur
        left -= 1
        if left == 0:
            phrases.append((phrase_start, t))
            t += p["pause"] * math.exp(rng.normal(0, 0.4))
            phrase, left = phrase + 1, int(rng.integers(3, 9))
            phrase_start = t
    if not syllables:
        syllables.append((lead, lead, end, 0))
    if len(phrases) <= syllables[-1][3]:
        phrases.append((phrase_start, syllables[-1][2]))
    return syllables, phrases


def _timeline(n: int, p: dict, rng: np.random.Generator) -> _Timeline:
    """The syllable timeline of an `n`-sample utterance, with short silences at both ends."""
    sr = SAMPLE_RATE
    total = n / sr
    lead = min(rng.uniform(0.05, 0.3), 0.12 * total)
    trail = min(rng.uniform(0.05, 0.3), 0.12 * total)
    end = total - trail
    syllables, phrases = _syllables(lead, end, p, rng)
    sy = np.array([s[:3] for s in syllables])
    ph = np.array([s[3] for s in syllables])
    c_start, v_start, v_end = (np.round(sy[:, k] * sr).astype(int) for k in range(3))
    v_end = np.minimum(v_end, n)
    return _Timeline(sy, ph, np.array(phrases), c_start, v_start, v_end)


def _f0_contour(n: int, tl: _Timeline, p: dict, spk: _Speaker, rng: np.random.Generator):
    """The F0 knots (semitones re the speaker's baseline, one per vowel centre) and the F0
    in Hz per sample: phrase slope, final rise or fall, declination, and `abrupt` mixing
    a smooth interpolation with a step per vowel."""
    sr = SAMPLE_RATE
    total = n / sr
    sy, ph, ph_arr = tl.sy, tl.ph, tl.phrases
    m = len(sy)
    centre = (sy[:, 1] + sy[:, 2]) / 2
    ph_pos = (centre - ph_arr[ph, 0]) / np.maximum(ph_arr[ph, 1] - ph_arr[ph, 0], 1e-3)
    last_in_phrase = np.append(ph[1:] != ph[:-1], True)
    knots = (
        p["f0"]
        + p["slope"] * (ph_pos - 0.5)
        + p["range"] * rng.uniform(-0.5, 0.5, m)
        + p["final"] * last_in_phrase
        - 0.8 * (centre / max(total, 1e-3) - 0.5)
    )
    times = np.arange(n) / sr
    smooth = np.interp(times, centre, knots)
    bounds = np.concatenate([[0], np.clip(tl.v_start[1:], 0, n), [n]])
    step = np.repeat(
        knots, np.diff(np.maximum.accumulate(bounds))
    )  # the knot of the vowel in progress
    contour = (1 - p["abrupt"]) * smooth + p["abrupt"] * step
    f0 = np.clip(spk.f0 * 2.0 ** (contour / 12), 55.0, 600.0)
    return knots, f0


def _voicing_envelope(
    n: int, tl: _Timeline, knots: np.ndarray, p: dict, rng: np.random.Generator
) -> np.ndarray:
    """One raised-cosine-ramped vowel per syllable, with stress (louder on higher knots)."""
    sr = SAMPLE_RATE
    m = len(knots)
    v_start, v_end = tl.v_start, tl.v_end
    stress_db = rng.normal(0, 2.0, m) + 1.5 * (knots - knots.mean()) / max(p["range"], 1.0)
    env = np.zeros(n)
    for k in range(m):
        length = v_end[k] - v_start[k]
        if length <= 0:
            continue
        env[v_start[k] : v_end[k]] = 10 ** (stress_db[k] / 20) * _ramp(
            length, int(rng.uniform(0.01, 0.03) * sr), int(rng.uniform(0.02, 0.05) * sr)
        )
    return env


def _glottal_source(
    f0: np.ndarray, env: np.ndarray, p: dict, rng: np.random.Generator
) -> np.ndarray:
    """Glottal pulses with jitter (timing) and shimmer (amplitude), gated by the voicing
    envelope, through the glottal-flow low-pass."""
    sr = SAMPLE_RATE
    n = len(env)
    phase = np.cumsum(f0 / sr)
    idx = np.flatnonzero(np.diff(np.floor(phase))) + 1
    idx = idx[env[idx] > 0]
    period = sr / f0[idx]
    pos = np.clip(
        np.round(idx + p["jitter"] * period * rng.standard_normal(idx.size)), 0, n - 1
    ).astype(int)
    amp = env[idx] * np.clip(1 + p["shimmer"] * rng.standard_normal(idx.size), 0.2, None)
    amp *= np.sqrt(period)  # roughly the same energy whatever the F0
    source = np.zeros(n)
    np.add.at(source, pos, amp)
    # Glottal flow: a fixed 2-pole low-pass (-12 dB/octave above ~150 Hz).
    pole = math.exp(-2 * math.pi * _GLOTTAL_CORNER_HZ / sr)
    return lfilter([(1 - pole) ** 2], [1, -2 * pole, pole * pole], source)


def _excitation(f0: np.ndarray, env: np.ndarray, p: dict, rng: np.random.Generator):
    """The glottal source plus aspiration (breathiness), through the spectral tilt."""
    sr = SAMPLE_RATE
    n = len(env)
    source = _glottal_source(f0, env, p, rng)
    voiced_rms = math.sqrt(np.mean(source[env > 0] ** 2)) if np.any(env > 0) else 1.0
    # Aspiration (breathiness): low-passed noise gated by the voicing envelope.
    pole = math.exp(-2 * math.pi * _ASPIRATION_CORNER_HZ / sr)
    aspiration = lfilter([1 - pole], [1, -pole], rng.standard_normal(n))
    excitation = source + aspiration * env * (p["breath"] * voiced_rms * _ASPIRATION_GAIN)
    # Spectral tilt: one more pole whose corner sets how much high-frequency energy
    # is left (low corner: dull, steep; high corner: bright, flat).
    pole = math.exp(-2 * math.pi * 2.0 ** p["tilt"] / sr)
    return lfilter([1 - pole], [1, -pole], excitation)


def _vowels(
    excitation: np.ndarray, tl: _Timeline, p: dict, spk: _Speaker, rng: np.random.Generator
) -> np.ndarray:
    """Each vowel's excitation through four formant resonators (a random vowel, scaled by
    the speaker's vocal tract), ringing on for 30 ms; then lip radiation."""
    sr = SAMPLE_RATE
    n = len(excitation)
    v_start, v_end = tl.v_start, tl.v_end
    m = len(v_start)
    voiced = np.zeros(n)
    tail = int(0.03 * sr)
    vowels = rng.integers(len(_VOWELS), size=m)
    formant_scale = spk.formant_scale * math.exp(p["formant"])
    for k in range(m):
        s, e = v_start[k], v_end[k]
        if e <= s:
            continue
        freqs = _VOWELS[vowels[k]] * formant_scale * np.exp(rng.normal(0, 0.04, 4))
        freqs = np.minimum(freqs, 0.45 * sr - 200 * np.arange(4)[::-1])
        b, a = _resonator_cascade(freqs, _BANDWIDTHS * rng.uniform(0.8, 1.3, 4))
        out = lfilter(b, a, np.concatenate([excitation[s:e], np.zeros(tail)]))
        stop = min(n, e + tail)
        voiced[s:stop] += out[: stop - s]
    voiced[1:] -= 0.97 * voiced[:-1].copy()  # lip radiation: first difference
    return voiced


def _add_consonants(
    speech: np.ndarray, active: np.ndarray, tl: _Timeline, p: dict, rng: np.random.Generator
) -> None:
    """Band-passed noise bursts (sibilant, palatal fricative or stop) before the vowels, at
    `cons_db` re the vowels' level; adds them to `speech` and marks them in `active`."""
    ref = math.sqrt(np.mean(speech[active] ** 2)) if np.any(active) else 1.0
    cons_amp = ref * 10 ** (p["cons_db"] / 20)
    c_start, v_start = tl.c_start, tl.v_start
    for k in range(len(v_start)):
        s, e = c_start[k], v_start[k]
        if e - s < 16:
            continue
        kind = rng.random()
        if kind < 0.4:  # sibilant
            fc, bw = rng.uniform(3800, 6500), rng.uniform(1500, 3000)
        elif kind < 0.7:  # palatal fricative
            fc, bw = rng.uniform(2200, 3600), rng.uniform(800, 1600)
        else:  # stop burst after a closure
            fc, bw = rng.uniform(1200, 4500), rng.uniform(1500, 3500)
            s = s + int(0.6 * (e - s))
        b, a = _resonator_cascade([fc], [bw])
        burst = lfilter([1.0, 0.0, -1.0], a, rng.standard_normal(e - s)) * _ramp(
            e - s, (e - s) // 4, (e - s) // 3
        )
        gain = cons_amp * 10 ** (rng.normal(0, 3) / 20)
        speech[s:e] += gain * burst / (math.sqrt(np.mean(burst**2)) + 1e-12)
        active[s:e] = True


def _room_and_channel(
    speech: np.ndarray,
    active: np.ndarray,
    spk: _Speaker,
    p: dict,
    channel: float,
    cfg,
    rng: np.random.Generator,
) -> np.ndarray:
    """Set the level (speaker + emotion), colour it with the session's microphone, add
    background noise at a random SNR re the speaker's neutral level, keep the peak < 1."""
    n = len(speech)
    speech_rms = math.sqrt(np.mean(speech[active] ** 2)) if np.any(active) else 1.0
    level = 10 ** ((-26.0 + spk.level_db + p["level"]) / 20)
    speech *= level / speech_rms
    speech[1:] -= channel * speech[:-1].copy()  # the session's microphone colour
    snr = rng.uniform(*tuple(cfg.snr_db_range))
    colour = rng.uniform(0.7, 0.98)  # pinkish to brownish room noise
    bg = lfilter([1.0], [1.0, -colour], rng.standard_normal(n))
    bg *= 10 ** ((-26.0 + spk.level_db - snr) / 20) / (math.sqrt(np.mean(bg**2)) + 1e-12)
    signal = speech + bg
    peak = np.max(np.abs(signal))
    if peak > 0.98:
        signal *= 0.98 / peak
    return signal


def _synthesise(
    n: int, label: str, spk: _Speaker, channel: float, cfg, rng: np.random.Generator
) -> np.ndarray:
    """An `n`-sample float signal of a `label` turn by `spk` on a session's `channel`."""
    p = _utterance_params(label, spk, cfg, rng)
    tl = _timeline(n, p, rng)
    knots, f0 = _f0_contour(n, tl, p, spk, rng)
    env = _voicing_envelope(n, tl, knots, p, rng)
    excitation = _excitation(f0, env, p, rng)
    speech = _vowels(excitation, tl, p, spk, rng)
    active = env > 0
    _add_consonants(speech, active, tl, p, rng)
    return _room_and_channel(speech, active, spk, p, channel, cfg, rng)


def _channels(seed: int) -> list[float]:
    rng = _rng(seed, 4)
    return [float(c) for c in rng.uniform(-0.35, 0.35, NUM_SESSIONS)]


def render(turn: _Turn, speaker: _Speaker, channel: float, cfg) -> np.ndarray:
    """One turn's audio as int16 (deterministic in seed and turn index)."""
    signal = _synthesise(
        turn.num_samples, turn.label, speaker, channel, cfg, _rng(cfg.seed, 3, turn.index)
    )
    return np.round(np.clip(signal, -1.0, 1.0) * 32767).astype(np.int16)
