"""Where serjax's train step spends its time: an XLA profile of the real step, per block and op.

    python bench/profile_step.py [--widths 2] [--steps 10] [--out results/bench]

For each width scale n: serjax's real jitted train step (one seed, batch 32, 64 × 601, the
same trainer and data layout as bench/bench_train.py) is warmed up, timed, then run again
under `jax.profiler.trace`. Every profiled event whose name is an instruction of the step's
optimised HLO is counted: its thread time, the model block its metadata names (block1 ...
block6, eca5, dense1, ...; "loss, optimizer" for the rest) and whether it belongs to the
forward or the backward pass (autodiff's `transpose(...)`).

A fusion is credited to the block and pass of its root instruction. XLA duplicates cheap
elementwise producers into each consumer rather than storing them, so forward work can run
inside a fusion credited to the backward pass (block 1's shifted-sum convolution, for one,
is recomputed inside each fusion that reads it).

On the CPU, XLA hands each convolution to Eigen's thread pool, whose work the profiler does
not see: a convolution's event covers only its dispatch. So the table accounts for the
fusions (normalisation, pooling, ReLU, attention, the transposes that feed the kernel
gradients, loss, optimizer), and "not in any event" — threads × wall time minus what the
events cover — is mostly the convolutions (bench/bench_layers.py times those one by one).

Writes profile.json and profile.md to --out.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import sys
import tempfile
import time
from pathlib import Path

from machine import command_line, machine_info, utc_now, write_outputs  # bench/machine.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+?\[[^\]]*\]|\([^)]*\)|\S+\[\])\S*\s+([\w\-]+)\("
)
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_BLOCK = re.compile(r"/((?:block|eca|dense)\d+)/")
OTHER = "loss, optimizer, other"
UNNAMED = "(no metadata)"


def hlo_index(text: str) -> dict:
    """{instruction name: {"shape", "opcode", "block", "pass"}} for every instruction of an
    optimised HLO module's text (fusions carry their root's metadata)."""
    index = {}
    for line in text.splitlines():
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        name, shape, opcode = m.groups()
        op = _OP_NAME.search(line)
        if not op:
            index[name] = {"shape": shape, "opcode": opcode, "block": UNNAMED, "pass": "–"}
            continue
        block = _BLOCK.search(op.group(1))
        index[name] = {
            "shape": shape,
            "opcode": opcode,
            "block": block.group(1) if block else OTHER,
            "pass": "backward" if "transpose(" in op.group(1) else "forward",
        }
    return index


def kind_of(name: str) -> str:
    """An instruction's kind from its name: 'broadcast_add_fusion.5' -> 'broadcast_add_fusion'."""
    return name.split(".")[0]


def events_of(xspace_path: str, names: dict) -> tuple[list, dict]:
    """[(line, instruction name, ns)] for the profile's events named after an HLO instruction,
    and {line: ns its events cover (overlaps counted once)} for the lines that have any."""
    from jax.profiler import ProfileData

    found, busy = [], {}
    for plane in ProfileData.from_file(xspace_path).planes:
        for line in plane.lines:
            spans = sorted(
                (e.start_ns, e.start_ns + e.duration_ns, e.name)
                for e in line.events
                if e.name in names
            )
            if not spans:
                continue
            key = f"{plane.name}/{line.name}"
            covered, end = 0, -1
            for start, stop, name in spans:
                found.append((key, name, stop - start))
                if stop > end:
                    covered += stop - max(start, end)
                    end = stop
            busy[key] = covered
    return found, busy


def summarise(
    found: list, busy: dict, index: dict, steps: int, wall_ms: float, threads: int, top: int
) -> dict:
    """Per-step milliseconds of thread time by block and pass, by op kind, and the top
    instructions; the share of threads × wall time the events cover."""
    per = lambda ns: round(ns / steps / 1e6, 2)  # noqa: E731
    by_block, by_kind, by_name, count = (collections.Counter() for _ in range(4))
    for _, name, ns in found:
        info = index[name]
        by_block[(info["block"], info["pass"])] += ns
        by_kind[kind_of(name)] += ns
        by_name[name] += ns
        count[name] += 1
    covered = sum(busy.values())
    blocks = sorted({b for b, _ in by_block}, key=lambda b: (b in (OTHER, UNNAMED), b))
    return {
        "wall_ms_per_step": round(wall_ms, 2),
        "threads": threads,
        "event_ms_per_step": per(covered),
        "not_in_any_event_ms_per_step": round(
            max(0.0, threads * wall_ms - covered / steps / 1e6), 2
        ),
        "lines": {k: per(v) for k, v in sorted(busy.items())},
        "by_block": [
            {
                "block": b,
                "forward_ms": per(by_block[(b, "forward")]),
                "backward_ms": per(by_block[(b, "backward")]),
                "unknown_ms": per(by_block[(b, "–")]),
            }
            for b in blocks
        ],
        "by_kind": [{"kind": k, "ms": per(v)} for k, v in by_kind.most_common()],
        "top": [
            {
                "name": k,
                "ms": per(v),
                "calls_per_step": round(count[k] / steps, 2),
                "shape": index[k]["shape"],
                "block": index[k]["block"],
                "pass": index[k]["pass"],
            }
            for k, v in by_name.most_common(top)
        ],
    }


