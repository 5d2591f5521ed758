"""Benchmark log-Mel extraction: serjax.features.extract (JAX) against librosa, all 8 versions.

    python bench/bench_features.py [--num-utterances 2943] [--librosa-utterances 500]
                                   [--batch-size N] [--rounds 10] [--out results/bench]

Input is deterministic speech-like noise (no corpus needed): a pool of harmonic
sources with gliding f0, shifted, amplitude-modulated, mixed with noise and cut by
silent stretches, 6 s at 16 kHz each. Writes features.json and features.md to --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from machine import command_line, loadavg, machine_info, utc_now, write_outputs  # bench/machine.py

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serjax import features  # noqa: E402

SAMPLE_RATE = 16000
NUM_SAMPLES = 96000


def speech_like_batch(count: int, seed: int = 0, pool_size: int = 32) -> np.ndarray:
    """[count, 96000] float32 deterministic speech-like waveforms."""
    rng = np.random.default_rng(seed)
    t = np.arange(NUM_SAMPLES) / SAMPLE_RATE
    # A small pool of voiced sources keeps generation cheap; every utterance then
    # gets its own shift, gain, envelope, noise and silences.
    pool = np.empty((pool_size, NUM_SAMPLES), np.float32)
    for i in range(pool_size):
        f0 = rng.uniform(90, 250) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.3, 2.0) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        harmonics = np.arange(1, 21)[:, None]
        amps = (rng.uniform(0.3, 1.0, 20) / np.arange(1, 21))[:, None]
        pool[i] = (amps * np.sin(harmonics * phase[None, :])).sum(axis=0)
    pool /= np.abs(pool).max(axis=1, keepdims=True)
    out = np.empty((count, NUM_SAMPLES), np.float32)
    for u in range(count):
        y = np.roll(pool[rng.integers(pool_size)], rng.integers(NUM_SAMPLES))
        rate = rng.uniform(2.0, 6.0)  # syllable-like envelope
        y = y * (0.55 + 0.45 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.3))).astype(
            np.float32
        )
        y += rng.uniform(0.005, 0.05) * rng.standard_normal(NUM_SAMPLES, dtype=np.float32)
        # Leading/trailing silence as left by centre zero-padding, plus one pause.
        lead, tail = rng.integers(0, 16000, 2)
        y[:lead] = 0.0
        y[NUM_SAMPLES - tail :] = 0.0
        pause = (
            rng.integers(lead, NUM_SAMPLES - tail - 4000)
            if NUM_SAMPLES - tail - 4000 > lead
            else lead
        )
        y[pause : pause + rng.integers(1000, 4000)] = 0.0
        out[u] = rng.uniform(0.01, 0.8) * y
    return out


def one_blas_thread():
    """Limit NumPy's BLAS to one thread (a no-op context if threadpoolctl is missing).

    On 2 cores shared with other jobs, OpenBLAS's 2 spin-waiting threads made librosa
    up to 10x slower; one thread is librosa's steadier, often faster, setting.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def versions_info() -> dict:
    import jax
    import jaxlib
    import librosa

    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "librosa": librosa.__version__,
        "numpy": np.__version__,
        "jax_backend": jax.default_backend(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-utterances", type=int, default=2943)
    parser.add_argument(
        "--librosa-utterances",
        type=int,
        default=500,
        help="time librosa on this many of them (rates are per utterance)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="extract batch size (default: serjax.features.default_batch_size())",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="JAX and librosa alternate this many times per version",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/bench")
    args = parser.parse_args(argv)
    for name in ("num_utterances", "librosa_utterances", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    command = command_line("bench_features.py", argv)

    settings = features.FeatureSettings()
    batch_size = args.batch_size or features.default_batch_size()
    n_lib = min(args.librosa_utterances, args.num_utterances)
    load_start = loadavg()

    t0 = time.perf_counter()
    waves = speech_like_batch(args.num_utterances, args.seed)
    print(f"generated {waves.shape} in {time.perf_counter() - t0:.1f} s", flush=True)

    # librosa's first call pays for numba compilation and caches; time it apart.
    t0 = time.perf_counter()
    features.log_mel_librosa(waves[0], 1, settings)
    librosa_warmup_s = time.perf_counter() - t0

    rows = []
    for version in sorted(features.STFT_VERSIONS):
        win, hop, n_fft = features.stft_params(version, settings)
        t0 = time.perf_counter()
        features.extract(
            waves[:batch_size], version, settings, batch_size=batch_size, progress=False
        )
        compile_s = time.perf_counter() - t0

        # JAX and librosa take turns on slices of the input, so load from other jobs
        # on a shared machine hits both alike.
        out = np.empty((args.num_utterances, *features.output_shape(version, settings)), np.float16)
        refs = []
        jax_s = librosa_s = 0.0
        # Whole batches per round, so no round pays for a padded batch but the last.
        whole = args.num_utterances // batch_size
        jax_bounds = [batch_size * ((whole * r) // args.rounds) for r in range(args.rounds)]
        jax_bounds.append(args.num_utterances)
        jax_cpu_s = librosa_cpu_s = 0.0
        librosa1_s = librosa1_cpu_s = 0.0
        for r in range(args.rounds):
            a, b = jax_bounds[r], jax_bounds[r + 1]
            t0, c0 = time.perf_counter(), time.process_time()
            out[a:b] = features.extract(
                waves[a:b], version, settings, batch_size=batch_size, progress=False
            )
            jax_s += time.perf_counter() - t0
            jax_cpu_s += time.process_time() - c0
            a, b = (n_lib * r) // args.rounds, (n_lib * (r + 1)) // args.rounds
            t0, c0 = time.perf_counter(), time.process_time()
            refs += [features.log_mel_librosa(waves[i], version, settings) for i in range(a, b)]
            librosa_s += time.perf_counter() - t0
            librosa_cpu_s += time.process_time() - c0
            with one_blas_thread():
                t0, c0 = time.perf_counter(), time.process_time()
                for i in range(a, b):
                    features.log_mel_librosa(waves[i], version, settings)
                librosa1_s += time.perf_counter() - t0
                librosa1_cpu_s += time.process_time() - c0

        # Sanity: the timed output agrees with librosa (float16 storage costs up to ~0.03 dB).
        worst = 0.0
        for i in range(min(n_lib, 8)):
            above = refs[i] > refs[i].max() - settings.top_db
            worst = max(worst, float(np.abs(out[i].astype(np.float32) - refs[i])[above].max()))
        del out, refs

        row = {
            "version": version,
            "window_ms": features.STFT_VERSIONS[version][0],
            "overlap_ms": features.STFT_VERSIONS[version][1],
            "win_length": win,
            "hop_length": hop,
            "n_fft": n_fft,
            "jax_utt_per_s": round(args.num_utterances / jax_s, 1),
            "jax_s": round(jax_s, 3),
            "jax_compile_s": round(compile_s, 3),
            "jax_cpu_s_per_utt": round(jax_cpu_s / args.num_utterances, 5),
            "librosa_cpu_s_per_utt": round(min(librosa_cpu_s, librosa1_cpu_s) / n_lib, 5),
            "load_average_1min": loadavg()[0] if loadavg() else None,
            # The faster of librosa's two BLAS settings is the one compared against.
            "librosa_utt_per_s": round(n_lib / min(librosa_s, librosa1_s), 1),
            "librosa_default_blas_utt_per_s": round(n_lib / librosa_s, 1),
            "librosa_one_blas_thread_utt_per_s": round(n_lib / librosa1_s, 1),
            "librosa_s": round(min(librosa_s, librosa1_s), 3),
            "ratio_jax_over_librosa": round(
                (args.num_utterances / jax_s) / (n_lib / min(librosa_s, librosa1_s)), 2
            ),
            "max_abs_diff_db_float16_vs_librosa": round(worst, 4),
        }
        rows.append(row)
        print(
            f"v{version}: JAX {row['jax_utt_per_s']:.0f} utt/s (compile {compile_s:.2f} s), "
            f"librosa {row['librosa_utt_per_s']:.0f} utt/s, ratio "
            f"{row['ratio_jax_over_librosa']:.2f}",
            flush=True,
        )

    total = sum(r["jax_s"] for r in rows)
    total_compile = sum(r["jax_compile_s"] for r in rows)
    result = {
        "benchmark": "log-Mel extraction, 8 versions, JAX (serjax.features.extract) vs librosa",
        "command": command,
        "date": utc_now(),
        "machine": machine_info(),
        "versions": versions_info(),
        "load_average_start_end": [load_start, loadavg()],
        "settings": settings.to_dict(),
        "num_utterances": args.num_utterances,
        "librosa_utterances": n_lib,
        "batch_size": batch_size,
        "rounds": args.rounds,
        "out_dtype": "float16",
        "librosa_first_call_warmup_s": round(librosa_warmup_s, 3),
        "rows": rows,
        "total_jax_s_all_versions": round(total, 2),
        "total_jax_compile_s_all_versions": round(total_compile, 2),
        "total_jax_utterance_versions_per_s": round(len(rows) * args.num_utterances / total, 1),
        "min_ratio_jax_over_librosa": min(r["ratio_jax_over_librosa"] for r in rows),
        "goals": {"ratio_at_least": 1.5, "total_s_at_most": 60.0},
    }
    result["goals_met"] = bool(result["min_ratio_jax_over_librosa"] >= 1.5 and total <= 60.0)

    paths = write_outputs(args.out, "features", result, markdown(result))
    print(
        f"total JAX {total:.1f} s for all 8 versions (+{total_compile:.1f} s compile); "
        "wrote " + " and ".join(map(str, paths))
    )
    return 0


def markdown(r: dict) -> str:
    m, v = r["machine"], r["versions"]
    lines = [
        "# Log-Mel extraction benchmark: JAX vs librosa",
        "",
        f"Command: `{r['command']}`",
        "",
        f"- Date: {r['date']}",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}",
        f"- Versions: jax {v['jax']}, jaxlib {v['jaxlib']} ({v['jax_backend']}), "
        f"librosa {v['librosa']}, numpy {v['numpy']}",
        f"- Load average at start / end: {r['load_average_start_end'][0]} / "
        f"{r['load_average_start_end'][1]} (shared machine: other jobs may have run)",
        f"- Input: {r['num_utterances']} synthetic speech-like utterances of 6 s (96,000 samples); "
        f"librosa timed on the first {r['librosa_utterances']}",
        f"- JAX: `serjax.features.extract`, batch size {r['batch_size']}, float16 output, "
        "after a warm-up call that compiles (compile time listed apart)",
        f"- librosa: `log_mel_librosa` in a loop; its first call in the process "
        f"(numba warm-up) took {r['librosa_first_call_warmup_s']:.2f} s and is not counted; "
        "timed twice, with NumPy's default BLAS threads and with one BLAS thread, and the "
        "faster of the two is the librosa rate below (the default/one-thread rates are in the "
        "JSON)",
        f"- JAX and librosa alternate {r['rounds']} times per version on slices of the input, "
        "so load from other jobs hits both alike; rates are wall-clock",
        "",
        "| version | window/overlap ms | n_fft | JAX utt/s | librosa utt/s | JAX/librosa | "
        "JAX s | JAX compile s | JAX / librosa CPU ms per utt | load (1 min) | max diff dB* |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| v{row['version']} | {row['window_ms']:g}/{row['overlap_ms']:g} | {row['n_fft']} | "
            f"{row['jax_utt_per_s']:.0f} | {row['librosa_utt_per_s']:.0f} | "
            f"{row['ratio_jax_over_librosa']:.2f} | {row['jax_s']:.2f} | "
            f"{row['jax_compile_s']:.2f} | {1e3 * row['jax_cpu_s_per_utt']:.2f} / "
            f"{1e3 * row['librosa_cpu_s_per_utt']:.2f} | "
            f"{row['load_average_1min']} | {row['max_abs_diff_db_float16_vs_librosa']:.3f} |"
        )
    lines += [
        "",
        f"Total JAX time, all 8 versions of {r['num_utterances']} utterances: "
        f"**{r['total_jax_s_all_versions']:.1f} s** (+{r['total_jax_compile_s_all_versions']:.1f} "
        f"s compilation), {r['total_jax_utterance_versions_per_s']:.0f} utterance-versions/s.",
        f"Lowest JAX/librosa ratio: **{r['min_ratio_jax_over_librosa']:.2f}**. "
        f"Goals (ratio >= 1.5 for every version, total <= 60 s): "
        f"{'met' if r['goals_met'] else 'NOT met'}.",
        "",
        "*Largest |float16 JAX - librosa| over bins above the 80 dB floor, first 8 utterances.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
