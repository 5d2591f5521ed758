"""Exclusive locks on the folders serjax writes: a run's workdir, a fold of it, a sweep, a
feature-cache folder being built. An advisory `flock` on `<folder>/.serjax.lock`, whose
text names the holder (host, pid, since): the kernel drops the lock when its process dies,
so a lock left by a killed run is taken over with nothing to clean. Re-entrant within a
process (the command line and the run it starts both take the workdir's lock)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path

from serjax.errors import SerjaxError

NAME = ".serjax.lock"
_held: dict[str, list] = {}  # lock path -> [open file, depth]


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


@contextlib.contextmanager
def exclusive(folder, what: str, wait: bool = False, name: str = NAME):
    """Hold `folder`'s lock (the file `name` under it) for the block. Held by another
    process: one SerjaxError naming the holder, or with `wait`, block until released."""
    try:
        path = Path(os.path.realpath(folder)) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if str(path) in _held:
            handle = None
        else:
            handle = open(path, "a+")
    except OSError as err:
        raise SerjaxError(f"{what} {folder}: cannot write there ({err.strerror})") from None
    if handle is None:  # this process holds it already
        _held[str(path)][1] += 1
        try:
            yield
        finally:
            _held[str(path)][1] -= 1
        return
    try:
        _acquire(handle, path, what, folder, wait)
        _held[str(path)] = [handle, 1]
        try:
            yield
        finally:
            del _held[str(path)]
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def _acquire(handle, path: Path, what: str, folder, wait: bool) -> None:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if not wait:
            raise SerjaxError(
                f"{what} {folder} is in use by {_holder(path)}; wait for it to finish, "
                "or stop it (a lock left by a process that died is taken over)"
            ) from None
        print(f"serjax: waiting for {_holder(path)} to finish with {folder}")
        fcntl.flock(handle, fcntl.LOCK_EX)
    since = time.strftime("%Y-%m-%d %H:%M:%S %z")
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {since}\n")
    handle.flush()


def is_lock_file(path: Path) -> bool:
    return path.name == NAME
