"""A config → folds × seeds × (train versions, test version) → results in a workdir.

Workdir layout: config.json, corpus.json, folds.json, metrics.jsonl (per epoch, fold,
seed), folds/<fold>.json (a finished fold's predictions and scores), summary.json,
report.md, checkpoints/<fold>/<epoch>/ (Orbax). Started again on an unfinished workdir,
a run skips finished folds and resumes the others from their last checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import mmap
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from serjax import data as data_lib
from serjax import features
from serjax.checkpoints import FoldCheckpoints
from serjax.corpora import load_corpus
from serjax.cpu_tuning import allocator_state, compiler_options, release_free_memory
from serjax.errors import SerjaxError
from serjax.feature_cache import load_features
from serjax.fileio import write_json, write_text
from serjax.inspect_corpus import format_summary, summarize
from serjax.losses import check_focal_gamma, class_weights
from serjax.metrics import scores
from serjax.model import build_model, check_input_size
from serjax.train import Trainer, epoch_batches, learning_rate_schedule, seed_keys, trainer_for

METRICS = ("ua", "wa", "acc", "f1")


class StopRequest:
    """Ctrl-C / SIGTERM during training set a flag that the epoch loop checks between steps,
    so the interruption never lands inside a library call (an Orbax save, say). A second
    Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _StopNow(Exception):
    """Raised by the epoch loop itself at a safe point when a stop was requested."""


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM, after saving the last finished epoch."""

    def __init__(self, fold: str, epoch: int):
        super().__init__(f"interrupted in {fold}; its checkpoint holds epoch {epoch}")
        self.fold, self.epoch = fold, epoch


@dataclasses.dataclass
class Prepared:
    """Everything a run needs before its fold loop: data on the device and the jitted steps."""

    config: object
    listing: object
    labels: np.ndarray  # class index per utterance [U]
    versions: list[int]  # the versions in the device table, in table order
    arrays: dict  # version -> memory-mapped features [U, mels, frames]
    table: jax.Array  # [V·U, mels, frames] float16 on the device
    folds: np.ndarray  # fold index per utterance [U]
    fold_names: list[str]
    trainer: Trainer
    seeds: list[int]

    def rows(self, version: int, idx: np.ndarray) -> np.ndarray:
        return self.versions.index(version) * len(self.labels) + np.asarray(idx)


def seeds_of(config) -> list[int]:
    if config.num_seeds < 1:
        raise SerjaxError(f"config field num_seeds: need at least 1, got {config.num_seeds}")
    return [config.seed + s for s in range(config.num_seeds)]


def check_versions(config) -> tuple[list[int], int]:
    train = [int(v) for v in config.experiment.train_versions]
    test = int(config.experiment.test_version)
    for v in train + [test]:
        if v not in features.STFT_VERSIONS:
            raise SerjaxError(
                f"config field experiment.train_versions/test_version: version {v} "
                f"is not one of {sorted(features.STFT_VERSIONS)}"
            )
    if not train or len(set(train)) != len(train):
        raise SerjaxError(
            f"config field experiment.train_versions: need distinct versions, got {train}"
        )
    return train, test


def prepare(config, workdir: Path, progress: bool = True) -> Prepared:
    """Read the corpus, fill the feature cache, assign folds and put the data on the device.
    Everything a config can get wrong is checked before the features are extracted."""
    classes = list(config.data.classes)
    for field in ("epochs", "batch_size", "eval_batch_size", "checkpoint_every"):
        if int(config.train[field]) < 1:
            raise SerjaxError(f"config field train.{field}: need >= 1, got {config.train[field]}")
    check_focal_gamma(float(config.train.focal_gamma))
    data_lib.normalisation_of(config.data)
    train_versions, test_version = check_versions(config)
    versions = sorted(set(train_versions) | {test_version})
    settings = features.FeatureSettings.from_config(config.features)
    check_input_size(settings.n_mels, features.num_frames(settings, versions))
    model = build_model(config.model, len(classes))
    listing = load_corpus(config.data, config.cache_dir, progress=progress)
    summary = summarize(listing, config.data.classes)
    write_json(workdir / "corpus.json", summary)
    if progress:
        print(format_summary(summary))
    labels = np.array([classes.index(u.label) for u in listing.utterances], np.int32)
    folds, fold_names = _load_or_assign_folds(listing.utterances, labels, config, workdir)
    arrays = load_features(
        listing.utterances,
        versions,
        settings,
        config.cache_dir,
        listing.name,
        dtype=config.data.cache_dtype,
        load_workers=config.data.load_workers,
        progress=progress,
    )
    table = device_table([arrays[v] for v in versions])
    release_free_memory()
    trainer = trainer_for(model, config.train, len(labels))
    return Prepared(
        config,
        listing,
        labels,
        versions,
        arrays,
        table,
        folds,
        fold_names,
        trainer,
        seeds_of(config),
    )


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


def _load_or_assign_folds(utterances, labels, config, workdir: Path):
    """The fold of each utterance, saved in folds.json so a resumed run keeps its folds."""
    path = workdir / "folds.json"
    ids = [u.utt_id for u in utterances]
    if path.exists():
        saved = json.loads(path.read_text())
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


def split_fold(prep: Prepared, k: int) -> data_lib.Fold:
    train = np.flatnonzero(prep.folds != k)
    test = np.flatnonzero(prep.folds == k)
    speakers = [u.speaker for u in prep.listing.utterances] if validates_by_speaker(prep) else None
    fit, val = data_lib.validation_split(
        train,
        prep.labels,
        prep.config.train.validation_fraction,
        prep.config.protocol.fold_seed + k,
        speakers,
    )
    return data_lib.Fold(prep.fold_names[k], fit, val, test)


def speakers_known(prep: Prepared) -> bool:
    """Whether every utterance names its speaker (so speaker independence can be checked)."""
    return all(u.speaker for u in prep.listing.utterances)


def validates_by_speaker(prep: Prepared) -> bool:
    """The inner validation split holds out whole speakers: under a speaker-independent
    protocol, on a corpus that names every speaker."""
    return prep.config.protocol.name in data_lib.SPEAKER_PROTOCOLS and speakers_known(prep)


def fold_statistics(prep: Prepared, fold: data_lib.Fold):
    """Normalisation and class weights, from the fitting part of the training fold only."""
    train_versions, _ = check_versions(prep.config)
    mean, std = data_lib.band_statistics(
        [prep.arrays[v] for v in train_versions],
        fold.train,
        data_lib.normalisation_of(prep.config.data),
    )
    for v in train_versions:
        release_pages(prep.arrays[v])
    weights = class_weights(
        prep.labels[fold.train], len(prep.config.data.classes), prep.config.train.class_weighting
    )
    return mean, std, weights


def new_best(num_seeds: int) -> dict:
    """Per seed, the best validation UA so far and its epoch. float64 in memory and in the
    checkpoint: a resumed run must compare later epochs against the exact bests (a float32
    copy rounds them, and an exact tie then counts as an improvement about half the time)."""
    return {"score": np.full(num_seeds, -1.0, np.float64), "epoch": np.zeros(num_seeds, np.int32)}


def update_best(best: dict, val_uas, epoch: int) -> tuple[dict, np.ndarray]:
    """(new bests, improved mask): a seed improves on a strictly higher validation UA."""
    uas = np.asarray(val_uas, np.float64)
    improved = uas > best["score"]
    return {
        "score": np.where(improved, uas, best["score"]),
        "epoch": np.where(improved, np.int32(epoch), best["epoch"]).astype(np.int32),
    }, improved


def best_extras(best: dict) -> dict:
    return {"best_score": best["score"], "best_epoch": best["epoch"]}


def best_from_extras(extras: dict) -> dict:
    return {
        "score": np.asarray(extras["best_score"], np.float64),
        "epoch": np.asarray(extras["best_epoch"], np.int32),
    }


def _score_seeds(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> list[dict]:
    return [scores(labels, seed_logits.argmax(-1), num_classes) for seed_logits in logits]


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _rewrite_metrics(path: Path, fold: str, upto_epoch: int) -> None:
    """Drop a fold's records past its checkpoint, so a resumed fold logs each epoch once."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write
        if not (record["fold"] == fold and record["epoch"] > upto_epoch):
            kept.append(line)
    write_text(path, "".join(line + "\n" for line in kept))


