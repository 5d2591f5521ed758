"""Where the CPU train step's convolution time goes: each of the six 3×3 convolutions alone,
serjax (XLA) vs PyTorch (oneDNN), forward, input gradient and kernel gradient.

    python bench/bench_layers.py [--widths 1 2 4] [--min-time 1] [--out results/bench]

For width scale n and batch 32 on 64 × 601 inputs, block k's convolution sees the map after
k − 1 2×2 poolings. Times are ms per batch (median of --rounds, each at least --min-time
seconds of whole calls after a warm-up):
- serjax forward: `serjax.layers.Conv3x3`'s path on the CPU (block 1:
  `single_channel_conv3x3`, the shifted sum; blocks 2-6: `conv3x3`), jitted with serjax's CPU
  compiler options; block 1 also as XLA's convolution (what the shifted sum replaced);
- serjax input / kernel gradient: the convolution's VJP, each alone in its own jitted
  function (block 1 needs no input gradient in training: its input is the data);
- PyTorch: `nn.Conv2d` (bias, channels_last, 2 threads); forward under no_grad; each gradient
  by `torch.autograd.grad` on a kept graph (`retain_graph`), so only the backward kernel
  runs.
The same host allocator as launch.py (huge pages unless SERJAX_MALLOC says otherwise).
Writes layers.json and layers.md to --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import INPUT_SHAPE, TORCH_THREADS, measure, versions_info, warm_up  # noqa: E402


def block_shapes(n: int) -> list[tuple[int, int, int, int]]:
    """(C_in, C_out, H, W) of each block's convolution at width scale n."""
    from serjax.configlib import base_config

    shapes, c_in, (h, w) = [], 1, INPUT_SHAPE
    for base in base_config().model.base_widths:
        shapes.append((c_in, n * base, h, w))
        c_in, h, w = n * base, h // 2, w // 2
    return shapes


def time_ms(fn, min_time: float, rounds: int) -> float:
    """Median over rounds of the mean ms per call (bench_train's warm-up and measurement:
    whole calls for >= min_time s each)."""

    def calls(k):
        for _ in range(k):
            fn()

    start = time.perf_counter()
    fn()
    call_s = warm_up(calls, time.perf_counter() - start)
    return statistics.median(
        1e3 / measure(calls, 1, call_s, min_time)["samples_per_s"] for _ in range(rounds)
    )


def jax_times(c_in, c_out, h, w, batch, min_time, rounds) -> dict:
    import jax
    import numpy as np

    from serjax.layers import conv3x3, single_channel_conv3x3
    from serjax.xla_options import compiler_options

    rng = np.random.default_rng(0)
    x = jax.numpy.asarray(rng.normal(size=(batch, h, w, c_in)).astype(np.float32))
    k = jax.numpy.asarray(rng.normal(size=(3, 3, c_in, c_out)).astype(np.float32) / (3 * c_in**0.5))
    g = jax.numpy.asarray(rng.normal(size=(batch, h, w, c_out)).astype(np.float32))
    options = compiler_options()
    # what serjax.layers.Conv3x3 runs with model.conv_impl "auto" on the CPU
    serjax_conv3x3 = single_channel_conv3x3 if c_in == 1 else conv3x3

    def compiled(f, *args):
        fn = jax.jit(f).lower(*args).compile(options)
        return lambda: fn(*args).block_until_ready()

    out = {
        "forward": time_ms(compiled(serjax_conv3x3, x, k), min_time, rounds),
        "kernel_grad": time_ms(
            compiled(lambda x_, k_, g_: jax.vjp(serjax_conv3x3, x_, k_)[1](g_)[1], x, k, g),
            min_time,
            rounds,
        ),
    }
    if c_in == 1:
        out["forward_xla_conv"] = time_ms(compiled(conv3x3, x, k), min_time, rounds)
    else:
        out["input_grad"] = time_ms(
            compiled(lambda x_, k_, g_: jax.vjp(serjax_conv3x3, x_, k_)[1](g_)[0], x, k, g),
            min_time,
            rounds,
        )
    return out


def torch_times(c_in, c_out, h, w, batch, min_time, rounds) -> dict:
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1).to(memory_format=torch.channels_last)
    x = (
        torch.randn(batch, c_in, h, w)
        .contiguous(memory_format=torch.channels_last)
        .requires_grad_(c_in > 1)
    )
    g = torch.randn(batch, c_out, h, w).contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.no_grad():
            conv(x)

    y = conv(x)  # one graph, kept: each gradient call below runs only its backward kernel
    out = {
        "forward": time_ms(forward, min_time, rounds),
        "kernel_grad": time_ms(
            lambda: torch.autograd.grad(y, [conv.weight], g, retain_graph=True), min_time, rounds
        ),
    }
    if c_in > 1:
        out["input_grad"] = time_ms(
            lambda: torch.autograd.grad(y, [x], g, retain_graph=True), min_time, rounds
        )
    return out


