"""Temporary shim: the names serjax.train and serjax.experiment import from here until they
import them from serjax.xla_options. The process tuning (huge pages) moved to serjax.host,
which only entry points import; this module must never import it."""

from serjax.xla_options import CPU_COMPILER_OPTIONS, compiler_options
from serjax.xla_options import host_allocator_state as allocator_state

__all__ = ["CPU_COMPILER_OPTIONS", "allocator_state", "compiler_options", "release_free_memory"]


def release_free_memory() -> None:
    """A no-op: it trimmed the heap of the mallopt-tuned allocator, which is gone."""