def train_fold(
    prep: Prepared,
    k: int,
    workdir: Path,
    progress: bool = True,
    on_checkpoint: Callable[[], object] | None = None,
) -> dict:
    """Train all seeds on fold k (resuming from its checkpoint) and return its results;
    `on_checkpoint` is called after each checkpoint is saved."""
    cfg = prep.config
    tcfg = cfg.train
    fold = split_fold(prep, k)
    train_versions, test_version = check_versions(cfg)
    mean_np, std_np, weights_np = fold_statistics(prep, fold)
    mean, std, weights = jnp.asarray(mean_np), jnp.asarray(std_np), jnp.asarray(weights_np)
    train_rows = np.concatenate([prep.rows(v, fold.train) for v in train_versions])
    test_rows = prep.rows(test_version, fold.test)
    val_rows = prep.rows(test_version, fold.validation)
    num_classes = len(cfg.data.classes)
    S = len(prep.seeds)
    schedule = learning_rate_schedule(tcfg)
    input_shape = prep.table.shape[1:]

    checkpoints = FoldCheckpoints(workdir / "checkpoints" / fold.name)
    states = prep.trainer.init(seed_keys(prep.seeds, k), input_shape)
    best = new_best(S)
    # a copy: the train step donates (frees) the buffers of the states it is given
    best_states = jax.tree_util.tree_map(jnp.copy, states) if len(val_rows) else None
    start_epoch = checkpoints.latest_epoch() or 0
    if start_epoch:
        extras_template = best_extras(best)
        if best_states is not None:
            extras_template["best_state"] = _tree_of(best_states)
        states, extras = checkpoints.restore(start_epoch, states, extras_template)
        best = best_from_extras(extras)
        if best_states is not None:
            best_states = _with_tree(states, extras["best_state"])
    metrics_path = workdir / "metrics.jsonl"
    _rewrite_metrics(metrics_path, fold.name, start_epoch)

    def save(epoch_done, states_done, best_done, best_states_done):
        extras = best_extras(best_done)
        if best_states_done is not None:
            extras["best_state"] = _tree_of(best_states_done)
        checkpoints.save(epoch_done, states_done, extras)
        if on_checkpoint is not None:
            on_checkpoint()

    saved_epoch = start_epoch
    bar = tqdm(
        range(start_epoch, tcfg.epochs),
        initial=start_epoch,
        total=tcfg.epochs,
        desc=f"{fold.name} ({S} seed{'s' * (S > 1)})",
        unit="epoch",
        disable=not progress,
    )
    labels_on_device = jnp.asarray(prep.labels)  # once per fold, not once per step
    stop = StopRequest()
    snapshot = (start_epoch, states, dict(best), best_states)
    try:
        stop.__enter__()
        for epoch in bar:
            # What `epoch` finished epochs left, kept whole while this epoch runs (the steps
            # donate their input): an interruption saves it, so Ctrl-C loses at most this epoch.
            snapshot = (epoch, states, dict(best), best_states)
            states = jax.tree_util.tree_map(jnp.copy, states)
            lr = jnp.float32(schedule(epoch))
            step_stats = []
            for rows in epoch_batches(train_rows, tcfg.batch_size, prep.seeds, k, epoch):
                if stop.requested:
                    raise _StopNow
                states, stats = prep.trainer.train_step(
                    states, jnp.asarray(rows), prep.table, labels_on_device, weights, mean, std, lr
                )
                step_stats.append(stats)
            # [steps, S, 2]: fetched once per epoch, stacked in NumPy (a jnp.stack would compile
            # again for each new number of steps per epoch, i.e. per fold size)
            stats = np.stack(jax.device_get(step_stats))
            diverged = [
                seed for s, seed in enumerate(prep.seeds) if not np.isfinite(stats[:, s, 0]).all()
            ]
            if diverged:
                checkpoints.close()
                raise SerjaxError(
                    f"{fold.name}, epoch {epoch + 1}: the training loss of seed(s) {diverged} "
                    "is not finite (training diverged); try a lower train.learning_rate "
                    "in a new --workdir"
                )
            records = [
                {
                    "fold": fold.name,
                    "seed": seed,
                    "epoch": epoch + 1,
                    "lr": float(lr),
                    "train_loss": float(stats[:, s, 0].mean()),
                    "train_acc": float(stats[:, s, 1].sum() / (stats.shape[0] * tcfg.batch_size)),
                }
                for s, seed in enumerate(prep.seeds)
            ]
            last_epoch = epoch + 1 == tcfg.epochs
            if len(val_rows):
                val_scores = _score_seeds(
                    prep.trainer.predict(
                        states, prep.table, val_rows, mean, std, tcfg.eval_batch_size
                    ),
                    prep.labels[fold.validation],
                    num_classes,
                )
                best, improved = update_best(best, [v["ua"] for v in val_scores], epoch + 1)
                if improved.any():
                    best_states = _select(improved, states, best_states)
                for record, v in zip(records, val_scores):
                    record.update({f"val_{m}": v[m] for m in METRICS})
            if tcfg.eval_every and ((epoch + 1) % tcfg.eval_every == 0 or last_epoch):
                test_scores = _score_seeds(
                    prep.trainer.predict(
                        states, prep.table, test_rows, mean, std, tcfg.eval_batch_size
                    ),
                    prep.labels[fold.test],
                    num_classes,
                )
                for record, t in zip(records, test_scores):
                    record.update({f"test_{m}": t[m] for m in METRICS})
            with open(metrics_path, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)
            postfix = {"loss": f"{np.mean([r['train_loss'] for r in records]):.3f}"}
            if "test_ua" in records[0]:
                postfix["test UA"] = f"{np.mean([r['test_ua'] for r in records]):.3f}"
            bar.set_postfix(postfix)
            if (epoch + 1) % tcfg.checkpoint_every == 0 or last_epoch or stop.requested:
                save(epoch + 1, states, best, best_states)
                saved_epoch = epoch + 1
            if stop.requested and not last_epoch:
                raise _StopNow
    except _StopNow:
        done, done_states, done_best, done_best_states = snapshot
        if done > saved_epoch:
            save(done, done_states, done_best, done_best_states)
            saved_epoch = done
        checkpoints.close()
        bar.close()
        raise Interrupted(fold.name, saved_epoch) from None
    finally:
        stop.__exit__()
    checkpoints.close()

    result = evaluate_fold(prep, k, states, fold, mean, std)
    result.update(
        {
            "epochs": tcfg.epochs,
            "class_weights": weights_np.tolist(),
            "normalisation": {"mean": mean_np.tolist(), "std": std_np.tolist()},
        }
    )
    if best_states is not None:
        selected = prep.trainer.predict(
            best_states, prep.table, test_rows, mean, std, tcfg.eval_batch_size
        )
        result["best_val"] = {
            "epoch": best["epoch"].tolist(),
            "val_ua": best["score"].tolist(),
            "per_seed": _score_seeds(selected, prep.labels[fold.test], num_classes),
        }
    return result


