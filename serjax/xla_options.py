"""How serjax's jitted steps are compiled, and what host allocator they run on (read only).

compiler_options(): on the CPU, XLA hands convolutions to its YNNPACK library path by default,
which computes a convolution's weight gradient as a convolution whose window is the whole
feature map, far slower here than XLA's Eigen convolution; serjax keeps YNNPACK for
reductions only (results/bench/train.md, ablation). SERJAX_CPU_COMPILER=default compiles with
XLA's defaults. Either way only float rounding can change, never the model or the data.
On a GPU, compiler_options(deterministic=True) (the config field train.deterministic) adds
XLA's xla_gpu_deterministic_ops: a debug option, which jax.jit's `compiler_options` sets for
that one compilation (XLA_FLAGS=--xla_gpu_deterministic_ops=true would set it for the whole
process). The CPU backend is deterministic without it, so there it adds nothing.

use_compilation_cache(): JAX's persistent compilation cache, for entry points (launch.py, a Ray
task's process), so one process loads what another compiled.

host_allocator_state(): whether glibc backs malloc with huge pages in this process, for a
run's provenance record. Asking for them restarts the program, so that is serjax.host's work,
which only entry points (launch.py, bench/) import.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from pathlib import Path

from serjax.errors import SerjaxError

# xla_cpu_experimental_ynn_fusion_type: which ops go to YNNPACK (here: reductions only)
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
# train.deterministic on a GPU: no non-deterministic ops (atomics in reductions and scatters)
# and no autotuning (kernels chosen by timing them on the machine at compile time), so a run
# repeats bit for bit on the same GPU and software; XLA refuses an op it cannot make so
GPU_DETERMINISTIC_OPTIONS = {"xla_gpu_deterministic_ops": True}
GPU_BACKENDS = ("gpu", "cuda", "rocm")


@functools.cache
def _options_supported(options: tuple) -> bool:
    """Whether this jaxlib's CPU compiler accepts the options (older or newer XLA may not)."""
    import jax
    import jax.numpy as jnp

    try:
        jax.jit(lambda x: x.sum(), compiler_options=dict(options)).lower(jnp.zeros(2)).compile()
        return True
    except Exception:  # an unknown option or value: compile with the defaults instead
        return False


def compiler_options(backend: str | None = None, deterministic: bool = False) -> dict | None:
    """Compiler options for serjax's jitted steps on `backend` (default: JAX's default backend;
    None: XLA's defaults). `deterministic` (train.deterministic): on a GPU backend, XLA's
    deterministic ops (an error if this jaxlib does not know the option); elsewhere nothing."""
    import jax

    choice = os.environ.get("SERJAX_CPU_COMPILER", "").strip().lower() or "serjax"
    if choice not in ("serjax", "default"):
        raise SerjaxError(
            f"environment variable SERJAX_CPU_COMPILER={choice!r}: use 'default' (XLA's "
            "options) or 'serjax' (unset: serjax's CPU options)"
        )
    current = jax.default_backend()
    backend = backend or current
    options = {}
    if choice == "serjax" and backend == "cpu":
        items = tuple(sorted(CPU_COMPILER_OPTIONS.items()))
        if backend != current or _options_supported(items):
            options.update(items)
    if deterministic and backend in GPU_BACKENDS:
        items = tuple(sorted(GPU_DETERMINISTIC_OPTIONS.items()))
        if backend == current and not _options_supported(items):
            raise SerjaxError(
                "config field train.deterministic: this jaxlib's XLA does not accept "
                f"{dict(items)}; set train.deterministic=False"
            )
        options.update(items)
    return options or None


COMPILATION_CACHE_BYTES = 2 * 2**30  # least recently used entries go beyond this


def use_compilation_cache(cache_dir, enabled: bool = True) -> Path | None:
    """Keep this process's compiled steps in <cache_dir>/jax-compilation-cache (JAX's
    persistent compilation cache; on a GPU, XLA's autotuning results with them), so another
    process (a Ray task, a resumed or re-evaluated run, a sweep's next run of the same shapes)
    loads a step instead of compiling it again: seconds saved per process, results the same.
    The config field executor.compilation_cache turns it off. Call before anything compiles."""
    if not enabled:
        return None
    import jax

    path = Path(cache_dir).expanduser().absolute() / "jax-compilation-cache"
    jax.config.update("jax_compilation_cache_dir", str(path))
    # JAX bounds the cache's size only with filelock installed (a dependency of serjax); without
    # it a size limit makes every cache read fail with a warning, so the cache goes unbounded
    if importlib.util.find_spec("filelock") is not None:
        jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_BYTES)
    return path


def _thp_mode() -> str | None:
    """The kernel's transparent-huge-page mode ("always", "madvise", "never"), None if unknown."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            found = re.search(r"\[(\w+)\]", f.read())
    except OSError:
        return None
    return found.group(1) if found else None


def huge_pages_state() -> dict:
    """Whether glibc was started with huge pages for malloc (serjax.host asks for them)."""
    tunables, mode = os.environ.get("GLIBC_TUNABLES", ""), _thp_mode()
    asked = bool(re.search(r"glibc\.malloc\.hugetlb=[12]", tunables))
    # "always": the kernel backs large blocks with huge pages whatever glibc asks
    on = mode == "always" or (asked and mode == "madvise")
    return {"on": on, "GLIBC_TUNABLES": tunables, "thp_mode": mode}


def host_allocator_state() -> dict:
    """This process's host allocator, for the provenance record: {"huge_pages": {"on", ...}}.
    Reads the environment and the kernel's setting; changes nothing."""
    return {"huge_pages": huge_pages_state()}
