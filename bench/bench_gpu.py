"""serjax's train step on an accelerator: JAX vs PyTorch on the same device, and seed strategies.

    python bench/bench_gpu.py --part seeds [--seeds 1 2 4 8] [--seed-width 4] [--strategies ...]
    python bench/bench_gpu.py --part frameworks [--widths 1 2 4]
    python bench/bench_gpu.py --part report     # gpu.md from the gpu-*.json under --out

The accelerator counterpart of bench/bench_train.py (whose contenders, timing and pairing it
reuses: contenders take turns within each round, rates are medians over rounds, ratios are
medians of per-round ratios). Differences: PyTorch runs on the same device as JAX (CUDA when
there is one, eager, channels_last, `cudnn.benchmark` on, as XLA autotunes its convolutions),
each timed stretch ends with a device synchronisation, and peak device memory is read from
each framework's allocator. The seed table's default width is the paper config's (n = 4),
the one a GPU run trains.

`--deadline-s` bounds the whole part: cells not started in time are listed as skipped, and
the JSON is written with what was measured (the device is lent for minutes at a time).
Each part writes <out>/gpu-<part>.json; every part rewrites <out>/gpu.md from all of them
(and from gpu-run.json, written by bench/gpu_session.py for the full default experiment).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_train as bt  # noqa: E402  (bench/bench_train.py)
from machine import command_line, machine_info, utc_now  # noqa: E402

PARTS = ("seeds", "frameworks", "report")


def device_info() -> dict:
    import jax

    d = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": getattr(d, "device_kind", str(d)),
        "count": jax.device_count(),
    }


def jax_peak_mb() -> float | None:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else round(peak / 2**20, 1)


def frameworks(args, data, clock, log, deadline) -> dict:
    import torch

    from serjax.model import count_params

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows, skipped = [], []
    for n in args.widths:
        if time.perf_counter() > deadline:
            skipped.append({"n": n})
            continue
        log(f"n = {n}: building and compiling")
        jx = bt.JaxSeeds("jax", bt.serjax_trainer(n, "auto"), data, 1, args.batch_size, clock)
        jx.eval(1)
        th = bt.Torch("torch", n, data, args.batch_size, None, device)
        contenders = {"jax": jx, "torch": th}
        res = {}
        for mode in ("train", "eval"):
            step_s = {
                k: bt.warm_up(getattr(c, mode), c.first_step_s(mode)) for k, c in contenders.items()
            }
            res[mode] = bt.alternate(contenders, mode, args.rounds, args.min_time, step_s, log)
        row = {
            "n": n,
            "params": count_params(bt.jax_params_of(jx.states)),
            "torch_device": device,
            "jax_compile_train_s": jx.compile_train_s,
            "jax_compile_eval_s": jx.compile_eval_s,
            "jax_peak_device_mb_so_far": jax_peak_mb(),
            "torch_peak_device_mb": th.peak_device_mb(),
        }
        for name in contenders:
            for mode in ("train", "eval"):
                row[f"{name}_{mode}_samples_per_s"] = bt.median_rate(res[mode][name])
                row[f"{name}_{mode}_rounds"] = res[mode][name]
        for mode in ("train", "eval"):
            row[f"ratio_{mode}_jax_over_torch"] = bt.paired_ratio(
                res[mode]["jax"], res[mode]["torch"]
            )
        log(
            f"  n = {n}: train jax {row['jax_train_samples_per_s']} / torch "
            f"{row['torch_train_samples_per_s']} "
            f"samples/s (ratio {row['ratio_train_jax_over_torch']}); eval ratio "
            f"{row['ratio_eval_jax_over_torch']}"
        )
        rows.append(row)
        del contenders, jx, th
    return {"rows": rows, "skipped_for_deadline": skipped, "torch_cudnn_benchmark": True}


def seeds(args, data, clock, log, deadline) -> dict:
    """bench_train's seed table, for the strategies asked, at the device's peak memory."""
    result = bt.seed_scaling(args.seeds, data, args, clock, log, args.strategies, deadline)
    return {**result, "jax_peak_device_mb": jax_peak_mb()}


# --------------------------------------------------------------------------- report


def _load(out: Path, name: str) -> dict | None:
    path = out / f"gpu-{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def markdown(out: Path) -> str:
    parts = {name: _load(out, name) for name in ("frameworks", "seeds", "run")}
    probe = _load(out, "seeds-probe")
    if probe and parts["seeds"]:  # the S = 4 probe and the later table: one table
        merged = parts["seeds"]["result"]
        merged["rows"] = probe["result"]["rows"] + merged["rows"]
        merged["strategies"] = list(
            dict.fromkeys(probe["result"]["strategies"][:-1] + merged["strategies"])
        )
        merged["fastest_by_S"] = bt.fastest_by_seeds(merged["rows"])
        parts["seeds"]["command"] = f"{probe['command']}`, then `{parts['seeds']['command']}"
    elif probe:
        parts["seeds"] = probe
    parts["levers"] = _load(out, "levers")
    first = next((p for p in parts.values() if p), None)
    if first is None:
        return "# serjax on an accelerator\n\nNo measurements yet.\n"
    dev = first.get("device", {})
    dev = {"device": dev} if isinstance(dev, str) else dev  # gpu-levers.json: one string
    lines = [
        f"# serjax on an accelerator: {dev.get('device', '?')} ({dev.get('backend', '?')})",
        "",
    ]
    sessions_path = out / "gpu-sessions.json"
    if sessions_path.exists():
        lines += [
            "Produced by these commands on the device (each a fresh machine; `$OUT` is the folder "
            "whose files came back here):",
            "",
        ]
        lines += [
            f"- {x['date']}, {x['device']}, serjax {x['commit'][:7]}: `{x['command']}` — "
            f"{x['what']}"
            for x in json.loads(sessions_path.read_text())
        ]
        lines.append("")
    v = first.get("versions", {})
    lines += [
        f"- Versions: jax {v.get('jax')}, jaxlib {v.get('jaxlib')}, flax {v.get('flax')}, "
        f"optax {v.get('optax')}, torch {v.get('torch')}; host "
        f"{first.get('machine', {}).get('cpu')}, "
        f"{first.get('machine', {}).get('cores')} cores",
        "",
    ]
    run = parts["run"]
    if run:
        lines += ["## The full default experiment", "", f"Command: `{run['command']}`", ""]
        if run.get("finished"):
            lines.append(
                f"- **Wall time {run['wall_time_s']:.0f} s ({run['wall_time_s'] / 60:.1f} min)**, "
                "the whole `python launch.py` process (imports, reading the cached corpus, "
                f"features, compilation, {run.get('folds')} folds × {run.get('epochs')} epochs × "
                f"{run.get('seeds')} seeds "
                f"at n = {run.get('width_scale')} with per-epoch test-fold evaluation, "
                "checkpoints, report)"
            )
        else:
            lines.append(
                f"- **Not finished**: stopped after {run['wall_time_s']:.0f} s "
                f"({run.get('stopped_why', '?')}); {run.get('epochs_done', '?')} of "
                f"{run.get('epochs_total', '?')} fold-epochs done"
            )
        if run.get("wall_time_how"):
            lines.append(f"- Wall time measured {run['wall_time_how']}")
        if run.get("fold_end_s"):
            lines.append(f"- Folds ended at (s after the launch): {run['fold_end_s']}")
        if run.get("projection"):
            p = run["projection"]
            lines.append(
                f"- **Projected** wall time of the whole run: {p['projected_wall_time_s']:.0f} s "
                f"({p['projected_wall_time_s'] / 60:.1f} min) = {p['how']}"
            )
        for key, text in (
            ("seed_strategy", "seed strategy"),
            (
                "corpus_s",
                "corpus generation + feature cache before the run (s, not in the wall time)",
            ),
            ("utterances", "utterances"),
        ):
            if run.get(key) is not None:
                lines.append(f"- {text}: {run[key]}")
        if run.get("fold_end_s") and not run.get("finished"):
            lines.append(
                "- The finished folds' scores and every epoch's metrics: "
                "results/gpu-default-partial/"
            )
        if run.get("levers"):
            lv = run["levers"]
            lines.append(
                f"- Levers ([`gpu-levers.md`](gpu-levers.md)): overrides "
                f"{lv['overrides'] or 'none'}, XLA_FLAGS {' '.join(lv['xla_flags']) or 'none'}, "
                f"{lv['units_used']} unit(s) in flight"
                + (f" ({lv['units_unused_why']})" if lv.get("units_unused_why") else "")
            )
        if run.get("summary"):
            s = run["summary"]
            lines.append(
                f"- Result (synthetic corpus, last epoch, mean ± std over folds × seeds): "
                f"UA {100 * s['ua']['mean']:.2f} ± {100 * s['ua']['std']:.2f}, "
                f"WA {100 * s['wa']['mean']:.2f} ± {100 * s['wa']['std']:.2f}"
            )
        lines.append("")
    fw = parts["frameworks"]
    if fw:
        lines += [
            "## JAX vs PyTorch on the same device (train and eval samples/s, batch 32, one seed)",
            "",
            f"Command: `{fw['command']}` ({fw['date']})",
            "",
            "| n | params | JAX train | torch train | JAX/torch train | JAX eval | torch eval | "
            "JAX/torch eval | JAX compile s (train + eval) | peak device MB JAX / torch |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in fw["result"]["rows"]:
            lines.append(
                f"| {r['n']} | {r['params']:,} | {r['jax_train_samples_per_s']:.0f} | "
                f"{r['torch_train_samples_per_s']:.0f} | "
                f"**{r['ratio_train_jax_over_torch']:.2f}** | "
                f"{r['jax_eval_samples_per_s']:.0f} | {r['torch_eval_samples_per_s']:.0f} | "
                f"**{r['ratio_eval_jax_over_torch']:.2f}** | "
                f"{r['jax_compile_train_s']} + {r['jax_compile_eval_s']} | "
                f"{r['jax_peak_device_mb_so_far']} / {r['torch_peak_device_mb']} |"
            )
        if fw["result"]["skipped_for_deadline"]:
            lines.append(f"\nSkipped (deadline): {fw['result']['skipped_for_deadline']}")
        torch_device = fw["result"]["rows"][0]["torch_device"] if fw["result"]["rows"] else "?"
        lines += [
            "",
            f"PyTorch: `bench/torch_reference.py` on {torch_device}, eager, channels_last, "
            "cudnn.benchmark on. JAX: serjax's jitted step (`auto` seed strategy, one seed). Both "
            "at their default precision, which lets cuDNN use TF32 for float32 convolutions (XLA's "
            "default; torch.backends.cudnn.allow_tf32 is True by default). JAX's peak device "
            "memory is the process's high-water mark so far (it grows with n); PyTorch's is its "
            "allocator's since that model was built.",
            "",
        ]
    sd = parts["seeds"]
    if sd:
        r = sd["result"]
        lines += [
            f"## Seed scaling on the device (n = {r['n']}): total train samples/s with S seeds",
            "",
            f"Command: `{sd['command']}` ({sd['date']})",
            "",
        ]
        lines += bt.seed_table(r["rows"], r["strategies"], digits=0)
        lines += [
            "",
            "(×r): rate / `sequence` (S single-seed runs one after the other) in the same round. "
            f"`auto` resolved to `{r['auto_resolves_to']}` on this backend when this ran (this "
            "table is why "
            "serjax's `auto` is `unroll` on accelerators since c563a2b). Fastest per S "
            f"(within {r['fastest_tolerance']:.0%}): "
            + "; ".join(f"S = {S}: {', '.join(b)}" for S, b in r["fastest_by_S"].items()),
            "",
        ]
        comp = [
            f"{x['strategy']} S={x['S']}: {x['compile_train_s']}"
            for x in r["rows"]
            if x["compile_train_s"]
        ]
        if comp:
            lines += ["Compile s (train step): " + "; ".join(comp), ""]
        if r["skipped_for_deadline"]:
            lines += [f"Skipped (deadline): {r['skipped_for_deadline']}", ""]
    prec = _load(out, "precision-highest")
    if prec:
        r = prec["result"]["rows"]
        lines += [
            f"## Convolution precision (n = {prec['result']['n']}, one seed)",
            "",
            f"Command: `JAX_DEFAULT_MATMUL_PRECISION=highest {prec['command']}` ({prec['date']})",
            "",
        ]
        lines += [
            f"- {x['strategy']}: {x['train_samples_per_s']:.0f} train samples/s with float32 "
            "(`highest`) convolutions and matmuls"
            for x in r
        ]
        lines += [
            "- Compare with the seed table's S = 1 rates, measured at JAX's default precision "
            "(which lets the GPU use TF32 for float32 convolutions and matmuls).",
            "",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=PARTS, required=True)
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seed-width", type=int, default=4)
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=["vmap", "unroll", "chunks"],
        help="serjax.seeds strategies besides `sequence` (map: lax.map)",
    )
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--utterances", type=int, default=512)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed-rounds", type=int, default=2)
    parser.add_argument(
        "--name", default="", help="output gpu-<name>.json (default: the part's name)"
    )
    parser.add_argument(
        "--deadline-s", type=float, default=1e9, help="start no new cell after this many s"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.part != "report":
        started = time.perf_counter()
        deadline = started + args.deadline_s

        def log(msg):
            print(f"[{time.perf_counter() - started:6.1f} s] {msg}", flush=True)

        clock = bt.CompileClock()
        data = bt.Data(args.utterances)
        fn = frameworks if args.part == "frameworks" else seeds
        result = {
            "command": command_line("bench_gpu.py", argv),
            "date": utc_now(),
            "machine": machine_info(),
            "versions": bt.versions_info(),
            "device": device_info(),
            "settings": {
                "batch_size": args.batch_size,
                "utterances": args.utterances,
                "min_time_s": args.min_time,
                "rounds": args.rounds,
                "seed_rounds": args.seed_rounds,
                "input_shape": list(bt.INPUT_SHAPE),
            },
        }
        result["result"] = fn(args, data, clock, log, deadline)
        result["wall_time_s"] = round(time.perf_counter() - started, 1)
        result["env"] = {
            k: os.environ[k]
            for k in ("JAX_DEFAULT_MATMUL_PRECISION", "XLA_FLAGS")
            if k in os.environ
        }
        path = out / f"gpu-{args.name or args.part}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {path}")
    (out / "gpu.md").write_text(markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
