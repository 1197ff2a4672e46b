"""Independent training jobs run at once in threads, stopped together when one fails.

The face and mouth branches of stage 2 are independent until the fuse step (paper §2.3: they are
trained side by side); on a CPU each keeps only part of the cores busy (small programs, the
loader), and XLA and the rasterizer release the GIL. `run(jobs)` starts every job in its own
thread and waits for all of them. A job is `job(stop)`: it checks `stop.is_set()` between its
steps and then raises `Stopped` (after saving what it has, if it can). When a job raises, or the
caller is interrupted (Ctrl-C reaches the main thread only), `stop` is set, the other jobs end at
their next check, and the first error is raised again; nothing keeps running behind the caller.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable


class Stopped(Exception):
    """Raised by a job that saw `stop` set: another job failed or the caller was interrupted."""


def run(jobs: dict[str, Callable[[threading.Event], object]]) -> dict[str, object]:
    """Runs each `jobs[name](stop)` in its own thread; returns {name: result}.

    Raises:
      the first exception a job raised (other than `Stopped`), or the caller's own interruption,
      once every job has ended.
    """
    stop = threading.Event()
    errors: list[BaseException] = []  # in the order the jobs raised them
    lock = threading.Lock()

    def note(future):
        if future.exception() is not None:
            with lock:
                errors.append(future.exception())

    pool = concurrent.futures.ThreadPoolExecutor(len(jobs), thread_name_prefix="side-by-side")
    futures = {name: pool.submit(job, stop) for name, job in jobs.items()}
    for f in futures.values():
        f.add_done_callback(note)
    try:
        done, _ = concurrent.futures.wait(
            futures.values(), return_when=concurrent.futures.FIRST_EXCEPTION
        )
        if any(f.exception() is not None for f in done):
            stop.set()
    except BaseException:  # KeyboardInterrupt while waiting: end the jobs, then propagate
        stop.set()
        pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)
    first = next((e for e in errors if not isinstance(e, Stopped)), None)
    if first is not None:
        raise first
    if errors:
        raise errors[0]
    return {name: f.result() for name, f in futures.items()}