def markdown(res: dict) -> str:
    s = res["settings"]
    lines = [
        "# Per-layer convolution time: serjax (XLA) vs PyTorch (oneDNN) on the CPU",
        "",
        f"Command: `{res['command']}`",
        "",
        f"- Date: {res['date']}; wall time {res['wall_time_s']} s",
        f"- Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, "
        f"{res['machine']['platform']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items() if v),
        f"- Batch {s['batch_size']}, input {INPUT_SHAPE[0]} × {INPUT_SHAPE[1]}; each time: median "
        f"over {s['rounds']} rounds of ≥ {s['min_time_s']} s of whole calls; host allocator: "
        f"{s['host_allocator']}; JAX compiler options {s['compiler_options']}; PyTorch "
        f"{s['torch_threads']} threads, channels_last",
        "- Block 1's input gradient is never computed in training (its input is the data) and is "
        "not timed.",
        "",
    ]
    for row in res["rows"]:
        lines += [
            f"## n = {row['n']}",
            "",
            "| block | C_in → C_out | map | serjax fwd | torch fwd | fwd ratio | serjax ∂x | "
            "torch ∂x | ∂x ratio | serjax ∂w | torch ∂w | ∂w ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for b in row["blocks"]:
            j, t = b["jax"], b["torch"]

            def cell(key, j=j, t=t):
                if key not in j:
                    return "–", "–", "–"
                return f"{j[key]:.2f}", f"{t[key]:.2f}", f"{t[key] / j[key]:.2f}"

            fwd = cell("forward")
            if "forward_xla_conv" in j:
                fwd = (f"{j['forward']:.2f} (XLA conv {j['forward_xla_conv']:.2f})", fwd[1], fwd[2])
            lines.append(
                f"| {b['block']} | {b['c_in']} → {b['c_out']} | {b['h']} × {b['w']} | "
                + " | ".join(
                    " | ".join(cell_) for cell_ in (fwd, cell("input_grad"), cell("kernel_grad"))
                )
                + " |"
            )
        tot = row["totals"]
        lines += [
            "",
            f"Sum over the six blocks (forward + the gradients training computes): serjax "
            f"{tot['jax_ms']:.1f} ms, PyTorch {tot['torch_ms']:.1f} ms per batch.",
            "",
        ]
    lines += [
        "ms per batch of 32; ratio = PyTorch time / serjax time (above 1: serjax faster). "
        "The train step's other work (normalisation, pooling, attention, loss, optimizer) is "
        "not in these tables: `train.md` times whole steps."
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="results/bench")
    args = parser.parse_args(argv)
    from serjax.host import reexec_with_huge_pages

    reexec_with_huge_pages()
    import torch
    from machine import command_line, machine_info, utc_now, write_outputs

    from serjax.xla_options import compiler_options, host_allocator_state

    allocator = host_allocator_state()

    torch.set_num_threads(TORCH_THREADS)
    started = time.perf_counter()
    command = command_line("bench_layers.py", argv)
    rows = []
    for n in args.widths:
        blocks = []
        for block, (c_in, c_out, h, w) in enumerate(block_shapes(n), start=1):
            shape = (c_in, c_out, h, w, args.batch_size, args.min_time, args.rounds)
            entry = {
                "block": block,
                "c_in": c_in,
                "c_out": c_out,
                "h": h,
                "w": w,
                "jax": jax_times(*shape),
                "torch": torch_times(*shape),
            }
            blocks.append(entry)
            print(f"n = {n} block {block}: jax {entry['jax']} torch {entry['torch']}", flush=True)
        totals = {
            f"{fw}_ms": round(
                sum(
                    b[fw][k]
                    for b in blocks
                    for k in ("forward", "input_grad", "kernel_grad")
                    if k in b[fw]
                ),
                2,
            )
            for fw in ("jax", "torch")
        }
        rows.append({"n": n, "blocks": blocks, "totals": totals})
    result = {
        "command": command,
        "date": utc_now(),
        "machine": machine_info(),
        "versions": versions_info(),
        "settings": {
            "batch_size": args.batch_size,
            "min_time_s": args.min_time,
            "rounds": args.rounds,
            "torch_threads": TORCH_THREADS,
            "compiler_options": compiler_options(),
            "host_allocator": "huge pages" if allocator["huge_pages"]["on"] else "glibc defaults",
        },
        "rows": rows,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    paths = write_outputs(args.out, "layers", result, markdown(result))
    print("wrote " + " and ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
