"""A phone-style clip through the user's three commands: preprocess → train (tiny) → infer.

The clip: 176×144 as displayed, stored turned with a 90° display rotation (as phones save
portrait video), the face 60 px wide, a moving window behind the person, H.264 at 40 kbit/s, no
audio track; the speech (3.1 s, given with --audio) is shorter than the video (4.0 s). The
subject is written at 64², the tiny preset's size. Stage 1 runs two steps per module (the
programs are what is being tested, not the fit); the time is the tiny preset's compilations
(sharing the session's tiny run's cache does not help: the compiled steps differ per subject).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.preprocess import media
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.data import video as V

REPO = Path(__file__).resolve().parents[2]
FPS, SIZE = 25, 64
SPEECH_S = 3.1
INFER_S = 1.2  # new speech for inference: round(1.2 · 25) = 30 frames
# A few steps of every module: enough to run each program once (the result is not judged here)
QUICK = [
    "stage1.emotion.pretrain_steps=2",
    "stage1.emotion.finetune_steps=2",
    "stage1.expr_prior.steps=2",
    "stage1.lip_expert.steps=2",
    "stage1.stylenet.steps=2",
    "stage1.syncnet.steps=2",
]


def _run(module: str, *flags):
    cmd = [sys.executable, "-m", f"experiments.{module}", *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 0, f"{module}: {proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr and "W0000" not in proc.stderr
    return proc


@pytest.mark.long
@pytest.mark.slow
def test_phone_clip_preprocess_train_infer(tmp_path):
    frames, _ = media.phone_frames(100)
    stored = np.rot90(frames, -1, axes=(1, 2))
    flat = media.write_video(str(tmp_path / "stored.mp4"), stored, FPS, bitrate="40k")
    video = media.remux_rotated(flat, str(tmp_path / "phone.mp4"))
    speech = str(tmp_path / "speech.wav")
    soundfile.write(speech, media.tone(SPEECH_S), media.AUDIO_RATE)
    subject, work = str(tmp_path / "phone"), str(tmp_path / "work")
    proc = _run(
        "preprocess",
        f"--video={video}",
        f"--audio={speech}",
        f"--out={subject}",
        f"--size={SIZE}",
        "--workers=1",
    )
    assert "kept the first 3.12 s (78 frames)" in proc.stdout
    s = Subject.open(subject)
    assert len(s) == 78
    meta = json.loads(Path(subject, "subject.json").read_text())["metadata"]["preprocess"]
    assert abs(meta["face_px"] - 60) < 6  # found upright, at its displayed size

    cache = f"--compile_cache={tmp_path / 'xla'}"  # training and infer share what they can
    sets = [f"--set={s}" for s in QUICK]
    _run(
        "train",
        f"--subject={subject}",
        "--config=tiny",
        f"--workdir={work}",
        "--novideo",
        cache,
        *sets,
    )

    new = str(tmp_path / "new.wav")
    soundfile.write(new, media.tone(INFER_S, freq=180), media.AUDIO_RATE)
    out = str(tmp_path / "out.mp4")
    _run(
        "infer",
        f"--workdir={work}",
        f"--subject={subject}",
        f"--audio={new}",
        f"--out={out}",
        cache,
    )
    info = V.probe(out)
    assert info["frames"] == round(INFER_S * FPS) and (info["height"], info["width"]) == (64, 64)
    assert os.path.getsize(out) > 1000
