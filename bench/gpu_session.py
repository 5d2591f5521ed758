"""Everything the performance issue asks of a GPU, in one prepared command with a time budget.

    python bench/gpu_session.py --out DIR [--budget-s 540] [--quick]

A GPU is lent for minutes at a time, so this runs, in order, and within --budget-s:
1. environment: nvidia-smi, versions, JAX's devices (env.json); a CPU smoke test of
   serjax's imports, one train step and an Orbax save/restore (catches an API change in the
   machine's flax/optax/orbax before any GPU time is spent; on failure it retries with the
   pinned wheels in .whl/fallback, if there are any);
2. in parallel: the built-in corpus generated (2943 utterances of the paper's classes, 5003
   files) and its feature cache filled on the host CPUs, while the GPU measures the levers
   (--probe levers, the default: bench/gpu_levers.py, the A/B table of scan, vmap, bfloat16,
   deterministic ops, XLA's streams and concurrent regions, and units in flight with and
   without MPS: gpu-levers.json) or one older probe: the seed strategies at S = 4 (--probe
   seeds), train throughput at exact float32 (--probe precision), or nothing (--probe none);
3. the full default experiment on the synthetic corpus:
       python launch.py --config=configs/default.py --config.data.corpus=synthetic \
           --config.num_seeds=4 <the levers that paid>
   (5 folds × 150 epochs × 4 seeds, n = 4), its wall time measured around the process
   (compilation included, with no compilation cache); the levers that trained ≥ 1.05× base
   are its config overrides and XLA_FLAGS, and units in flight that paid run it as Ray tasks
   sharing the GPU where Ray is installed. Stopped at the budget, it saves its last epoch and
   gpu-run.json holds a projection. Its small files (summary, report, metrics, config; no
   checkpoints) go to run.tar.gz;
4. with the time left: JAX vs PyTorch on the device (--part frameworks) and the seed table
   for the other S (--part seeds).
Writes env.json, gpu-levers.json/.md, gpu-run.json, gpu.md, session.log, run.tar.gz (and the
older probes' gpu-seeds*.json, and gpu-frameworks.json) to --out. --quick
shrinks every stage to seconds, to test this script on a CPU (tests/test_bench_scripts.py).

Older sessions split the run over two commands (a machine's command may run 10 minutes):
    python3 bench/gpu_session.py --out $OUT --budget-s 585 --probe none --no-benches --detach
    python3 bench/gpu_session.py --out $OUT --budget-s 240 --collect      (at once: a machine
                                                      left idle for 30 s is given back)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


class Session:
    def __init__(self, out: Path, budget_s: float):
        self.out = out
        self.t0 = time.perf_counter()
        self.end = self.t0 + budget_s
        self.log_file = open(out / "session.log", "a")

    def left(self) -> float:
        return self.end - time.perf_counter()

    def log(self, msg: str) -> None:
        line = f"[{time.perf_counter() - self.t0:6.1f} s] {msg}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def run(self, cmd, timeout: float, env=None, name: str = "") -> tuple[int, float]:
        """Run cmd (its output into session.log), killed (SIGTERM, then SIGKILL) at timeout."""
        self.log(f"$ {' '.join(map(str, cmd))}   (timeout {timeout:.0f} s)")
        t = time.perf_counter()
        proc = subprocess.Popen(
            list(map(str, cmd)), cwd=ROOT, env=env, stdout=self.log_file, stderr=subprocess.STDOUT
        )
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            proc.terminate()  # launch.py saves its last finished epoch on SIGTERM
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            rc = rc if rc else -15
        took = time.perf_counter() - t
        self.log(f"{name or cmd[1]}: rc {rc} after {took:.1f} s")
        return rc, took


def environment(s: Session) -> dict:
    info = {}
    try:
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        info["nvidia_smi"] = f"unavailable: {err}"
    probe = (
        "import json, jax, jaxlib, flax, optax, orbax.checkpoint as o, numpy;"
        "print(json.dumps({'jax': jax.__version__, 'jaxlib': jaxlib.__version__,"
        "'flax': flax.__version__, 'optax': optax.__version__, 'orbax': o.__version__,"
        "'numpy': numpy.__version__,"
        "'backend': jax.default_backend(), 'devices': [str(d) for d in jax.devices()]}))"
    )
    res = subprocess.run([PY, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    info["python"] = (
        res.stdout.strip().splitlines()[-1] if res.returncode == 0 else res.stderr[-2000:]
    )
    s.log(f"environment: {info}")
    return info


SMOKE = """
import tempfile, jax, jax.numpy as jnp, numpy as np
from pathlib import Path
from serjax.configlib import base_config
from serjax.model import build_model
from serjax.train import trainer_for
from serjax.seeds import seed_keys
from serjax.data import FoldData
from serjax.checkpoints import FoldCheckpoints
import serjax.experiment, serjax.report
import tensorboardX, soundfile, librosa, ml_collections, matplotlib  # what a run imports lazily
from serjax import features
settings = features.FeatureSettings()
silence = np.zeros((1, settings.num_samples), np.float32)
features.log_mel_jax(silence, 8, settings).block_until_ready()
cfg = base_config(); cfg.model.width_scale = 1
trainer = trainer_for(build_model(cfg.model, 4), cfg.train)
# the smallest input the five 2x2 poolings take (serjax.model.check_input_size)
states = trainer.init(seed_keys([0], 0), (32, 40))
data = FoldData.of(np.zeros((8, 32, 40), np.float16), np.zeros(8, np.int32), np.zeros(32),
                   np.ones(32), np.ones(4))
