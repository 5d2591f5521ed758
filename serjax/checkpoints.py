"""Orbax checkpoints: one CheckpointManager per fold, all seeds in one pytree."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import orbax.checkpoint as ocp

from serjax import selection
from serjax.errors import SerjaxError
from serjax.seeds import seed_keys


class DamagedCheckpoint(SerjaxError):
    """A checkpoint whose files do not restore."""


@contextlib.contextmanager
def _quiet():
    """Orbax and TensorStore log a damaged checkpoint at length: keep only our one line."""
    loggers = [logging.getLogger(n) for n in ("", "absl", "orbax", "asyncio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _state_tree(states) -> dict:
    return {
        "params": states.params,
        "batch_stats": states.batch_stats,
        "opt_state": states.opt_state,
        "step": states.step,
    }


class FoldCheckpoints:
    """Saves {state, extras} under <workdir>/checkpoints/<fold>/<epoch>/."""

    def __init__(self, directory: Path, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_epoch(self) -> int | None:
        return self.manager.latest_step()

    def save(self, epoch: int, states, extras: dict) -> None:
        tree = {"state": _state_tree(states), "extras": extras}
        with self._writing(epoch):
            self.manager.save(epoch, args=ocp.args.StandardSave(tree), force=True)

    @contextlib.contextmanager
    def _writing(self, epoch):
        """A failed write (a full disk, say) is one line; the earlier checkpoints stay."""
        try:
            yield
        except OSError as err:
            raise SerjaxError(
                f"checkpoint {self.directory / str(epoch)} could not be written "
                f"({err.strerror or err}); the earlier checkpoints are intact: free some "
                "space and run the same command again to resume"
            ) from None

    def restore(self, epoch: int, template_states, template_extras: dict):
        """(states, extras) saved at `epoch`, shaped like the templates."""
        template = {"state": _state_tree(template_states), "extras": template_extras}
        try:
            with _quiet():
                tree = self.manager.restore(epoch, args=ocp.args.StandardRestore(template))
        except Exception as err:  # orbax raises many types for damaged files
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise DamagedCheckpoint(
                f"checkpoint {self.directory / str(epoch)} cannot be restored "
                f"({type(err).__name__}: {reason}); delete that folder to retrain from "
                "the previous checkpoint"
            ) from None
        s = tree["state"]
        states = template_states.replace(
            params=s["params"],
            batch_stats=s["batch_stats"],
            opt_state=s["opt_state"],
            step=s["step"],
        )
        return states, tree["extras"]

    def restore_latest_intact(self, template_states, template_extras: dict):
        """(epoch, states, extras) of the newest checkpoint that restores, or (None, ...)
        when there is none. A damaged one is moved to checkpoints-damaged/ (kept, out of
        Orbax's way) and the previous one is used, with one line saying so."""
        for epoch in sorted(self.manager.all_steps(), reverse=True):
            try:
                return (epoch, *self.restore(epoch, template_states, template_extras))
            except DamagedCheckpoint as err:
                aside = self.directory.parent.parent / "checkpoints-damaged" / self.directory.name
                aside.mkdir(parents=True, exist_ok=True)
                target = aside / f"{epoch}-{time.strftime('%Y%m%d-%H%M%S')}"
                (self.directory / str(epoch)).rename(target)
                print(f"serjax: {str(err).split(';')[0]}; moved to {target}, resuming before it")
                self.manager.reload()
        return None, template_states, template_extras

    def close(self) -> None:
        with self._writing(self.latest_epoch()):
            self.manager.wait_until_finished()
        self.manager.close()


def restore_final_states(
    trainer, config, workdir: Path, fold_name: str, fold_index: int, seeds, input_shape
):
    """A finished fold's last-epoch states, all seeds stacked (for eval and predict)."""
    checkpoints = FoldCheckpoints(Path(workdir) / "checkpoints" / fold_name)
    epoch = checkpoints.latest_epoch()
    if epoch != config.train.epochs:
        raise SerjaxError(
            f"fold {fold_name} has no final checkpoint in {checkpoints.directory} "
            f"({'none at all' if epoch is None else f'latest: epoch {epoch}'}, "
            f"expected epoch {config.train.epochs}); finish training it first"
        )
    template = trainer.init(seed_keys(seeds, fold_index), input_shape)
    extras = selection.best_extras(selection.new_best(len(seeds)))
    if config.train.validation_fraction > 0:
        extras["best_state"] = selection.weights_of(template)
    states, _ = checkpoints.restore(epoch, template, extras)
    checkpoints.close()
    return states
