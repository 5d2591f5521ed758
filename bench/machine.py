"""What machine a benchmark ran on, for its JSON and Markdown output, and writing the two."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path


def machine_info() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def utc_now() -> str:
    """The current time in UTC, to the second: a benchmark's "date"."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def command_line(script: str, argv=None) -> str:
    """How a benchmark was started, as a shell command: `python bench/<script>` and its
    arguments (argv, or this process's when argv is None)."""
    return f"python bench/{script}" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)
    )


def write_outputs(out_dir, stem: str, result: dict, markdown: str) -> tuple[Path, Path]:
    """Write a benchmark's result as <stem>.json and its table as <stem>.md under out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path
