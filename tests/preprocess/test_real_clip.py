"""A real camera clip, not one the project rendered: low resolution, a moving window behind the
person, low-bitrate compression, no audio track (speech from --audio), lengths that disagree.

The clip (media.phone_frames) is the astronaut photograph's person cut out by its matte and
swaying in front of a room whose window shows a scrolling, flickering street, at 176×144 with the
face 60 px wide, H.264 at 40 kbit/s, no audio. Its composited matte is the known person region.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile

from tests.preprocess import media
from tests.tools import import_tool
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.preprocess import checks, pipeline

REPO = Path(__file__).resolve().parents[2]
FPS, N = 25, 100  # a 4.0 s clip
SPEECH_S = 3.1  # the --audio file: 77.5 frames → 78 kept (half a frame of padding at most)
SIZE = 224  # 1.56 × the 144-px crop window: above checks.UPSCALE_NOTE, so the note is printed
BITRATE = "40k"  # a phone or messenger clip at 176×144: visible blocking and ringing
# Person masks (face ∪ mouth ∪ hair ∪ neck ∪ torso) against the composited matte: measured IoU
# 0.975-0.981 over the sampled frames; the segmenter's edge on a 60-px face upscaled 1.6× and
# blurred by the codec may move a pixel or two (a mask that took in the window would fall below
# 0.8: the window's visible part is ~20 % of the crop).
PERSON_IOU_MIN = 0.9
# Share of the window's visible pixels (street behind no one) labelled person: measured ≤ 0.019
# over all 78 frames, along the hair's edge. The selfie segmenter alone, frame by frame, takes 56 %
# of it in frame 49 (a blob of street stuck to the hair); the temporal median removes that.
WINDOW_AS_PERSON_MAX = 0.05
# Landmarks of the 40 kbit/s clip against the near-lossless one, as a share of the face width:
# measured mean 0.55 %, 95th percentile 0.70 %. MediaPipe's own error on the synthetic subject at
# this face size is ~1.3 % (README), so these bars allow compression to add about that much again.
COMPRESSED_LM_MEAN = 0.015
COMPRESSED_LM_P95 = 0.025
# The measured face width against the one the clip was made with (its face-mesh box in the photo):
# the face-mesh box of a small, swaying, compressed face moves by a pixel or two.
FACE_PX_TOL = 4


def _cli(*flags, cwd=REPO):
    cmd = [sys.executable, "-m", "experiments.preprocess", *flags, "--workers=1"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)


def _assert_one_line_refusal(proc, out, *needles):
    """Exit 1, one line on stderr naming the problem, no traceback, nothing at out."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("preprocess: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not os.path.exists(out) and not os.path.exists(out + pipeline.WORK_SUFFIX)
    return lines[0]


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    root = tmp_path_factory.mktemp("phone")
    frames, person = media.phone_frames(N)
    video = media.write_video(str(root / "phone.mp4"), frames, FPS, bitrate=BITRATE)
    speech = str(root / "speech.wav")
    soundfile.write(speech, media.tone(SPEECH_S), media.AUDIO_RATE)
    out = str(root / "subj")
    proc = _cli(f"--video={video}", f"--audio={speech}", f"--out={out}", f"--size={SIZE}")
    return {
        "root": root,
        "frames": frames,
        "person": person,
        "video": video,
        "speech": speech,
        "out": out,
        "proc": proc,
    }


def test_phone_clip_preprocesses_and_says_what_it_did(phone):
    proc = phone["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    for noise in ("W0000", "inference_feedback_manager", "XNNPACK", "Traceback"):
        assert noise not in proc.stderr, f"{noise!r} reached the terminal"
    notes = [ln for ln in proc.stdout.splitlines() if ln.startswith("preprocess: ")]
    assert len(notes) == 2, proc.stdout
    assert (
        "kept the first 3.12 s (78 frames); the last 22 frames (0.88 s) have no speech" in notes[0]
    )
    assert "the face window is 144 px" in notes[1] and "upscales it 1.6x" in notes[1]
    s = Subject.open(phone["out"])
    assert len(s) == 78 and s.size == (SIZE, SIZE)
    assert len(s.wav()) == round(78 / FPS * media.AUDIO_RATE)  # audio = kept frames, no more
    meta = json.loads(Path(phone["out"], "subject.json").read_text())["metadata"]["preprocess"]
    assert abs(meta["face_px"] - 60) <= FACE_PX_TOL and meta["interpolated"] == ""
    assert meta["notes"] == [n.removeprefix("preprocess: ") for n in notes]


def _known_person(phone, box, i):
    x, y, side, _ = box
    crop = phone["person"][i, y : y + side, x : x + side].astype(np.float32)
    return cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA) > 0.5


