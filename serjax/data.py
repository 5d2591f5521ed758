"""Fold protocols over utterances, training-fold normalisation, and the device-side dataset.

Folds are made over utterances, so every STFT version of an utterance stays in its fold.
"""

from __future__ import annotations

import dataclasses
import functools
import mmap
from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from serjax.corpora.records import Utterance
from serjax.errors import SerjaxError
from serjax.losses import class_weights

PROTOCOLS = ("stratified_kfold", "leave_one_session_out", "leave_one_speaker_out", "speaker_kfold")


def stratified_kfold(labels: np.ndarray, num_folds: int, seed: int) -> np.ndarray:
    """Fold index per utterance: each class shuffled and dealt round-robin over the folds,
    the deal carried on from class to class so fold sizes differ by at most one."""
    labels = np.asarray(labels)
    if num_folds < 2:
        raise SerjaxError(f"config field protocol.num_folds: need 2 or more folds, got {num_folds}")
    rng = np.random.default_rng([seed, 0x5EED])
    folds = np.empty(len(labels), np.int64)
    dealt = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        folds[members] = (dealt + np.arange(len(members))) % num_folds
        dealt += len(members)
    return folds


def check_classes_fill_folds(label_names: Sequence[str], num_folds: int) -> None:
    """Stratified k-fold needs every class in every test fold: k <= the smallest class."""
    values, counts = np.unique(np.asarray(label_names), return_counts=True)
    if len(counts) and counts.min() < num_folds:
        smallest = values[int(np.argmin(counts))]
        raise SerjaxError(
            f"config field protocol.num_folds: {num_folds} folds, but class {str(smallest)!r} has "
            f"only {counts.min()} utterance(s), so some test folds would hold none of it; "
            f"use at most {counts.min()} folds"
        )


def group_folds(groups: Sequence[str], kind: str = "speaker") -> tuple[np.ndarray, list[str]]:
    """One fold per group (session or speaker), in sorted group order."""
    names = sorted(set(groups))
    if len(names) < 2 or "" in names:
        raise SerjaxError(
            f"config field protocol.name: a leave-one-{kind}-out protocol needs every "
            f"utterance's {kind} and two or more {kind}s, but the corpus gives "
            f"{len(names)} ({', '.join(repr(n) for n in names[:3])}); use stratified_kfold"
        )
    index = {g: i for i, g in enumerate(names)}
    return np.array([index[g] for g in groups], np.int64), names


def speaker_kfold(speakers: Sequence[str], num_folds: int, seed: int) -> np.ndarray:
    """Speaker-independent k-fold for corpora with many speakers (CREMA-D has 91): speakers
    shuffled and dealt to the folds, largest first, each to the fold with fewest utterances."""
    names = sorted(set(speakers))
    if "" in names or len(names) < 2:
        raise SerjaxError(
            "config field protocol.name: speaker_kfold needs every utterance's speaker "
            f"and two or more speakers, but the corpus gives {len(names)}; use stratified_kfold"
        )
    if not 2 <= num_folds <= len(names):
        raise SerjaxError(
            f"config field protocol.num_folds: need 2..{len(names)} folds for "
            f"{len(names)} speakers, got {num_folds}"
        )
    counts = {n: 0 for n in names}
    for s in speakers:
        counts[s] += 1
    order = np.random.default_rng([seed, 0x5BEA]).permutation(len(names))
    shuffled = sorted(
        (names[i] for i in order), key=lambda n: -counts[n]
    )  # stable: ties stay shuffled
    sizes = np.zeros(num_folds, np.int64)
    fold_of = {}
    for name in shuffled:
        k = int(np.argmin(sizes))
        fold_of[name] = k
        sizes[k] += counts[name]
    return np.array([fold_of[s] for s in speakers], np.int64)


