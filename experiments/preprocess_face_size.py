"""How small may the face be? Preprocessing of the synthetic subject downscaled step by step.

    python -m experiments.preprocess_face_size [--widths=128,96,72,56,48,40,32,24] [--bpp=0.08]

The synthetic subject (256², head motion, known landmarks, poses and masks) is downscaled so that
its face (face-mesh box width) is W px, written as an mp4 (near-lossless, or at --bpp bits per
pixel and frame, the bitrate of a phone or messenger clip at that resolution), and
preprocessed at full frame back to 256² (so coordinates agree with the truth), with the face-size
check off. Per W: landmark error (mean, as % of the true face width), mouth-opening correlation
(inner-lip gap 13-14 against the truth's), head-rotation error (degrees, after the one fixed
rotation between the two world frames), IoU of the face and mouth masks, and the frames where
MediaPipe lost the face. checks.MIN_FACE_PX is chosen from this table (README).
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
from absl import flags

from experiments import cli

_WIDTHS = flags.DEFINE_list("widths", "128,96,72,56,48,40,32,24", "Face widths to try (px).")
_BPP = flags.DEFINE_float("bpp", 0.0, "Bits per pixel per frame (phones: ~0.05-0.1); 0 = CRF 12.")
_SEED = flags.DEFINE_integer("seed", 3, "Synthetic subject seed.")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _rotation_error(truth, est) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    n = len(truth)
    r_t = np.stack([truth.viewmat(i)[:3, :3] for i in range(n)]).astype(np.float64)
    r_e = np.stack([est.viewmat(i)[:3, :3] for i in range(n)]).astype(np.float64)
    q = Rotation.from_matrix(np.einsum("nji,njk->nik", r_t, r_e)).mean().as_matrix()
    return np.degrees(Rotation.from_matrix(r_t @ q @ np.swapaxes(r_e, 1, 2)).magnitude())


def _encode(path: str, frames: np.ndarray, fps: float, wav: np.ndarray, bitrate) -> str:
    """(T, S, S, 3) uint8 frames + 16 kHz audio → H.264/AAC mp4 (CRF 12, or the bitrate)."""
    import subprocess

    import soundfile

    from ua3dtalk_jax import ffmpeg

    _, h, w, _ = frames.shape
    soundfile.write(path + ".wav", wav, 16000)
    cmd = [
        ffmpeg.exe(),
        "-v",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        f"{fps}",
        "-i",
        "-",
        "-i",
        path + ".wav",
        "-c:a",
        "aac",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
    ]
    cmd += (
        ["-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate] if bitrate else ["-crf", "12"]
    )
    subprocess.run(cmd + [path], input=frames.tobytes(), check=True, capture_output=True)
    return path


def measure(truth, frames, wav, width: float, tmp: str, bpp: float) -> dict:
    """One row of the table: the truth's frames downscaled to a `width`-px face, preprocessed."""
    import cv2

    from ua3dtalk_jax.data import Subject
    from ua3dtalk_jax.preprocess import checks, pipeline

    size = truth.size[0]
    lms_t = np.load(os.path.join(truth.path, "landmarks.npy"))
    face_t = np.ptp(lms_t[:, :, 0], axis=1).mean()
    side = max(16, round(size * width / face_t / 2) * 2)
    small = np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in frames])
    bitrate = f"{bpp * side * side * truth.fps / 1000:.0f}k" if bpp else None
    video = _encode(os.path.join(tmp, f"w{width:g}.mp4"), small, truth.fps, wav, bitrate)
    min_face, checks.MIN_FACE_PX = checks.MIN_FACE_PX, 0
    try:
        out = pipeline.preprocess(
            video,
            os.path.join(tmp, f"w{width:g}"),
            fps=truth.fps,
            size=size,
            crop=(0, 0, side, side),
            workers=1,
            progress=False,
            max_missing=0.5,
            log=None,
        )
    except ValueError as e:
        return {"width": width, "side": side, "error": str(e)}
    finally:
        checks.MIN_FACE_PX = min_face
    est = Subject.open(out)
    lms_e = np.load(os.path.join(out, "landmarks.npy"))
    err = np.linalg.norm(lms_t[:, :, :2] - lms_e[:, :, :2], axis=-1).mean(1) / face_t
    gap_t, gap_e = (np.linalg.norm(x[:, 13, :2] - x[:, 14, :2], axis=-1) for x in (lms_t, lms_e))
    ious = {"face": [], "mouth": []}
    for i in range(0, len(truth), 5):
        ft, fe = truth.frame(i), est.frame(i)
        for k, vals in ious.items():
            vals.append(_iou(ft[f"{k}_mask"].astype(bool), fe[f"{k}_mask"].astype(bool)))
    with open(os.path.join(out, "subject.json")) as f:
        meta = json.load(f)["metadata"]["preprocess"]
    return {
        "width": width,
        "side": side,
        "lm_err_pct": 100 * float(err.mean()),
        "lm_err_p95_pct": 100 * float(np.percentile(err, 95)),
        "mouth_corr": float(np.corrcoef(gap_t, gap_e)[0, 1]),
        "rot_err_deg": float(_rotation_error(truth, est).mean()),
        "face_iou": float(np.mean(ious["face"])),
        "mouth_iou": float(np.mean(ious["mouth"])),
        "lost": meta["interpolated"] or "-",
    }


def main(argv):
    del argv
    import soundfile

    from ua3dtalk_jax.data import Subject
    from ua3dtalk_jax.data.synthetic import generate

    with tempfile.TemporaryDirectory() as tmp:
        truth_dir = generate.generate_subject(
            os.path.join(tmp, "truth"),
            seed=_SEED.value,
            size=256,
            fps=25,
            seconds_train=4.0,
            seconds_test=2.0,
            head_motion=True,
            workers=1,
        )
        truth = Subject.open(truth_dir)
        frames = np.stack([truth.frame(i, ["image"])["image"] for i in range(len(truth))])
        wav, _ = soundfile.read(os.path.join(truth_dir, "aud.wav"), dtype="float32")
        rate = f"{_BPP.value:g} bit/px" if _BPP.value else "CRF 12"
        print(f"{len(truth)} frames; video {rate}")
        head = "width side  lm_err%  p95%  mouth_r  rot_deg  face_iou  mouth_iou  lost"
        print(head)
        for w in _WIDTHS.value:
            r = measure(truth, frames, wav, float(w), tmp, _BPP.value)
            if "error" in r:
                print(f"{r['width']:5.0f} {r['side']:4d}  refused: {r['error']}")
                continue
            print(
                f"{r['width']:5.0f} {r['side']:4d}  {r['lm_err_pct']:7.2f}"
                f" {r['lm_err_p95_pct']:5.2f}  {r['mouth_corr']:7.3f}  {r['rot_err_deg']:7.2f}  {r['face_iou']:8.3f}"
                f"  {r['mouth_iou']:9.3f}  {r['lost']}",
                flush=True,
            )


if __name__ == "__main__":
    cli.run(main)
