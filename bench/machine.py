"""What machine a benchmark ran on, for its JSON and Markdown output, and writing the two."""

from __future__ import annotations

import json
import os
import platform
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
    return {"cpu": cpu, "cores": usable, "platform": platform.platform(),
            "python": platform.python_version()}


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def write_outputs(out_dir, stem: str, result: dict, markdown: str) -> tuple[Path, Path]:
    """Write a benchmark's result as <stem>.json and its table as <stem>.md under out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path
