"""bench/bench_sweep.py --quick: a one-run sweep inline and on an embedded Ray (their results
must be equal), then the GPU-sharing part's code on the CPU (1 and 2 tasks at once), tiny
shapes; the output files hold what results/bench/sweep.md is written from."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]


def test_quick_sweep_benchmark_writes_both_parts(tmp_path):
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"
    )
    done = subprocess.run(
        [sys.executable, "bench/bench_sweep.py", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "sweep.json").read_text())
    assert {"command", "date", "machine", "versions", "sweep", "gpu_shares"} <= set(result)
    assert result["command"].startswith("python bench/bench_sweep.py --quick")

    sweep = result["sweep"]
    assert sweep["grid"]["runs"] == ["k7_v8"]
    for executor in ("inline", "ray"):
        row = sweep[executor]
        assert row["executor"] == executor and row["runs"] == 1 and row["tasks"] == 2
        assert row["wall_time_s"] > 0 and row["tasks_per_hour"] > 0
    check = sweep["check"]
    assert check["identical"] is True and check["differing"] == [] and check["files"] == 3
    assert check["metrics_jsonl_identical"] is True

    shares = result["gpu_shares"]
    assert [r["tasks_per_gpu"] for r in shares["rows"]] == [1, 2]
    assert shares["rows"][0]["vs_one_task"] == 1.0
    for row in shares["rows"]:
        assert row["total_samples_per_s"] > 0 and len(row["tasks"]) == row["tasks_per_gpu"]
        assert all(t["measured_epochs"] == 2 for t in row["tasks"])
        assert row["gpus_per_task"] == (1 / row["tasks_per_gpu"] if shares["gpus"] else 0.0)

    md = (tmp_path / "sweep.md").read_text()
    assert "| 1 | inline |" in md and "| 1 | ray |" in md and "**identical**" in md
    assert "| tasks per GPU k |" in md and "Command: `python bench/bench_sweep.py --quick" in md
