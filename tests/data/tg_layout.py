"""Writes a tiny TalkingGaussian / ER-NeRF preprocessed directory for the loader tests.

Deliberately independent of `ua3dtalk_jax.data.writer`: files are produced the way ER-NeRF's
`process.py` (save_transforms: inverse head pose from Euler angles, 10/11 split), its BFM-2009
face tracker (track_params.pt: a torch dict of id [1, 100], exp [N, 79], euler [N, 3], trans [N, 3]
in the tracker's units = 10 × the json's, focal [1]; row k = img_id k), BiSeNet (parsing PNG, RGB
colour code), OpenFace (au.csv with leading-space column names), FAN (.lms text) and EasyPortrait
(teeth .npy) do, using PIL rather than cv2 for the images. Returns the ground truth.
"""

from __future__ import annotations

import json
import os

import numpy as np
import soundfile
from PIL import Image

from tests.data.torch_writer import write_torch_file

H, W = 40, 48  # non-square on purpose: catches row/column swaps
FOCAL = 55.0
BFM_ID, BFM_EXP = 100, 79  # BFM-2009 identity / expression coefficients of the tracker
SAMPLE_RATE = 16000
AU_NAMES = ["AU01_r", "AU02_r", "AU04_r", "AU05_r", "AU06_r", "AU07_r", "AU09_r", "AU10_r"]
AU_NAMES += ["AU12_r", "AU14_r", "AU15_r", "AU17_r", "AU20_r", "AU23_r", "AU25_r", "AU26_r"]
AU_NAMES += ["AU45_r"]


def euler2rot(euler):
    """ER-NeRF's euler2rot, transcribed: each matrix is a torch.cat of *columns* along dim 2."""
    th, ph, ps = euler
    c, s = np.cos, np.sin
    rot_x = np.stack([[1, 0, 0], [0, c(th), s(th)], [0, -s(th), c(th)]], 1)
    rot_y = np.stack([[c(ph), 0, -s(ph)], [0, 1, 0], [s(ph), 0, c(ph)]], 1)
    rot_z = np.stack([[c(ps), s(ps), 0], [-s(ps), c(ps), 0], [0, 0, 1]], 1)
    return rot_x @ rot_y @ rot_z


def _regions(i: int):
    """Parsing regions of frame i: the mouth opens and closes with i."""
    rr, cc = np.mgrid[:H, :W]
    parsing = np.full((H, W, 3), 255, np.uint8)  # background white
    parsing[rr >= 32] = (255, 0, 0)  # torso red
    parsing[(rr >= 26) & (rr < 32) & (abs(cc - 24) < 8)] = (0, 255, 0)  # neck green
    face = ((rr - 15) / 11.0) ** 2 + ((cc - 24) / 9.0) ** 2 <= 1
    parsing[face] = (0, 0, 255)  # face blue
    parsing[(rr < 6) & (abs(cc - 24) < 10)] = (0, 0, 0)  # hair black
    mouth = (rr >= 19) & (rr < 20 + i % 3) & (abs(cc - 24) < 4)
    parsing[mouth] = (100, 100, 100)  # mouth interior grey
    teeth = mouth & (rr == 19) & (abs(cc - 24) < 2)
    parsing[teeth & (cc == 23)] = (0, 0, 255)  # one teeth pixel labelled face, one mouth
    return parsing, teeth


def _resized(a: np.ndarray, size: tuple) -> np.ndarray:
    """Nearest-neighbour resize of a (H, W[, 3]) mask drawn at (H, W) to `size`."""
    if size == (H, W):
        return a
    img = Image.fromarray(a.astype(np.uint8) if a.dtype == bool else a)
    out = np.asarray(img.resize(size[::-1], Image.NEAREST))
    return out.astype(bool) if a.dtype == bool else out


