"""Keeps native libraries' log lines (MediaPipe, TFLite, ffmpeg) off the terminal: a debug log.

MediaPipe's C++ side writes through absl logging before `absl::InitializeLog()`, which no
environment variable silences (GLOG_minloglevel and TF_CPP_MIN_LOG_LEVEL were tried: the
`W0000 ... inference_feedback_manager.cc ...` and `INFO: Created TensorFlow Lite XNNPACK delegate`
lines still appear), and its graph threads log asynchronously while frames are processed. So
`quiet()` points file descriptor 2 at the debug log for as long as MediaPipe graphs live, and
points Python's `sys.stderr` at a duplicate of the terminal meanwhile: progress bars, warnings
and tracebacks written from Python still reach the user; only what native code writes to fd 2
lands in the log. Nested `quiet()` blocks are no-ops inside the outermost.

ffmpeg's own output is captured by the caller (subprocess) and appended with `append()`; the user
gets a one-line reason that names this log.

The log is `debug_log_path()`: `$UA3D_DEBUG_LOG` if set, else `<tmp>/ua3dtalk_jax-<user>.log`
(outside every output folder, so a refused input leaves nothing there).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
import tempfile
import threading
import time

_lock = threading.Lock()
_state = {"count": 0, "saved_fd": None, "py_err": None}
_terminals: dict = {}  # (st_dev, st_ino) of the original fd 2 -> its stream (see _terminal)


def debug_log_path() -> str:
    """Path of the debug log (`$UA3D_DEBUG_LOG`, else one file per user in the temp folder)."""
    path = os.environ.get("UA3D_DEBUG_LOG")
    if path:
        return path
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = str(os.getuid())
    return os.path.join(tempfile.gettempdir(), f"ua3dtalk_jax-{user}.log")


def append(title: str, text: str) -> str:
    """Appends a titled block (e.g. ffmpeg's stderr) to the debug log; returns the log's path."""
    path = debug_log_path()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(path, "a", encoding="utf-8", errors="replace") as f:
        f.write(f"--- {stamp} pid {os.getpid()} {title}\n{text.rstrip()}\n")
    return path


def last_line(text: str, default: str = "no message") -> str:
    """The last non-empty line of a tool's output, for a one-line reason."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else default


def acquire() -> None:
    """Starts (or joins) the redirection: native writes to fd 2 go to the debug log, Python's
    sys.stderr to a duplicate of the terminal. Each call needs one `release()`; they may
    interleave (a tracker and a segmenter opened and closed in any order)."""
    with _lock:
        _state["count"] += 1
        if _state["count"] > 1:
            return
        py_err = sys.stderr
        with contextlib.suppress(Exception):
            py_err.flush()
        saved = os.dup(2)
        log = os.open(debug_log_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 2)
        os.close(log)
        sys.stderr = _terminal(saved)
        _state.update(saved_fd=saved, py_err=py_err)


def _terminal(fd: int):
    """A text stream on a duplicate of `fd` (what fd 2 was), one per file it points to, kept for
    the life of the process: a progress bar may hold it past `release()`, and closing it by the
    garbage collector instead raised ResourceWarning."""
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    stream = _terminals.get(key)
    if stream is None or stream.closed:
        stream = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
        _terminals[key] = stream
    return stream


def release() -> None:
    """Ends one `acquire()`; the last one puts fd 2 and sys.stderr back."""
    with _lock:
        if _state["count"] == 0:
            return
        _state["count"] -= 1
        if _state["count"]:
            return
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        sys.stderr = _state["py_err"]
        os.dup2(_state["saved_fd"], 2)
        os.close(_state["saved_fd"])
        _state.update(saved_fd=None, py_err=None)


@contextlib.contextmanager
def quiet():
    """`acquire()` … `release()` around a block: use around the whole life of MediaPipe graphs
    (construction to close), since their threads log at any time in between."""
    acquire()
    try:
        yield
    finally:
        release()
