"""Process tuning for serjax's entry points (launch.py, bench/*.py): it starts the program
again, so nothing in the library imports it.

Huge pages for malloc. XLA allocates each step's large temporaries with glibc's malloc, which
serves blocks over 32 MB (and every block of a thread's own arena) from fresh mmap'd pages and
hands them back on free, so every step page-faults its working set in again, 4 KB at a time.
Started with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc >= 2.35, kernel THP mode "madvise"),
glibc backs that memory with 2 MB transparent huge pages instead, at the same memory
(results/bench/train.md, host allocator table). glibc reads the variable at start only, hence
`reexec_with_huge_pages()`, called first thing. SERJAX_MALLOC=default keeps glibc as configured.
Only speed changes, never the numbers; serjax.xla_options.host_allocator_state() reports it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from serjax.errors import SerjaxError
from serjax.xla_options import _thp_mode

HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
# set in the restarted program (and by a parent that chose a child's allocator): never restart
REEXEC_MARK = "SERJAX_REEXECUTED"
MALLOC_MODES = ("hugepages", "default")


def _glibc_version() -> tuple[int, int] | None:
    try:
        get = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").gnu_get_libc_version
    except (OSError, AttributeError):
        return None
    get.restype = ctypes.c_char_p
    try:
        major, minor = get().decode().split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def malloc_mode(environ=None) -> str:
    """SERJAX_MALLOC, checked: hugepages (also when unset) or default."""
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
    with transparent huge pages; None when there is nothing to do (SERJAX_MALLOC=default,
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
    `huge_pages_env` says so (a bad SERJAX_MALLOC raises SerjaxError). Call it first thing in
    a script, before threads start or output is written; the arguments, Python's own flags
    included, are kept."""
    if os.environ.get(REEXEC_MARK) or not sys.executable:
        return
    update = huge_pages_env(os.environ, sys.platform, _thp_mode(), _glibc_version())
    if not update:
        return
    env = dict(os.environ, **update)
    env[REEXEC_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    os.execve(sys.executable, argv, env)
