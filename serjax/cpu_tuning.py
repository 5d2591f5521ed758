"""Settings that make XLA's CPU backend train this model much faster, measured in
results/bench/train.md (same mathematics; tested in tests/test_cpu_tuning.py).

1. The host allocator. XLA (and PyTorch) allocate each step's large temporaries with glibc's
   malloc, which serves blocks over 32 MB, and every block of a thread's own arena, from
   fresh mmap'd pages that it hands back on free: every step then page-faults its whole
   working set in again (~57 000 faults and ~90 ms of kernel time per step at n = 1), in
   4 KB pages. Two remedies, chosen by SERJAX_MALLOC:
   - unset (the default): transparent huge pages for malloc's memory. glibc does this when
     started with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc >= 2.35, kernel THP mode
     "madvise"); the variable is read at process start only, so `reexec_with_huge_pages()`
     — called first thing by launch.py and the benchmarks — starts the program again once
     with it set. 2 MB pages mean 512× fewer faults and TLB misses: about 1.4× faster steps,
     memory as with glibc's defaults (freed blocks still go back to the kernel).
   - `tuned`: `tune_host_allocator()` asks glibc (mallopt) for one arena, no mmap'd blocks
     and no trimming, so freed memory is reused and nothing faults: faster than glibc's
     defaults but slower than huge pages for serjax, and the single heap fragments (a
     2943-utterance run with all 8 versions at n = 4 peaked at 6.0 GB RSS, results/bench/
     memory-tuned-malloc.md). PyTorch gains the most from it (the benchmark's allocator
     table times each framework under each setting).
   - `default`: glibc as configured.

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
import re
import sys

from serjax.errors import SerjaxError

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_ALLOCATOR_STATE: dict = {}

HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
_REEXEC_MARK = "SERJAX_REEXECUTED"

# xla_cpu_experimental_ynn_fusion_type: which ops go to YNNPACK (here: reductions only)
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}


@functools.lru_cache(maxsize=1)
def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def _thp_mode() -> str | None:
    """The kernel's transparent-huge-page mode ("always", "madvise", "never"), None if unknown."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            found = re.search(r"\[(\w+)\]", f.read())
    except OSError:
        return None
    return found.group(1) if found else None


def _glibc_version() -> tuple[int, int] | None:
    try:
        get = _libc().gnu_get_libc_version
    except (OSError, AttributeError):
        return None
    get.restype = ctypes.c_char_p
    try:
        major, minor = get().decode().split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


MALLOC_MODES = ("hugepages", "tuned", "default")


def malloc_mode(environ=None) -> str:
    """SERJAX_MALLOC, checked: hugepages (also when unset), tuned or default."""
    value = (os.environ if environ is None else environ).get(
        "SERJAX_MALLOC", ""
    ).strip().lower() or "hugepages"
    if value not in MALLOC_MODES:
        raise SerjaxError(
            f"environment variable SERJAX_MALLOC={value!r}: use one of {MALLOC_MODES} "
            "(unset: hugepages)"
        )
    return value


def huge_pages_env(
    environ, platform: str, thp_mode: str | None, glibc: tuple[int, int] | None
) -> dict | None:
    """The environment variables to start the program with so that glibc backs malloc's memory
    with transparent huge pages; None when there is nothing to do (SERJAX_MALLOC says otherwise,
    already set, not Linux/glibc >= 2.35, or a kernel whose THP mode is not "madvise": "always"
    already gives large blocks huge pages, "never" gives none)."""
    if malloc_mode(environ) != "hugepages":
        return None
    if (
        not platform.startswith("linux")
        or thp_mode != "madvise"
        or glibc is None
        or glibc < (2, 35)
    ):
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return None
    return {"GLIBC_TUNABLES": ":".join(t for t in (tunables, HUGE_PAGES_TUNABLE) if t)}


def reexec_with_huge_pages() -> None:
    """Start this program again, once, with GLIBC_TUNABLES asking for huge pages, when
    `huge_pages_env` says so (SERJAX_MALLOC=default or tuned: never). Call it first thing in a
    script, before threads start or output is written; the arguments, Python's own flags
    included, are kept."""
    if os.environ.get(_REEXEC_MARK) or not sys.executable:
        return
    update = huge_pages_env(os.environ, sys.platform, _thp_mode(), _glibc_version())
    if not update:
        return
    env = dict(os.environ, **update)
    env[_REEXEC_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    os.execve(sys.executable, argv, env)


def huge_pages_state() -> dict:
    """Whether glibc was started with huge pages for malloc (see reexec_with_huge_pages)."""
    tunables, mode = os.environ.get("GLIBC_TUNABLES", ""), _thp_mode()
    asked = bool(re.search(r"glibc\.malloc\.hugetlb=[12]", tunables))
    # "always": the kernel backs large blocks with huge pages whatever glibc asks
    on = mode == "always" or (asked and mode == "madvise")
    return {"on": on, "GLIBC_TUNABLES": tunables, "thp_mode": mode}


def tune_host_allocator(enable: bool | None = None) -> dict:
    """Ask glibc to reuse freed memory instead of returning it to the kernel (see above).
    enable=None: only if SERJAX_MALLOC=tuned is set. Idempotent; a no-op (saying why) when
    not enabled or off glibc. The state it returns also says whether huge pages are on."""
    if not _ALLOCATOR_STATE:
        _ALLOCATOR_STATE.update(_mallopt_tuning(enable), huge_pages=huge_pages_state())
    return dict(_ALLOCATOR_STATE)


def _mallopt_tuning(enable: bool | None) -> dict:
    if enable is None:
        enable = malloc_mode() == "tuned"
    if not enable:
        return {"tuned": False, "why": "mallopt untouched (SERJAX_MALLOC=tuned enables)"}
    if not sys.platform.startswith("linux"):
        return {"tuned": False, "why": f"not glibc ({sys.platform})"}
    try:
        mallopt = _libc().mallopt
    except (OSError, AttributeError) as e:
        return {"tuned": False, "why": f"no mallopt: {e}"}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    settings = {
        "M_ARENA_MAX": (_M_ARENA_MAX, 1),
        "M_MMAP_MAX": (_M_MMAP_MAX, 0),
        "M_TRIM_THRESHOLD": (_M_TRIM_THRESHOLD, 2**31 - 1),
        "M_TOP_PAD": (_M_TOP_PAD, 64 << 20),
    }
    ok = {name: bool(mallopt(param, value)) for name, (param, value) in settings.items()}
    return {"tuned": all(ok.values()), "mallopt": ok}


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


def compiler_options() -> dict | None:
    """Compiler options for serjax's jitted steps on the current backend (None: XLA's defaults)."""
    import jax

    choice = os.environ.get("SERJAX_CPU_COMPILER", "").strip().lower() or "serjax"
    if choice not in ("serjax", "default"):
        raise SerjaxError(
            f"environment variable SERJAX_CPU_COMPILER={choice!r}: use 'default' (XLA's "
            "options) or 'serjax' (unset: serjax's CPU options)"
        )
    if choice == "default" or jax.default_backend() != "cpu":
        return None
    items = tuple(sorted(CPU_COMPILER_OPTIONS.items()))
    return dict(items) if _options_supported(items) else None
