"""Benchmark serjax's training step against a PyTorch reference, and its seed strategies.

    python bench/bench_train.py [--widths 1 2 4] [--seeds 1 2 4 8] [--out results/bench]

Part 1, for each width scale n: train and eval samples/s of serjax's real jitted steps
(`serjax.train.trainer_for(build_model(base_config().model), ...)`, data on the device as in
`serjax.experiment`: a `serjax.data.FoldData` with a float16 [U, 64, 601] table and per-step
row indices, batches from `serjax.train.epoch_batches`) against `bench/torch_reference.py`
(the same model, loss and optimizer in PyTorch, channels_last) with 2 threads and with 1
thread. The contenders take turns, round after round, so load from other jobs on a shared
machine hits them alike; each measurement runs whole steps for at least --min-time seconds
after a warm-up. Rates are medians over rounds; ratios are medians of the per-round (paired)
ratios. JAX's compile time comes from jax.monitoring (trace + lowering + XLA compile of the
first call). Peak RSS is measured in a fresh child process per framework and n (import,
build, warm-up, timed steps).

Part 1b, the host allocator (serjax/host.py): in fresh child processes, train samples/s and
peak RSS of each framework with glibc's defaults and with huge pages for malloc (serjax's
default: GLIBC_TUNABLES=glibc.malloc.hugetlb=1, which this process restarts itself with, so
both frameworks of part 1 run with it).

Part 1c, ablation: serjax's train step with the CPU fast path taken apart, chosen by config
(model.conv_impl = flax and XLA's default compiler options; then each change added), in this
process, alternating.

Part 2, seed scaling at n = 1: total train samples/s with S seeds for every strategy in
`serjax.seeds.SEED_STRATEGIES` except `auto` (vmap, unroll, map: S stacked seeds in one jitted
step; chunks: two per jitted call), and `sequence`: S single-seed runs (serjax's `auto` step
with one seed) one after the other, each measurement advancing run 1 by k steps, then run 2,
...
(bench/bench_seeds.py measures `vmap` against `unroll` alone, with and without serjax's
vmap rule for convolutions.)

Writes train.json and train.md to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import command_line, loadavg, machine_info, utc_now, write_outputs  # bench/machine.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

INPUT_SHAPE = (64, 601)
NUM_CLASSES = 4
TORCH_THREADS = 2


# --------------------------------------------------------------------------- environment


def versions_info() -> dict:
    import flax
    import jax
    import jaxlib
    import optax

    out = {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "jax_backend": jax.default_backend(),
    }
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = None
    return out


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far: VmHWM (the high-water mark of this
    program's memory; ru_maxrss would carry the parent's peak over fork + exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class CompileClock:
    """Sums jax.monitoring's trace, lowering and XLA-compile durations while armed."""

    EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self):
        import jax.monitoring

        self.total = 0.0
        self.armed = False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        if self.armed and event in self.EVENTS:
            self.total += duration

    def measure(self, fn):
        """(fn's result, compile seconds during fn, wall seconds of fn)."""
        self.total, self.armed = 0.0, True
        t0 = time.perf_counter()
        try:
            out = fn()
        finally:
            self.armed = False
        return out, round(self.total, 2), round(time.perf_counter() - t0, 2)


# --------------------------------------------------------------------------- data


class Data:
    """A synthetic corpus in serjax's device layout: float16 table, labels, fold statistics
    (`fold`: serjax.data.FoldData). use_jax=False (the PyTorch RSS child) keeps JAX out of
    the process."""

    def __init__(self, num_utterances: int, seed: int = 0, use_jax: bool = True):
        rng = np.random.default_rng(seed)
        U = num_utterances
        self.use_jax = use_jax
        # log-Mel-like values (dB around -30 with a per-band tilt); normalised in the step
        tilt = np.linspace(-10, -50, INPUT_SHAPE[0], dtype=np.float32)[:, None]
        self.table_np = (tilt + 12 * rng.standard_normal((U, *INPUT_SHAPE), np.float32)).astype(
            np.float16
        )
        self.labels_np = rng.choice(NUM_CLASSES, U, p=[0.1, 0.2, 0.32, 0.38]).astype(np.int32)
        self.train_rows = np.arange(U)
        # serjax.losses.class_weights (inverse frequency, mean weight 1), in NumPy
        counts = np.bincount(self.labels_np, minlength=NUM_CLASSES)
        self.weights_np = (U / (NUM_CLASSES * counts)).astype(np.float32)
        self.mean_np = self.table_np.astype(np.float32).mean(axis=(0, 2))
        self.std_np = self.table_np.astype(np.float32).std(axis=(0, 2))
        if use_jax:
            from serjax.data import FoldData

            self.fold = FoldData.of(
                self.table_np, self.labels_np, self.mean_np, self.std_np, self.weights_np
            )
        self._torch = None

    def torch(self):
        if self._torch is None:
            import torch

            self._torch = {
                "table": torch.from_numpy(self.table_np),
                "labels": torch.from_numpy(self.labels_np).long(),
                "weights": torch.from_numpy(self.weights_np),
                "mean": torch.from_numpy(self.mean_np),
                "std": torch.from_numpy(self.std_np),
            }
        return self._torch


