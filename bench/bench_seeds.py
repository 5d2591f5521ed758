"""Seeds trained together: `vmap` against `unroll` (serjax.seeds), train samples/s at n = 1.

    python bench/bench_seeds.py [--seeds 2 4 8] [--min-time 4] [--rounds 3] [--out results/bench]

For each S, three contenders take turns, round after round, each running whole jitted train
steps of S stacked seeds (serjax's real `train_step` through `serjax.train.trainer_for`, data
on the device as bench/bench_train.py sets it up: a float16 [U, 64, 601] table, batch 32):

- `unroll`: the S single-seed steps written out in one program (`auto`);
- `vmap`: jax.vmap of the single-seed step, as `train.seed_strategy=vmap` runs it: the step's
  own vmap rule (serjax.train, through serjax.batching) runs one step per seed on its slice of
  the stacked state;
- `vmap_conv_rule`: the same without the step's rule (switched off for this contender's
  trace), only the convolutions' own (serjax.layers.conv3x3: one plain convolution per seed
  on slices of the stacked activations); what `vmap` ran before the step's rule existed;
- `vmap_grouped`: neither rule (JAX's own batching: grouped convolutions, what `vmap` ran
  before either existed).

Rates are medians over rounds; ratios are medians of the per-round (paired) ratios. Writes
seeds.json and seeds.md to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time
from pathlib import Path

import bench_train as bt  # bench/bench_train.py: data, contenders, timing
from machine import command_line, loadavg, machine_info, utc_now, write_outputs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONTENDERS = ("unroll", "vmap", "vmap_conv_rule", "vmap_grouped")


@contextlib.contextmanager
def grouped_convolutions():
    """serjax.layers' convolutions as they were before their vmap rule, while a step is traced:
    conv3x3 the plain XLA convolution (autodiff's gradients), block 1's shifted sum with the
    plain convolution's VJP; under vmap JAX batches each into a grouped convolution. Fresh
    functions, so no trace JAX keeps of the current ones is reused (or polluted)."""
    import jax

    from serjax import layers

    @jax.custom_vjp
    def single_channel(x, kernel):
        return layers._conv3x3_shifted_sum(x, kernel)

    single_channel.defvjp(
        lambda x, k: (single_channel(x, k), (x, k)),
        lambda res, g: jax.vjp(layers._conv, *res)[1](g),
    )
    saved = layers.conv3x3, layers.single_channel_conv3x3
    layers.conv3x3, layers.single_channel_conv3x3 = layers._conv, single_channel
    try:
        yield
    finally:
        layers.conv3x3, layers.single_channel_conv3x3 = saved


@contextlib.contextmanager
def without_step_rule():
    """serjax.train's steps without their own vmap rule (JAX's batching of the step, the
    convolutions' rules left as they are), while a step is traced."""
    from serjax import train

    saved = train._train_fn, train._eval_fn
    train._train_fn = functools.partial(train._train_fn, rule=False)
    train._eval_fn = functools.partial(train._eval_fn, rule=False)
    try:
        yield
    finally:
        train._train_fn, train._eval_fn = saved


def contender(name: str, data, S: int, args, clock):
    if name in ("vmap_conv_rule", "vmap_grouped"):
        # a Trainer of its own (trainer_for would hand back the cached vmap one, already traced)
        import optax

        from serjax.configlib import base_config
        from serjax.model import build_model
        from serjax.train import Trainer
        from serjax.xla_options import compiler_options

        cfg = base_config()
        cfg.model.width_scale = args.width
        t = cfg.train
        tx = optax.inject_hyperparams(optax.adam)(
            learning_rate=t.learning_rate, b1=t.adam_b1, b2=t.adam_b2, eps=t.adam_eps
        )
        trainer = Trainer(
            build_model(cfg.model, bt.NUM_CLASSES), tx, t.focal_gamma, "vmap", compiler_options()
        )
        with contextlib.ExitStack() as stack:  # the first step traces and compiles
            stack.enter_context(without_step_rule())
            if name == "vmap_grouped":
                stack.enter_context(grouped_convolutions())
            made = bt.JaxSeeds(name, trainer, data, S, args.batch_size, clock)
            made.grouped = grouped_convolution_count(made)
        return made
    made = bt.JaxSeeds(name, bt.serjax_trainer(args.width, name), data, S, args.batch_size, clock)
    made.grouped = grouped_convolution_count(made)
    return made


def grouped_convolution_count(c) -> int:
    """Convolutions with feature_group_count > 1 in the contender's lowered train step."""
    import re

    import jax.numpy as jnp

    rows = jnp.asarray(next(c.batches))
    text = c.trainer.train_step.lower(c.states, rows, c.data.fold, c.lr).as_text()
    return sum(int(g) > 1 for g in re.findall(r"feature_group_count = (\d+)", text))


def run(args, log) -> list[dict]:
    clock = bt.CompileClock()
    data = bt.Data(args.utterances)
    rows = []
    for S in args.seeds:
        log(f"S = {S} (n = {args.width}): building and compiling")
        contenders = {name: contender(name, data, S, args, clock) for name in args.contenders}
        step_s = {n: bt.warm_up(c.train, c.first_step_s("train")) for n, c in contenders.items()}
        res = bt.alternate(contenders, "train", args.rounds, args.min_time, step_s, log)
        for name, c in contenders.items():
            rows.append(
                {
                    "S": S,
                    "strategy": name,
                    "train_samples_per_s": bt.median_rate(res[name]),
                    "ratio_over_unroll": bt.paired_ratio(res[name], res["unroll"]),
                    "ratio_range_over_unroll": bt.ratio_range(res[name], res["unroll"]),
                    "compile_train_s": c.compile_train_s,
                    "grouped_convolutions": c.grouped,
                    "rounds": res[name],
                }
            )
        del contenders
    return rows


def markdown(res: dict) -> str:
    s = res["settings"]
    lines = [
        "# Seeds trained together: vmap vs unroll",
        "",
        f"`{res['command']}` — {res['date']}, {res['machine']['cpu']} "
        f"({res['machine']['cores']} cores), load {res['machine']['loadavg_start']} → "
        f"{res['machine']['loadavg_end']}; jax {res['versions']['jax']} "
        f"({res['versions']['jax_backend']}), flax {res['versions']['flax']}.",
        "",
        f"Train samples/s (all seeds together) of serjax's jitted train step with S stacked "
        f"seeds, n = {s['n']}, batch {s['batch_size']}, input {s['input_shape'][0]} × "
        f"{s['input_shape'][1]}; contenders take turns, {s['rounds']} rounds of ≥ "
        f"{s['min_time_s']} s each; ratio: median of the per-round ratios to `unroll` "
        "(range in brackets).",
        "",
        "| S | "
        + " | ".join(res["contenders"])
        + " | "
        + " | ".join(f"{c} / unroll" for c in res["contenders"] if c != "unroll")
        + " |",
        "|---|" + "---|" * (2 * len(res["contenders"]) - 1),
    ]
    for S in sorted({r["S"] for r in res["rows"]}):
        here = {r["strategy"]: r for r in res["rows"] if r["S"] == S}
        rates = [f"{here[c]['train_samples_per_s']:.1f}" for c in res["contenders"]]
        ratios = [
            f"{here[c]['ratio_over_unroll']:.2f} "
            f"({here[c]['ratio_range_over_unroll'][0]:.2f}-"
            f"{here[c]['ratio_range_over_unroll'][1]:.2f})"
            for c in res["contenders"]
            if c != "unroll"
        ]
        lines.append(f"| {S} | " + " | ".join(rates + ratios) + " |")
    lines += [
        "",
        "- `unroll`: the S single-seed steps written out in one jitted program "
        "(`train.seed_strategy=auto`).",
        "- `vmap`: `jax.vmap` of the single-seed step (`train.seed_strategy=vmap`); the step's "
        "vmap rule (serjax.batching) runs one step per seed on its slice of the stacked state, "
        "outputs stacked: the program `unroll` writes.",
        "- `vmap_conv_rule`: the same without the step's rule, only serjax.layers.conv3x3's: "
        "one plain convolution per seed, but each seed's maps sliced out of stacked arrays "
        "before every convolution and stacked back after it (copies `unroll` never makes).",
        "- `vmap_grouped`: neither rule (JAX's batching makes each convolution a grouped one, "
        "feature_group_count = S).",
        "- Compile seconds (trace, lowering, XLA) of the first step, and grouped convolutions "
        "in it (feature_group_count > 1): "
        + "; ".join(
            f"S = {r['S']} {r['strategy']} {r['compile_train_s']} s, {r['grouped_convolutions']}"
            for r in res["rows"]
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--width", type=int, default=1, help="width scale n")
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--utterances", type=int, default=512, help="rows of the device table")
    parser.add_argument("--min-time", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if "unroll" not in args.contenders:
        args.contenders = ["unroll", *args.contenders]
    from serjax.host import reexec_with_huge_pages
    from serjax.xla_options import compiler_options, host_allocator_state

    reexec_with_huge_pages()  # as launch.py and bench_train.py: before any thread starts
    started = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", flush=True)

    result = {
        "command": command_line("bench_seeds.py", argv),
        "date": utc_now(),
        "machine": {**machine_info(), "loadavg_start": loadavg()},
        "versions": bt.versions_info(),
        "settings": {
            "n": args.width,
            "input_shape": list(bt.INPUT_SHAPE),
            "batch_size": args.batch_size,
            "utterances": args.utterances,
            "min_time_s": args.min_time,
            "rounds": args.rounds,
            "host_allocator": host_allocator_state(),
            "compiler_options": compiler_options(),
        },
        "contenders": args.contenders,
    }
    result["rows"] = run(args, log)
    result["machine"]["loadavg_end"] = loadavg()
    result["wall_time_s"] = round(time.perf_counter() - started, 1)
    paths = write_outputs(args.out, "seeds", result, markdown(result))
    log("wrote " + " and ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
