"""Native log lines (MediaPipe's C++ W0000 lines, ffmpeg's output) go to the debug log, not to the
terminal; Python's own stderr (progress bars, warnings) still reaches it."""

import gc
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from ua3dtalk_jax import native_log
from ua3dtalk_jax.preprocess import video

REPO = Path(__file__).resolve().parents[2]
NOISE = ("W0000", "inference_feedback_manager", "XNNPACK", "absl::InitializeLog")


def _run(code: str, log: str):
    env = {**os.environ, "UA3D_DEBUG_LOG": log}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, check=False
    )


def test_mediapipe_lines_go_to_the_log(tmp_path):
    """A tracker and a segmenter opened and closed out of order, as the pipeline does; Python's
    stderr written meanwhile still arrives, and fd 2 is back afterwards."""
    code = (
        "import sys, os\n"
        "from skimage import data\n"
        "from ua3dtalk_jax.preprocess import landmarks, masks\n"
        "img = data.astronaut()\n"
        "t = landmarks.FaceTracker(); s = masks.PersonSegmenter()\n"
        "assert t(img) is not None and s(img).shape == (512, 512)\n"
        "print('python-side line', file=sys.stderr)\n"
        "t.close(); s.close(); t.close()\n"
        "os.write(2, b'native-after\\n')\n"
        "landmarks.FaceTracker(static=True)(img)  # never closed: collected at once\n"
        "os.write(2, b'native-after-unclosed\\n')\n"
    )
    log = str(tmp_path / "debug.log")
    proc = _run(code, log)
    assert proc.returncode == 0, proc.stderr
    for noise in NOISE:
        assert noise not in proc.stderr
    assert "python-side line" in proc.stderr and "native-after" in proc.stderr
    assert "native-after-unclosed" in proc.stderr
    assert "inference_feedback_manager" in Path(log).read_text()  # kept for debugging


def test_synthetic_face_model_is_quiet(tmp_path):
    code = (
        "from ua3dtalk_jax.data.synthetic import face_model\nface_model.build_face_model(size=64)\n"
    )
    proc = _run(code, str(tmp_path / "debug.log"))
    assert proc.returncode == 0, proc.stderr
    for noise in NOISE:
        assert noise not in proc.stderr


def test_ffmpeg_failure_is_one_line_and_logged(tmp_path, monkeypatch):
    log = tmp_path / "debug.log"
    monkeypatch.setenv("UA3D_DEBUG_LOG", str(log))
    path = str(tmp_path / "v.mp4")
    Path(path).write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))  # a broken mp4
    with pytest.raises(video.VideoError) as err:
        list(video.read_frames(path, fps=25, size=32))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: decoding failed (")
    assert str(log) in msg and "ffmpeg: " in log.read_text()


def test_quiet_restores_after_an_error(tmp_path):
    """In a fresh process: another test's live MediaPipe graph (a cached tracker) would hold the
    redirection open here, and nested blocks are then no-ops by design."""
    code = (
        "import os, sys\n"
        "from ua3dtalk_jax import native_log\n"
        "before = os.fstat(2).st_ino, sys.stderr\n"
        "try:\n"
        "    with native_log.quiet(), native_log.quiet():\n"
        "        assert sys.stderr is not before[1]\n"
        "        assert os.fstat(2).st_ino != before[0]\n"
        "        raise RuntimeError('inside')\n"
        "except RuntimeError as e:\n"
        "    assert str(e) == 'inside'\n"
        "assert (os.fstat(2).st_ino, sys.stderr) == before\n"
        "os.write(2, b'fd2-back\\n')\n"
    )
    proc = _run(code, str(tmp_path / "debug.log"))
    assert proc.returncode == 0, proc.stderr
    assert "fd2-back" in proc.stderr


def test_cycles_reuse_one_terminal_stream_and_leave_nothing_to_the_collector():
    """Each acquire/release cycle used to open a stream on fd 2's duplicate that only the garbage
    collector closed (ResourceWarning); now one stream per terminal lives with the process."""
    streams = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        for _ in range(3):
            native_log.acquire()
            streams.append(sys.stderr)
            native_log.release()
        gc.collect()
    assert all(s is streams[0] for s in streams) and not streams[0].closed
