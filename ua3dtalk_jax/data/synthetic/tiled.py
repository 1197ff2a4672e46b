"""A long subject made cheaply from a short one: its frames repeated, for memory benchmarks.

`tile_subject(src, dst, n_frames)` writes a subject of `n_frames` frames whose frame k is frame
k mod n of `src` (n = len(src), in position order: the train frames, then the val frames). Image
files (ori_imgs, gt_imgs, parsing, torso_imgs, teeth_mask) are hard links to the source's (copies
where the file system refuses links), so 10,000 frames at 512² cost no disk and seconds to make.
The per-frame records are tiled the same way:

    transforms_*.json   one entry per frame (img_id = aud_id = k, the source frame's camera),
                        split by the layout's rule: train = [0, int(N·10/11)), val = the rest
    au.csv, emotion.csv, exp_coeffs.npy, landmarks.npy, mouth_boxes.npy, ori_imgs/<k>.lms
    aud.wav             the source's 1/fps-second slices of its frames, in the same order, so audio
                        and video lengths agree (aud_mel.npy is recomputed from it, as the writer
                        does); precomputed aud_ds/aud_hu/aud_eo.npy windows are tiled by row
The content is meaningless as a talking head (the clip jumps every n frames); only its sizes are
those of a long subject. The source's subject-level arrays (mesh, phonemes) are not carried.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import soundfile

from ua3dtalk_jax.audio import features as audio_features
from ua3dtalk_jax.audio import precomputed
from ua3dtalk_jax.audio.cache import save_cached
from ua3dtalk_jax.data import layout
from ua3dtalk_jax.data.cameras import c2w_gl_from_viewmat
from ua3dtalk_jax.data.subject import Subject
from ua3dtalk_jax.data.subject_audio import f_audio_cache_params
from ua3dtalk_jax.types import EMOTIONS

_FRAME_DIRS = (
    (layout.GT_DIR, None),
    (layout.PARSING_DIR, ".png"),
    (layout.TORSO_DIR, ".png"),
    (layout.TEETH_DIR, ".npy"),
)


def tile_subject(src: str, dst: str, n_frames: int, *, overwrite: bool = False) -> str:
    """Writes `dst`, a subject of `n_frames` frames tiled from the subject at `src`.

    Args:
      src: a finished subject directory (our writer's or a TalkingGaussian folder).
      dst: the new directory (must not exist unless `overwrite`).
      n_frames: N ≥ 2 (at least one train and one val frame).
    Returns:
      dst. Like the writer, the folder holds `.ua3d_incomplete` until subject.json is written.
    """
    if n_frames < 2:
        raise ValueError(f"n_frames={n_frames}: a subject needs a train and a val frame")
    s = Subject.open(src)
    if os.path.exists(dst):
        if not overwrite:
            raise FileExistsError(f"{dst}: exists (pass overwrite=True to replace)")
        shutil.rmtree(dst)
    os.makedirs(dst)
    open(os.path.join(dst, layout.INCOMPLETE), "w").close()
    n = len(s)
    pos = np.arange(n_frames) % n  # source position of each new frame
    ids = s.img_ids[pos]
    _link_frames(s, dst, ids)
    _write_transforms(s, dst, pos)
    _tile_tables(s, dst, ids)
    _tile_audio(s, dst, pos)
    shutil.copy(os.path.join(src, layout.BACKGROUND), os.path.join(dst, layout.BACKGROUND))
    info = dict(
        s.info
        or {
            "format": layout.FORMAT_NAME,
            "version": layout.FORMAT_VERSION,
            "fps": s.fps,
            "height": s.size[0],
            "width": s.size[1],
            "focal": s.focal,
            "image_ext": s.image_ext,
        }
    )
    info.update(
        num_frames=int(n_frames),
        val_start=layout.split_point(n_frames),
        arrays=[],
        source=f"tiled from {os.path.abspath(src)} ({n} frames)",
    )
    info.setdefault("files", {})["lms"] = s.has(os.path.join(layout.ORI_DIR, f"{ids[0]}.lms"))
    with open(os.path.join(dst, layout.SUBJECT_JSON), "w") as f:
        json.dump(info, f, indent=1)
    os.remove(os.path.join(dst, layout.INCOMPLETE))
    return dst


def _link(a: str, b: str) -> None:
    try:
        os.link(a, b)
    except OSError:
        shutil.copyfile(a, b)


def _link_frames(s: Subject, dst: str, ids: np.ndarray) -> None:
    for folder, ext in _FRAME_DIRS + ((layout.ORI_DIR, ".jpg"),):
        ext = ext or s.image_ext
        if not s.has(folder):
            continue
        os.makedirs(os.path.join(dst, folder), exist_ok=True)
        for k, i in enumerate(ids):
            a = os.path.join(s.path, folder, f"{i}{ext}")
            if os.path.exists(a):
                _link(a, os.path.join(dst, folder, f"{k}{ext}"))
            if folder == layout.ORI_DIR and os.path.exists(a[: -len(ext)] + ".lms"):
                _link(a[: -len(ext)] + ".lms", os.path.join(dst, folder, f"{k}.lms"))


def _write_transforms(s: Subject, dst: str, pos: np.ndarray) -> None:
    split = layout.split_point(len(pos))
    h, w = s.size
    for name, part in (("train", pos[:split]), ("val", pos[split:])):
        first = 0 if name == "train" else split
        frames = [
            {
                "img_id": first + k,
                "aud_id": first + k,
                "transform_matrix": c2w_gl_from_viewmat(
                    s.viewmat(int(p)).astype(np.float64)
                ).tolist(),
            }
            for k, p in enumerate(part)
        ]
        doc = {"focal_len": s.focal, "cx": w / 2, "cy": h / 2, "frames": frames}
        with open(os.path.join(dst, layout.TRANSFORMS[name]), "w") as f:
            json.dump(doc, f)


def _tile_tables(s: Subject, dst: str, ids: np.ndarray) -> None:
    """Tables indexed by img_id: row k of the new subject is row ids[k] of the source."""
    with open(os.path.join(s.path, layout.AU_CSV)) as f:
        lines = f.read().splitlines()
    header, rows = lines[0], [r for r in lines[1:] if r.strip()]
    with open(os.path.join(dst, layout.AU_CSV), "w") as f:
        f.write(header + "\n")
        f.writelines(rows[int(i)] + "\n" for i in ids)
    if s.has(layout.EMOTION_CSV):
        labels = [None if e < 0 else EMOTIONS[e] for e in s.emotion[ids]]
        layout.write_emotion_csv(
            os.path.join(dst, layout.EMOTION_CSV), labels, list(s.intensity[ids])
        )
    for name in (layout.EXP_NPY, layout.LANDMARKS_NPY, layout.MOUTH_BOXES):
        if s.has(name):
            np.save(os.path.join(dst, name), np.load(os.path.join(s.path, name))[ids])


def _tile_audio(s: Subject, dst: str, pos: np.ndarray) -> None:
    """aud.wav of the source frames' slices in `pos` order; precomputed windows tiled by row."""
    rate = audio_features.SAMPLE_RATE
    hop = rate / s.fps
    wav = s.wav()
    n = len(s)
    wav = np.pad(wav, (0, max(0, int(np.ceil(n * hop)) - len(wav))))
    starts = np.round(np.arange(n) * hop).astype(np.int64)
    ends = np.round((np.arange(n) + 1) * hop).astype(np.int64)
    out = np.concatenate([wav[starts[p] : ends[p]] for p in pos])
    path = os.path.join(dst, layout.WAV)
    soundfile.write(path, np.clip(out, -1, 1), rate, subtype="PCM_16")
    aud_ids = s.aud_ids[pos]
    for name in precomputed.FILES.values():
        if s.has(name):
            np.save(os.path.join(dst, name), np.load(os.path.join(s.path, name))[aud_ids])
    if s.has(layout.MEL_FEATURE + ".npy"):
        feats = audio_features.f_audio(audio_features.load_audio(path), s.fps, len(pos))
        params = f_audio_cache_params(s.fps, len(pos), audio_features.F_AUDIO_DIM)
        save_cached(dst, layout.MEL_FEATURE, feats, params, path)
