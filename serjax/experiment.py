"""A run: its config resolved once, its data prepared once, then its (run, fold) units.

Workdir layout: config.json, corpus.json, folds.json, metrics.jsonl (per epoch, fold,
seed), folds/<fold>.json (a finished fold's predictions and scores), summary.json,
wall_time.json, checkpoints/<fold>/<epoch>/ (Orbax). A fold unit (`run_fold`) is skipped
when its result exists and resumes from its last checkpoint otherwise; `run` does every
unit of a run, then its summary (the report is written by the command layer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from serjax import data as data_lib
from serjax import features, locks
from serjax.checkpoints import FoldCheckpoints
from serjax.corpora import load_corpus
from serjax.errors import SerjaxError
from serjax.feature_cache import check_cache_dir, load_features
from serjax.fileio import read_json, write_json
from serjax.fingerprint import check_corpus
from serjax.inspect_corpus import format_summary, summarize
from serjax.metrics import MetricsWriter, score_seeds, softmax, summarize_results
from serjax.resolve import Resolved, resolve
from serjax.train import FoldRows, Trainer, train_fold, trainer_for
from serjax.workdir import (
    WallClock,
    check_workdir_config,
    record_environment,
    software_environment,
)


@dataclasses.dataclass
class Run:
    """A resolved run with its data: the corpus listing, the features (memory-mapped per
    version and as one device table), the fold of each utterance, and the jitted steps."""

    spec: Resolved
    workdir: Path
    listing: object
    labels: np.ndarray  # class index per utterance [U]
    arrays: dict  # version -> memory-mapped features [U, mels, frames]
    table: object  # [V·U, mels, frames] float16 on the device
    folds: np.ndarray  # fold index per utterance [U]
    fold_names: list[str]
    trainer: Trainer

    @property
    def config(self):
        return self.spec.config

    @property
    def seeds(self) -> list[int]:
        return self.spec.seeds

    @property
    def versions(self) -> list[int]:
        return self.spec.versions

    def rows(self, version: int, idx: np.ndarray) -> np.ndarray:
        """Device-table rows of the given utterances' features at one STFT version."""
        return self.versions.index(version) * len(self.labels) + np.asarray(idx)

    def fold_path(self, name: str) -> Path:
        return self.workdir / "folds" / f"{name}.json"


def prepare(
    config,
    workdir: Path,
    progress: bool = True,
    on_device: bool = True,
    record: bool = True,
    spec: Resolved | None = None,
) -> Run:
    """Resolve the config, read the corpus, fill the feature cache, assign folds and (with
    `on_device`) put the data on the device and get the jitted steps. Everything a config
    can get wrong is checked before the features are extracted. `record` writes
    corpus.json (a fold task reopening a started run does not). `spec`: the config already
    resolved (and its cache folder checked) by `start`."""
    if spec is None:
        spec = resolve(config)
        check_cache_dir(config.cache_dir)
    settings = features.FeatureSettings.from_config(config.features)
    listing = load_corpus(config.data, config.cache_dir, progress=progress)
    check_corpus(workdir, listing.utterances, record=record)  # before anything is rewritten
    if record:
        summary = summarize(listing, config.data.classes)
        write_json(workdir / "corpus.json", summary)
        if progress:
            print(format_summary(summary))
    labels = np.array([spec.classes.index(u.label) for u in listing.utterances], np.int32)
    folds, fold_names = _load_or_assign_folds(listing.utterances, labels, config, workdir)
    arrays = load_features(
        listing.utterances,
        spec.versions,
        settings,
        config.cache_dir,
        listing.name,
        dtype=config.data.cache_dtype,
        load_workers=config.data.load_workers,
        progress=progress,
    )
    if not on_device:
        return Run(spec, Path(workdir), listing, labels, arrays, None, folds, fold_names, None)
    table = data_lib.device_table([arrays[v] for v in spec.versions])
    trainer = trainer_for(spec.model, config.train)
    return Run(spec, Path(workdir), listing, labels, arrays, table, folds, fold_names, trainer)


def _load_or_assign_folds(utterances, labels, config, workdir: Path):
    """The fold of each utterance, saved in folds.json so a resumed run keeps its folds."""
    path = workdir / "folds.json"
    ids = [u.utt_id for u in utterances]
    if path.exists():
        saved = read_json(path)
        if saved["utterances"] != ids:
            raise SerjaxError(
                f"{path} was made for other utterances than the corpus now holds; "
                "use a new --workdir"
            )
        return np.array(saved["folds"], np.int64), saved["names"]
    folds, names = data_lib.assign_folds(
        utterances, labels, config.protocol, config.protocol.fold_seed
    )
    write_json(
        path,
        {
            "protocol": config.protocol.name,
            "names": names,
            "utterances": ids,
            "folds": folds.tolist(),
        },
    )
    return folds, names


