"""The benchmark scripts that users and lent GPU machines run: bench/run_all.py (runs the CPU
benchmarks one after another and checks the performance goals against the files they
wrote; tested on small made-up files, as the benchmarks take about 40 minutes), the
smoke test of bench/gpu_session.py and bench/profile_step.py (on a tiny input)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_session  # noqa: E402
import profile_step  # noqa: E402
import run_all  # noqa: E402

DATE = "2026-01-02T03:04:05+00:00"


def _write(out: Path, name: str, data: dict) -> None:
    (out / name).write_text(json.dumps(data))


def _files(
    out: Path,
    train_ratios=(1.2, 0.95, 1.1),
    feature_ratios=(3.0, 1.4),
    total_s=20.0,
    peak_mb=4300.0,
    date=DATE,
):
    _write(
        out,
        "train.json",
        {
            "date": date,
            "comparison": [
                {
                    "n": n,
                    "ratio_train_jax_over_torch": r,
                    "ratio_train_jax_over_torch_range": [r - 0.05, r + 0.05],
                }
                for n, r in zip((1, 2, 4), train_ratios)
            ],
            "seed_scaling": {
                "auto_resolves_to": "unroll",
                "rows": [
                    {"S": 1, "strategy": "unroll", "ratio_over_sequence": 0.9},
                    {"S": 2, "strategy": "unroll", "ratio_over_sequence": 1.1},
                    {"S": 4, "strategy": "unroll", "ratio_over_sequence": 0.97},
                    {"S": 4, "strategy": "vmap", "ratio_over_sequence": 0.5},
                ],
            },
        },
    )
    _write(
        out,
        "features.json",
        {
            "date": date,
            "num_utterances": 2943,
            "total_jax_s_all_versions": total_s,
            "rows": [
                {"version": v + 1, "ratio_jax_over_librosa": r}
                for v, r in enumerate(feature_ratios)
            ],
        },
    )
    _write(
        out,
        "memory.json",
        {"date": date, "peak_rss_mb": peak_mb, "utterances": 2943, "versions": 8, "width_scale": 4},
    )
    _write(out, "layers.json", {"date": date})


def _by_goal(checked):
    return {g["goal"]: g for g in checked["goals"]}


def test_goals_are_checked_against_the_files(tmp_path):
    _files(tmp_path)
    goals = _by_goal(run_all.check_goals(tmp_path))
    met = {name: g["met"] for name, g in goals.items()}
    assert met["CPU train throughput vs PyTorch eager, n = 1"] is True
    assert met["CPU train throughput vs PyTorch eager, n = 2"] is False  # 0.95 < 1.0
    assert goals["CPU train throughput vs PyTorch eager, n = 2"]["value"] == "0.95×"
    # seeds: only the strategy `auto` uses, only S >= 2
    seeds = {name: m for name, m in met.items() if "seeds" in name}
    assert seeds == {
        "CPU: S = 2 seeds (`auto` = unroll) vs S single-seed runs": True,
        "CPU: S = 4 seeds (`auto` = unroll) vs S single-seed runs": False,
    }
    assert met["features: JAX vs librosa, every version"] is False  # v2 at 1.4
    assert "v2" in goals["features: JAX vs librosa, every version"]["value"]
    assert met["features: all 8 versions of 2943 utterances"] is True
    assert met["memory: 2943 utterances, 8 versions, n = 4"] is True
    # no GPU file: said so, neither met nor failed
    assert goals["GPU: full default run"]["met"] is None
    assert "no GPU run" in goals["GPU: full default run"]["note"]


def test_a_finished_gpu_run_is_judged_and_an_unfinished_one_is_not(tmp_path):
    _files(tmp_path)
    device = {"device": "NVIDIA H100"}
    _write(
        tmp_path,
        "gpu-run.json",
        {
            "date": DATE,
            "finished": False,
            "wall_time_s": 300.0,
            "epochs_done": 399,
            "epochs_total": 750,
            "stopped_why": "time budget",
            "device": device,
            "projection": {"projected_wall_time_s": 571.5},
        },
    )
    goal = _by_goal(run_all.check_goals(tmp_path))["GPU: full default run on NVIDIA H100"]
    assert (
        goal["met"] is None and "projected 572 s" in goal["note"] and "399 of 750" in goal["note"]
    )
    _write(
        tmp_path,
        "gpu-run.json",
        {"date": DATE, "finished": True, "wall_time_s": 640.0, "device": device},
    )
    goal = _by_goal(run_all.check_goals(tmp_path))["GPU: full default run on NVIDIA H100"]
    assert goal["met"] is False and goal["value"] == "640 s"


def test_missing_and_broken_files_are_reported_not_raised(tmp_path):
    (tmp_path / "train.json").write_text("{not json")
    goals = run_all.check_goals(tmp_path)["goals"]
    assert all(g["met"] is None for g in goals)
    assert any(g["source"] == "train.json" and "missing or unreadable" in g["note"] for g in goals)


def test_one_run_only_when_every_cpu_benchmark_falls_in_the_window(tmp_path):
    _files(tmp_path)
    dates = run_all.check_goals(tmp_path)["cpu_dates"]
    assert (
        run_all.one_run(dates, ("2026-01-02T03:00:00+00:00", "2026-01-02T04:00:00+00:00")) is True
    )
    assert (
        run_all.one_run(dates, ("2026-01-02T03:30:00+00:00", "2026-01-02T04:00:00+00:00")) is False
    )
    assert run_all.one_run(dates, None) is None
    del dates["layers"]
    assert (
        run_all.one_run(dates, ("2026-01-02T03:00:00+00:00", "2026-01-02T04:00:00+00:00")) is False
    )


def test_summary_only_writes_json_and_markdown(tmp_path, capsys):
    _files(tmp_path)
    assert run_all.main(["--summary-only", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["runs"] == [] and summary["one_run"] is None
    md = (tmp_path / "summary.md").read_text()
    assert "| CPU train throughput vs PyTorch eager, n = 2 | 0.95× | ≥ 1.00× | **not met** |" in md
    assert "separate runs" in md


def test_a_failing_benchmark_does_not_stop_the_others(tmp_path, monkeypatch):
    ok, bad = tmp_path / "ok.py", tmp_path / "bad.py"
    ok.write_text(
        "import sys, json, pathlib\nout = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\n"
        "(out / 'layers.json').write_text(json.dumps({'date': '2026-01-01T00:00:00+00:00'}))\n"
    )
    bad.write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(
        run_all, "BENCHMARKS", {"bad": ([str(bad)], "x.json"), "ok": ([str(ok)], "layers.json")}
    )
    assert run_all.main(["--out", str(tmp_path)]) == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["name"], r["returncode"]) for r in summary["runs"]] == [("bad", 3), ("ok", 0)]
    assert (tmp_path / "layers.json").is_file()
    with pytest.raises(SystemExit):
        run_all.main(["--only", "nonesuch"])


def _python_in_repo(*args) -> str:
    """Run python with these arguments in the repository on the CPU; its stdout (fails on an
    error exit, showing stderr's end)."""
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"
    )
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_gpu_sessions_smoke_test_passes_on_the_cpu():
    """bench/gpu_session.py stops a lent GPU machine's session when its smoke test (model,
    train step, checkpoint round trip with the machine's packages) fails. It once fed the
    model an input too small for its five poolings and would have stopped every session:
    run it here, where it is cheap."""
    assert "smoke ok" in _python_in_repo("-c", gpu_session.SMOKE)