def evaluate_fold(prep: Prepared, k: int, states, fold=None, mean=None, std=None) -> dict:
    """Test-fold predictions and scores of the given (stacked) states."""
    fold = fold or split_fold(prep, k)
    if mean is None:
        mean_np, std_np, _ = fold_statistics(prep, fold)
        mean, std = jnp.asarray(mean_np), jnp.asarray(std_np)
    _, test_version = check_versions(prep.config)
    logits = prep.trainer.predict(
        states,
        prep.table,
        prep.rows(test_version, fold.test),
        mean,
        std,
        prep.config.train.eval_batch_size,
    )
    labels = prep.labels[fold.test]
    eca = {}
    if prep.config.model.eca_layers:
        weights = prep.trainer.channel_weights(
            states,
            prep.table,
            prep.rows(test_version, fold.test),
            mean,
            std,
            prep.config.train.eval_batch_size,
        )
        # per block and seed: [classes, channels], averaged over each class's test utterances
        # (paper Fig. 14). Never averaged across seeds or folds: channel i of one model has
        # nothing to do with channel i of another.
        eca = {
            name: [
                [
                    np.round(w[s, labels == c].mean(axis=0), 6).tolist()
                    if np.any(labels == c)
                    else None
                    for c in range(len(prep.config.data.classes))
                ]
                for s in range(w.shape[0])
            ]
            for name, w in weights.items()
        }
    return {
        "fold": fold.name,
        "seeds": prep.seeds,
        "eca_weights": eca,
        "test_utterances": [prep.listing.utterances[i].utt_id for i in fold.test],
        "labels": labels.tolist(),
        "probabilities": np.round(softmax(logits), 6).tolist(),
        "per_seed": _score_seeds(logits, labels, len(prep.config.data.classes)),
    }