def fold_names_of(workdir: Path) -> list[str]:
    """The fold names a started run saved in folds.json."""
    return read_json(Path(workdir) / "folds.json")["names"]


def speakers_known(run: Run) -> bool:
    """Whether every utterance names its speaker (so speaker independence can be checked)."""
    return all(u.speaker for u in run.listing.utterances)


def validates_by_speaker(run: Run) -> bool:
    """The inner validation split holds out whole speakers: under a speaker-independent
    protocol, on a corpus that names every speaker."""
    return run.config.protocol.name in data_lib.SPEAKER_PROTOCOLS and speakers_known(run)


def split_fold(run: Run, k: int) -> data_lib.Fold:
    """Fold k's utterances: fitting part and inner validation part of its training fold, and
    its test fold."""
    train = np.flatnonzero(run.folds != k)
    test = np.flatnonzero(run.folds == k)
    speakers = [u.speaker for u in run.listing.utterances] if validates_by_speaker(run) else None
    fit, val = data_lib.validation_split(
        train,
        run.labels,
        run.config.train.validation_fraction,
        run.config.protocol.fold_seed + k,
        speakers,
    )
    return data_lib.Fold(run.fold_names[k], fit, val, test)


def fold_inputs(run: Run, k: int):
    """(fold, its device data, its table rows, its normalisation and class weights as NumPy)."""
    fold = split_fold(run, k)
    spec = run.spec
    train_arrays = [run.arrays[v] for v in spec.train_versions]
    mean, std, weights = data_lib.fold_statistics(
        train_arrays, fold, run.labels, run.config.data, run.config.train
    )
    data = data_lib.FoldData.of(run.table, run.labels, mean, std, weights)
    rows = FoldRows(
        name=fold.name,
        index=k,
        train=np.concatenate([run.rows(v, fold.train) for v in spec.train_versions]),
        validation=run.rows(spec.test_version, fold.validation),
        test=run.rows(spec.test_version, fold.test),
        validation_labels=run.labels[fold.validation],
        test_labels=run.labels[fold.test],
    )
    return fold, data, rows, (mean, std, weights)


def run_fold(
    run: Run, k: int, progress: bool = True, on_checkpoint: Callable[[], object] | None = None
) -> dict:
    """The (run, fold) unit: train all seeds on fold k (resuming from its checkpoint), then
    evaluate, and write folds/<fold>.json. A finished fold is read back, not trained."""
    name = run.fold_names[k]
    if run.fold_path(name).exists():
        return read_json(run.fold_path(name))
    # one trainer per fold, also across processes (a task retried while its first try lives)
    with locks.exclusive(run.workdir, f"fold {name} of workdir", name=f"locks/{name}.lock"):
        if run.fold_path(name).exists():
            return read_json(run.fold_path(name))
        return _train_and_evaluate(run, k, progress, on_checkpoint)


def _train_and_evaluate(run: Run, k: int, progress: bool, on_checkpoint) -> dict:
    path = run.fold_path(run.fold_names[k])
    fold, data, rows, (mean, std, weights) = fold_inputs(run, k)
    tcfg = run.config.train
    outcome = train_fold(
        run.trainer,
        data,
        rows,
        run.seeds,
        tcfg,
        len(run.spec.classes),
        FoldCheckpoints(run.workdir / "checkpoints" / fold.name),
        MetricsWriter(run.workdir / "metrics.jsonl", tensorboard=_tensorboard(run.config)),
        progress,
        on_checkpoint,
    )
    result = evaluate_fold(run, k, outcome.states, fold, data)
    result.update(
        {
            "epochs": tcfg.epochs,
            "class_weights": weights.tolist(),
            "normalisation": {"mean": mean.tolist(), "std": std.tolist()},
        }
    )
    if outcome.best_states is not None:
        selected = run.trainer.predict(outcome.best_states, data, rows.test, tcfg.eval_batch_size)
        result["best_val"] = {
            "epoch": outcome.best["epoch"].tolist(),
            "val_ua": outcome.best["score"].tolist(),
            "per_seed": score_seeds(selected, rows.test_labels, len(run.spec.classes)),
        }
    write_json(path, result)
    return result