def batch_stream(data: Data, batch_size: int, seeds, fold: int = 0):
    """Endless [S, batch] row indices from serjax.train.epoch_batches, epoch after epoch
    (without JAX: a plain NumPy shuffle per seed and epoch, the same shapes)."""
    if data.use_jax:
        from serjax.train import epoch_batches
    else:

        def epoch_batches(rows, batch, seeds_, fold_, epoch_):
            steps = len(rows) // batch
            return np.stack(
                [
                    np.random.default_rng([s, fold_, epoch_])
                    .permutation(rows)[: steps * batch]
                    .reshape(steps, batch)
                    for s in seeds_
                ],
                axis=1,
            )

    epoch = 0
    while True:
        yield from epoch_batches(data.train_rows, batch_size, list(seeds), fold, epoch)
        epoch += 1


# --------------------------------------------------------------------------- contenders


class Contender:
    """Something that trains (and maybe evaluates) whole steps; `samples` per train step."""

    name = "?"
    samples = 0
    first_train_s = first_eval_s = None
    compile_train_s = compile_eval_s = None

    def first_step_s(self, mode: str) -> float:
        """Wall time of the first call's step without its compilation (0 if unknown)."""
        first = getattr(self, f"first_{mode}_s") or 0.0
        return max(0.0, first - (getattr(self, f"compile_{mode}_s") or 0.0))

    def train(self, steps: int) -> None: ...
    def eval(self, steps: int) -> None: ...


def serjax_trainer(width_scale: int, strategy: str):
    from serjax.configlib import base_config
    from serjax.model import build_model
    from serjax.train import trainer_for

    cfg = base_config()
    cfg.model.width_scale = width_scale
    cfg.train.seed_strategy = strategy
    return trainer_for(build_model(cfg.model, NUM_CLASSES), cfg.train)


class JaxSeeds(Contender):
    """serjax's train/eval step over S stacked seeds (one call per step)."""

    def __init__(
        self, name, trainer, data: Data, num_seeds: int, batch_size: int, clock: CompileClock
    ):
        import jax
        import jax.numpy as jnp

        from serjax.seeds import seed_keys

        self.name, self.trainer, self.data, self.S, self.B = (
            name,
            trainer,
            data,
            num_seeds,
            batch_size,
        )
        self.samples = num_seeds * batch_size
        self.lr = jnp.float32(1e-3)
        self.states = trainer.init(seed_keys(range(num_seeds), 0), INPUT_SHAPE)
        self.batches = batch_stream(data, batch_size, range(num_seeds))
        self.eval_rows = batch_stream(data, batch_size, [12345])
        self._jax, self._jnp = jax, jnp
        _, self.compile_train_s, self.first_train_s = clock.measure(lambda: self.train(1))
        self.compile_eval_s = self.first_eval_s = None
        self._clock = clock

    def train(self, steps):
        d, jnp = self.data, self._jnp
        for _ in range(steps):
            rows = jnp.asarray(next(self.batches))
            self.states, stats = self.trainer.train_step(self.states, rows, d.fold, self.lr)
        stats.block_until_ready()

    def eval(self, steps):
        if self.compile_eval_s is None:
            _, self.compile_eval_s, self.first_eval_s = self._clock.measure(lambda: self._eval(1))
        self._eval(steps)

    def _eval(self, steps):
        d, jnp = self.data, self._jnp
        for _ in range(steps):
            out = self.trainer.eval_step(self.states, jnp.asarray(next(self.eval_rows)[0]), d.fold)
        out.block_until_ready()


class JaxSequence(Contender):
    """S single-seed runs (serjax's S = 1 step), one after the other."""

    def __init__(self, trainer, data: Data, num_seeds: int, batch_size: int, clock: CompileClock):
        self.name = "sequence"
        self.samples = num_seeds * batch_size
        self.runs = [
            JaxSeeds(f"seed{s}", trainer, data, 1, batch_size, clock) for s in range(num_seeds)
        ]
        # each run has its own seed's batches, as S separate experiments would
        for s, run in enumerate(self.runs):
            run.batches = batch_stream(data, batch_size, [s])
        # the S = 1 executable is usually compiled (and counted) already by the framework table
        self.compile_train_s = self.runs[0].compile_train_s or None
        self.first_train_s = sum(run.first_step_s("train") for run in self.runs)

    def train(self, steps):
        for run in self.runs:
            run.train(steps)