def restore_final_states(
    trainer: Trainer, config, workdir: Path, fold_name: str, fold_index: int, seeds, input_shape
):
    """A finished fold's last-epoch states, all seeds stacked (for eval and predict)."""
    checkpoints = FoldCheckpoints(Path(workdir) / "checkpoints" / fold_name)
    epoch = checkpoints.latest_epoch()
    if epoch != config.train.epochs:
        raise SerjaxError(
            f"fold {fold_name} has no final checkpoint in {checkpoints.directory} "
            f"(latest: {epoch}, expected epoch {config.train.epochs})"
        )
    template = trainer.init(seed_keys(seeds, fold_index), input_shape)
    extras = best_extras(new_best(len(seeds)))
    if config.train.validation_fraction > 0:
        extras["best_state"] = _tree_of(template)
    states, _ = checkpoints.restore(epoch, template, extras)
    checkpoints.close()
    return states


def _tree_of(states) -> dict:
    return {"params": states.params, "batch_stats": states.batch_stats}


def _with_tree(states, tree):
    return states.replace(params=tree["params"], batch_stats=tree["batch_stats"])


def _select(mask: np.ndarray, new, old):
    """Per seed, the new state where mask is set, else the old one (params and BN stats)."""
    pick = jnp.asarray(mask)

    def choose(a, b):
        return jnp.where(pick.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

    return old.replace(
        params=jax.tree_util.tree_map(choose, new.params, old.params),
        batch_stats=jax.tree_util.tree_map(choose, new.batch_stats, old.batch_stats),
    )


def summarize_results(fold_results: list[dict], config, key: str = "per_seed") -> dict:
    """Mean ± std over folds × seeds, per fold (over seeds) and per seed (over folds)."""

    def block(entries):
        return {
            m: {
                "mean": float(np.mean([e[m] for e in entries])),
                "std": float(np.std([e[m] for e in entries])),
            }
            for m in METRICS
        }

    def pick(result):
        return result[key] if key == "per_seed" else result[key]["per_seed"]

    grid = [[pick(r)[s] for s in range(len(r["seeds"]))] for r in fold_results]  # [fold][seed]
    summary = block([e for row in grid for e in row])
    seeds = fold_results[0]["seeds"]
    summary["per_fold"] = [
        {
            "fold": r["fold"],
            "n_test": len(r["labels"]),
            **{m: float(np.mean([e[m] for e in row])) for m in METRICS},
        }
        for r, row in zip(fold_results, grid)
    ]
    summary["per_seed"] = [
        {"seed": seed, **{m: float(np.mean([row[s][m] for row in grid])) for m in METRICS}}
        for s, seed in enumerate(seeds)
    ]
    summary["confusion"] = np.sum([e["confusion"] for row in grid for e in row], axis=0).tolist()
    if key == "per_seed" and fold_results[0].get("eca_weights"):
        # one model's weights, as the paper plots them: the first fold's first seed
        summary["eca_weights"] = {
            name: per_seed[0] for name, per_seed in fold_results[0]["eca_weights"].items()
        }
        summary["eca_weights_model"] = {
            "fold": fold_results[0]["fold"],
            "seed": fold_results[0]["seeds"][0],
        }
    return summary


def run(config, workdir: Path, progress: bool = True) -> dict:
    """Train every fold (skipping finished ones) and write summary.json and report.md."""
    from serjax.report import write_run_report

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    check_workdir_config(config, workdir)
    clock = WallClock(workdir / "wall_time.json")
    prep = prepare(config, workdir, progress)
    results = []
    try:
        for k, name in enumerate(prep.fold_names):
            path = workdir / "folds" / f"{name}.json"
            if path.exists():
                results.append(json.loads(path.read_text()))
                continue
            if not clock.entry["folds_trained"]:
                record_environment(workdir)  # this invocation trains: its versions and commit
            # the ledger follows the checkpoints: a killed run keeps the time of the work it kept
            result = train_fold(prep, k, workdir, progress, on_checkpoint=clock.record)
            write_json(path, result)
            results.append(result)
            clock.record(trained=name)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM: the time up to the saved epoch counts
        clock.record()
        raise
    summary = build_summary(results, config, prep)
    summary["wall_time_s"], summary["invocations"] = clock.record()
    write_json(workdir / "summary.json", summary)
    write_run_report(workdir, config, summary)
    return summary


class WallClock:
    """A run's wall time over every invocation that worked on it (a run stopped and resumed
    is timed in parts, and a rerun of a finished one adds only its own seconds), kept in
    wall_time.json: one entry per invocation, rewritten after each fold it trains. Earlier
    entries count only while their work is there to resume (a fold result or a checkpoint):
    a workdir without them trains from scratch, and so starts a new ledger."""

    def __init__(self, path: Path):
        self.path, self.started = path, time.time()
        workdir = path.parent
        resumable = has_trained_work(workdir)
        self.earlier = (
            json.loads(path.read_text())["invocations"] if resumable and path.exists() else []
        )
        self.entry = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "seconds": 0.0,
            "folds_trained": [],
        }

    def record(self, trained: str | None = None) -> tuple[float, int]:
        """Write this invocation's time so far; return (total seconds, invocations)."""
        if trained is not None:
            self.entry["folds_trained"].append(trained)
        self.entry["seconds"] = round(time.time() - self.started, 1)
        invocations = self.earlier + [self.entry]
        total = round(sum(e["seconds"] for e in invocations), 1)
        write_json(self.path, {"total_s": total, "invocations": invocations})
        return total, len(invocations)


