"""The levers of the default run on one device, A/B: what each buys in train samples/s.

    python bench/gpu_levers.py --out DIR [--deadline-s 200] [--quick]

Part 1, in one process: the default run's train step (n = 4, S = 4 seeds, batch 32, a float16
[U, 64, 601] table on the device) in blocks of --steps steps from the same start, the cases
taking turns round after round:
- base: `unroll`, one jitted call per step (what a run does by default);
- scan: `train.scan_epoch` (a block's steps as one jitted lax.scan: one dispatch);
- vmap: `train.seed_strategy=vmap` (only when asked for: it compiles to base's program);
- bfloat16: `model.compute_dtype=bfloat16`;
- deterministic: `train.deterministic` (XLA's deterministic GPU ops);
- streams: XLA's xla_gpu_executable_num_compute_streams = S (the seeds' independent chains
  free to run on their own streams);
- concurrent_regions: XLA's xla_gpu_graph_enable_concurrent_region (independent kernels as
  concurrent branches of the CUDA graph).
Each case also says whether its rounds, same start and same batches, end bit for bit alike.

Part 2, units in flight: N worker processes (--units, default 1 2 4 8), each the base case of
one (run, fold) unit, as Ray tasks with gpus_per_task = 1/N share a GPU; compiled from JAX's
persistent cache, then timed over the same window; total samples/s. Again under NVIDIA MPS
(several processes' kernels at once) when nvidia-cuda-mps-control is on the machine.

Part 3: one seed's train samples/s at each width n = 1..8 without ECA (Fig. 6's model), and
from them and the best units in flight, Fig. 6's grid at one seed projected (steps only).

Writes gpu-levers.json and gpu-levers.md to --out. --quick: tiny sizes, to test this script on
a CPU (the XLA GPU options are accepted there and do nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import command_line, machine_info, utc_now, write_outputs  # noqa: E402

NUM_CLASSES = 4
# name: how it differs from base
CASES = {
    "base": {},
    "scan": {"scan": True},
    "vmap": {"strategy": "vmap"},
    "bfloat16": {"dtype": "bfloat16"},
    "deterministic": {"deterministic": True},
    "streams": {"streams": True},
    "concurrent_regions": {"options": {"xla_gpu_graph_enable_concurrent_region": True}},
}
# a lever goes into the full run when it trains at least this much faster than base
PAYS = 1.05


def sizes(quick: bool) -> dict:
    if quick:
        return {"n": 1, "seeds": 2, "batch": 4, "shape": (32, 48), "utterances": 16}
    return {"n": 4, "seeds": 4, "batch": 32, "shape": (64, 601), "utterances": 512}


class Workload:
    """The train steps of one case on a float16 table: states from fixed keys, fixed batches."""

    def __init__(self, case: dict, size: dict, steps: int):
        import jax.numpy as jnp
        import numpy as np
        import optax

        from serjax.configlib import base_config
        from serjax.data import FoldData
        from serjax.model import build_model
        from serjax.seeds import seed_keys
        from serjax.train import Trainer
        from serjax.xla_options import compiler_options

        rng = np.random.default_rng(0)
        size = {**size, **{k: case[k] for k in ("n", "seeds") if k in case}}
        U, shape, S, B = size["utterances"], size["shape"], size["seeds"], size["batch"]
        self.data = FoldData.of(
            rng.normal(-30, 12, size=(U, *shape)).astype(np.float16),
            rng.integers(0, NUM_CLASSES, U).astype(np.int32),
            np.full(shape[0], -30, np.float32),
            np.full(shape[0], 12, np.float32),
            np.ones(NUM_CLASSES, np.float32),
        )
        cfg = base_config()
        cfg.model.width_scale = size["n"]
        cfg.model.compute_dtype = case.get("dtype", "float32")
        if case.get("no_eca"):
            cfg.model.eca_layers = ()
        t = cfg.train
        self.options = dict(compiler_options(deterministic=case.get("deterministic", False)) or {})
        self.options.update(case.get("options", {}))
        if case.get("streams"):
            self.options["xla_gpu_executable_num_compute_streams"] = S
        tx = optax.inject_hyperparams(optax.adam)(
            learning_rate=t.learning_rate, b1=t.adam_b1, b2=t.adam_b2, eps=t.adam_eps
        )
        self.trainer = Trainer(
            build_model(cfg.model, NUM_CLASSES),
            tx,
            t.focal_gamma,
            case.get("strategy", "unroll"),
            self.options or None,
        )
        self.scan = bool(case.get("scan"))
        self.keys, self.shape = seed_keys(range(S), 0), shape
        self.batches = jnp.asarray(rng.integers(0, U, (steps, S, B)), jnp.int32)
        self.rows = [self.batches[k] for k in range(steps)]
        self.lr = jnp.float32(t.learning_rate)
        self.samples = steps * S * B

    def block(self) -> tuple[float, list]:
        """Seconds for the block's steps from a fresh state (the device synchronised at the
        end), and the final parameters."""
        import jax

        states = self.trainer.init(self.keys, self.shape)
        jax.block_until_ready(states)
        start = time.perf_counter()
        if self.scan:
            states, stats = self.trainer.train_epoch(states, self.batches, self.data, self.lr)
        else:
            for rows in self.rows:
                states, stats = self.trainer.train_step(states, rows, self.data, self.lr)
        stats.block_until_ready()
        return time.perf_counter() - start, jax.tree_util.tree_leaves(states.params)


def in_process(args, size: dict, log, deadline: float) -> dict:
    """Part 1: every case, rounds taking turns."""
    import numpy as np

    cases, params = {}, {}
    for name in args.cases:
        if time.perf_counter() > deadline:
            cases[name] = {"skipped": "deadline"}
            continue
        t = time.perf_counter()
        try:
            w = Workload(CASES[name], size, args.steps)
            took, _ = w.block()  # compiles
        except Exception as err:  # an option this XLA refuses, an op it cannot make so
            cases[name] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
            log(f"{name}: {cases[name]['error']}")
            continue
        cases[name] = {
            "first_block_s": round(time.perf_counter() - t, 2),
            "options": w.options,
            "times_s": [],
            "workload": w,
        }
        params[name] = []
        log(f"{name}: compiled and first block in {cases[name]['first_block_s']} s")
    for r in range(args.rounds):
        if time.perf_counter() > deadline and r >= 1:
            log(f"deadline: {r} rounds")
            break
        for name, c in cases.items():
            if "workload" in c:
                took, p = c["workload"].block()
                c["times_s"].append(round(took, 4))
                params[name].append(p)
                log(f"round {r + 1} {name}: {c['workload'].samples / took:.1f} samples/s")
    base = cases.get("base", {}).get("times_s")
    for name, c in cases.items():
        w = c.pop("workload", None)
        if w is None or not c["times_s"]:
            continue
        rates = [w.samples / t for t in c["times_s"]]
        c["train_samples_per_s"] = round(float(np.median(rates)), 1)
        if base:
            c["speed_over_base"] = round(
                float(np.median([b / t for b, t in zip(base, c["times_s"])])), 3
            )
        first, others = params[name][0], params[name][1:]
        c["repeats_bit_for_bit"] = all(
            all(np.array_equal(a, b) for a, b in zip(first, o)) for o in others
        )
    return cases


def widths(args, size: dict, log, deadline: float) -> dict:
    """Part 3: one seed's train samples/s at each width scale, without ECA (Fig. 6's model)."""
    import numpy as np

    rows = {}
    for n in args.widths:
        if time.perf_counter() > deadline:
            rows[str(n)] = {"skipped": "deadline"}
            continue
        try:
            w = Workload({"n": n, "seeds": 1, "no_eca": True}, size, max(2, args.steps // 2))
            w.block()
            times = [w.block()[0] for _ in range(2)]
        except Exception as err:
            rows[str(n)] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
            continue
        rows[str(n)] = {
            "train_samples_per_s": round(float(np.median([w.samples / t for t in times])), 1)
        }
        log(f"n = {n}, one seed, no ECA: {rows[str(n)]['train_samples_per_s']} samples/s")
    return rows


def fig6_projection(result: dict, utterances: int, units_speed: float) -> dict | None:
    """Fig. 6's grid at one seed (8 widths × 8 versions, 5 folds × 150 epochs, batch 32, the
    training rows of `utterances`), projected from part 3's rates: training steps only
    (evaluation and compilation left out), divided by the units-in-flight speed-up."""
    from serjax.configlib import base_config

    t = base_config().train
    folds = base_config().protocol.num_folds
    train_rows = utterances * (folds - 1) / folds * (1 - t.validation_fraction)
    samples = folds * t.epochs * -(-int(train_rows) // t.batch_size) * t.batch_size
    rates = {n: r.get("train_samples_per_s") for n, r in result.get("widths", {}).items()}
    if not rates or not all(rates.values()) or set(rates) != {str(n) for n in range(1, 9)}:
        return None
    one_unit = sum(8 * samples / rate for rate in rates.values())
    return {
        "samples_per_run": samples,
        "one_unit_s": round(one_unit, 1),
        "units_speed": units_speed,
        "projected_s": round(one_unit / units_speed, 1),
        "how": "64 runs x folds x epochs x steps x batch / (one seed's rate at the run's "
        "width x the units-in-flight speed-up); training steps only",
    }


# --------------------------------------------------------------------------- units in flight


def worker(args) -> int:
    """One unit in flight: the base case, announced ready, then timed in each window it is
    asked into (control files in --control), until told to stop."""
    control, parent = Path(args.control), os.getppid()
    size = sizes(args.quick)
    # short blocks (a fifth of part 1's), so a window is not overrun by much when N units
    # share the device; the step itself is the same, so its compilation is cached
    w = Workload(CASES["base"], size, max(2, args.steps // 5))
    w.block()  # compiled (from the persistent cache when part 1 filled it)
    (control / f"ready-{args.index}").write_text("")
    done = set()
    while not (control / "stop").exists() and os.getppid() == parent:  # orphans stop too
        windows = sorted(control.glob("go-*.json"))
        todo = [p for p in windows if p.name not in done]
        if not todo:
            time.sleep(0.05)
            continue
        go = json.loads(todo[0].read_text())
        done.add(todo[0].name)
        if args.index >= go["units"]:
            continue
        while time.time() < go["start"]:
            time.sleep(0.005)
        blocks, first = 0, time.time()
        while time.time() < go["end"] or blocks == 0:
            w.block()
            blocks += 1
        result = {"blocks": blocks, "samples": blocks * w.samples, "start": first}
        result["end"] = time.time()
        out = control / f"result-{go['units']}-{args.index}.json"
        out.with_suffix(".tmp").write_text(json.dumps(result))
        out.with_suffix(".tmp").rename(out)
    return 0


def units_in_flight(args, env: dict, log, label: str) -> dict:
    """Part 2 once: max(--units) workers started, then one timed window per N."""
    control = Path(args.control_root) / label
    shutil.rmtree(control, ignore_errors=True)
    control.mkdir(parents=True)
    most = max(args.units)
    cmd = [sys.executable, __file__, "--worker", "--control", str(control), "--out", args.out]
    cmd += ["--steps", str(args.steps)] + (["--quick"] if args.quick else [])
    procs = [
        subprocess.Popen(
            cmd + ["--index", str(i)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(control / f"worker-{i}.log", "w"),
        )
        for i in range(most)
    ]
    t = time.perf_counter()
    rows = {}
    try:
        while len(list(control.glob("ready-*"))) < most:
            if any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError("a worker failed: " + _tail(control / "worker-0.log"))
            if time.perf_counter() - t > args.start_timeout_s:
                raise RuntimeError(f"workers not ready after {args.start_timeout_s} s")
            time.sleep(0.1)
        log(f"{label}: {most} workers ready in {time.perf_counter() - t:.1f} s")
        for n in sorted(args.units):
            start = time.time() + 0.5
            go = {"units": n, "start": start, "end": start + args.window_s}
            (control / f"go-{n:03d}.json").write_text(json.dumps(go))
            wanted = [control / f"result-{n}-{i}.json" for i in range(n)]
            while not all(p.exists() for p in wanted):
                if any(p.poll() not in (None, 0) for p in procs):
                    raise RuntimeError("a worker failed")
                time.sleep(0.05)
            res = [json.loads(p.read_text()) for p in wanted]
            window = max(r["end"] for r in res) - min(r["start"] for r in res)
            total = sum(r["samples"] for r in res)
            rows[n] = {
                "train_samples_per_s": round(total / window, 1),
                "per_unit": [round(r["samples"] / (r["end"] - r["start"]), 1) for r in res],
                "window_s": round(window, 2),
            }
            log(f"{label}: {n} units in flight: {rows[n]['train_samples_per_s']} samples/s")
    except RuntimeError as err:
        log(f"{label}: {err}")
        rows["error"] = str(err)
    finally:
        (control / "stop").write_text("")
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    one = rows.get(1, {}).get("train_samples_per_s")
    for row in rows.values():
        if isinstance(row, dict) and one:
            row["speed_over_one"] = round(row["train_samples_per_s"] / one, 3)
    return {str(k): v for k, v in rows.items()}


def _tail(path: Path, chars: int = 600) -> str:
    try:
        return path.read_text()[-chars:]
    except OSError:
        return "(no log)"


class Mps:
    """NVIDIA's Multi-Process Service daemon for this machine's GPU, while in use."""

    def __init__(self, root: Path):
        self.env = {
            "CUDA_MPS_PIPE_DIRECTORY": str(root / "mps-pipe"),
            "CUDA_MPS_LOG_DIRECTORY": str(root / "mps-log"),
        }

    @staticmethod
    def available() -> bool:
        return shutil.which("nvidia-cuda-mps-control") is not None

    def __enter__(self):
        for d in self.env.values():
            Path(d).mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["nvidia-cuda-mps-control", "-d"], env={**os.environ, **self.env}, check=True
        )
        return self

    def __exit__(self, *exc):
        subprocess.run(
            ["nvidia-cuda-mps-control"],
            input="quit\n",
            text=True,
            env={**os.environ, **self.env},
            check=False,
        )


# --------------------------------------------------------------------------- report


def chosen_levers(result: dict) -> dict:
    """The levers the full run takes: each that trained at least PAYS × base's speed (the
    in-process ones), and the units in flight that paid most (used through Ray only)."""
    cases = result.get("cases", {})

    def pays(name):
        return cases.get(name, {}).get("speed_over_base", 0) >= PAYS

    xla_flags = []
    if pays("streams"):
        xla_flags.append(f"--xla_gpu_executable_num_compute_streams={result['size']['seeds']}")
    if pays("concurrent_regions"):
        xla_flags.append("--xla_gpu_graph_enable_concurrent_region=true")
    overrides = []
    if pays("scan"):
        overrides.append("--config.train.scan_epoch=True")
    if pays("vmap"):
        overrides.append("--config.train.seed_strategy=vmap")
    if pays("bfloat16"):
        overrides.append("--config.model.compute_dtype=bfloat16")
    best_units, best = 1, 1.0
    for table in result.get("units", {}).values():
        for n, row in table.items() if isinstance(table, dict) else ():
            if isinstance(row, dict) and row.get("speed_over_one", 0) > best * PAYS:
                best_units, best = int(n), row["speed_over_one"]
    return {"overrides": overrides, "xla_flags": xla_flags, "units": best_units, "speed": best}


def markdown(res: dict) -> str:
    s = res["size"]
    lines = [
        "# The default run's levers on one device",
        "",
        f"`{res['command']}` — {res['date']}, {res['device']}; jax {res['jax']}.",
        "",
        f"Train samples/s of the train step at n = {s['n']}, S = {s['seeds']} seeds, batch "
        f"{s['batch']}, input {s['shape'][0]} × {s['shape'][1]}, blocks of {res['steps']} steps "
        "from the same start; median over rounds, speed: median of per-round ratios to base.",
        "",
        "| case | samples/s | speed over base | first block (compile) s | repeats bit for bit |",
        "|---|---|---|---|---|",
    ]
    for name, c in res["cases"].items():
        if "error" in c or "skipped" in c:
            lines.append(f"| {name} | {c.get('error') or c.get('skipped')} | | | |")
            continue
        lines.append(
            f"| {name} | {c.get('train_samples_per_s')} | {c.get('speed_over_base')} | "
            f"{c['first_block_s']} | {c.get('repeats_bit_for_bit')} |"
        )
    if res.get("widths"):
        lines += [
            "",
            "One seed, no ECA (Fig. 6's model), by width scale n: "
            + "; ".join(
                f"n = {n}: {r.get('train_samples_per_s') or r.get('error') or r.get('skipped')}"
                for n, r in res["widths"].items()
            )
            + " train samples/s.",
        ]
    for label, table in res.get("units", {}).items():
        lines += ["", f"Units in flight ({label}): worker processes, each the base case.", ""]
        if isinstance(table, str):
            lines.append(table)
            continue
        lines += ["| units | total samples/s | speed over one | per unit |", "|---|---|---|---|"]
        for n, row in table.items():
            if isinstance(row, dict):
                lines.append(
                    f"| {n} | {row['train_samples_per_s']} | {row.get('speed_over_one')} | "
                    f"{', '.join(map(str, row['per_unit']))} |"
                )
            else:
                lines.append(f"| {n} | {row} | | |")
    p = res.get("fig6_projection")
    if p:
        lines += [
            "",
            f"Fig. 6 grid at one seed, projected: {p['projected_s'] / 3600:.2f} h "
            f"({p['one_unit_s'] / 3600:.2f} h one unit at a time, ÷ {p['units_speed']} for units "
            f"in flight; {p['how']}).",
        ]
    c = res["chosen"]
    lines += [
        "",
        f"Chosen for the full run (≥ {PAYS}× base): overrides {c['overrides'] or 'none'}, "
        f"XLA_FLAGS {' '.join(c['xla_flags']) or 'none'}; units in flight that paid most: "
        f"{c['units']} ({c['speed']}×).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: test on a CPU")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=[c for c in CASES if c != "vmap"],  # vmap compiles to base's program
        choices=list(CASES),
    )
    parser.add_argument("--units", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=0, help="steps per block (0: 100, quick 2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--widths", type=int, nargs="*", default=None, help="part 3's n")
    parser.add_argument(
        "--grid-utterances", type=int, default=2943, help="corpus size of the Fig. 6 projection"
    )
    parser.add_argument("--window-s", type=float, default=0, help="0: 4 s, quick 0.5 s")
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=200,
        help="parts 1 and 3 start nothing new after 0.45 and 0.65 of this (part 2: the rest)",
    )
    parser.add_argument("--start-timeout-s", type=float, default=90)
    parser.add_argument("--mps", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--part", choices=["in-process"], help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--control", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.quick else 100)
    args.window_s = args.window_s or (0.5 if args.quick else 4.0)
    if args.widths is None:
        args.widths = [1, 2] if args.quick else list(range(1, 9))
    if "base" not in args.cases:
        args.cases = ["base", *args.cases]
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    args.out = str(out)
    args.control_root = str(out / "levers-control")
    # every process of this benchmark shares compiled steps through JAX's persistent cache
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(out / "levers-control" / "jax-cache"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if args.worker:
        return worker(args)
    started = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", flush=True)

    if args.part == "in-process":
        return in_process_part(args, log, started)
    # parts 1 and 3 in a child process: this one never opens the device, so NVIDIA's MPS,
    # started below, serves every process that does
    inner = out / "levers-control" / "in-process.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])]
    child = subprocess.run(  # in this process's directory: relative paths alike
        cmd + ["--part", "in-process"], env=env, timeout=args.deadline_s * 0.8 + 60
    )
    if child.returncode != 0 or not inner.exists():
        log(f"the in-process part failed (exit code {child.returncode})")
        return 1
    res = json.loads(inner.read_text())
    res["command"] = command_line("gpu_levers.py", argv)
    res["units"] = {"without MPS": units_in_flight(args, env, log, "without MPS")}
    if not args.mps:
        pass
    elif Mps.available():
        mps = Mps(Path(args.control_root))
        try:
            with mps:
                table = units_in_flight(args, {**env, **mps.env}, log, "with MPS")
            res["units"]["with MPS"] = table
        except (OSError, subprocess.CalledProcessError) as err:
            res["units"]["with MPS"] = f"MPS did not start: {err}"
    else:
        res["units"]["with MPS"] = "not measured: no nvidia-cuda-mps-control on this machine"
    res["chosen"] = chosen_levers(res)
    res["fig6_projection"] = fig6_projection(res, args.grid_utterances, res["chosen"]["speed"])
    res["wall_time_s"] = round(time.perf_counter() - started, 1)
    shutil.rmtree(args.control_root, ignore_errors=True)
    paths = write_outputs(out, "gpu-levers", res, markdown(res))
    log("wrote " + " and ".join(map(str, paths)))
    return 0


def in_process_part(args, log, started: float) -> int:
    """Parts 1 and 3, written to levers-control/in-process.json for the coordinator."""
    import jax

    size = sizes(args.quick)
    dev = jax.devices()[0]
    res = {
        "date": utc_now(),
        "device": f"{jax.default_backend()}: {getattr(dev, 'device_kind', str(dev))}",
        "jax": jax.__version__,
        "machine": machine_info(),
        "size": {**size, "shape": list(size["shape"])},
        "steps": args.steps,
        "rounds": args.rounds,
    }
    res["cases"] = in_process(args, size, log, started + args.deadline_s * 0.45)
    res["widths"] = widths(args, size, log, started + args.deadline_s * 0.65)
    path = Path(args.control_root) / "in-process.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