class Torch(Contender):
    """bench/torch_reference.py's train/eval step. threads: torch.set_num_threads before each
    stretch (None: untouched). device: where model and data live; on a GPU, cudnn.benchmark is
    on (as XLA autotunes) and each stretch ends with a synchronisation."""

    def __init__(
        self,
        name,
        width_scale: int,
        data: Data,
        batch_size: int,
        threads: int | None,
        device: str = "cpu",
    ):
        import torch
        import torch_reference as ref

        self.name, self.threads, self.B, self.samples = name, threads, batch_size, batch_size
        self._torch, self._ref, self.device = torch, ref, device
        self.cuda = device.startswith("cuda")
        if self.cuda:
            torch.backends.cudnn.benchmark = True
        self.model, self.opt = ref.build(width_scale, device=device)
        self.d = {k: v.to(device) for k, v in data.torch().items()}
        self.batches = batch_stream(data, batch_size, [0])
        self.eval_rows = batch_stream(data, batch_size, [12345])
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        self.train(1)
        self.first_train_s = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        self.eval(1)
        self.first_eval_s = round(time.perf_counter() - t0, 2)

    def _rows(self, stream):
        return self._torch.from_numpy(next(stream)[0]).to(self.device, non_blocking=True)

    def _begin(self):
        if self.threads is not None:
            self._torch.set_num_threads(self.threads)

    def _end(self):
        if self.cuda:
            self._torch.cuda.synchronize()

    def train(self, steps):
        self._begin()
        d = self.d
        for _ in range(steps):
            self._ref.train_step(
                self.model,
                self.opt,
                self._rows(self.batches),
                d["table"],
                d["labels"],
                d["weights"],
                d["mean"],
                d["std"],
            )
        self._end()

    def eval(self, steps):
        self._begin()
        d = self.d
        for _ in range(steps):
            self._ref.eval_step(
                self.model, self._rows(self.eval_rows), d["table"], d["mean"], d["std"]
            )
        self._end()

    def peak_device_mb(self) -> float | None:
        """The CUDA allocator's peak since this contender was built (None off a GPU)."""
        return round(self._torch.cuda.max_memory_allocated() / 2**20, 1) if self.cuda else None


# --------------------------------------------------------------------------- timing


def warm_up(fn, first_step_s: float, min_steps: int = 2, max_s: float = 3.0) -> float:
    """Warm-up after the first call (which ran one step in first_step_s, compilation aside):
    more single steps until min_steps in all or max_s seconds; returns seconds per step.
    A step slower than max_s has warmed up with the first call alone."""
    steps, spent, last = 1, first_step_s, first_step_s
    while steps < min_steps and spent < max_s:
        t1 = time.perf_counter()
        fn(1)
        last = time.perf_counter() - t1
        spent += last
        steps += 1
    return max(last, 1e-3)


def measure(fn, samples_per_step: int, step_s: float, min_time: float) -> dict:
    """Run whole steps for at least min_time seconds; samples/s, steps, seconds, load."""
    steps_done, elapsed = 0, 0.0
    t0 = time.perf_counter()
    while elapsed < min_time:
        # chunks of ~1 s (whole steps) keep dispatch pipelined without overshooting much
        chunk = max(
            1,
            min(int(1.0 / max(step_s, 1e-6)), math.ceil((min_time - elapsed) / max(step_s, 1e-6))),
        )
        fn(chunk)
        steps_done += chunk
        elapsed = time.perf_counter() - t0
        step_s = elapsed / steps_done
    return {
        "samples_per_s": round(steps_done * samples_per_step / elapsed, 2),
        "steps": steps_done,
        "seconds": round(elapsed, 2),
        "load_1min": (loadavg() or [None])[0],
    }


def alternate(contenders: dict, mode: str, rounds: int, min_time: float, step_s: dict, log) -> dict:
    """{name: [measurement per round]}, contenders taking turns within every round."""
    out = {name: [] for name in contenders}
    for r in range(rounds):
        for name, c in contenders.items():
            m = measure(getattr(c, mode), c.samples, step_s[name], min_time)
            out[name].append(m)
            log(
                f"    round {r + 1} {mode:5s} {name:18s} {m['samples_per_s']:8.1f} samples/s "
                f"({m['steps']} steps, {m['seconds']} s, load {m['load_1min']})"
            )
    return out


def median_rate(ms) -> float:
    return round(statistics.median(m["samples_per_s"] for m in ms), 2)


def ratio_range(a, b) -> list[float]:
    """Lowest and highest per-round ratio a / b."""
    r = [x["samples_per_s"] / y["samples_per_s"] for x, y in zip(a, b)]
    return [round(min(r), 3), round(max(r), 3)]


def paired_ratio(a, b) -> float:
    """Median over rounds of a's rate / b's rate in the same round."""
    return round(
        statistics.median(x["samples_per_s"] / y["samples_per_s"] for x, y in zip(a, b)), 3
    )


# --------------------------------------------------------------------------- peak RSS (child)


def child_run(framework: str, width_scale: int, args) -> dict:
    """In a fresh process (allocator as its environment says): build, warm up, then train
    samples/s over args.rounds measurements of args.min_time s; peak RSS."""
    if framework == "jax":
        import jax.numpy as jnp

        import serjax.train  # noqa: F401

        jnp.zeros(1).block_until_ready()
    else:
        import torch  # noqa: F401
    base = peak_rss_mb()
    data = Data(args.utterances, use_jax=framework == "jax")
    if framework == "jax":
        c = JaxSeeds(
            "jax",
            serjax_trainer(width_scale, "auto"),
            data,
            1,
            args.batch_size,
            CompileClock(),
        )
    else:
        import torch

        torch.set_num_threads(TORCH_THREADS)
        c = Torch("torch", width_scale, data, args.batch_size, TORCH_THREADS)
    c.eval(1)
    step_s = warm_up(c.train, c.first_step_s("train"))
    rounds = [measure(c.train, c.samples, step_s, args.min_time) for _ in range(args.rounds)]
    from serjax.xla_options import host_allocator_state

    return {
        "train_samples_per_s": median_rate(rounds),
        "rounds": rounds,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_imports_mb": base,
        "allocator": host_allocator_state(),
    }


