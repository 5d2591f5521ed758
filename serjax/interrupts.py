"""Ctrl-C and SIGTERM during training: a flag the epoch loop checks between steps, so an
interruption never lands inside a library call (an Orbax save, say)."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """A context that turns SIGINT/SIGTERM into `requested = True`; a second Ctrl-C stops
    at once. Outside the main thread (where signals cannot be caught) it does nothing."""

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


class StopNow(Exception):
    """Raised by the epoch loop itself at a safe point when a stop was requested."""


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM, after saving the last finished epoch."""

    def __init__(self, fold: str, epoch: int):
        super().__init__(f"interrupted in {fold}; its checkpoint holds epoch {epoch}")
        self.fold, self.epoch = fold, epoch