def test_a_recheck_keeps_the_record_of_the_run_that_wrote_the_files(tmp_path):
    _files(tmp_path)
    window = ["2026-01-02T03:00:00+00:00", "2026-01-02T04:00:00+00:00"]
    runs = [{"name": name, "returncode": 0, "wall_time_s": 1.0} for name in run_all.BENCHMARKS]
    _write(
        tmp_path,
        "summary.json",
        {
            "window": window,
            "runs": runs,
            "machine": {"cpu": "the run's", "cores": 2, "platform": "x", "python": "3"},
        },
    )
    assert run_all.main(["--summary-only", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (
        summary["one_run"] is True
        and summary["runs"] == runs
        and summary["machine"]["cpu"] == "the run's"
    )
    assert "come from that one run" in (tmp_path / "summary.md").read_text()
    # a benchmark rerun alone afterwards: its file is no longer from that run
    _files(tmp_path, date="2026-01-05T00:00:00+00:00")
    run_all.main(["--summary-only", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "summary.json").read_text())["one_run"] is False


@pytest.mark.parametrize("quick", [False, True])
def test_the_gpu_sessions_run_flags_are_valid(quick, tmp_path):
    """The full run's launch.py flags (config fields) still exist: a renamed field would
    otherwise surface only on a lent machine. describe checks them and builds the model."""
    flags = gpu_session.full_run_overrides(16, quick)
    _python_in_repo("launch.py", "--mode=describe", *flags, f"--workdir={tmp_path / 'w'}")
    model = json.loads((tmp_path / "w" / "model.json").read_text())
    n = 1 if quick else 4  # the default config's width, narrowed by the quick flags
    assert model["widths"] == [n * w for w in (8, 16, 32, 32, 64, 64)]
    assert model["eca_layers"] == [5, 6] and model["params"] > 0


HLO = """\
ENTRY %main {
  %broadcast_add_fusion.5 = f32[32,64,601,16]{3,2,1,0} fusion(%a, %b), kind=kLoop, calls=%f1, metadata={op_name="jit(unrolled)/jvp(SERCNN)/block1/Conv_0/add" stack_frame_id=36}
  %convolution.4 = f32[32,32,300,16]{3,2,1,0} convolution(%c, %d), window={size=3x3}, metadata={op_name="jit(unrolled)/transpose(jvp(SERCNN))/block2/Conv_0/conv_general_dilated"}
  %copy.91 = f32[1,3,3,16,32]{4,3,2,1,0} copy(%e)
  ROOT %tuple.1 = (f32[16]{0}, f32[]) tuple(%x, %y), metadata={op_name="jit(unrolled)/add"}
}
"""  # noqa: E501  (XLA's HLO text, verbatim)


def test_the_profiler_reads_block_and_pass_from_the_hlo():
    index = profile_step.hlo_index(HLO)
    assert index["broadcast_add_fusion.5"] == {
        "shape": "f32[32,64,601,16]",
        "opcode": "fusion",
        "block": "block1",
        "pass": "forward",
    }
    assert (
        index["convolution.4"]["block"] == "block2" and index["convolution.4"]["pass"] == "backward"
    )
    assert index["copy.91"]["block"] == profile_step.UNNAMED
    assert index["tuple.1"]["block"] == profile_step.OTHER
    found = [
        ("t0", "broadcast_add_fusion.5", 4_000_000),
        ("t1", "broadcast_add_fusion.5", 2_000_000),
        ("t0", "convolution.4", 1_000_000),
    ]
    out = profile_step.summarise(
        found, {"t0": 5_000_000, "t1": 2_000_000}, index, steps=2, wall_ms=3.0, threads=2, top=5
    )
    block1 = next(b for b in out["by_block"] if b["block"] == "block1")
    assert block1["forward_ms"] == 3.0 and block1["backward_ms"] == 0.0
    assert out["by_kind"][0] == {"kind": "broadcast_add_fusion", "ms": 3.0}
    # 2 threads x 3 ms per step, 3.5 ms of it in events
    assert out["event_ms_per_step"] == 3.5 and out["not_in_any_event_ms_per_step"] == 2.5


def test_the_profiler_runs_the_real_step(tmp_path):
    _python_in_repo(
        "bench/profile_step.py",
        "--widths",
        "1",
        "--input",
        "32",
        "40",
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--out",
        str(tmp_path),
    )
    res = json.loads((tmp_path / "profile.json").read_text())
    (profile,) = res["profiles"]
    blocks = {b["block"] for b in profile["by_block"]}
    assert {f"block{i}" for i in range(1, 7)} <= blocks
    assert profile["event_ms_per_step"] > 0 and profile["top"]
    assert "| block1 |" in (tmp_path / "profile.md").read_text()


def test_the_gpu_session_runs_whole_in_quick_mode_on_the_cpu(tmp_path):
    """bench/gpu_session.py, the one command a lent GPU machine runs, end to end at tiny
    sizes: the lever table (in-process cases and units in flight as worker processes), then
    the full run to its summary, with the levers' record beside it."""
    out = tmp_path / "out"
    _python_in_repo(
        "bench/gpu_session.py", "--out", str(out), "--quick", "--no-benches",
        "--scratch", str(tmp_path),
    )  # fmt: skip
    levers = json.loads((out / "gpu-levers.json").read_text())
    for case in ("base", "scan"):
        assert levers["cases"][case]["train_samples_per_s"] > 0
        assert levers["cases"][case]["repeats_bit_for_bit"]  # the CPU is deterministic
    units = levers["units"]["without MPS"]
    assert set(units) == {"1", "2"} and units["1"]["speed_over_one"] == 1.0
    assert len(units["2"]["per_unit"]) == 2
    assert "nvidia-cuda-mps-control" in levers["units"]["with MPS"]
    run = json.loads((out / "gpu-run.json").read_text())
    assert run["finished"] and run["epochs_done"] == run["epochs_total"] == 4
    assert run["levers"]["units_used"] == 1 and "summary" in run
    assert (out / "gpu-levers.md").exists() and (out / "gpu.md").exists()
    assert not (out / "levers-control").exists()  # workers' files and cache cleaned away


def test_the_levers_that_pay_become_the_full_runs_flags(tmp_path):
    """gpu_levers.chosen_levers keeps what trained ≥ 1.05× base (errors and slower cases
    dropped) and the units in flight that paid most; gpu_session.run_levers turns that into
    launch.py overrides, XLA_FLAGS, and Ray tasks sharing the GPU."""
    import gpu_levers

    result = {
        "size": {"seeds": 4},
        "cases": {
            "base": {"speed_over_base": 1.0},
            "scan": {"speed_over_base": 1.3},
            "vmap": {"speed_over_base": 1.01},
            "bfloat16": {"error": "refused"},
            "streams": {"speed_over_base": 1.2},
            "concurrent_regions": {"speed_over_base": 0.9},
        },
        "units": {
            "without MPS": {"1": {"speed_over_one": 1.0}, "2": {"speed_over_one": 1.5}},
            "with MPS": {"1": {"speed_over_one": 1.0}, "4": {"speed_over_one": 2.5}},
        },
    }
    chosen = gpu_levers.chosen_levers(result)
    assert chosen == {
        "overrides": ["--config.train.scan_epoch=True"],
        "xla_flags": ["--xla_gpu_executable_num_compute_streams=4"],
        "units": 4,
        "speed": 2.5,
    }
    (tmp_path / "gpu-levers.json").write_text(json.dumps({"chosen": chosen}))
    env = {"XLA_FLAGS": "--xla_dump_to=/x", "PATH": os.environ["PATH"]}
    levers = gpu_session.run_levers(tmp_path, env)
    assert levers["env"]["XLA_FLAGS"] == (
        "--xla_dump_to=/x --xla_gpu_executable_num_compute_streams=4"
    )
    assert levers["overrides"][0] == "--config.train.scan_epoch=True"
    assert levers["overrides"][1:] == [
        "--config.executor.name=ray",
        "--config.executor.gpus_per_task=0.2500",
    ]  # Ray is in the test extra
    assert levers["record"]["units_used"] == 4
    quick = gpu_session.run_levers(tmp_path, env, use_units=False)
    assert quick["record"]["units_used"] == 1 and "units_unused_why" in quick["record"]
    assert gpu_session.run_levers(tmp_path / "none", env) is None
