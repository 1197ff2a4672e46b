"""Keeping the process's resident memory near what it uses (issue 30 §3).

Measured on the cpu preset (BUILD_NOTES, "Memory that does not grow with the subject"): of a
training run's ~6 GB peak, the stage-2 state is 5 MB and the per-frame arrays under 0.1 GB; the
rest was heap that glibc's allocator kept after XLA freed it, and the compiled programs of phases
that had ended. Two measures:

- `bound_heap()` caps glibc's malloc arenas at ARENA_MAX (mallopt M_ARENA_MAX). glibc's default
  is 8 per core: every thread that allocates gets an arena of its own while fewer exist, and each
  arena keeps the memory freed into it. XLA's thread pools and our two training threads touch
  many. Measured (`experiments.bench_memory`, cpu preset, 1,000 frames at 256²): the stage-2 phases'
  peaks 5.45–5.84 GB → 3.44–3.86 GB with the cap alone; fixing the mmap threshold (1 MB) as well
  changed nothing further, and on its own gave 4.19–4.49 GB. glibc's own MALLOC_ARENA_MAX, where
  set, wins. The cap must be set before the process has spawned its ninth allocating thread
  (glibc fixes its arena limit then), so the command-line tools set it as they start.
- `release()` between training phases: drops the compiled programs (`jax.clear_caches`; a later
  phase that needs one again reads it from the persistent compile cache) and trims the heap.

Neither changes a result: the allocator decides where buffers live, not what they hold. Outside
glibc (macOS, musl) both are no-ops but for the cache drop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

ARENA_MAX = 2

# mallopt parameter numbers (glibc malloc.h) and the environment variables that set them.
_PARAMS = (("MALLOC_ARENA_MAX", -8, ARENA_MAX),)
_state = {"bound": None}


def _libc():
    if os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None  # not glibc
    return libc


def bound_heap() -> dict:
    """Caps glibc's malloc arenas (module docstring); once per process (later calls return
    the first call's outcome). Call it early, before threads allocate.

    Returns:
      {name: value set} for the settings applied here; {} where the allocator is not glibc's.
    """
    if _state["bound"] is not None:
        return _state["bound"]
    libc = _libc()
    done = {}
    if libc is not None:
        for env, param, value in _PARAMS:
            if env in os.environ:
                continue
            if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1:
                done[env] = value
    _state["bound"] = done
    return done


def release() -> None:
    """Drops every compiled program and hands free heap back to the system (between phases)."""
    import jax

    jax.clear_caches()
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(ctypes.c_size_t(0))