ALLOCATORS = ("default", "hugepages")


def allocator_env(malloc: str) -> dict:
    """A child's environment for one allocator setting (never restarted by the child itself)."""
    from serjax.host import HUGE_PAGES_TUNABLE, REEXEC_MARK

    env = dict(os.environ, SERJAX_MALLOC=malloc)
    env[REEXEC_MARK] = "1"
    kept = [
        t
        for t in env.pop("GLIBC_TUNABLES", "").split(":")
        if t and not t.startswith("glibc.malloc.hugetlb")
    ]
    if malloc == "hugepages":
        kept.append(HUGE_PAGES_TUNABLE)
    if kept:
        env["GLIBC_TUNABLES"] = ":".join(kept)
    return env


def run_children(widths, args, log) -> dict:
    """{"jax/1/default": {...}, "jax/1/hugepages": {...}, "torch/1/default": ...}.

    Interleaved: args.rounds passes, each running every cell (framework × n × allocator) once
    in a fresh process for one measurement, so drift on shared cores reaches every cell of a
    pass alike; a cell's rate is the median of its passes, its ratios are paired by pass."""
    cells = [(fw, n, malloc) for n in widths for fw in ("jax", "torch") for malloc in ALLOCATORS]
    out = {f"{fw}/{n}/{malloc}": {"rounds": [], "peak_rss_mb": 0.0} for fw, n, malloc in cells}
    for r in range(args.rounds):
        for fw, n, malloc in cells:
            key = f"{fw}/{n}/{malloc}"
            cmd = [
                sys.executable,
                __file__,
                "--child",
                fw,
                str(n),
                "--utterances",
                str(args.utterances),
                "--batch-size",
                str(args.batch_size),
                "--min-time",
                str(args.min_time),
                "--rounds",
                "1",
            ]
            try:
                res = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    timeout=900,
                    check=True,
                    env=allocator_env(malloc),
                )
                child = json.loads(res.stdout.strip().splitlines()[-1])
            except (subprocess.SubprocessError, ValueError, IndexError) as e:
                out[key].setdefault("errors", []).append(str(e)[-300:])
                log(f"  pass {r + 1} child {key}: failed")
                continue
            cell = out[key]
            cell["rounds"] += child["rounds"]
            cell["peak_rss_mb"] = max(cell["peak_rss_mb"], child["peak_rss_mb"])
            cell["rss_after_imports_mb"] = child["rss_after_imports_mb"]
            cell["allocator"] = child["allocator"]
            log(
                f"  pass {r + 1} child {key}: {child['train_samples_per_s']} samples/s, "
                f"peak RSS {child['peak_rss_mb']} MB"
            )
    for cell in out.values():
        if cell["rounds"]:
            cell["train_samples_per_s"] = median_rate(cell["rounds"])
    return out


def child_ratios(children: dict, n: int) -> dict:
    """Train-rate ratios JAX / PyTorch from the child processes at width n, each the median
    over passes of the ratio within a pass: each allocator setting for both; as installed
    (serjax's default, huge pages, vs glibc's defaults for PyTorch); and each framework's
    fastest setting (by median rate) against the other's."""
    cell = {
        f"{fw}/{m}": children.get(f"{fw}/{n}/{m}", {})
        for fw in ("jax", "torch")
        for m in ALLOCATORS
    }
    rate = {k: c.get("train_samples_per_s") for k, c in cell.items()}
    out = {}

    def put(name, a, b):
        if rate[a] and rate[b] and len(cell[a]["rounds"]) == len(cell[b]["rounds"]):
            out[name] = paired_ratio(cell[a]["rounds"], cell[b]["rounds"])

    put("ratio_train_jax_over_torch_both_default_malloc", "jax/default", "torch/default")
    put("ratio_train_jax_over_torch_both_hugepages", "jax/hugepages", "torch/hugepages")
    put("ratio_train_jax_over_torch_as_installed", "jax/hugepages", "torch/default")
    best = {
        fw: max(
            (m for m in ALLOCATORS if rate[f"{fw}/{m}"]),
            key=lambda m: rate[f"{fw}/{m}"],
            default=None,
        )
        for fw in ("jax", "torch")
    }
    if best["jax"] and best["torch"]:
        put("ratio_train_jax_best_over_torch_best", f"jax/{best['jax']}", f"torch/{best['torch']}")
        out["best_allocator"] = best
    return out


# --------------------------------------------------------------------------- parts