def speech_like(n_samples: int, rng) -> np.ndarray:
    """Voiced syllables (~4 per second, pauses between): a harmonic source with a gliding 100-200
    Hz pitch, shaped by two formants that move per syllable, plus breath noise; (S,) float."""
    t = np.arange(n_samples) / SAMPLE_RATE
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    syllable = np.floor(t * 4).astype(int)
    formants = rng.uniform([300, 900], [800, 2400], (syllable.max() + 1, 2))[syllable]
    out = np.zeros(n_samples)
    for k in range(1, 25):
        gain = sum(np.exp(-(((k * f0 - f) / 120) ** 2)) for f in formants.T) + 0.05
        out += gain * np.sin(k * phase) / k
    envelope = np.clip(np.sin(np.pi * (t * 4 % 1)), 0, None) ** 0.5 * (syllable % 5 != 4)
    out = out * envelope + 0.01 * rng.normal(size=n_samples)
    return 0.3 * out / np.abs(out).max()


def write_tg_subject(
    root: str,
    n: int = 12,
    *,
    wav: bool = True,
    aud_ds: bool = True,
    aud_hu: bool = False,
    aud_eo: bool = False,
    track: bool = True,
    size: tuple = (H, W),
    seed=0,
):
    """Writes a TalkingGaussian-layout subject with n frames at 25 fps; returns the truth dict.

    Args:
      wav, aud_ds, track: write aud.wav (speech-like), aud_ds.npy, track_params.pt.
      aud_hu, aud_eo: write aud_hu.npy (HuBERT [n, 2, 1024], as TalkingGaussian's hubert.py
        pairs its 50 Hz hidden states) and aud_eo.npy (ER-NeRF's wav2vec esperanto [n, 16, 44]).
      size: (height, width) of the frames; the regions and landmarks drawn at (H, W) are scaled.
    """
    h, w = size
    rng = np.random.default_rng(seed)
    for d in ("ori_imgs", "gt_imgs", "parsing", "torso_imgs", "teeth_mask"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    euler = rng.uniform(-0.2, 0.2, (n, 3))
    trans = np.concatenate([rng.uniform(-0.5, 0.5, (n, 2)), rng.uniform(-12, -8, (n, 1))], 1) / 10
    split = int(n * 10 / 11)
    for name, ids in (("train", range(split)), ("val", range(split, n))):
        frames = []
        for i in ids:
            rot_inv = euler2rot(euler[i]).T
            pose = np.eye(4)
            pose[:3, :3], pose[:3, 3] = rot_inv, -rot_inv @ trans[i]
            frames.append({"img_id": i, "aud_id": i, "transform_matrix": pose.tolist()})
        doc = {"focal_len": FOCAL, "cx": w / 2.0, "cy": h / 2.0, "frames": frames}
        with open(os.path.join(root, f"transforms_{name}.json"), "w") as f:
            json.dump(doc, f, indent=2, separators=(",", ": "))

    bc = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(bc).save(os.path.join(root, "bc.jpg"), quality=100)
    bc = np.asarray(Image.open(os.path.join(root, "bc.jpg")).convert("RGB"))
    truth = {"euler": euler, "trans": trans, "bc": bc, "parsing": [], "teeth": [], "torso": []}
    truth["lms"], truth["gt"] = [], []
    for i in range(n):
        parsing, teeth = (_resized(a, size) for a in _regions(i))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(img).save(os.path.join(root, "ori_imgs", f"{i}.jpg"), quality=100)
        Image.fromarray(img).save(os.path.join(root, "gt_imgs", f"{i}.jpg"), quality=100)
        Image.fromarray(parsing).save(os.path.join(root, "parsing", f"{i}.png"))
        np.save(os.path.join(root, "teeth_mask", f"{i}.npy"), teeth)
        torso = np.zeros((h, w, 4), np.uint8)
        body = (parsing == (255, 0, 0)).all(-1) | (parsing == (0, 255, 0)).all(-1)
        torso[body, :3] = rng.integers(0, 256, (body.sum(), 3))
        torso[body, 3] = 255
        torso[25, 10:20] = (200, 100, 50, 128)  # semi-transparent inpainting edge
        Image.fromarray(torso, "RGBA").save(os.path.join(root, "torso_imgs", f"{i}.png"))
        lms = np.stack([rng.uniform(5, 43, 68), rng.uniform(5, 35, 68)], 1)  # x=col, y=row
        lms[60:68, 1] = 20 + rng.uniform(-1, 1, 8) * (1 + i % 4)
        lms = lms * (w / W, h / H)
        np.savetxt(os.path.join(root, "ori_imgs", f"{i}.lms"), lms, "%f")
        truth["parsing"].append(parsing)
        truth["teeth"].append(teeth)
        truth["torso"].append(torso)
        truth["lms"].append(np.loadtxt(os.path.join(root, "ori_imgs", f"{i}.lms")))
        truth["gt"].append(np.asarray(Image.open(os.path.join(root, "gt_imgs", f"{i}.jpg"))))

    aus = np.round(rng.uniform(0, 3, (n, len(AU_NAMES))), 2)
    aus[0, -1], aus[1, -1] = 2.7, -0.3  # AU45 beyond [0, 2] on both sides
    truth["aus"] = dict(zip(AU_NAMES, aus.T))
    header = ["frame", "face_id", "timestamp", "confidence", "success"] + AU_NAMES
    with open(os.path.join(root, "au.csv"), "w") as f:
        f.write(", ".join(header) + "\n")
        for i in range(n):
            vals = [f"{i + 1}", "0", f"{i * 0.04:.3f}", "0.98", "1"] + [f"{v:.2f}" for v in aus[i]]
            f.write(", ".join(vals) + "\n")

    for name, on, shape in (
        ("aud_ds", aud_ds, (16, 29)),
        ("aud_hu", aud_hu, (2, 1024)),
        ("aud_eo", aud_eo, (16, 44)),
    ):
        if on:  # DeepSpeech logits, HuBERT hidden states, wav2vec logits: float32 as saved
            truth[name] = rng.normal(size=(n, *shape)).astype(np.float32)
            np.save(os.path.join(root, f"{name}.npy"), truth[name])
    if wav:
        truth["wav"] = speech_like(int(n / 25 * SAMPLE_RATE), rng)
        soundfile.write(os.path.join(root, "aud.wav"), truth["wav"], SAMPLE_RATE)
    if track:  # face_tracker.py's torch.save of detached CPU float32 tensors
        truth["exp"] = rng.normal(0, 0.5, (n, BFM_EXP)).astype(np.float32)
        params = {
            "id": rng.normal(0, 0.5, (1, BFM_ID)).astype(np.float32),
            "exp": truth["exp"],
            "euler": euler.astype(np.float32),
            "trans": (trans * 10).astype(np.float32),
            "focal": np.array([FOCAL], np.float32),
        }
        write_torch_file(os.path.join(root, "track_params.pt"), params)
    return truth


def write_ua_extras(root: str, n: int, seed: int = 4) -> dict:
    """Writes UA-3DTalk's per-frame extras (f_exp, f_tone, f_emo .pth train/val pairs, rows in
    json order) as the authors' extraction scripts save them: f_tone one (n, 64) tensor, the
    others lists of [1, D] tensors. Returns the rows {"f_exp": (n, 64), ...} float32."""
    from ua3dtalk_jax.data import layout

    rng = np.random.default_rng(seed)
    want = {
        k: rng.normal(size=(n, d)).astype(np.float32) for k, (_, _, d) in layout.UA_EXTRAS.items()
    }
    n_train = int(n * 10 / 11)
    for name, (train, val, _) in layout.UA_EXTRAS.items():
        for fname, rows in ((train, want[name][:n_train]), (val, want[name][n_train:])):
            obj = rows if name == "f_tone" else [r[None] for r in rows]
            write_torch_file(os.path.join(root, fname), obj)
    return want
