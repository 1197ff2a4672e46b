"""glibc's allocator bounded (`train.heap.bound_heap`) and the release between phases."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

from ua3dtalk_jax.train import heap

# Eight threads allocate at once; glibc's malloc_info lists the arenas ("<heap nr=").
_ARENAS = textwrap.dedent(
    """
    import ctypes, os, sys, tempfile, threading
    from ua3dtalk_jax.train import heap
    if sys.argv[1] == "bound":
        print("SET", sorted(heap.bound_heap()))
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.fopen.restype = ctypes.c_void_p
    barrier = threading.Barrier(9)
    def work():
        libc.malloc(1 << 16)
        barrier.wait()
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    barrier.wait()
    path = os.path.join(tempfile.mkdtemp(), "info.xml")
    fp = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    barrier.wait()
    print("ARENAS", open(path).read().count("<heap nr="))
    """
)


def _arenas(mode: str, env=None) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-c", _ARENAS, mode], capture_output=True, text=True, env=env, check=True
    ).stdout
    return int(out.split("ARENAS")[1]), out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_bound_heap_caps_the_arenas_of_threads_that_allocate_at_once():
    free, _ = _arenas("free")
    bound, out = _arenas("bound")
    assert free > heap.ARENA_MAX, f"the unbounded control already shares arenas: {free}"
    assert bound <= heap.ARENA_MAX, out
    assert "MALLOC_ARENA_MAX" in out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_glibcs_own_environment_variable_wins(monkeypatch):
    import os

    env = dict(os.environ, MALLOC_ARENA_MAX="3")
    n, out = _arenas("bound", env=env)
    assert "MALLOC_ARENA_MAX" not in out.split("ARENAS")[0]  # left to glibc, which reads it
    assert n == 3


def test_release_drops_the_compiled_programs():
    f = jax.jit(lambda x: x * 2)
    f(jnp.ones(3))
    assert f._cache_size() == 1
    heap.release()
    assert f._cache_size() == 0
    assert float(f(jnp.ones(3))[0]) == 2.0  # compiled again on demand
    heap.release(programs=False)  # the heap only
    assert f._cache_size() == 1