def compare_frameworks(widths, data: Data, args, clock, log) -> list[dict]:
    import torch_reference as ref

    from serjax.model import count_params

    rows = []
    for n in widths:
        log(f"n = {n}: building and compiling")
        trainer = serjax_trainer(n, "auto")
        jx = JaxSeeds("jax", trainer, data, 1, args.batch_size, clock)
        params_jax = count_params(jax_params_of(jx.states))
        contenders = {
            "jax": jx,
            "torch": Torch("torch", n, data, args.batch_size, TORCH_THREADS),
            "torch_1thread": Torch("torch_1thread", n, data, args.batch_size, 1),
        }
        params_torch = ref.param_count(contenders["torch"].model)
        jx.eval(1)
        step_s = {}
        for mode in ("train", "eval"):
            for name, c in contenders.items():
                step_s[(mode, name)] = warm_up(getattr(c, mode), c.first_step_s(mode))
        res = {}
        for mode in ("train", "eval"):
            res[mode] = alternate(
                contenders,
                mode,
                args.rounds,
                args.min_time,
                {k: step_s[(mode, k)] for k in contenders},
                log,
            )
        row = {
            "n": n,
            "widths": [n * b for b in ref.BASE_WIDTHS],
            "params_jax": params_jax,
            "params_torch": params_torch,
            "params_equal": params_jax == params_torch,
        }
        for name, c in contenders.items():
            row[name] = {
                "train_samples_per_s": median_rate(res["train"][name]),
                "eval_samples_per_s": median_rate(res["eval"][name]),
                "first_train_call_s": c.first_train_s,
                "first_eval_call_s": c.first_eval_s,
                "train_rounds": res["train"][name],
                "eval_rounds": res["eval"][name],
            }
        row["jax"]["compile_train_s"] = jx.compile_train_s
        row["jax"]["compile_eval_s"] = jx.compile_eval_s
        for mode in ("train", "eval"):
            row[f"ratio_{mode}_jax_over_torch"] = paired_ratio(res[mode]["jax"], res[mode]["torch"])
            row[f"ratio_{mode}_jax_over_torch_1thread"] = paired_ratio(
                res[mode]["jax"], res[mode]["torch_1thread"]
            )
            row[f"ratio_{mode}_torch_1thread_over_torch"] = paired_ratio(
                res[mode]["torch_1thread"], res[mode]["torch"]
            )
            row[f"ratio_{mode}_jax_over_torch_range"] = ratio_range(
                res[mode]["jax"], res[mode]["torch"]
            )
        log(
            f"  n = {n}: train jax {row['jax']['train_samples_per_s']} / torch "
            f"{row['torch']['train_samples_per_s']}"
            f" / torch 1 thread {row['torch_1thread']['train_samples_per_s']} samples/s; "
            f"ratio jax/torch {row['ratio_train_jax_over_torch']}"
        )
        rows.append(row)
        del contenders, jx
    return rows


def jax_params_of(states):
    import jax

    return jax.tree_util.tree_map(lambda a: a[0], states.params)


def seed_scaling(
    seed_counts, data: Data, args, clock, log, strategies=None, deadline: float = math.inf
) -> dict:
    """Total train samples/s with S seeds per strategy (default: all but `auto`) against
    `sequence`, at width args.seed_width; an S not started by `deadline` (perf_counter) is
    listed as skipped."""
    from serjax.seeds import SEED_STRATEGIES, resolve_seed_strategy

    n = args.seed_width
    strategies = list(strategies or [s for s in SEED_STRATEGIES if s != "auto"])
    single = serjax_trainer(n, "auto")  # what num_seeds = 1 runs
    rows, skipped = [], []
    for S in seed_counts:
        if time.perf_counter() > deadline:
            skipped.append({"S": S})
            continue
        log(f"seeds S = {S} (n = {n}): building and compiling")
        contenders = {
            s: JaxSeeds(s, serjax_trainer(n, s), data, S, args.batch_size, clock)
            for s in strategies
        }
        contenders["sequence"] = JaxSequence(single, data, S, args.batch_size, clock)
        step_s = {name: warm_up(c.train, c.first_step_s("train")) for name, c in contenders.items()}
        res = alternate(contenders, "train", args.seed_rounds, args.min_time, step_s, log)
        for name, c in contenders.items():
            rows.append(
                {
                    "S": S,
                    "strategy": name,
                    "train_samples_per_s": median_rate(res[name]),
                    "ratio_over_sequence": paired_ratio(res[name], res["sequence"]),
                    "compile_train_s": c.compile_train_s,
                    "rounds": res[name],
                }
            )
        del contenders
    return {
        "n": n,
        "strategies": strategies + ["sequence"],
        "auto_resolves_to": resolve_seed_strategy("auto"),
        "rows": rows,
        "fastest_by_S": fastest_by_seeds(rows),
        "fastest_tolerance": FASTEST_TOLERANCE,
        "skipped_for_deadline": skipped,
    }


FASTEST_TOLERANCE = 0.05


def fastest_by_seeds(rows) -> dict:
    """Per S, the strategies within FASTEST_TOLERANCE of the top rate, fastest first (at S = 1
    vmap, unroll and sequence run the same computation, so they tie within noise)."""
    out = {}
    for S in sorted({r["S"] for r in rows}):
        here = sorted((r for r in rows if r["S"] == S), key=lambda r: -r["train_samples_per_s"])
        top = here[0]["train_samples_per_s"]
        out[str(S)] = [
            r["strategy"] for r in here if r["train_samples_per_s"] >= (1 - FASTEST_TOLERANCE) * top
        ]
    return out


