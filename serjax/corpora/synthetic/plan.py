"""The corpus plan: how many turns of each label, the ten speakers, the dialogs, and every
turn's session, dialog, speaker, label, duration and start time; no audio.

Class counts
------------
The four paper classes split `num_utterances` in the paper's improvised-subset
proportions ang 289 : sad 608 : hap+exc 947 : neu 1099 by the largest-remainder
(Hamilton) method: each class gets the floor of its exact quota, and the seats
left over go to the largest fractional remainders, ties to the class listed first
(ang, sad, hap, neu). For 2943 this is exactly 289/608/947/1099. The happiness
count is then split into `exc` = round(H * exc_fraction) (half up, kept within
1..H-1 when H >= 2) and `hap` = the rest. Distractor and scripted counts are
round(num_utterances * fraction), split over their labels the same way.

Every draw comes from `_rng(seed, tag, *index)`, a generator of its own per purpose
(tag) and index, so one turn's draws never depend on how many others were made first.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np

from serjax.corpora.synthetic.config import NUM_SESSIONS, SAMPLE_RATE

PAPER_CLASSES = ("ang", "sad", "hap", "neu")
PAPER_PROPORTIONS = (289, 608, 947, 1099)  # improvised subset; hap includes exc

# Labels the paper's subset drops, with their relative frequency among improvised turns.
DISTRACTOR_LABELS = ("fru", "xxx", "sur", "fea", "dis", "oth")
DISTRACTOR_WEIGHTS = (0.44, 0.36, 0.09, 0.04, 0.02, 0.05)
# Label mix of the scripted dialogs (which the improvised-only subset drops).
SCRIPTED_LABELS = ("neu", "fru", "exc", "xxx", "ang", "sad", "hap", "sur", "fea", "dis", "oth")
SCRIPTED_WEIGHTS = (0.22, 0.18, 0.12, 0.14, 0.10, 0.10, 0.06, 0.03, 0.02, 0.02, 0.01)

# Dialog names per session. Real suffix variants: Ses03M_impro05a/b, Ses03M_impro08a/b
# replace Ses03M_impro05/08; Ses05M_script01_1b sits beside Ses05M_script01_1.
_SCRIPT_IDS = ("01_1", "01_2", "01_3", "02_1", "02_2", "03_1", "03_2")
_VARIANT_DIALOGS = (
    "Ses03M_impro05a",
    "Ses03M_impro05b",
    "Ses03M_impro08a",
    "Ses03M_impro08b",
    "Ses05M_script01_1b",
)


# --------------------------------------------------------------------------- counts


def apportion(total: int, weights) -> list[int]:
    """Split `total` in proportion to `weights` by the largest-remainder method.

    Exact arithmetic (fractions); the leftover units go to the largest fractional
    remainders, ties to the earlier entry.
    """
    w = [Fraction(x) for x in weights]
    s = sum(w)
    quotas = [total * x / s for x in w]
    floors = [math.floor(q) for q in quotas]
    left = total - sum(floors)
    order = sorted(range(len(w)), key=lambda i: (-(quotas[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def paper_class_counts(num_utterances: int) -> dict[str, int]:
    """The paper classes' counts for `num_utterances` (hap includes exc)."""
    return dict(zip(PAPER_CLASSES, apportion(int(num_utterances), PAPER_PROPORTIONS)))


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def raw_label_counts(cfg) -> dict[str, dict[str, int]]:
    """Counts per raw label, for the improvised and the scripted dialogs."""
    paper = paper_class_counts(cfg.num_utterances)
    happy = paper["hap"]
    n_exc = _round_half_up(happy * float(cfg.exc_fraction))
    if happy >= 2:
        n_exc = min(max(n_exc, 1), happy - 1)
    impro = {
        "ang": paper["ang"],
        "sad": paper["sad"],
        "hap": happy - n_exc,
        "exc": n_exc,
        "neu": paper["neu"],
    }
    n_dis = _round_half_up(int(cfg.num_utterances) * float(cfg.distractor_fraction))
    for label, n in zip(DISTRACTOR_LABELS, apportion(n_dis, DISTRACTOR_WEIGHTS)):
        impro[label] = impro.get(label, 0) + n
    n_scr = _round_half_up(int(cfg.num_utterances) * float(cfg.scripted_fraction))
    script = dict(zip(SCRIPTED_LABELS, apportion(n_scr, SCRIPTED_WEIGHTS)))
    return {
        "improvised": {k: v for k, v in impro.items() if v},
        "scripted": {k: v for k, v in script.items() if v},
    }


# --------------------------------------------------------------------------- plan


@dataclasses.dataclass
class _Speaker:
    session: int
    sex: str
    f0: float  # Hz
    formant_scale: float
    level_db: float
    rate_scale: float
    range_scale: float
    tilt_offset: float  # log2 units
    breath: float
    expressiveness: float


@dataclasses.dataclass
class _Turn:
    index: int
    session: int
    dialog: str
    utt_id: str
    sex: str
    label: str
    num_samples: int
    start: float


def _rng(seed: int, tag: int, *index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), tag, *map(int, index)])


def _make_speaker(seed: int, session: int, sex: str, variability: float) -> _Speaker:
    rng = _rng(seed, 1, session, 0 if sex == "F" else 1)
    v = variability
    base_f0, base_formant = (205.0, 1.16) if sex == "F" else (118.0, 1.0)
    return _Speaker(
        session=session,
        sex=sex,
        f0=base_f0 * 2 ** (v * rng.normal(0, 2.0) / 12),
        formant_scale=base_formant * math.exp(v * rng.normal(0, 0.04)),
        level_db=v * rng.normal(0, 3.0),
        rate_scale=math.exp(v * rng.normal(0, 0.12)),
        range_scale=math.exp(v * rng.normal(0, 0.25)),
        tilt_offset=v * rng.normal(0, 0.35),
        breath=float(np.clip(0.06 + v * rng.normal(0, 0.03), 0.0, 0.3)),
        expressiveness=float(np.clip(1.0 + v * rng.normal(0, 0.2), 0.5, 1.5)),
    )


def _dialog_names(session: int, kind: str) -> list[str]:
    """Dialog names of a session in the order they are put to use (variants first)."""
    names = []
    if kind == "impro":
        for k in range(1, 9):
            for wearer in "FM":
                base = f"Ses0{session}{wearer}_impro0{k}"
                if base in ("Ses03M_impro05", "Ses03M_impro08"):
                    names += [base + "a", base + "b"]
                else:
                    names.append(base)
    else:
        for sid in _SCRIPT_IDS:
            for wearer in "FM":
                names.append(f"Ses0{session}{wearer}_script{sid}")
                if session == 5 and wearer == "M" and sid == "01_1":
                    names.append("Ses05M_script01_1b")
    variants = [n for n in names if n in _VARIANT_DIALOGS]
    return variants + [n for n in names if n not in _VARIANT_DIALOGS]


def _deal(labels_counts: dict[str, int], rng: np.random.Generator) -> list[list[str]]:
    """Deal labels over the sessions round-robin, label by label (balanced classes)."""
    sessions = [[] for _ in range(NUM_SESSIONS)]
    turn = int(rng.integers(NUM_SESSIONS))
    for label in sorted(labels_counts):
        for _ in range(labels_counts[label]):
            sessions[turn % NUM_SESSIONS].append(label)
            turn += 1
    for s in sessions:
        rng.shuffle(s)
    return sessions


def _truncated_lognormal_mu(mean: float, sigma: float, lo: float, hi: float) -> float:
    """The log-location whose log-normal, truncated to [lo, hi], has this mean."""
    if sigma <= 0:
        return math.log(mean)
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    a, b = math.log(lo), math.log(hi)

    def truncated_mean(mu):
        mass = phi((b - mu) / sigma) - phi((a - mu) / sigma)
        if mass < 1e-12:
            return lo if mu < a else hi
        upper = phi((b - mu - sigma**2) / sigma) - phi((a - mu - sigma**2) / sigma)
        return math.exp(mu + sigma**2 / 2) * upper / mass

    low, high = a - 5 * sigma, b + 5 * sigma
    for _ in range(100):  # the truncated mean grows with mu: bisect
        mid = (low + high) / 2
        low, high = (mid, high) if truncated_mean(mid) < mean else (low, mid)
    return (low + high) / 2