def build_summary(results, config, prep: Prepared) -> dict:
    summary = {
        "corpus": prep.listing.name,
        "protocol": config.protocol.name,
        "classes": list(config.data.classes),
        "num_utterances": int(len(prep.labels)),
        "train_versions": list(config.experiment.train_versions),
        "test_version": int(config.experiment.test_version),
        "seeds": prep.seeds,
        "epochs": int(config.train.epochs),
        "selection": "last epoch",
        "speakers_known": speakers_known(prep),
    }
    summary.update(summarize_results(results, config))
    if "best_val" in results[0]:
        summary["best_val"] = summarize_results(results, config, key="best_val")
        summary["best_val"]["selection"] = (
            f"best epoch on an inner validation split ({config.train.validation_fraction:.0%} of each training "
            f"fold{', whole speakers held out' if validates_by_speaker(prep) else ''})"
        )
    return summary


def _comparable(config) -> dict:
    """The config as JSON, without fields that may change between a run and its resumption."""
    d = json.loads(config.to_json())
    d.pop("cache_dir", None)
    d["data"].pop("load_workers", None)
    return d


# Config fields added after runs were saved, with the value that does what those runs did:
# a saved config without the field equals a current one that has this value.
ADDED_FIELDS = {"data.normalisation": "per_band"}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: dict, current: dict) -> list[str]:
    """The dotted fields whose values differ between a saved config and the current one."""
    a, b = _flat(saved), _flat(current)
    for field, old_behaviour in ADDED_FIELDS.items():
        if field not in a and b.get(field) == old_behaviour:
            b.pop(field)
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def check_workdir_config(config, workdir: Path) -> None:
    path = workdir / "config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        differences = config_differences(saved.get("config", {}), _comparable(config))
        if not differences:
            return
        listed = ", ".join(differences[:5]) + (", …" if len(differences) > 5 else "")
        if has_results(workdir):
            raise SerjaxError(
                f"workdir {workdir} holds a run of a different config ({path}; fields "
                f"that differ: {listed}); use another --workdir, or delete that one to start over"
            )
        # an earlier start that stopped before training anything (a bad corpus, a bad field):
        # nothing of it is kept but its config and fold assignment, which the new config replaces
        print(
            f"serjax: {workdir} held only an untrained start with another config ({listed}); "
            "starting over with this one"
        )
        (workdir / "folds.json").unlink(missing_ok=True)
    # the versions are added by record_environment when this invocation starts training
    write_json(path, {"config": _comparable(config)})