# --------------------------------------------------------------------------- ablation

ABLATION = (
    (
        "plain",
        "model.conv_impl = flax (plain linen layers), XLA's default compiler options",
        "flax",
    ),
    ("+options", "+ serjax's CPU compiler options (YNNPACK for reductions only)", "flax"),
    ("serjax", "+ serjax.layers (model.conv_impl = auto, serjax's default)", "auto"),
)


def ablation(widths, data: Data, args, clock, log) -> list[dict]:
    """Train samples/s of each ABLATION variant per n, alternating within rounds."""
    import optax

    from serjax.configlib import base_config
    from serjax.model import build_model
    from serjax.train import Trainer
    from serjax.xla_options import compiler_options

    cfg = base_config()
    rows = []
    for n in widths:
        cfg.model.width_scale = n
        contenders = {}
        for level, (variant, _, conv_impl) in enumerate(ABLATION):
            cfg.model.conv_impl = conv_impl
            tx = optax.inject_hyperparams(optax.adam)(learning_rate=cfg.train.learning_rate)
            trainer = Trainer(
                build_model(cfg.model, NUM_CLASSES),
                tx,
                cfg.train.focal_gamma,
                "auto",
                compiler_options() if level >= 1 else None,
            )
            contenders[variant] = JaxSeeds(variant, trainer, data, 1, args.batch_size, clock)
        step_s = {name: warm_up(c.train, c.first_step_s("train")) for name, c in contenders.items()}
        res = alternate(contenders, "train", args.rounds, args.min_time, step_s, log)
        row = {"n": n}
        for name in contenders:
            row[name] = {
                "train_samples_per_s": median_rate(res[name]),
                "rounds": res[name],
                "ratio_over_plain": paired_ratio(res[name], res["plain"]),
            }
        rows.append(row)
        del contenders
    return rows


# --------------------------------------------------------------------------- report


def seed_table(rows, strategies, digits: int) -> list[str]:
    """Markdown rows: a strategy per line, an S per column, "rate (×ratio over sequence)"."""
    counts = sorted({r["S"] for r in rows})
    lines = [
        "| strategy | " + " | ".join(f"S = {S}" for S in counts) + " |",
        "|---|" + "---|" * len(counts),
    ]
    for name in strategies:
        cells = []
        for S in counts:
            r = next((x for x in rows if x["S"] == S and x["strategy"] == name), None)
            cells.append(
                ""
                if r is None
                else f"{r['train_samples_per_s']:.{digits}f} (×{r['ratio_over_sequence']:.2f})"
            )
        lines.append(
            f"| {name if name == 'sequence' else f'`{name}`'} | " + " | ".join(cells) + " |"
        )
    return lines


def _allocator_words(state) -> str:
    state = state or {}
    words = []
    if (state.get("huge_pages") or {}).get("on"):
        words.append("huge pages")
    return " + ".join(words) or "glibc defaults"


