"""Keeping the process's resident memory near what it uses (issue 30 §3).

Measured on the cpu preset (BUILD_NOTES, "Memory that does not grow with the subject"): of a
training run's ~6 GB peak, the stage-2 state is 5 MB and the per-frame arrays under 0.1 GB; the
rest was heap that glibc's allocator kept after XLA freed it, and the compiled programs of phases
that had ended. Two measures:

- `bound_heap()` caps glibc's malloc arenas at ARENA_MAX (mallopt M_ARENA_MAX). glibc's default
  is 8 per core: every thread that allocates gets an arena of its own while fewer exist, and each
  arena keeps the memory freed into it. XLA's thread pools and our two training threads touch
  many. Measured (`experiments.bench_memory`, cpu preset, 1,000 frames at 256²): the stage-2 phases'
  peaks 5.45–5.84 GB → 3.44–3.86 GB with a cap of 2 alone; fixing the mmap threshold (1 MB) as
  well changed nothing further, and on its own gave 4.19–4.49 GB. In the main job (BUILD_NOTES,
  "Memory that does not grow with the subject") a cap of 2 cost 6–9 % of training time (threads
  waiting on each other's arena); 4 costs ~3 % and keeps most of the gain. glibc's own
  MALLOC_ARENA_MAX, where set, wins. The cap must be set before the process has spawned its ninth
  allocating thread (glibc fixes its arena limit then), so the command-line tools set it as they
  start.
- `release()` between training phases trims the heap (malloc_trim). After stage 1 it also drops
  the compiled programs (`jax.clear_caches`): stage 2 uses none of them. Not between stage 2's
  phases: with every program dropped there, the fuse and evaluation phases each took 27 s longer
  in the main job (XLA compiled again the many small programs of eager operations, which are too
  quick to compile for the persistent cache to keep).

Neither changes a result: the allocator decides where buffers live, not what they hold. Outside
glibc (macOS, musl) both are no-ops but for the cache drop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os

ARENA_MAX = 4

# mallopt parameter numbers (glibc malloc.h) and the environment variables that set them.
_PARAMS = (("MALLOC_ARENA_MAX", -8, ARENA_MAX),)
_state = {"bound": None}


@functools.cache
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


def release(programs: bool = True) -> None:
    """Hands free heap back to the system and, with `programs`, first drops every compiled program
    (between phases whose programs the next one does not use: stage 1 → stage 2)."""
    if programs:
        import jax

        jax.clear_caches()
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(ctypes.c_size_t(0))