def check_speakers_stay_in_sessions(utterances: Sequence[Utterance]) -> None:
    """Leave-one-session-out is speaker-independent only if no speaker is in two sessions:
    true of IEMOCAP and of the readers that take the speaker as the session, not of every
    manifest (recording days often share speakers). Utterances without a speaker are not
    checked (the report says so)."""
    sessions_of: dict[str, set[str]] = {}
    for u in utterances:
        if u.speaker:
            sessions_of.setdefault(u.speaker, set()).add(u.session)
    shared = sorted(s for s, sessions in sessions_of.items() if len(sessions) > 1)
    if shared:
        examples = "; ".join(
            f"{s!r} in sessions {', '.join(sorted(map(repr, sessions_of[s])))}" for s in shared[:3]
        )
        raise SerjaxError(
            f"config field protocol.name: leave_one_session_out would put {len(shared)} "
            f"speaker(s) in both training and test folds ({examples}"
            f"{'; …' if len(shared) > 3 else ''}); use leave_one_speaker_out or speaker_kfold"
        )


def assign_folds(utterances: Sequence[Utterance], labels: np.ndarray, protocol_cfg, seed: int):
    """(fold per utterance, fold names) for the configured protocol."""
    name = protocol_cfg.name
    if name == "stratified_kfold":
        check_classes_fill_folds([u.label for u in utterances], protocol_cfg.num_folds)
        folds = stratified_kfold(labels, protocol_cfg.num_folds, seed)
        return folds, [f"fold{k}" for k in range(protocol_cfg.num_folds)]
    if name == "leave_one_session_out":
        check_speakers_stay_in_sessions(utterances)
        return group_folds([u.session for u in utterances], "session")
    if name == "leave_one_speaker_out":
        return group_folds([u.speaker for u in utterances], "speaker")
    if name == "speaker_kfold":
        folds = speaker_kfold([u.speaker for u in utterances], protocol_cfg.num_folds, seed)
        return folds, [f"fold{k}" for k in range(protocol_cfg.num_folds)]
    raise SerjaxError(f"config field protocol.name: {name!r} is not one of {PROTOCOLS}")


SPEAKER_PROTOCOLS = ("leave_one_session_out", "leave_one_speaker_out", "speaker_kfold")


def validation_split(
    train_idx: np.ndarray,
    labels: np.ndarray,
    fraction: float,
    seed: int,
    speakers: Sequence[str] | None = None,
):
    """Split of a training fold into (fit, validation) indices: stratified over utterances,
    or, given every utterance's speaker (speaker-independent protocols), whole speakers held
    out until they hold `fraction` of the fold, so the best epoch is chosen the way the test
    fold is scored, on speakers the model has not heard."""
    if fraction <= 0:
        return train_idx, train_idx[:0]
    if fraction >= 1:
        raise SerjaxError(f"config field train.validation_fraction: need < 1, got {fraction}")
    rng = np.random.default_rng([seed, 0xA11D])
    if speakers is not None:
        return _speaker_validation_split(train_idx, labels, fraction, rng, np.asarray(speakers))
    val = []
    for label in np.unique(labels[train_idx]):
        members = rng.permutation(train_idx[labels[train_idx] == label])
        # at least one per class for validation, and at least one left to fit on
        val.append(members[: min(max(1, int(round(fraction * len(members)))), len(members) - 1)])
    val = np.sort(np.concatenate(val))
    return np.setdiff1d(train_idx, val), val


def _speaker_validation_split(train_idx, labels, fraction, rng, speakers):
    of_train = speakers[train_idx]
    names = list(rng.permutation(sorted(set(of_train))))
    if len(names) < 2:
        raise SerjaxError(
            "config field train.validation_fraction: a training fold holds one speaker, "
            "so no speaker is left to validate on; set it to 0"
        )
    held, count = [], 0
    for name in names[:-1]:  # at least one speaker left to fit on
        held.append(name)
        count += int(np.sum(of_train == name))
        if count >= fraction * len(train_idx):
            break
    in_val = np.isin(of_train, held)
    fit, val = train_idx[~in_val], train_idx[in_val]
    lost = sorted(set(labels[train_idx].tolist()) - set(labels[fit].tolist()))
    if lost:
        raise SerjaxError(
            f"config field train.validation_fraction: holding out speaker(s) {held} for "
            f"validation leaves no training utterance of class(es) {lost}; set it to 0"
        )
    return np.sort(fit), np.sort(val)


NORMALISATIONS = ("per_band", "global", "none")


