"""The Subject API: one person's preprocessed clip, read from disk frame by frame.

Reads the TalkingGaussian / ER-NeRF layout unchanged, plus our optional files (see `layout.py`).
Everything small (cameras, AUs, landmarks, labels, audio feature windows) is loaded at `open`, by
`subject_tables.py` and `subject_audio.py`; images, parsing, torso and teeth masks are read from
disk in `frame(i)`, so an hour of video never sits in memory.

Frame indices: `frame(i)` takes a position i in 0..len-1 over the frames of transforms_train.json
followed by those of transforms_val.json (for every layout we know, position == img_id). Per-frame
tables (au.csv rows, emotion.csv, exp_coeffs.npy or track_params.pt's `exp`, landmarks.npy) are
indexed by img_id; audio features by aud_id.

f_gt-exp (the Prior Extraction target, `exp`, source in `exp_source`): exp_coeffs.npy when present
(our writer's), else the `exp` [N, 79] BFM-2009 coefficients of TalkingGaussian's track_params.pt,
row k = img_id k (the expression target of the original UA-3DTalk / NeRF-3DTalker pipeline), so a
plain TalkingGaussian folder trains stage 1 unchanged; neither: E = 0.

frame(i) returns (H, W from `size`; F = `audio_dim`; Wa = `audio_window`: 16, HuBERT's 2, 1 for
[N, F] vectors — `audio.precomputed`):

    image (H,W,3) uint8        gt_imgs, the supervision target
    viewmat (4,4) f32, K (3,3) f32   world→camera OpenCV, pixel intrinsics (see cameras.py)
    aud (8,Wa,F) f32           windows of frames i-4..i+3, zeros past either end (AudioAttNet input)
    au_exp (6,) f32            [AU01, AU04, AU05, AU06, AU07, clip(AU45, 0, 2)]
    blink f32                  clip(AU45, 0, 2) / 2
    au25 f32                   AU25 clipped to its 95th percentile (`au25_stats`: p25, p50, p75, max)
    face_mask, mouth_mask, hair_mask, head_mask, neck_mask, torso_mask, teeth_mask  (H,W) bool
    background (H,W,3) uint8   torso RGBA composited over bc.jpg
    lips_rect (4,) i32         [rmin, rmax, cmin, cmax] square around landmarks 48-59
    mouth_open f32             inner-lip opening (landmarks 60-67); `mouth_bounds` = (min, max)
                               over the train split, as TalkingGaussian computes it per json
    emotion i32, intensity i32 EMOTIONS index and 1-3; −1 and 0 when unlabelled
    exp (E,) f32               f_gt-exp (above); E = `exp_dim`: 79 from track_params.pt, 0 (an
                               empty array) without either file
    landmarks (68,2) f32       x = col, y = row (zeros when the subject has no .lms files)
    dense_landmarks (L,2) f32  only when landmarks.npy exists
    index i32                  i

Plain TalkingGaussian dirs have no fps on disk: 25 (ER-NeRF's required rate) unless given.
UA-3DTalk's precomputed per-frame extras (f_exp, f_tone, f_emo .pth files), when a dir has them,
come from `ua_extras()`, not from `frame(i)`.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from ua3dtalk_jax.audio import features as audio_features
from ua3dtalk_jax.audio.cache import cached_array
from ua3dtalk_jax.data import layout, subject_audio
from ua3dtalk_jax.data import subject_tables as tables
from ua3dtalk_jax.data.cameras import intrinsics

DEFAULT_TG_FPS = 25.0
AUD_CONTEXT = 8  # AudioAttNet window: frames i-4 .. i+3 (TalkingGaussian att_mode 2)

FRAME_KEYS = (
    "image",
    "viewmat",
    "K",
    "aud",
    "au_exp",
    "blink",
    "au25",
    "face_mask",
    "mouth_mask",
    "hair_mask",
    "head_mask",
    "neck_mask",
    "torso_mask",
    "teeth_mask",
    "background",
    "lips_rect",
    "mouth_open",
    "emotion",
    "intensity",
    "exp",
    "landmarks",
    "index",
)
_MASK_KEYS = frozenset(k for k in FRAME_KEYS if k.endswith("_mask"))


class Subject:
    """A subject directory opened for reading. Construct with `Subject.open(path)`."""

    @classmethod
    def open(cls, path: str, *, audio_feature: str = "auto", fps: float | None = None):
        """Opens a TalkingGaussian or ua3dtalk subject directory.

        Args:
          path: the directory.
          audio_feature: stage 2's audio windows (`audio.precomputed`): "auto" (aud_ds.npy, else
            aud_hu.npy, else aud_eo.npy, else "mel"), "deepspeech", "hubert", "esperanto" (that
            file, or a FileNotFoundError naming it), "mel" (our f_audio from aud.wav), or one of
            the file names. The kind loaded is `audio_kind`, its file `audio_source`.
          fps: frame rate override (plain TalkingGaussian dirs default to 25).

        Raises:
          FileNotFoundError / ValueError naming the file and the problem.
        """
        return cls(os.fspath(path), audio_feature, fps)

    def __init__(self, path: str, audio_feature: str, fps: float | None):
        self.path = path
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{path}: subject directory not found")
        if os.path.exists(self._p(layout.INCOMPLETE)):
            raise ValueError(f"{self._p(layout.INCOMPLETE)}: the writer did not finish this dir")
        self.info = tables.read_info(path)
        self.fps = float(fps or self.info.get("fps", DEFAULT_TG_FPS))
        self.focal, self.img_ids, self.aud_ids, self.viewmats, self._n_train = (
            tables.read_transforms(path)
        )
        n = len(self.img_ids)
        self.num_ids = int(max(self.img_ids.max(), self.aud_ids.max())) + 1
        self._background_rgb = self._imread(self._p(layout.BACKGROUND), cv2.IMREAD_COLOR)
        self.size = tuple(int(s) for s in self._background_rgb.shape[:2])
        self.K = intrinsics(self.focal, *self.size)
        self.image_ext = self.info.get("image_ext") or self._detect_ext(layout.GT_DIR)
        self._check_frame_files()
        max_id = int(self.img_ids.max())
        self.au_exp, self.au25, self.au25_stats = tables.read_aus(self._p(layout.AU_CSV), max_id)
        has_lms = self.info.get("files", {}).get("lms", True)
        self.landmarks, self.lips_rect, self.mouth_open, self.mouth_bounds = tables.read_landmarks(
            path, self.img_ids, has_lms, self._n_train
        )
        labels = tables.read_labels(path, self.num_ids, self.img_ids)
        self.emotion, self.intensity, self.exp, self.exp_source, self.dense_landmarks = labels
        self.exp_dim = self.exp.shape[1]
        self.audio, self.audio_kind, self.audio_source = subject_audio.load_windows(
            path, self.info, self.fps, self.num_ids, audio_feature
        )
        self.audio_window, self.audio_dim = self.audio.shape[1:]
        self._split = {"train": np.arange(self._n_train), "val": np.arange(self._n_train, n)}

    # ---- public API -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.img_ids)

    def split(self, name: str) -> np.ndarray:
        """Frame positions of "train" or "val" (ER-NeRF: the last 1/11 of the clip is val)."""
        if name not in self._split:
            raise ValueError(f"split must be 'train' or 'val', got {name!r}")
        return self._split[name]

    def has(self, name: str) -> bool:
        """Whether `name` (a file or directory relative to the subject dir) exists."""
        return os.path.exists(self._p(name))

    def wav(self) -> np.ndarray:
        """aud.wav as float32 16 kHz mono samples (S,)."""
        return audio_features.load_audio(self._p(layout.WAV))

    def frame(self, i: int, keys=None) -> dict:
        """One frame's arrays (see the module docstring); `keys` limits what is read from disk."""
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} outside 0..{len(self) - 1} of {self.path}")
        want = set(FRAME_KEYS if keys is None else keys)
        if self.dense_landmarks is not None and keys is None:
            want.add("dense_landmarks")
        img_id, aud_id = int(self.img_ids[i]), int(self.aud_ids[i])
        out = {}
        if "image" in want:
            out["image"] = self._imread(self._frame_path(layout.GT_DIR, img_id), cv2.IMREAD_COLOR)
        if want & _MASK_KEYS:
            masks = layout.decode_parsing(
                self._imread(self._p(layout.PARSING_DIR, f"{img_id}.png"), cv2.IMREAD_COLOR),
                self._teeth(img_id),
            )
            out.update({k: masks[k] for k in want & _MASK_KEYS})
        if "background" in want:
            out["background"] = self._background(img_id)
        if "aud" in want:
            idx = aud_id + np.arange(-AUD_CONTEXT // 2, AUD_CONTEXT // 2)
            inside = (idx >= 0) & (idx < len(self.audio))
            out["aud"] = self.audio[np.clip(idx, 0, len(self.audio) - 1)] * inside[:, None, None]
        scalars = {
            "viewmat": self.viewmats[i],
            "K": self.K,
            "au_exp": self.au_exp[img_id],
            "blink": np.float32(np.clip(self.au_exp[img_id, 5], 0, 2) / 2),
            "au25": np.float32(self.au25[img_id]),
            "lips_rect": self.lips_rect[i],
            "mouth_open": np.float32(self.mouth_open[i]),
            "emotion": np.int32(self.emotion[img_id]),
            "intensity": np.int32(self.intensity[img_id]),
            "exp": self.exp[img_id],
            "landmarks": self.landmarks[i],
            "index": np.int32(i),
        }
        out.update({k: np.copy(v) for k, v in scalars.items() if k in want})
        if "dense_landmarks" in want and self.dense_landmarks is not None:
            out["dense_landmarks"] = np.asarray(self.dense_landmarks[img_id], np.float32)
        unknown = want - set(out) - {"dense_landmarks"}
        if unknown:
            raise KeyError(f"unknown frame keys {sorted(unknown)}")
        return out

    def viewmat(self, i: int) -> np.ndarray:
        """(4, 4) float32 world→camera (OpenCV) of frame position i."""
        return self.viewmats[i]

    def ua_extras(self) -> dict:
        """UA-3DTalk's precomputed per-frame features, for those whose train and val files exist.

        Returns:
          {"f_exp": (N, 64), "f_tone": (N, 64), "f_emo": (N, 128)} float32, row i = frame position
          i (the .pth entries are in json order); names without files are left out.

        Raises:
          FileNotFoundError naming the missing half of a train/val pair; ValueError naming the file
          for an unreadable file, a wrong entry count or a wrong entry shape.
        """
        out = {}
        for name, (train, val, width) in layout.UA_EXTRAS.items():
            have = [self.has(f) for f in (train, val)]
            if not any(have):
                continue
            if not all(have):
                missing = self._p(val if have[0] else train)
                raise FileNotFoundError(f"{missing}: missing (its {name} partner exists)")
            counts = (self._n_train, len(self) - self._n_train)
            out[name] = np.concatenate(
                [tables.ua_rows(self._p(f), n, width) for f, n in zip((train, val), counts)]
            )
        return out

    def mel_chunks(self) -> np.ndarray:
        """Wav2Lip mel chunks per img_id (num_ids, 16, 80), cached as aud_w2l_mel.npy."""
        wav_path = self._p(layout.WAV)
        params = {"fps": self.fps, "n": self.num_ids}
        return cached_array(
            self.path,
            "aud_w2l_mel",
            params,
            lambda: audio_features.mel_chunks(self.wav(), self.fps, self.num_ids),
            source=wav_path,
        )

    # ---- per-frame reads --------------------------------------------------------------------

    def _p(self, *parts) -> str:
        return os.path.join(self.path, *parts)

    def _frame_path(self, folder: str, img_id: int) -> str:
        return self._p(folder, f"{img_id}{self.image_ext}")

    def _imread(self, path: str, flag: int) -> np.ndarray:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: file not found")
        img = cv2.imread(path, flag)
        if img is None:
            raise ValueError(f"{path}: corrupt or unreadable image")
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        if hasattr(self, "size") and img.shape[:2] != self.size:
            raise ValueError(f"{path}: image size {img.shape[:2]} differs from subject {self.size}")
        return img

    def _detect_ext(self, folder: str) -> str:
        first = int(self.img_ids[0])
        has_png = os.path.exists(self._p(folder, f"{first}.png"))
        return ".png" if has_png and not os.path.exists(self._p(folder, f"{first}.jpg")) else ".jpg"

    def _check_frame_files(self):
        expected = [(layout.GT_DIR, self.image_ext), (layout.PARSING_DIR, ".png")]
        expected.append((layout.TORSO_DIR, ".png"))
        self._has_teeth = os.path.isdir(self._p(layout.TEETH_DIR))
        if self._has_teeth:
            expected.append((layout.TEETH_DIR, ".npy"))
        for folder, ext in expected:
            present = set(os.listdir(self._p(folder))) if os.path.isdir(self._p(folder)) else set()
            missing = [i for i in self.img_ids if f"{i}{ext}" not in present]
            if missing:
                raise FileNotFoundError(
                    f"{self._p(folder, f'{missing[0]}{ext}')}: file not found "
                    f"({len(missing)} of {len(self.img_ids)} frames missing in {folder}/)"
                )

    def _teeth(self, img_id: int) -> np.ndarray:
        if not self._has_teeth:
            return np.zeros(self.size, bool)
        path = self._p(layout.TEETH_DIR, f"{img_id}.npy")
        try:
            teeth = np.load(path).astype(bool)
        except (ValueError, OSError) as e:
            raise ValueError(f"{path}: unreadable teeth mask ({e})") from None
        if teeth.shape != self.size:
            raise ValueError(f"{path}: teeth mask shape {teeth.shape}, expected {self.size}")
        return teeth

    def _background(self, img_id: int) -> np.ndarray:
        torso = self._imread(self._p(layout.TORSO_DIR, f"{img_id}.png"), cv2.IMREAD_UNCHANGED)
        if torso.ndim == 2:
            raise ValueError(f"{self._p(layout.TORSO_DIR, f'{img_id}.png')}: expected RGBA torso")
        torso = torso.astype(np.float64)
        if torso.shape[2] == 3:  # PIL's convert("RGBA") of an RGB png: opaque
            torso = np.concatenate([torso, np.full(self.size + (1,), 255.0)], -1)
        alpha = torso[..., 3:] / 255.0
        bg = torso[..., :3] * alpha + self._background_rgb * (1 - alpha)
        return bg.astype(np.uint8)
