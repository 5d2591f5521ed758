"""Atomic writes: a file under its final name is always complete."""

from __future__ import annotations

import json
import os
from pathlib import Path

from serjax.errors import SerjaxError


def write_text(path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_json(path):
    """A JSON file's content; a damaged one stops with a line naming it, and is left as is."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f" at line {err.lineno}, column {err.colno}" if hasattr(err, "lineno") else ""
        raise SerjaxError(
            f"{path} is damaged (not valid JSON{where}); it was left as it is: restore it from "
            "a copy, or move it aside"
        ) from None


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_problem(folder) -> str | None:
    """Why this process cannot write files in `folder` (created if missing), or None."""
    folder = Path(folder)
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return err.strerror or str(err)
    return None