def normalisation_of(data_cfg) -> str:
    """data.normalisation (a config saved before the field existed normalised per band)."""
    kind = data_cfg.get("normalisation", "per_band")
    if kind not in NORMALISATIONS:
        raise SerjaxError(
            f"config field data.normalisation: {kind!r} is not one of {NORMALISATIONS}"
        )
    return kind


def band_statistics(
    arrays: Sequence[np.ndarray], idx: np.ndarray, kind: str = "per_band", chunk: int = 256
):
    """The features' normalisation, (mean, std) per Mel band, from the given utterances of
    every array (the training fold's): `per_band` each band's own over all frames (SPEC §2's
    default); `global` one mean and std over all bands and frames, given to every band;
    `none` mean 0, std 1."""
    if kind == "none":
        n_mels = arrays[0].shape[1]
        return np.zeros(n_mels, np.float32), np.ones(n_mels, np.float32)
    total = 0.0
    sums = None
    squares = None
    for array in arrays:
        for start in range(0, len(idx), chunk):
            block = np.asarray(array[np.sort(idx[start : start + chunk])], np.float64)
            s = block.sum(axis=(0, 2))
            q = np.square(block).sum(axis=(0, 2))
            sums = s if sums is None else sums + s
            squares = q if squares is None else squares + q
            total += block.shape[0] * block.shape[2]
    if kind == "global":
        sums, squares, total = (
            np.full_like(sums, sums.sum()),
            np.full_like(squares, squares.sum()),
            total * len(sums),
        )
    mean = sums / total
    std = np.sqrt(np.maximum(squares / total - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-5).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Fold:
    """Indices into the utterance list for one fold."""

    name: str
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def fold_statistics(train_arrays, fold: Fold, labels: np.ndarray, data_cfg, train_cfg):
    """(mean, std, class weights) of a fold, from its fitting part only (the training fold
    minus its validation part); train_arrays are the training versions' features."""
    mean, std = band_statistics(train_arrays, fold.train, normalisation_of(data_cfg))
    for array in train_arrays:
        release_pages(array)
    weights = class_weights(labels[fold.train], len(data_cfg.classes), train_cfg.class_weighting)
    return mean, std, weights


@flax.struct.dataclass
class FoldData:
    """What a jitted step reads besides the state and the batch's rows: the corpus table
    [V·U, mels, frames] (float16, V STFT versions × U utterances), the class of each table
    row, and the fold's normalisation and class weights. One pytree, shared by all seeds."""

    features: jax.Array
    labels: jax.Array
    mean: jax.Array
    std: jax.Array
    class_weights: jax.Array

    @classmethod
    def of(cls, features, utterance_labels, mean, std, class_weights) -> FoldData:
        """The fold's data from the table and one label per utterance (repeated for each
        version's block of rows)."""
        versions = features.shape[0] // len(utterance_labels)
        labels = np.tile(np.asarray(utterance_labels, np.int32), versions)
        return cls(*(jnp.asarray(a) for a in (features, labels, mean, std, class_weights)))

    def inputs(self, rows: jax.Array) -> jax.Array:
        """The normalised float32 inputs of the given table rows."""
        x = self.features[rows].astype(jnp.float32)
        return (x - self.mean[:, None]) / self.std[:, None]


@functools.partial(jax.jit, donate_argnums=0)
def _put_rows(table, block, start):
    return jax.lax.dynamic_update_slice(table, block, (start, 0, 0))


def device_table(arrays) -> jax.Array:
    """The [V·U, mels, frames] device table, filled in place one version at a time, so the
    peak is the table plus one version (not the table twice, as a concatenate would make it).
    Each memory-mapped cache file's pages are handed back after its copy: they would
    otherwise stay in this process's resident set beside the table."""
    u = len(arrays[0])
    table = jnp.zeros((len(arrays) * u, *arrays[0].shape[1:]), arrays[0].dtype)
    for i, array in enumerate(arrays):
        table = _put_rows(table, jnp.asarray(array), i * u)
        table.block_until_ready()
        release_pages(array)
    return table


def release_pages(array) -> None:
    """Drop a memory-mapped array's resident pages from this process (the data stays on disk
    and in the page cache; the next read maps it again)."""
    mm = getattr(array, "_mmap", None)
    if mm is not None and hasattr(mm, "madvise"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass
