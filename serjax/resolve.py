"""What a config means for a run, resolved once and checked before any data is read:
the STFT versions it trains and tests on, its seeds and its model."""

from __future__ import annotations

import dataclasses

from serjax import data as data_lib
from serjax import features
from serjax.errors import SerjaxError
from serjax.losses import check_focal_gamma
from serjax.model import build_model, check_input_size
from serjax.seeds import resolve_seed_strategy, seeds_of


def check_versions(config) -> tuple[list[int], int]:
    """(training versions, test version), each one of the eight STFT versions."""
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


def _check_optimiser_and_protocol(config) -> None:
    """The fields that would only fail after the corpus and features were built."""
    lr, decay = float(config.train.learning_rate), float(config.train.lr_decay_per_epoch)
    if not 0 < lr < float("inf"):
        raise SerjaxError(f"config field train.learning_rate: need > 0, got {lr}")
    if not 0 < decay <= 1:
        raise SerjaxError(f"config field train.lr_decay_per_epoch: need 0 < d <= 1, got {decay}")
    fraction = float(config.train.validation_fraction)
    if not 0 <= fraction < 1:
        raise SerjaxError(
            f"config field train.validation_fraction: need 0 <= f < 1, got {fraction}"
        )
    protocol = config.protocol.name
    if protocol not in data_lib.PROTOCOLS:
        raise SerjaxError(
            f"config field protocol.name: {protocol!r} is not one of {data_lib.PROTOCOLS}"
        )
    resolve_seed_strategy(config.train.seed_strategy)
    folds = int(config.protocol.num_folds)
    if protocol in ("stratified_kfold", "speaker_kfold") and folds < 2:
        raise SerjaxError(f"config field protocol.num_folds: need 2 or more folds, got {folds}")


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What a config means for a run, checked before any data is read."""

    config: object
    classes: list[str]
    train_versions: list[int]
    test_version: int
    versions: list[int]  # the device table's versions, in table order
    seeds: list[int]
    model: object


def resolve(config) -> Resolved:
    """Every check a config can fail without data: a bad field stops here, naming it."""
    for field in ("epochs", "batch_size", "eval_batch_size", "checkpoint_every"):
        if int(config.train[field]) < 1:
            raise SerjaxError(f"config field train.{field}: need >= 1, got {config.train[field]}")
    check_focal_gamma(float(config.train.focal_gamma))
    _check_optimiser_and_protocol(config)
    data_lib.normalisation_of(config.data)
    train_versions, test_version = check_versions(config)
    versions = sorted(set(train_versions) | {test_version})
    settings = features.FeatureSettings.from_config(config.features)
    check_input_size(settings.n_mels, features.num_frames(settings, versions))
    classes = list(config.data.classes)
    model = build_model(config.model, len(classes))
    return Resolved(
        config, classes, train_versions, test_version, versions, seeds_of(config), model
    )