def _tensorboard(config) -> bool:
    """log.tensorboard (on unless turned off; a config saved before the field had it on)."""
    return bool(config.get("log", {}).get("tensorboard", True))


def evaluate_fold(run: Run, k: int, states, fold=None, data=None) -> dict:
    """Test-fold predictions, scores and ECA channel weights of the given (stacked) states."""
    if data is None:
        fold, data, _, _ = fold_inputs(run, k)
    test_rows = run.rows(run.spec.test_version, fold.test)
    batch = run.config.train.eval_batch_size
    logits = run.trainer.predict(states, data, test_rows, batch)
    labels = run.labels[fold.test]
    num_classes = len(run.spec.classes)
    eca = {}
    if run.config.model.eca_layers:
        weights = run.trainer.channel_weights(states, data, test_rows, batch)
        # per block and seed: [classes, channels], averaged over each class's test utterances
        # (paper Fig. 14). Never averaged across seeds or folds: channel i of one model has
        # nothing to do with channel i of another.
        eca = {
            name: [
                [
                    np.round(w[s, labels == c].mean(axis=0), 6).tolist()
                    if np.any(labels == c)
                    else None
                    for c in range(num_classes)
                ]
                for s in range(w.shape[0])
            ]
            for name, w in weights.items()
        }
    return {
        "fold": fold.name,
        "seeds": run.seeds,
        "eca_weights": eca,
        "test_utterances": [run.listing.utterances[i].utt_id for i in fold.test],
        "labels": labels.tolist(),
        "probabilities": np.round(softmax(logits), 6).tolist(),
        "per_seed": score_seeds(logits, labels, num_classes),
    }


def start(config, workdir: Path, progress: bool = True, on_device: bool = True):
    """(Run, WallClock) of a run about to train: the workdir checked against the config, the
    corpus read, folds assigned, feature caches filled."""
    workdir = Path(workdir)
    spec = resolve(config)  # a bad field or cache folder stops before the workdir is written
    check_cache_dir(config.cache_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    check_workdir_config(config, workdir)
    clock = WallClock(workdir / "wall_time.json")
    return prepare(config, workdir, progress, on_device=on_device, spec=spec), clock


def unfinished_folds(run: Run) -> list[int]:
    return [k for k, name in enumerate(run.fold_names) if not run.fold_path(name).exists()]


def record_training_start(run: Run, clock: WallClock) -> None:
    """config.json's "versions": the software of the invocation that trains (once)."""
    if unfinished_folds(run) and not clock.entry["folds_trained"]:
        record_environment(run.workdir, software_environment())


def finish(run: Run, results: list[dict], clock: WallClock) -> dict:
    """The run's summary.json, from its fold results (in fold order) and its wall time."""
    summary = build_summary(results, run)
    summary["wall_time_s"], summary["invocations"] = clock.record()
    write_json(run.workdir / "summary.json", summary)
    return summary


def run(config, workdir: Path, progress: bool = True) -> dict:
    """Every fold unit of a run in this process (finished ones skipped), then summary.json."""
    with locks.exclusive(workdir, "workdir"):
        prepared, clock = start(config, workdir, progress)
        record_training_start(prepared, clock)
        results = []
        try:
            for k, name in enumerate(prepared.fold_names):
                trains = not prepared.fold_path(name).exists()
                # the ledger follows the checkpoints: a killed run keeps the time it kept
                results.append(run_fold(prepared, k, progress, on_checkpoint=clock.record))
                if trains:
                    clock.record(trained=name)
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM: the time up to the saved epoch counts
            clock.record()
            raise
        return finish(prepared, results, clock)


def build_summary(results: list[dict], run: Run) -> dict:
    """The run's summary.json: what was run, and its scores over folds × seeds."""
    config = run.config
    summary = {
        "corpus": run.listing.name,
        "protocol": config.protocol.name,
        "classes": list(config.data.classes),
        "num_utterances": int(len(run.labels)),
        "train_versions": list(config.experiment.train_versions),
        "test_version": int(config.experiment.test_version),
        "seeds": run.seeds,
        "epochs": int(config.train.epochs),
        "selection": "last epoch",
        "speakers_known": speakers_known(run),
    }
    summary.update(summarize_results(results))
    if "best_val" in results[0]:
        summary["best_val"] = summarize_results(results, key="best_val")
        held_out = ", whole speakers held out" if validates_by_speaker(run) else ""
        summary["best_val"]["selection"] = (
            f"best epoch on an inner validation split "
            f"({config.train.validation_fraction:.0%} of each training fold{held_out})"
        )
    return summary