def markdown(res: dict) -> str:
    s = res["settings"]
    m = res["machine"]
    v = res["versions"]
    lines = [
        "# Training-throughput benchmark: serjax (JAX) vs a PyTorch reference; seed strategies",
        "",
        f"Command: `{res['command']}`",
        "",
        f"- Date: {res['date']}; wall time {res['wall_time_s']} s",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}",
        f"- Versions: jax {v['jax']}, jaxlib {v['jaxlib']} ({v['jax_backend']}), flax {v['flax']}, "
        f"optax {v['optax']}, torch {v['torch']}",
        f"- Load average at start / end: {m['loadavg_start']} / {m['loadavg_end']} (2 shared "
        "cores: other "
        "jobs ran; every rate below comes with the 1-min load of its measurements in the JSON)",
        f"- Input {s['input_shape'][0]} × {s['input_shape'][1]}, batch {s['batch_size']} (train "
        "and eval), "
        f"{s['utterances']} synthetic utterances in a float16 device table, row indices per step "
        "(as `serjax.experiment`); 4 classes, focal γ 2, class weights, Adam 1e-3",
        f"- Each measurement: whole steps for ≥ {s['min_time_s']} s after a warm-up; contenders "
        "alternate "
        f"within each round; {s['rounds']} rounds (framework table), {s['seed_rounds']} (seed "
        "table). Rates: median over rounds. Ratios: median of the per-round ratios (paired).",
        "- JAX: `serjax.train.trainer_for` + `serjax.model.build_model` on `base_config()`, the "
        "real jitted `train_step` / `eval_step` with one seed (`auto`, here "
        f"`{res.get('auto_strategy', '?')}`); XLA's own CPU threading. PyTorch: "
        "`bench/torch_reference.py` (same model, loss and optimizer; channels_last), eager, "
        f"`torch.set_num_threads({TORCH_THREADS})` and, for comparison, 1 thread.",
        "- This process (both frameworks): host allocator "
        f"{_allocator_words(s.get('host_allocator'))} "
        f"({s.get('host_allocator')}); JAX compiler options "
        f"{s.get('compiler_options')} (`serjax/xla_options.py`).",
        "",
        "## JAX vs PyTorch, per width scale n",
        "",
        "| n | widths | params (jax = torch) | JAX train | torch train (2 thr) | torch train (1 "
        "thr) | JAX/torch train | JAX/torch-1thr train | JAX eval | torch eval (2 thr) | torch "
        "eval (1 thr) | JAX/torch eval | JAX compile s (train + eval) | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def rng(lo_hi):
        return f"{lo_hi[0]:.2f}–{lo_hi[1]:.2f}"

    for r in res["comparison"]:
        j, t, t1 = r["jax"], r["torch"], r["torch_1thread"]
        loads = [
            x["load_1min"]
            for c in (j, t, t1)
            for x in c["train_rounds"] + c["eval_rounds"]
            if x["load_1min"] is not None
        ]
        load = f"{min(loads):.1f}–{max(loads):.1f}" if loads else "?"
        lines.append(
            f"| {r['n']} | {'/'.join(map(str, r['widths']))} | {r['params_jax']:,}"
            f"{'' if r['params_equal'] else ' ≠ ' + format(r['params_torch'], ',')} "
            f"| {j['train_samples_per_s']:.1f} | {t['train_samples_per_s']:.1f} | "
            f"{t1['train_samples_per_s']:.1f} "
            f"| **{r['ratio_train_jax_over_torch']:.2f}** "
            f"({rng(r['ratio_train_jax_over_torch_range'])}) "
            f"| {r['ratio_train_jax_over_torch_1thread']:.2f} "
            f"| {j['eval_samples_per_s']:.1f} | {t['eval_samples_per_s']:.1f} | "
            f"{t1['eval_samples_per_s']:.1f} "
            f"| **{r['ratio_eval_jax_over_torch']:.2f}** "
            f"({rng(r['ratio_eval_jax_over_torch_range'])}) "
            f"| {j['compile_train_s']:.1f} + {j['compile_eval_s']:.1f} | {load} |"
        )
    lines += [
        "",
        "Rates are samples/s; a ratio's range (in brackets) is over the rounds. Both frameworks "
        f"run in this process with {_allocator_words(s.get('host_allocator'))} (the next table "
        "shows each "
        "framework with every allocator setting). When other jobs hold a core, 2-thread PyTorch "
        "(OpenMP) can slow down "
        "sharply; the 1-thread column and the per-round loads in the JSON show whether that "
        "happened.",
        "",
    ]
    ch = res.get("children")
    if ch:
        names = {"default": "glibc defaults", "hugepages": "huge pages (serjax's default)"}
        lines += [
            "## Host allocator settings (fresh process each)",
            "",
            "| n | "
            + " | ".join(f"{fw} {names[m]}" for fw in ("JAX", "torch") for m in ALLOCATORS)
            + " | **as installed** (JAX huge pages / torch glibc) | both glibc "
            "| both huge pages | each at its fastest |",
            "|---|" + "---|" * (2 * len(ALLOCATORS) + 4),
        ]

        def ratio(row, key):
            return "?" if row.get(key) is None else f"{row[key]:.2f}"

        for r in res["comparison"]:
            n = r["n"]
            cells = []
            for fw in ("jax", "torch"):
                for m in ALLOCATORS:
                    c = ch.get(f"{fw}/{n}/{m}", {})
                    rate = c.get("train_samples_per_s")
                    cells.append(
                        "?" if rate is None else f"{rate:.1f} ({c.get('peak_rss_mb', '?')} MB)"
                    )
            best = r.get("best_allocator", {})
            lines.append(
                f"| {n} | "
                + " | ".join(cells)
                + f" | **{ratio(r, 'ratio_train_jax_over_torch_as_installed')}** "
                f"| {ratio(r, 'ratio_train_jax_over_torch_both_default_malloc')} "
                f"| {ratio(r, 'ratio_train_jax_over_torch_both_hugepages')} "
                f"| {ratio(r, 'ratio_train_jax_best_over_torch_best')} "
                f"({best.get('jax', '?')} / {best.get('torch', '?')}) |"
            )
        lines += [
            "",
            "Train samples/s (highest peak RSS of the cell's children), median over the passes: "
            "each pass runs every cell (framework × n × allocator) once, in a fresh process, one "
            "measurement each, so drift on the shared cores reaches every cell of a pass alike; "
            "the ratios are JAX / PyTorch paired within a pass, median over the passes. "
            '"glibc defaults": glibc as configured out of the box, which hands large temporaries '
            "back to the kernel after every step and page-faults them in again, 4 KB at a time; "
            '"huge pages": GLIBC_TUNABLES=glibc.malloc.hugetlb=1, so those pages are 2 MB '
            "transparent huge pages (what launch.py starts serjax with, "
            "`serjax.host.reexec_with_huge_pages`). Peak RSS: the child's high-water mark "
            "(imports, data table, model, warm-up, timed steps).",
            "",
        ]
    ab = res.get("ablation")
    if ab:
        names = [name for name, _, _ in ABLATION]
        lines += [
            "## The CPU fast path taken apart (this process: "
            f"{_allocator_words(s.get('host_allocator'))})",
            "",
            "| n | " + " | ".join(f"`{x}`" for x in names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for r in ab:
            lines.append(
                f"| {r['n']} | "
                + " | ".join(
                    f"{r[x]['train_samples_per_s']:.1f} (×{r[x]['ratio_over_plain']:.2f})"
                    for x in names
                )
                + " |"
            )
        lines += [
            "",
            "Train samples/s (×r: paired ratio over `plain`); each column adds one change to the "
            "one before: " + "; ".join(f"`{name}`: {text}" for name, text, _ in ABLATION) + ".",
            "",
        ]
    ss = res.get("seed_scaling")
    if ss:
        names = ss["strategies"]
        lines += [f"## Seed scaling (n = {ss['n']}): total train samples/s with S seeds", ""]
        lines += seed_table(ss["rows"], names, digits=1)
        lines += [
            "",
            "(×r) = rate / `sequence`'s rate in the same round (median over rounds). "
            "`sequence`: S single-seed runs of serjax's step (`auto`, one seed) one after the "
            "other; the others are `serjax.seeds` strategies with S stacked seeds: "
            "`vmap` (jax.vmap; serjax's convolutions one per seed by their vmap rule, "
            "bench/bench_seeds.py), `unroll` (the S single-seed steps written out in one jitted "
            "function), "
            "`map` (lax.map), `chunks` (`unroll` over two seeds per jitted call, the calls one "
            f"after another). On this backend `auto` resolves to `{ss['auto_resolves_to']}`.",
            "",
            f"Fastest per S (within {ss['fastest_tolerance']:.0%} of the top rate): "
            + "; ".join(f"S = {S}: {', '.join(b)}" for S, b in ss["fastest_by_S"].items()),
            "",
            "| S | strategy | compile s |",
            "|---|---|---|",
        ]
        for r in ss["rows"]:
            lines.append(f"| {r['S']} | {r['strategy']} | {r['compile_train_s'] or ''} |")
        lines.append("")
        lines.append(
            "A blank compile time: the executable was compiled earlier in the run (sequence reuses "
            "the single-seed step; at S = 1 the `auto` strategy's step is the framework table's)."
        )
        lines.append("")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4], help="width scales n")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        default=[1, 2, 4, 8],
        help="seed counts S for the seed table (none: skip it)",
    )
    parser.add_argument("--seed-width", type=int, default=1, help="n for the seed table")
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--utterances", type=int, default=512, help="rows of the device table")
    parser.add_argument(
        "--min-time", type=float, default=3.0, help="seconds per measurement (at least)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the framework comparison")
    parser.add_argument("--seed-rounds", type=int, default=2, help="rounds of the seed table")
    parser.add_argument(
        "--children",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="part 1b: allocator settings and peak RSS in child processes",
    )
    parser.add_argument(
        "--ablation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="part 1c: the CPU fast path taken apart",
    )
    parser.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from serjax.host import reexec_with_huge_pages
    from serjax.xla_options import host_allocator_state

    # first thing (before any thread starts), as launch.py: huge pages unless SERJAX_MALLOC says
    # otherwise
    reexec_with_huge_pages()
    allocator = host_allocator_state()
    if args.child:
        print(json.dumps(child_run(args.child[0], int(args.child[1]), args)))
        return 0
    command = command_line("bench_train.py", argv)

    started = time.perf_counter()
    load_start = loadavg()
    import torch

    torch.set_num_threads(TORCH_THREADS)

    def log(msg):
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", flush=True)

    clock = CompileClock()
    data = Data(args.utterances)
    result = {
        "command": command,
        "date": utc_now(),
        "machine": {**machine_info(), "loadavg_start": load_start},
        "versions": versions_info(),
        "settings": {
            "input_shape": list(INPUT_SHAPE),
            "batch_size": args.batch_size,
            "utterances": args.utterances,
            "min_time_s": args.min_time,
            "rounds": args.rounds,
            "seed_rounds": args.seed_rounds,
            "torch_threads": TORCH_THREADS,
            "torch_interop_threads": torch.get_num_interop_threads(),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
            "host_allocator": allocator,
        },
    }
    from serjax.seeds import resolve_seed_strategy
    from serjax.xla_options import compiler_options

    result["auto_strategy"] = resolve_seed_strategy("auto")
    result["settings"]["compiler_options"] = compiler_options()
    result["comparison"] = compare_frameworks(args.widths, data, args, clock, log)
    if args.ablation:
        result["ablation"] = ablation(args.widths, data, args, clock, log)
    if args.seeds:
        result["seed_scaling"] = seed_scaling(args.seeds, data, args, clock, log)
    result["peak_rss_main_process_mb"] = peak_rss_mb()
    if args.children:
        result["children"] = run_children(args.widths, args, log)
        for row in result["comparison"]:
            row.update(child_ratios(result["children"], row["n"]))
    result["machine"]["loadavg_end"] = loadavg()
    result["wall_time_s"] = round(time.perf_counter() - started, 1)
    paths = write_outputs(args.out, "train", result, markdown(result))
    log("wrote " + " and ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