def _duration_samples(cfg, index: int, mu: float) -> int:
    rng = _rng(cfg.seed, 2, index)
    lo, hi = float(cfg.min_duration_s), float(cfg.max_duration_s)
    sigma = float(cfg.duration_log_std)
    for _ in range(1000):
        d = float(math.exp(mu + sigma * rng.standard_normal()))
        if lo <= d <= hi:
            break
    else:
        d = min(max(d, lo), hi)
    return int(round(d * SAMPLE_RATE))


def _speakers(cfg) -> dict[tuple[int, str], _Speaker]:
    """The ten voices, keyed by (session, sex)."""
    return {
        (s, x): _make_speaker(cfg.seed, s, x, float(cfg.speaker_variability))
        for s in range(1, NUM_SESSIONS + 1)
        for x in "FM"
    }


def _speaker_order(size: int, rng: np.random.Generator) -> list[str]:
    """Who speaks each of a dialog's turns: mostly taking turns, and both at least once."""
    sexes = []
    for i in range(size):
        if i == 0:
            sexes.append("FM"[int(rng.integers(2))])
        else:
            same = rng.random() < 0.15
            sexes.append(sexes[-1] if same else ("M" if sexes[-1] == "F" else "F"))
    if size >= 2 and len(set(sexes)) == 1:
        sexes[-1] = "M" if sexes[-1] == "F" else "F"
    return sexes


def _session_dialogs(
    session: int, kind: str, labels: list[str], min_turns: int
) -> list[tuple[str, list[str]]]:
    """A session's labels of one kind shared out over as many dialogs as `min_turns` allows
    (at least one), as (dialog name, its labels) in name order."""
    names = _dialog_names(session, kind)
    n_dialogs = min(len(names), max(1, len(labels) // min_turns))
    chosen = sorted(names[:n_dialogs])
    sizes = apportion(len(labels), [1] * n_dialogs)
    dialogs, pos = [], 0
    for dialog, size in zip(chosen, sizes):
        dialogs.append((dialog, labels[pos : pos + size]))
        pos += size
    return dialogs


def _dialog_turns(
    cfg, session: int, dialog: str, labels: list[str], first: int, mu: float, rng
) -> list[_Turn]:
    """One dialog's turns in time order (global indices from `first`), each speaker's
    turns numbered F000, F001, ... and M000, ...; gaps of 0.05-2 s between turns."""
    size = len(labels)
    sexes = _speaker_order(size, rng)
    gaps = rng.uniform(0.05, 2.0, size=size)
    t = float(rng.uniform(1.5, 12.0))
    numbers = {"F": 0, "M": 0}
    turns = []
    for label, sex, gap in zip(labels, sexes, gaps):
        index = first + len(turns)
        n = _duration_samples(cfg, index, mu)
        start = round(t, 4)
        turns.append(
            _Turn(
                index=index,
                session=session,
                dialog=dialog,
                utt_id=f"{dialog}_{sex}{numbers[sex]:03d}",
                sex=sex,
                label=label,
                num_samples=n,
                start=start,
            )
        )
        numbers[sex] += 1
        t = start + n / SAMPLE_RATE + float(gap)
    return turns


def _plan(cfg) -> tuple[list[_Turn], dict]:
    """Decide every turn: session, dialog, speaker, label, duration, start time."""
    rng = _rng(cfg.seed, 0)
    counts = raw_label_counts(cfg)
    per_kind = {
        kind: _deal(counts[name], rng)
        for kind, name in (("impro", "improvised"), ("script", "scripted"))
    }
    turns: list[_Turn] = []
    min_turns = int(cfg.min_turns_per_dialog)
    mu = _truncated_lognormal_mu(
        float(cfg.mean_duration_s),
        float(cfg.duration_log_std),
        float(cfg.min_duration_s),
        float(cfg.max_duration_s),
    )
    for session in range(1, NUM_SESSIONS + 1):
        for kind in ("impro", "script"):
            labels = per_kind[kind][session - 1]
            if not labels:
                continue
            for dialog, dialog_labels in _session_dialogs(session, kind, labels, min_turns):
                turns += _dialog_turns(cfg, session, dialog, dialog_labels, len(turns), mu, rng)
    return turns, counts
