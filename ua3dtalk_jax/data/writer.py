"""SubjectWriter: streams frames into the TalkingGaussian layout plus our files (see `layout.py`).

Images go to disk as they arrive; per-frame vectors (expression coefficients, dense landmarks) are
appended to raw `.part` files and turned into `.npy` at `finish`, so nothing large is held in memory.
The directory is marked `.ua3d_incomplete` from construction until `finish` has written
subject.json (last, atomically); `Subject.open` refuses a marked directory, so a crashed run is
never mistaken for a finished subject.

Masks given as a dict are colour-coded into parsing/<i>.png with `layout.MASK_PRECEDENCE`; "teeth"
also goes to teeth_mask/<i>.npy. Without 68-point landmarks the lip box and mouth opening are
derived from the mouth mask (`mouth_boxes.npy`), a coarser stand-in for TalkingGaussian's
landmark-based values.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings

import cv2
import numpy as np
import soundfile

from ua3dtalk_jax.audio import features as audio_features
from ua3dtalk_jax.audio.cache import save_cached
from ua3dtalk_jax.data import layout
from ua3dtalk_jax.data.cameras import c2w_gl_from_viewmat
from ua3dtalk_jax.data.subject_audio import MAX_AV_MISMATCH_S, f_audio_cache_params
from ua3dtalk_jax.types import EMOTIONS

MOUTH_BOX_MARGIN = 0.5  # the outer lips extend ~half the inner-mouth size beyond the mouth mask
_RESERVED = {"exp_coeffs", "landmarks", "mouth_boxes", "aud_mel", "aud_ds", "aud_hu", "aud_eo"}


class SubjectWriter:
    """Writes one subject directory frame by frame.

    Args:
      out_dir: target directory (created; must be empty unless overwrite=True).
      fps: video frame rate.
      height, width: frame size H, W.
      focal: fx = fy in pixels; the principal point is the image centre.
      image_ext: ".jpg" (the layout's default, lossy) or ".png" (lossless) for gt_imgs.
      jpeg_quality: quality of .jpg frames.
      source: free-form provenance string stored in subject.json.
      overwrite: clear a non-empty out_dir first.
    """

    def __init__(
        self,
        out_dir: str,
        *,
        fps: float,
        height: int,
        width: int,
        focal: float,
        image_ext: str = ".jpg",
        jpeg_quality: int = 95,
        source: str = "unknown",
        overwrite: bool = False,
    ):
        if image_ext not in (".jpg", ".png"):
            raise ValueError(f"image_ext must be '.jpg' or '.png', got {image_ext!r}")
        self.path = os.fspath(out_dir)
        if os.path.isdir(self.path) and os.listdir(self.path):
            if not overwrite:
                raise FileExistsError(f"{self.path}: not empty (pass overwrite=True to replace)")
            shutil.rmtree(self.path)
        os.makedirs(self.path, exist_ok=True)
        open(self._p(layout.INCOMPLETE), "w").close()
        for d in (layout.ORI_DIR, layout.GT_DIR, layout.PARSING_DIR, layout.TORSO_DIR):
            os.makedirs(self._p(d), exist_ok=True)
        self.fps, self.size, self.focal = float(fps), (int(height), int(width)), float(focal)
        self.image_ext, self._jpeg_quality, self._source = image_ext, int(jpeg_quality), source
        self._n = 0
        self._c2w, self._aus, self._emotions, self._levels = [], [], [], []
        self._lms_frames, self._teeth_frames, self._mouth_boxes = set(), set(), []
        self._rows = {}  # name -> (raw file, row shape, frames written)
        self._rows_done = set()
        self._metadata, self._arrays = {}, []
        self._has_background = self._has_audio = False

    def _p(self, *parts) -> str:
        return os.path.join(self.path, *parts)

    def __len__(self) -> int:
        return self._n

    def add_frame(
        self,
        image,
        *,
        viewmat,
        masks=None,
        parsing=None,
        gt_image=None,
        torso_rgba=None,
        landmarks68=None,
        landmarks=None,
        aus=None,
        emotion=None,
        intensity=None,
        exp=None,
    ) -> int:
        """Writes frame i = len(self) and returns i.

        Args:
          image: (H, W, 3) uint8 RGB frame (ori_imgs).
          viewmat: (4, 4) world→camera, OpenCV.
          masks: dict of (H, W) bool among face, mouth, neck, torso, hair, teeth; or
          parsing: (H, W, 3) uint8 RGB parsing image in the layout's colour code.
          gt_image: (H, W, 3) uint8 supervision target; defaults to image.
          torso_rgba: (H, W, 4) uint8; defaults to image on neck | torso pixels, alpha 255 there.
          landmarks68: (68, 2) x=col, y=row (ori_imgs/<i>.lms); all frames or none.
          landmarks: (L, 2) dense landmarks (landmarks.npy); all frames or none.
          aus: {"AU45_r": value, ...} OpenFace intensities (missing ones are 0).
          emotion: a name from EMOTIONS or None; intensity: 1-3 (default 1 when labelled).
          exp: (E,) f_gt-exp coefficients; all frames or none.
        """
        i, (h, w) = self._n, self.size
        image = self._check_image(image, 3, "image")
        if (masks is None) == (parsing is None):
            raise ValueError("add_frame: give exactly one of masks= or parsing=")
        if parsing is None:
            parsing = layout.encode_parsing(masks, h, w)
        parsing = self._check_image(parsing, 3, "parsing")
        if masks is not None and "teeth" in masks:
            np.save(self._teeth_path(i), np.asarray(masks["teeth"], bool))
            self._teeth_frames.add(i)
        decoded = layout.decode_parsing(parsing, np.zeros((h, w), bool))
        if torso_rgba is None:
            body = decoded["neck_mask"] | decoded["torso_mask"]
            torso_rgba = np.concatenate([image * body[..., None], 255 * body[..., None]], -1)
        torso_rgba = self._check_image(np.asarray(torso_rgba, np.uint8), 4, "torso_rgba")
        self._imwrite(self._p(layout.ORI_DIR, f"{i}.jpg"), image)
        gt = image if gt_image is None else self._check_image(gt_image, 3, "gt_image")
        self._imwrite(self._p(layout.GT_DIR, f"{i}{self.image_ext}"), gt)
        self._imwrite(self._p(layout.PARSING_DIR, f"{i}.png"), parsing)
        self._imwrite(self._p(layout.TORSO_DIR, f"{i}.png"), torso_rgba)
        if landmarks68 is not None:
            lms = np.asarray(landmarks68, np.float64)
            if lms.shape != (68, 2):
                raise ValueError(f"landmarks68 must be (68, 2), got {lms.shape}")
            np.savetxt(self._p(layout.ORI_DIR, f"{i}.lms"), lms, "%f")
            self._lms_frames.add(i)
        self._mouth_boxes.append(_mouth_box(decoded["mouth_mask"], self._mouth_boxes))
        self._aus.append(_au_row(aus))
        self._emotions.append(_check_emotion(emotion))
        self._levels.append(_check_intensity(emotion, intensity))
        self._append_row(layout.EXP_NPY, exp, 1)
        self._append_row(layout.LANDMARKS_NPY, landmarks, 2)
        self._c2w.append(c2w_gl_from_viewmat(np.asarray(viewmat, np.float64)).tolist())
        self._n += 1
        return i

    def set_background(self, bg) -> None:
        """Writes bc.jpg from an (H, W, 3) uint8 RGB background."""
        self._imwrite(self._p(layout.BACKGROUND), self._check_image(bg, 3, "background"))
        self._has_background = True

    def set_audio(self, wav, sample_rate: int) -> None:
        """Resamples (S,) or (S, C) audio at `sample_rate` to 16 kHz mono; writes aud.wav (PCM16)."""
        wav16 = audio_features.load_audio(wav, sample_rate)
        if np.abs(wav16).max(initial=0) > 1:
            warnings.warn(f"{self._p(layout.WAV)}: samples beyond ±1 clipped to 16-bit range")
        soundfile.write(self._p(layout.WAV), np.clip(wav16, -1, 1), 16000, subtype="PCM_16")
        self._has_audio = True

    def add_metadata(self, **fields) -> None:
        """Stores JSON-serialisable fields under "metadata" in subject.json."""
        json.dumps(fields)  # fail now, not at finish
        self._metadata.update(fields)

    def add_array(self, name: str, array) -> None:
        """Saves a subject-level array as <name>.npy (e.g. a phoneme timeline, an expression basis)."""
        if not name.isidentifier() or name in _RESERVED:
            raise ValueError(f"add_array: invalid or reserved name {name!r}")
        np.save(self._p(f"{name}.npy"), np.asarray(array))
        self._arrays.append(name)

    def finish(self, val_start: int | None = None) -> str:
        """Writes the json, csv and npy files, audio features and finally subject.json.

        Args:
          val_start: first validation frame; None follows the layout's rule int(N·10/11).

        Returns:
          The directory path.
        """
        n = self._n
        if n == 0:
            raise ValueError(f"{self.path}: no frames added")
        if not self._has_background:
            raise ValueError(f"{self._p(layout.BACKGROUND)}: set_background was never called")
        split = layout.split_point(n) if val_start is None else int(val_start)
        if not 0 <= split <= n:
            raise ValueError(f"val_start {split} outside 0..{n}")
        for name, ids in (("train", range(split)), ("val", range(split, n))):
            frames = [{"img_id": i, "aud_id": i, "transform_matrix": self._c2w[i]} for i in ids]
            doc = {"focal_len": self.focal, "cx": self.size[1] / 2, "cy": self.size[0] / 2}
            with open(self._p(layout.TRANSFORMS[name]), "w") as f:
                json.dump({**doc, "frames": frames}, f, indent=2, separators=(",", ": "))
        layout.write_au_csv(self._p(layout.AU_CSV), np.array(self._aus), self.fps)
        if any(self._emotions):
            layout.write_emotion_csv(self._p(layout.EMOTION_CSV), self._emotions, self._levels)
        if self._teeth_frames:
            for i in set(range(n)) - self._teeth_frames:
                np.save(self._teeth_path(i), np.zeros(self.size, bool))
        has_lms = self._all_or_none("landmarks68", self._lms_frames)
        if not has_lms:
            np.save(self._p(layout.MOUTH_BOXES), np.array(self._mouth_boxes, np.int32))
        for name in list(self._rows):
            self._finish_rows(name)
        audio = {}
        if self._has_audio:
            audio = {"n_mels": audio_features.F_AUDIO_DIM, "feature": layout.MEL_FEATURE + ".npy"}
            self._write_audio_features(n)
        info = {
            "format": layout.FORMAT_NAME,
            "version": layout.FORMAT_VERSION,
            "fps": self.fps,
            "height": self.size[0],
            "width": self.size[1],
            "focal": self.focal,
            "num_frames": n,
            "val_start": split,
            "image_ext": self.image_ext,
            "source": self._source,
            "emotions": list(EMOTIONS),
            "files": {
                "lms": has_lms,
                "teeth": bool(self._teeth_frames),
                "emotion": any(self._emotions),
                "exp": layout.EXP_NPY in self._rows_done,
                "landmarks": layout.LANDMARKS_NPY in self._rows_done,
                "audio": self._has_audio,
            },
            "audio": audio,
            "arrays": self._arrays,
            "metadata": self._metadata,
        }
        tmp = self._p(layout.SUBJECT_JSON + ".tmp")
        with open(tmp, "w") as f:
            json.dump(info, f, indent=1)
        os.replace(tmp, self._p(layout.SUBJECT_JSON))
        os.remove(self._p(layout.INCOMPLETE))
        return self.path

    # ---- helpers ----------------------------------------------------------------------------

    def _teeth_path(self, i: int) -> str:
        os.makedirs(self._p(layout.TEETH_DIR), exist_ok=True)
        return self._p(layout.TEETH_DIR, f"{i}.npy")

    def _check_image(self, img, channels: int, what: str) -> np.ndarray:
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.shape != (*self.size, channels):
            raise ValueError(
                f"{what} must be {(*self.size, channels)} uint8, got {img.shape} {img.dtype}"
            )
        return img

    def _imwrite(self, path: str, rgb: np.ndarray) -> None:
        code = cv2.COLOR_RGBA2BGRA if rgb.shape[-1] == 4 else cv2.COLOR_RGB2BGR
        params = [cv2.IMWRITE_JPEG_QUALITY, self._jpeg_quality] if path.endswith(".jpg") else []
        if not cv2.imwrite(path, cv2.cvtColor(np.ascontiguousarray(rgb), code), params):
            raise OSError(f"{path}: could not write image")

    def _append_row(self, name: str, value, ndim: int) -> None:
        if value is None:
            return
        row = np.asarray(value, np.float32)
        if row.ndim != ndim:
            raise ValueError(f"{name}: per-frame value must be {ndim}-D, got shape {row.shape}")
        if name not in self._rows:
            part = open(self._p(name + ".part"), "wb")  # noqa: SIM115 (open until finish)
            self._rows[name] = (part, row.shape, set())
        f, shape, frames = self._rows[name]
        if row.shape != shape:
            raise ValueError(f"{name}: frame {self._n} has shape {row.shape}, earlier {shape}")
        f.write(row.tobytes())
        frames.add(self._n)

    def _finish_rows(self, name: str) -> None:
        f, shape, frames = self._rows.pop(name)
        f.close()
        self._all_or_none(name, frames)
        part = self._p(name + ".part")
        rows = np.memmap(part, np.float32, "r", shape=(self._n, *shape))
        np.save(self._p(name), rows)
        del rows
        os.remove(part)
        self._rows_done.add(name)

    def _all_or_none(self, what: str, frames: set) -> bool:
        if frames and len(frames) != self._n:
            first = min(set(range(self._n)) - frames)
            raise ValueError(f"{self.path}: {what} given for some frames but not frame {first}")
        return bool(frames)

    def _write_audio_features(self, n: int) -> None:
        wav_path = self._p(layout.WAV)
        wav = audio_features.load_audio(wav_path)
        diff = len(wav) / audio_features.SAMPLE_RATE - n / self.fps
        if abs(diff) > MAX_AV_MISMATCH_S:
            raise ValueError(
                f"{wav_path}: audio lasts {len(wav) / 16000:.2f} s but {n} frames at {self.fps:g} "
                f"fps last {n / self.fps:.2f} s"
            )
        if abs(diff) * self.fps >= 1:
            warnings.warn(f"{wav_path}: audio and video differ by {diff:+.3f} s")
        feats = audio_features.f_audio(wav, self.fps, n)
        params = f_audio_cache_params(self.fps, n, audio_features.F_AUDIO_DIM)
        save_cached(self.path, layout.MEL_FEATURE, feats, params, wav_path)


def _au_row(aus) -> list:
    row = [0.0] * len(layout.AU_R)
    for key, value in (aus or {}).items():
        name = key.strip()
        name = name if name.endswith("_r") else name + "_r"
        if name not in layout.AU_R:
            raise ValueError(f"unknown action unit {key!r}; known {layout.AU_R}")
        row[layout.AU_R.index(name)] = float(value)
    return row


def _check_emotion(emotion):
    if emotion is None:
        return None
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion label {emotion!r}; known {EMOTIONS}")
    return emotion


def _check_intensity(emotion, intensity) -> int:
    if emotion is None:
        if intensity is not None:
            raise ValueError("intensity given without an emotion label")
        return 0
    level = 1 if intensity is None else int(intensity)
    if not 1 <= level <= 3:
        raise ValueError(f"emotion intensity must be 1-3, got {intensity}")
    return level


def _mouth_box(mouth: np.ndarray, previous: list) -> list:
    """[rmin, rmax, cmin, cmax, opening] from a mouth mask (the previous box when it is empty)."""
    rows, cols = np.nonzero(mouth)
    if len(rows) == 0:
        if previous:
            return previous[-1][:4] + [0]
        h, w = mouth.shape
        half = max(h, w) // 16
        return [h // 2 - half, h // 2 + half, w // 2 - half, w // 2 + half, 0]
    rmin, rmax, cmin, cmax = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
    rc, cc = (rmin + rmax) // 2, (cmin + cmax) // 2
    half = int(max(rmax - rmin, cmax - cmin) // 2 * (1 + MOUTH_BOX_MARGIN)) + 1
    return [rc - half, rc + half, cc - half, cc + half, rmax - rmin]
