"""Two settings that make XLA's CPU backend train this model much faster, measured in
results/bench/train.md (same mathematics; tested in tests/test_cpu_tuning.py).

1. The host allocator. XLA (and PyTorch) allocate each step's large temporaries with glibc's
   malloc, which serves blocks over 32 MB, and every block of a thread's own arena, from
   fresh mmap'd pages that it hands back on free: every step then page-faults its whole
   working set in again (~57 000 faults and ~90 ms of kernel time per step at n = 1).
   `tune_host_allocator()` asks glibc (mallopt) for one arena, no mmap'd blocks and no
   trimming, so freed memory is reused: 1.1-1.3× faster steps. It is opt-in
   (SERJAX_MALLOC=tuned), because it trades memory for that speed: the single heap
   fragments, and a 2943-utterance run with all 8 versions at n = 4 peaked at 6.0 GB RSS with
   it, 4.3 GB without (results/bench/memory*.md). launch.py calls it first thing, before JAX starts its
   threads, and it acts only when the environment asks.

2. Compiler options (`compiler_options()`): on the CPU, XLA hands convolutions to its YNNPACK
   library path by default, which computes a convolution's weight gradient as a convolution
   whose window is the whole feature map, several times slower here than XLA's Eigen
   convolution; serjax keeps YNNPACK for reductions only. SERJAX_CPU_COMPILER=default in the
   environment compiles with XLA's defaults.

Both are environment-level choices, not experiment settings: they change float rounding at
most, never the model, the data or the config a run is compared by.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_ALLOCATOR_STATE: dict = {}

# xla_cpu_experimental_ynn_fusion_type: which ops go to YNNPACK (here: reductions only)
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}


@functools.lru_cache(maxsize=1)
def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def tune_host_allocator(enable: bool | None = None) -> dict:
    """Ask glibc to reuse freed memory instead of returning it to the kernel (see above).
    enable=None: only if SERJAX_MALLOC=tuned is set. Idempotent; a no-op (saying why) when
    not enabled or off glibc."""
    if _ALLOCATOR_STATE:
        return dict(_ALLOCATOR_STATE)
    if enable is None:
        enable = os.environ.get("SERJAX_MALLOC", "").lower() == "tuned"
    if not enable:
        _ALLOCATOR_STATE.update(tuned=False, why="glibc defaults (SERJAX_MALLOC=tuned enables)")
        return dict(_ALLOCATOR_STATE)
    if not sys.platform.startswith("linux"):
        _ALLOCATOR_STATE.update(tuned=False, why=f"not glibc ({sys.platform})")
        return dict(_ALLOCATOR_STATE)
    try:
        mallopt = _libc().mallopt
    except (OSError, AttributeError) as e:
        _ALLOCATOR_STATE.update(tuned=False, why=f"no mallopt: {e}")
        return dict(_ALLOCATOR_STATE)
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    settings = {"M_ARENA_MAX": (_M_ARENA_MAX, 1), "M_MMAP_MAX": (_M_MMAP_MAX, 0),
                "M_TRIM_THRESHOLD": (_M_TRIM_THRESHOLD, 2**31 - 1), "M_TOP_PAD": (_M_TOP_PAD, 64 << 20)}
    ok = {name: bool(mallopt(param, value)) for name, (param, value) in settings.items()}
    _ALLOCATOR_STATE.update(tuned=all(ok.values()), mallopt=ok)
    return dict(_ALLOCATOR_STATE)


def release_free_memory() -> None:
    """Hand the heap's free pages back to the kernel (glibc malloc_trim): called after large
    one-off work (building the device table), whose freed buffers the tuned allocator would
    otherwise keep resident for the rest of the run."""
    if not _ALLOCATOR_STATE.get("tuned"):
        return
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass


def allocator_state() -> dict:
    """What tune_host_allocator did in this process ({} if it was not called)."""
    return dict(_ALLOCATOR_STATE)


@functools.lru_cache(maxsize=None)
def _options_supported(options: tuple) -> bool:
    """Whether this jaxlib's CPU compiler accepts the options (older or newer XLA may not)."""
    import jax
    import jax.numpy as jnp

    try:
        jax.jit(lambda x: x.sum(), compiler_options=dict(options)).lower(jnp.zeros(2)).compile()
        return True
    except Exception:  # an unknown option or value: compile with the defaults instead
        return False


def compiler_options() -> dict | None:
    """Compiler options for serjax's jitted steps on the current backend (None: XLA's defaults)."""
    import jax

    if os.environ.get("SERJAX_CPU_COMPILER", "").lower() == "default" or jax.default_backend() != "cpu":
        return None
    items = tuple(sorted(CPU_COMPILER_OPTIONS.items()))
    return dict(items) if _options_supported(items) else None