def has_trained_work(workdir: Path) -> bool:
    """Whether a workdir holds work to resume: a finished fold or a checkpoint."""
    return any((workdir / "folds").glob("*.json")) or any((workdir / "checkpoints").glob("*/*"))


def has_results(workdir: Path) -> bool:
    """Whether a workdir holds a run: a summary or work to resume."""
    return (workdir / "summary.json").exists() or has_trained_work(workdir)


def record_environment(workdir: Path) -> None:
    """config.json's "versions" describe the software that trains (written when training
    starts): a workdir whose folds are trained further by another checkout or machine gets
    the current ones, and the earlier ones move to "earlier_versions" while work they trained
    is kept (finished folds, checkpoints); a run trained again from nothing (e.g. a committed
    results folder, whose checkpoints git does not keep) drops them, as the wall-time ledger
    drops their invocations."""
    path = workdir / "config.json"
    saved = json.loads(path.read_text())
    now = _environment()
    if saved.get("versions") != now:
        if saved.get("versions") and has_trained_work(workdir):
            saved.setdefault("earlier_versions", []).append(saved["versions"])
        saved["versions"] = now
        write_json(path, saved)


def _environment() -> dict:
    import flax
    import optax
    import orbax.checkpoint

    return {
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "orbax": orbax.checkpoint.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "git_commit": _git_commit(),
        "host_allocator": allocator_state(),
        "compiler_options": compiler_options(),
    }


def _git_commit(here: Path | None = None) -> str | None:
    """The commit of the serjax checkout that ran, with '+dirty' when its tracked files differ
    from it outside results/ (a run rewriting the committed results it reproduces, as
    `python launch.py` does, changes no software)."""
    import subprocess

    if os.environ.get("SERJAX_GIT_COMMIT"):
        # set by whoever ships a copy of the tree elsewhere (its .git, if any, may be stale)
        return os.environ["SERJAX_GIT_COMMIT"]
    here = here or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        status = ["git", "status", "--porcelain", "--untracked-files=no"]
        done = subprocess.run(
            [*status, "--", ":(top)", ":(top,exclude)results"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if done.returncode != 0:  # a git without pathspec magic: every change counts
            done = subprocess.run(
                status, cwd=here, capture_output=True, text=True, timeout=5, check=True
            )
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if done.stdout.strip() else "")