def profile_width(n: int, args, log) -> dict:
    import bench_train as bt
    import jax

    data = bt.Data(args.utterances)
    trainer = bt.serjax_trainer(n, "auto")
    run = bt.JaxSeeds("jax", trainer, data, 1, args.batch_size, bt.CompileClock())
    run.train(args.warmup)
    t0 = time.perf_counter()
    run.train(args.steps)
    wall_ms = (time.perf_counter() - t0) / args.steps * 1e3
    log(f"n = {n}: {wall_ms:.1f} ms per step ({args.batch_size * 1e3 / wall_ms:.1f} samples/s)")
    # the executable the steps above ran (jax's compilation cache: nothing compiles again)
    rows = jax.numpy.asarray(next(run.batches))
    compiled = trainer.train_step.lower(run.states, rows, data.fold, run.lr).compile()
    index = hlo_index(compiled.as_text())
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            run.train(args.steps)
        paths = glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)
        found, busy = events_of(paths[0], index)
    # the CPU's compute threads: one per usable core (XLA's and Eigen's pools); a GPU: one device
    threads = machine_info()["cores"] if jax.default_backend() == "cpu" else 1
    out = summarise(found, busy, index, args.steps, wall_ms, threads, args.top)
    out.update(n=n, backend=jax.default_backend(), device=str(jax.devices()[0].device_kind))
    return out


def markdown(res: dict) -> str:
    lines = [
        "# Where serjax's train step spends its time (XLA profile)",
        "",
        f"Command: `{res['command']}`",
        "",
        f"- Date: {res['date']}; machine: {res['machine']['cpu']}, {res['machine']['cores']} cores",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}",
        f"- One seed, batch {res['batch_size']}, input {res['input'][0]} × {res['input'][1]}, "
        f"{res['steps']} profiled steps after {res['warmup']} warm-up steps",
        "",
    ]
    for r in res["profiles"]:
        lines += [
            f"## n = {r['n']} ({r['backend']}, {r['device']})",
            "",
            f"{r['wall_ms_per_step']} ms per step × {r['threads']} compute thread(s): "
            f"{r['event_ms_per_step']} thread-ms in events, {r['not_in_any_event_ms_per_step']} "
            "thread-ms "
            "in none (on the CPU mostly the convolutions, which run as Eigen tasks the profiler "
            "does not see).",
            "",
            "| block | forward ms | backward ms | pass unknown ms |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {b['block']} | {b['forward_ms']} | {b['backward_ms']} | {b['unknown_ms']} |"
            for b in r["by_block"]
        ]
        lines += ["", "| op kind | ms |", "|---|---|"]
        lines += [f"| {k['kind']} | {k['ms']} |" for k in r["by_kind"][:15]]
        lines += [
            "",
            "| instruction | ms | calls | shape | block | pass |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {t['name']} | {t['ms']} | {t['calls_per_step']} | `{t['shape']}` | {t['block']} | "
            f"{t['pass']} |"
            for t in r["top"]
        ]
        lines.append("")
    lines += [
        "Thread-ms per step (events on several threads add up, so a row can exceed the wall time). "
        "A fusion counts for the block and pass of its root instruction: XLA recomputes cheap "
        "forward work inside the fusions that read it, so some forward work shows as backward.",
        "Timings come from one profiled run on a shared machine: read differences under ~10 % as "
        "noise.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[2], help="width scales n")
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input", type=int, nargs=2, default=[64, 601], metavar=("MELS", "FRAMES"))
    parser.add_argument("--utterances", type=int, default=256, help="rows of the device table")
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing")
    parser.add_argument("--steps", type=int, default=10, help="steps timed, then profiled")
    parser.add_argument("--top", type=int, default=25, help="instructions listed")
    args = parser.parse_args(argv)
    from serjax.host import reexec_with_huge_pages

    reexec_with_huge_pages()  # as launch.py and the other benchmarks: before any thread starts
    import bench_train as bt

    bt.INPUT_SHAPE = tuple(args.input)
    started = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", flush=True)

    command = command_line("profile_step.py", argv)
    res = {
        "command": command,
        "date": utc_now(),
        "machine": machine_info(),
        "versions": bt.versions_info(),
        "batch_size": args.batch_size,
        "input": list(args.input),
        "steps": args.steps,
        "warmup": args.warmup,
        "profiles": [profile_width(n, args, log) for n in args.widths],
    }
    paths = write_outputs(args.out, "profile", res, markdown(res))
    log("wrote " + " and ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