def test_masks_follow_the_person_not_the_moving_window(phone):
    s = Subject.open(phone["out"])
    meta = json.loads(Path(phone["out"], "subject.json").read_text())["metadata"]["preprocess"]
    x, y, side, _ = box = meta["crop"]
    h, w = phone["person"].shape[1:]
    wx0, wy0, wx1, wy1 = (round(v * s_) for v, s_ in zip(media.WINDOW, (w, h, w, h)))
    window = np.zeros((h, w), np.float32)
    window[wy0:wy1, wx0:wx1] = 1
    window = cv2.resize(window[y : y + side, x : x + side], (SIZE, SIZE)) > 0.5
    ious, stray = [], []
    for i in range(len(s)):  # every frame: a one-frame glitch is what to catch
        f = s.frame(i)
        est = f["face_mask"] | f["mouth_mask"] | f["hair_mask"] | f["neck_mask"] | f["torso_mask"]
        known = _known_person(phone, box, i)
        ious.append((est & known).sum() / (est | known).sum())
        street = window & ~known
        stray.append((est & street).sum() / street.sum())
    print(f"person IoU {min(ious):.3f}-{max(ious):.3f}, window as person ≤ {max(stray):.3f}")
    assert window.any() and min(ious) > PERSON_IOU_MIN, ious
    assert max(stray) < WINDOW_AS_PERSON_MAX, stray
    # the training target shows the plate there: the street does not move in gt_imgs
    a, b = s.frame(10)["image"], s.frame(40)["image"]
    street = window & ~_known_person(phone, box, 10) & ~_known_person(phone, box, 40)
    assert np.abs(a[street].astype(int) - b[street].astype(int)).mean() < 4


def test_compression_keeps_landmarks(phone, tmp_path):
    """The same clip near-lossless, with the crop the compressed run chose: landmarks agree."""
    meta = json.loads(Path(phone["out"], "subject.json").read_text())["metadata"]["preprocess"]
    clean = media.write_video(str(tmp_path / "clean.mp4"), phone["frames"], FPS)
    out = pipeline.preprocess(
        pipeline.Clip(clean, phone["speech"]),
        str(tmp_path / "clean"),
        fps=FPS,
        size=SIZE,
        crop=tuple(meta["crop"]),
        workers=1,
        progress=False,
        log=None,
    )
    a = np.load(os.path.join(out, "landmarks.npy"))
    b = np.load(os.path.join(phone["out"], "landmarks.npy"))
    face_w = np.ptp(a[:, :, 0], axis=1).mean()
    err = np.linalg.norm(a[:, :, :2] - b[:, :, :2], axis=-1).mean(1) / face_w
    print(f"compressed vs clean: mean {err.mean():.2%}, p95 {np.percentile(err, 95):.2%}")
    assert err.mean() < COMPRESSED_LM_MEAN and np.percentile(err, 95) < COMPRESSED_LM_P95


def test_face_below_the_minimum_is_refused_in_one_line(tmp_path):
    face = 0.75 * checks.MIN_FACE_PX
    frames, _ = media.phone_frames(60, face_px=face)
    video = media.write_video(str(tmp_path / "far.mp4"), frames, FPS, media.tone(60 / FPS))
    out = str(tmp_path / "subj")
    proc = _cli(f"--video={video}", f"--out={out}")
    line = _assert_one_line_refusal(proc, out, f"at least {checks.MIN_FACE_PX} px", "record closer")
    width = re.search(r"the face is (\d+) px wide", line)
    assert "no face found" in line or abs(int(width.group(1)) - face) <= FACE_PX_TOL, line


def test_no_audio_track_without_audio_flag_is_refused_in_one_line(phone, tmp_path):
    out = str(tmp_path / "subj")
    _assert_one_line_refusal(
        _cli(f"--video={phone['video']}", f"--out={out}"), out, "no audio track", "--audio=FILE"
    )


def _main_exit(**flags) -> str:
    """experiments.preprocess.main in this process: the message it exits with (one line)."""
    from absl import flags as absl_flags
    from absl.testing import flagsaver

    cli = import_tool("preprocess")

    absl_flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(**flags), pytest.raises(SystemExit) as e:
        cli.main([])
    return str(e.value.code)


def test_bad_flag_values_are_one_line(phone, tmp_path):
    """Through the CLI once (exit status, stderr); the other values through main() in-process."""
    out = str(tmp_path / "subj")
    _assert_one_line_refusal(
        _cli(f"--video={phone['video']}", f"--out={out}", "--size=-3"), out, "--size must be"
    )
    afile = tmp_path / "afile"
    afile.write_text("")
    cases = [
        ({"video": f"{tmp_path}/none.mp4"}, "none.mp4: no such file"),
        ({"out": str(afile)}, f"--out={afile} is a file, not a folder"),
        ({"fps": 0.0}, "--fps must be in (0, 120], got 0"),
        ({"workers": 0}, "--workers must be at least 1"),
        ({"max_missing": 1.5}, "--max_missing must be in [0, 1)"),
        ({"crop": "1,2,3"}, "crop must be 'auto' or 'x,y,w,h'"),
        ({"crop": "0,0,20,30"}, "crop window must be square"),
    ]
    for bad, needle in cases:
        msg = _main_exit(**{"video": phone["video"], "out": out, **bad})
        assert msg.startswith("preprocess: ") and needle in msg and "\n" not in msg, msg
    assert not os.path.exists(out) and not os.path.exists(out + pipeline.WORK_SUFFIX)