states, stats = trainer.train_step(states, jnp.arange(4)[None], data, jnp.float32(1e-3))
best = {"best_score": np.zeros(1, np.float32), "best_epoch": np.zeros(1, np.int32)}
with tempfile.TemporaryDirectory() as d:
    ck = FoldCheckpoints(Path(d) / "f")
    ck.save(1, states, best)
    ck.close()
    ck = FoldCheckpoints(Path(d) / "f")
    ck.restore(1, states, best)
    ck.close()
print("smoke ok", float(stats[0, 0]))
"""


def full_run_overrides(cores: int, quick: bool) -> list[str]:
    """launch.py's flags for the full default experiment (2943 synthetic utterances, 5 folds
    x 150 epochs, 4 seeds); quick: tiny sizes, to test this script anywhere."""
    flags = [
        "--config=configs/default.py",
        "--config.data.corpus=synthetic",
        f"--config.num_seeds={2 if quick else 4}",
        f"--config.data.load_workers={min(16, cores)}",
    ]
    if quick:
        flags += [
            "--config.data.synthetic.num_utterances=120",
            "--config.features.duration_s=1.5",
            "--config.model.width_scale=1",
            "--config.protocol.num_folds=2",
            "--config.train.epochs=2",
        ]
    return flags


def smoke(s: Session, env: dict) -> dict | None:
    """The env under which serjax works (the machine's packages, else the pinned fallback,
    installed only when the machine's packages fail)."""
    if s.run([PY, "-c", SMOKE], 180, env=dict(env, JAX_PLATFORMS="cpu"), name="smoke")[0] == 0:
        return env
    wheels = sorted(map(str, (ROOT / ".whl" / "fallback").glob("*.whl")))
    if not wheels:
        return None
    site = Path("/tmp/serjax-fallback-site")
    subprocess.run(
        [
            PY,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--target",
            str(site),
            *wheels,
        ],
        check=False,
    )
    env = dict(env, PYTHONPATH=f"{site}:{env.get('PYTHONPATH', '')}")
    if (
        s.run(
            [PY, "-c", SMOKE],
            180,
            env=dict(env, JAX_PLATFORMS="cpu"),
            name="smoke (fallback wheels)",
        )[0]
        == 0
    ):
        return env
    return None


def corpus_stage(args) -> int:
    """Generate the synthetic corpus with many processes (byte-identical to one)."""
    sys.path.insert(0, str(ROOT))
    from serjax.configlib import base_config
    from serjax.corpora import synthetic

    cfg = base_config()
    if args.num_utterances:
        cfg.data.synthetic.num_utterances = args.num_utterances
    synthetic.ensure(Path(cfg.cache_dir) / "corpora", cfg.data.synthetic, workers=args.workers)
    return 0


def collect_run(
    s,
    out: Path,
    workdir: Path,
    cmd,
    started: float,
    took: float,
    rc,
    strategy,
    corpus_s,
    cores,
    **extra,
) -> dict:
    """gpu-run.json (finished or not: epochs done, fold end times, a projection; `extra`
    fields added) and run.tar.gz (the workdir's small files) in out."""
    summary_path = workdir / "summary.json"
    finished = rc in (0, None) and summary_path.exists()
    config = (
        json.loads((workdir / "config.json").read_text())["config"]
        if (workdir / "config.json").exists()
        else {}
    )
    total = config.get("train", {}).get("epochs", 0) * config.get("protocol", {}).get(
        "num_folds", 0
    )
    run = {
        "command": " ".join(["python"] + cmd[1:]).replace(str(workdir), "runs/gpu-default"),
        "finished": finished,
        "returncode": rc,
        "wall_time_s": round(took, 1),
        "seed_strategy": strategy,
        "corpus_s": corpus_s,
        "epochs_done": epochs_done(workdir),
        "epochs_total": total,
        "folds": config.get("protocol", {}).get("num_folds"),
        "epochs": config.get("train", {}).get("epochs"),
        "seeds": config.get("num_seeds"),
        "width_scale": config.get("model", {}).get("width_scale"),
        "stopped_why": None
        if finished
        else (
            "still running (detached)"
            if rc is None
            else "time budget"
            if rc in (-15, 130)
            else f"exit code {rc}"
        ),
    }
    # each finished fold's results file is written when the fold ends: its age gives the
    # fold's end time since the launch, so a run stopped early still shows how long a fold takes
    fold_ends = sorted(
        round(p.stat().st_mtime - started, 1) for p in (workdir / "folds").glob("*.json")
    )
    run["fold_end_s"] = fold_ends
    if fold_ends and not finished and run["folds"]:
        per_fold = (
            (fold_ends[-1] - fold_ends[0]) / (len(fold_ends) - 1) if len(fold_ends) > 1 else None
        )
        first = fold_ends[0]
        run["projection"] = {
            "first_fold_end_s": first,
            "later_fold_s": per_fold,
            "projected_wall_time_s": round(first + (run["folds"] - 1) * (per_fold or first), 1),
            "how": "first fold's end (imports, corpus listing, cached features, compilation, "
            "fold 1) + (folds - 1) × the time between fold ends (the first fold's time when only "
            "one ended)",
        }
    if finished:
        summary = json.loads(summary_path.read_text())
        run["summary"] = {m: summary[m] for m in ("ua", "wa", "acc", "f1")}
        run["utterances"] = summary.get("num_utterances")
        run["summary_wall_time_s"] = summary.get("wall_time_s")
    with tarfile.open(out / "run.tar.gz", "w:gz") as tar:
        for path in sorted(workdir.rglob("*")):
            if path.is_file() and "checkpoints" not in path.parts:
                tar.add(path, arcname=str(path.relative_to(workdir)))
    info = json.loads((out / "env.json").read_text())
    try:
        versions = json.loads(info.get("python", ""))
    except ValueError:
        versions = {}
    run.update(
        {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": versions,
            "device": {"backend": versions.get("backend"), "device": info.get("nvidia_smi") or "?"},
            "machine": {"cpu": "host", "cores": cores},
        },
        **extra,
    )
    (out / "gpu-run.json").write_text(json.dumps(run, indent=2) + "\n")
    s.log(f"full run: {run}")
    return run


STATE = Path("/tmp/serjax-gpu-state.json")
RUN_LOG = Path("/tmp/serjax-gpu-run.log")


def detached_run(s, cmd, env, workdir: Path, started: float, strategy, corpus_s, reserve: float):
    """Start the run in its own session (it outlives this command while the machine is held),
    wait for it until the budget's reserve; (None, seconds so far) if it is still running."""
    s.log(f"$ {' '.join(map(str, cmd))}   (detached; log {RUN_LOG})")
    with open(RUN_LOG, "w") as log:
        proc = subprocess.Popen(
            list(map(str, cmd)),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    STATE.write_text(
        json.dumps(
            {
                "pid": proc.pid,
                "started": started,
                "cmd": list(map(str, cmd)),
                "workdir": str(workdir),
                "strategy": strategy,
                "corpus_s": corpus_s,
                "env": json.loads((s.out / "env.json").read_text()),
            }
        )
    )
    while proc.poll() is None and s.left() > reserve:
        time.sleep(1)
    rc = proc.poll()
    s.log(
        f"full default run: {'still running' if rc is None else f'rc {rc}'} after "
        f"{time.time() - started:.1f} s"
    )
    shutil.copy(RUN_LOG, s.out / "run.log")
    return rc, time.time() - started


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def collect(s, out: Path, cores: int) -> int:
    """The second command for a detached run: wait for it (within the budget), then write its
    results as a run in one command would. Its wall time runs from its start to the last file
    it wrote (it may have ended between the two commands)."""
    if not STATE.exists():
        s.log(
            f"no detached run on this machine ({STATE} missing): was it given back between the "
            "commands?"
        )
        return 1
    state = json.loads(STATE.read_text())
    workdir = Path(state["workdir"])
    while _alive(state["pid"]) and s.left() > 20:
        time.sleep(1)
    running = _alive(state["pid"])
    files = [p for p in workdir.rglob("*") if p.is_file()]
    last = max((p.stat().st_mtime for p in files), default=time.time())
    took = (time.time() if running else last) - state["started"]
    rc = None if running else (0 if (workdir / "summary.json").exists() else -1)
    shutil.copy(RUN_LOG, out / "run.log")
    (out / "env.json").write_text(json.dumps(state["env"], indent=2) + "\n")  # out starts empty
    collect_run(
        s,
        out,
        workdir,
        state["cmd"],
        state["started"],
        took,
        rc,
        state["strategy"],
        state["corpus_s"],
        cores,
        wall_time_how="detached run: from its start to the last file it wrote",
    )
    s.run([PY, "bench/bench_gpu.py", "--part", "report", "--out", str(out)], 30, name="report")
    return 0


def run_levers(out: Path, env: dict, use_units: bool = True) -> dict | None:
    """The full run's flags and environment from gpu-levers.json (None when the lever table
    was not measured): the in-process levers that paid, and the units in flight that paid
    most as Ray tasks sharing the GPU, when Ray is on the machine (and use_units)."""
    path = out / "gpu-levers.json"
    if not path.exists():
        return None
    chosen = json.loads(path.read_text())["chosen"]
    overrides, env = list(chosen["overrides"]), dict(env)
    if chosen["xla_flags"]:
        env["XLA_FLAGS"] = " ".join([env.get("XLA_FLAGS", ""), *chosen["xla_flags"]]).strip()
    record = {**chosen, "units_used": 1}
    if chosen["units"] > 1 and not use_units:
        record["units_unused_why"] = "--quick: a CPU's timings choose nothing"
    elif chosen["units"] > 1:
        has_ray = subprocess.run([PY, "-c", "import ray"], env=env, capture_output=True)
        if has_ray.returncode == 0:
            overrides += [
                "--config.executor.name=ray",
                f"--config.executor.gpus_per_task={1 / chosen['units']:.4f}",
            ]
            record["units_used"] = chosen["units"]
        else:
            record["units_unused_why"] = "Ray is not installed on this machine"
    return {"overrides": overrides, "env": env, "record": record}


def epochs_done(workdir: Path) -> int:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return 0
    return len(
        {(r["fold"], r["epoch"]) for r in map(json.loads, path.read_text().splitlines()) if r}
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-s", type=float, default=540)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: test this script anywhere"
    )
    parser.add_argument(
        "--probe",
        choices=["levers", "seeds", "precision", "none"],
        default="levers",
        help="GPU work beside the corpus generation: the lever A/B table (bench/gpu_levers.py: "
        "scan, bfloat16, deterministic ops (cost and bit-for-bit repeats), XLA streams and "
        "concurrent regions, units in flight with and without MPS; the levers that pay "
        "train the run), the S = 4 seed "
        "probe (its fastest strategy trains the run), train throughput at float32 precision "
        "(JAX_DEFAULT_MATMUL_PRECISION=highest; the run keeps the default and `auto`), or "
        "nothing",
    )
    parser.add_argument(
        "--benches",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="step 4 (frameworks and the seed table) with the time left",
    )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="start the full run in its own session, so it goes on after this command "
        "ends (while the machine is held); then call again at once with --collect",
    )
    parser.add_argument(
        "--collect", action="store_true", help="wait for the detached run and write its results"
    )
    parser.add_argument(
        "--scratch", default="/tmp", help="where the run's workdir and caches go (not --out)"
    )
    parser.add_argument("--stage", choices=["corpus"], help=argparse.SUPPRESS)
    parser.add_argument("--num-utterances", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage == "corpus":
        return corpus_stage(args)

    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    s = Session(out, args.budget_s)
    if args.collect:
        return collect(s, out, os.cpu_count() or 2)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    scratch = Path(args.scratch).absolute()
    env.setdefault("SERJAX_CACHE", str(scratch / "serjax-gpu-cache"))
    env["PYTHONPATH"] = f"{ROOT}:{env.get('PYTHONPATH', '')}"
    (out / "env.json").write_text(json.dumps(environment(s), indent=2) + "\n")
    cores = os.cpu_count() or 2
    q = args.quick
    # 2. the corpus generated on the host CPUs (numpy and soundfile only) from the start, beside
    # the smoke test and the GPU probe
    t_corpus = time.perf_counter()
    gen = subprocess.Popen(
        [
            PY,
            "bench/gpu_session.py",
            "--out",
            str(out),
            "--stage",
            "corpus",
            "--workers",
            str(max(1, cores - 4)),
            "--num-utterances",
            "120" if q else "0",
        ],
        cwd=ROOT,
        env=dict(env, JAX_PLATFORMS="cpu"),
        stdout=s.log_file,
        stderr=subprocess.STDOUT,
    )
    env = smoke(s, env)
    if env is None:
        s.log("smoke test failed with the machine's packages and the fallback: stopping")
        gen.wait()
        return 1
    run_overrides = full_run_overrides(cores, q)
    bench = [PY, "bench/bench_gpu.py", "--out", str(out)]
    small = (
        ["--utterances", "64", "--min-time", "0.3", "--seed-width", "1", "--widths", "1"]
        if q
        else []
    )

    corpus_env = dict(env, JAX_PLATFORMS="cpu")
    probe_rc = 1
    if args.probe == "levers":
        levers_s = 90 if q else min(300, s.left() * 0.45)
        s.run(
            [PY, "bench/gpu_levers.py", "--out", out, "--deadline-s", round(levers_s - 30)]
            + (["--quick", "--cases", "scan", "--units", "1", "2", "--widths", "1"] if q else []),
            levers_s,
            env=env,
            name="levers",
        )
    elif args.probe == "seeds":
        probe_rc, _ = s.run(
            bench
            + [
                "--part",
                "seeds",
                "--seeds",
                "4",
                "--strategies",
                "vmap",
                "unroll",
                "--deadline-s",
                "60",
            ]
            + small,
            min(150, s.left() / 3),
            env=env,
            name="seed probe",
        )
    elif args.probe == "precision":
        s.run(
            bench
            + [
                "--part",
                "seeds",
                "--seeds",
                "1",
                "--strategies",
                "unroll",
                "--name",
                "precision-highest",
                "--deadline-s",
                "60",
            ]
            + small,
            min(120, s.left() / 3),
            env=dict(env, JAX_DEFAULT_MATMUL_PRECISION="highest"),
            name="float32-precision probe",
        )
    gen.wait()
    if args.probe == "seeds" and (out / "gpu-seeds.json").exists():
        (out / "gpu-seeds.json").rename(out / "gpu-seeds-probe.json")
    s.run(
        [PY, "launch.py", "--mode=features", f"--workdir={scratch / 'serjax-gpu-features'}"]
        + run_overrides,
        max(60, s.left() / 3),
        env=corpus_env,
        name="feature cache",
    )
    corpus_s = round(time.perf_counter() - t_corpus, 1)
    strategy = "auto"
    if probe_rc == 0 and (out / "gpu-seeds-probe.json").exists():
        rows = json.loads((out / "gpu-seeds-probe.json").read_text())["result"]["rows"]
        rate = {
            r["strategy"]: r["train_samples_per_s"] for r in rows if r["strategy"] != "sequence"
        }
        strategy = max(rate, key=rate.get) if rate else "auto"
        s.log(f"seed probe at S = 4: {rate} -> seed_strategy {strategy}")

    # 3. the full default experiment, with the levers that paid
    workdir = scratch / "serjax-gpu-default"
    shutil.rmtree(workdir, ignore_errors=True)
    chosen = [] if strategy == "auto" else [f"--config.train.seed_strategy={strategy}"]
    levers = run_levers(out, env, use_units=not q)
    if levers is not None:
        chosen, env = levers["overrides"], levers["env"]
        s.log(f"levers for the full run: {levers['record']}")
    cmd = [PY, "launch.py"] + run_overrides + chosen + [f"--workdir={workdir}"]
    reserve = 20 if q else (40 if args.benches else 25)
    started = time.time()
    if args.detach:
        rc, took = detached_run(s, cmd, env, workdir, started, strategy, corpus_s, reserve)
    else:
        rc, took = s.run(cmd, s.left() - reserve, env=env, name="full default run")
    extra = {"levers": levers["record"]} if levers else {}
    collect_run(s, out, workdir, cmd, started, took, rc, strategy, corpus_s, cores, **extra)

    # 4. the rest of the benchmarks, as time allows (each stops starting cells at its deadline)
    if args.benches and s.left() > 45:
        s.run(
            bench
            + ["--part", "frameworks", "--deadline-s", str(round(max(1, s.left() / 2 - 30)))]
            + small,
            s.left() / 2 + 30,
            env=env,
            name="frameworks",
        )
    if args.benches and s.left() > 45:
        s.run(
            bench
            + [
                "--part",
                "seeds",
                "--seeds",
                "1",
                "2",
                "8",
                "--deadline-s",
                str(round(max(1, s.left() - 50))),
            ]
            + small,
            s.left() - 5,
            env=env,
            name="seed table",
        )
    s.run(
        [PY, "bench/bench_gpu.py", "--part", "report", "--out", str(out)],
        30,
        env=env,
        name="report",
    )
    s.log(f"done, {s.left():.0f} s of the budget left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
