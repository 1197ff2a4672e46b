"""The Subject API: one person's preprocessed clip, read from disk frame by frame.

Reads the TalkingGaussian / ER-NeRF layout unchanged, plus our optional files (see `layout.py`).
Everything small (cameras, AUs, landmarks, labels, audio feature windows) is loaded at `open`;
images, parsing, torso and teeth masks are read from disk in `frame(i)`, so an hour of video never
sits in memory.

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

import json
import os
import warnings

import cv2
import numpy as np

from ua3dtalk_jax.audio import features as audio_features
from ua3dtalk_jax.audio import precomputed
from ua3dtalk_jax.audio.cache import cached_array
from ua3dtalk_jax.data import layout
from ua3dtalk_jax.data.cameras import intrinsics, viewmat_from_c2w_gl
from ua3dtalk_jax.data.torch_file import read_torch_file

DEFAULT_TG_FPS = 25.0
AUD_CONTEXT = 8  # AudioAttNet window: frames i-4 .. i+3 (TalkingGaussian att_mode 2)
MAX_AV_MISMATCH_S = 1.0  # beyond this an audio/video length difference is an error
AU25_CLIP_PERCENTILE = 95

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
        self.info = self._read_info()
        self.fps = float(fps or self.info.get("fps", DEFAULT_TG_FPS))
        self._read_transforms()
        n = len(self.img_ids)
        self.num_ids = int(max(self.img_ids.max(), self.aud_ids.max())) + 1
        self._background_rgb = self._imread(self._p(layout.BACKGROUND), cv2.IMREAD_COLOR)
        self.size = tuple(int(s) for s in self._background_rgb.shape[:2])
        self.K = intrinsics(self.focal, *self.size)
        self.image_ext = self.info.get("image_ext") or self._detect_ext(layout.GT_DIR)
        self._check_frame_files()
        self._read_aus()
        self._read_landmarks()
        self._read_labels()
        self._load_audio_features(audio_feature)
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
                [_ua_rows(self._p(f), n, width) for f, n in zip((train, val), counts)]
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

    # ---- loading helpers --------------------------------------------------------------------

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

    def _read_info(self) -> dict:
        path = self._p(layout.SUBJECT_JSON)
        if not os.path.exists(path):
            return {}
        try:
            with open(path) as f:
                info = json.load(f)
        except ValueError as e:
            raise ValueError(f"{path}: malformed json ({e})") from None
        if info.get("format") != layout.FORMAT_NAME:
            raise ValueError(f"{path}: not a {layout.FORMAT_NAME} file")
        if info.get("version", 0) > layout.FORMAT_VERSION:
            raise ValueError(f"{path}: format version {info['version']} is newer than supported")
        return info

    def _read_transforms(self):
        ids, aud_ids, mats, counts, focals = [], [], [], [], []
        for name in (layout.TRANSFORMS["train"], layout.TRANSFORMS["val"]):
            path = self._p(name)
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path}: missing (required by the TalkingGaussian layout)")
            try:
                with open(path) as f:
                    doc = json.load(f)
                focals.append(float(doc["focal_len"]))
                frames = doc["frames"]
                ids += [int(fr["img_id"]) for fr in frames]
                aud_ids += [int(fr.get("aud_id", fr["img_id"])) for fr in frames]
                mats += [np.asarray(fr["transform_matrix"], np.float64) for fr in frames]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(
                    f"{path}: malformed transforms ({type(e).__name__}: {e})"
                ) from None
            counts.append(len(frames))
        if not ids:
            raise ValueError(f"{self._p(layout.TRANSFORMS['train'])}: no frames")
        if abs(focals[0] - focals[1]) > 1e-6 * focals[0]:
            raise ValueError(f"{self.path}: focal_len differs between train and val json")
        self.focal = focals[0]
        self.img_ids = np.asarray(ids, np.int64)
        self.aud_ids = np.asarray(aud_ids, np.int64)
        if min(ids) < 0 or min(aud_ids) < 0:
            raise ValueError(f"{self._p(layout.TRANSFORMS['train'])}: negative frame id")
        self.viewmats = viewmat_from_c2w_gl(np.stack(mats))
        self._n_train = counts[0]

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

    def _read_aus(self):
        path = self._p(layout.AU_CSV)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: missing (OpenFace action units, needed for blink)")
        aus = layout.read_au_csv(path)
        for name in (*layout.AU_EXP, "AU25_r"):
            if name not in aus:
                raise ValueError(f"{path}: column ' {name}' missing")
        n_rows = len(aus["AU45_r"])
        if n_rows <= self.img_ids.max():
            raise ValueError(
                f"{path}: {n_rows} rows but frames go up to img_id {self.img_ids.max()}"
            )
        au_exp = np.stack([aus[k] for k in layout.AU_EXP], -1)
        au_exp[:, 5] = np.clip(au_exp[:, 5], 0, 2)
        self.au_exp = au_exp.astype(np.float32)
        au25 = aus["AU25_r"]
        au25 = np.clip(au25, 0, np.percentile(au25, AU25_CLIP_PERCENTILE))
        self.au25 = au25.astype(np.float32)
        self.au25_stats = tuple(float(np.percentile(au25, q)) for q in (25, 50, 75)) + (
            float(au25.max()),
        )

    def _read_landmarks(self):
        n = len(self.img_ids)
        has_lms = self.info.get("files", {}).get("lms", True)
        boxes_path = self._p(layout.MOUTH_BOXES)
        if has_lms:
            lms = np.stack(
                [layout.read_lms(self._p(layout.ORI_DIR, f"{i}.lms")) for i in self.img_ids]
            )
            self.landmarks = lms
            self.lips_rect = layout.lips_rects(lms)
            self.mouth_open = layout.mouth_openings(lms)
        elif os.path.exists(boxes_path):
            boxes = np.load(boxes_path)[self.img_ids]
            self.landmarks = np.zeros((n, 68, 2), np.float32)
            self.lips_rect = boxes[:, :4].astype(np.int32)
            self.mouth_open = boxes[:, 4].astype(np.float32)
        else:
            raise FileNotFoundError(f"{boxes_path}: missing (subject has no .lms landmarks)")
        train_open = self.mouth_open[: self._n_train] if self._n_train else self.mouth_open
        self.mouth_bounds = (float(train_open.min()), float(train_open.max()))

    def _read_labels(self):
        n = self.num_ids
        path = self._p(layout.EMOTION_CSV)
        if os.path.exists(path):
            self.emotion, self.intensity = layout.read_emotion_csv(path, n)
        else:
            self.emotion, self.intensity = np.full(n, -1, np.int32), np.zeros(n, np.int32)
        self.exp, self.exp_source = np.zeros((n, 0), np.float32), None
        if self.has(layout.EXP_NPY):
            self.exp = self._per_id_array(layout.EXP_NPY, ndim=2).astype(np.float32)
            self.exp_source = layout.EXP_NPY
        elif self.has(layout.TRACK_PARAMS):  # plain TalkingGaussian dir: the tracker's BFM exp
            rows = int(self.img_ids.max()) + 1
            self.exp = layout.read_track_exp(self._p(layout.TRACK_PARAMS), rows)
            self.exp_source = layout.TRACK_PARAMS
        self.exp_dim = self.exp.shape[1]
        self.dense_landmarks = None
        if self.has(layout.LANDMARKS_NPY):
            self.dense_landmarks = self._per_id_array(layout.LANDMARKS_NPY, ndim=3)

    def _per_id_array(self, name: str, ndim: int) -> np.ndarray:
        path = self._p(name)
        try:
            arr = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as e:
            raise ValueError(f"{path}: unreadable array ({e})") from None
        if arr.ndim != ndim or len(arr) < self.num_ids:
            raise ValueError(
                f"{path}: shape {arr.shape}, expected {ndim}-D with ≥ {self.num_ids} rows (one per "
                "frame)"
            )
        return arr

    def _load_audio_features(self, choice: str):
        kind = precomputed.kind_of_file(choice) or precomputed.check_choice(choice)
        if kind == precomputed.AUTO:
            kind = next((k for k, f in precomputed.FILES.items() if self.has(f)), precomputed.MEL)
        need = self.num_ids
        if kind != precomputed.MEL:
            name = precomputed.FILES[kind]
            if not self.has(name):
                raise FileNotFoundError(
                    f"{self._p(name)}: missing; data.audio_feature={kind} reads it (auto picks "
                    f"whichever of {', '.join(precomputed.FILES.values())} exists, else mel "
                    "from aud.wav)"
                )
            feats = precomputed.load_windows(self._p(name), kind)
            self._check_av(self._p(name), len(feats) / self.fps, need)
        else:
            name = layout.WAV
            src = self._p(layout.WAV)
            if not os.path.exists(src):
                raise FileNotFoundError(f"{src}: missing (and no precomputed aud_*.npy)")
            self._check_av(src, _wav_seconds(src), need)
            n_mels = int(self.info.get("audio", {}).get("n_mels", audio_features.F_AUDIO_DIM))
            params = f_audio_cache_params(self.fps, need, n_mels)

            def compute():
                return audio_features.f_audio(self.wav(), self.fps, need, n_mels=n_mels)

            feats = cached_array(self.path, layout.MEL_FEATURE, params, compute, source=src)
        if len(feats) != need:
            pad = max(need - len(feats), 0)
            feats = np.concatenate([feats[:need], np.repeat(feats[-1:], pad, axis=0)])
        self.audio = np.asarray(feats, np.float32)
        self.audio_kind = kind
        self.audio_source = name
        self.audio_window, self.audio_dim = self.audio.shape[1:]

    def _check_av(self, path: str, source_s: float, n_frames: int):
        video_s = n_frames / self.fps
        diff = source_s - video_s
        if abs(diff) > MAX_AV_MISMATCH_S:
            raise ValueError(
                f"{path}: audio lasts {source_s:.2f} s but the {n_frames} frames at {self.fps:g} fps "
                f"last {video_s:.2f} s (difference over {MAX_AV_MISMATCH_S:g} s)"
            )
        if abs(diff) * self.fps >= 1:
            what = "padded" if diff < 0 else "trimmed"
            warnings.warn(f"{path}: audio and video differ by {diff:+.3f} s; audio {what}")

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


def _ua_rows(path: str, n: int, width: int) -> np.ndarray:
    """A UA extra .pth (a tensor, or a list of [D] / [1, D] tensors) → (n, width) float32."""
    obj = read_torch_file(path)
    if not (isinstance(obj, (list, tuple)) or (isinstance(obj, np.ndarray) and obj.ndim >= 1)):
        kind = type(obj).__name__
        raise ValueError(f"{path}: expected a tensor or a list of tensors, got {kind}")
    try:
        rows = [np.asarray(x, np.float32).reshape(-1) for x in obj]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: entries are not numeric tensors ({e})") from None
    if len(rows) != n:
        raise ValueError(f"{path}: {len(rows)} entries but its transforms json lists {n} frames")
    bad = next((k for k, r in enumerate(rows) if r.size != width), None)
    if bad is not None:
        raise ValueError(f"{path}: entry {bad} has {rows[bad].size} values, expected {width}")
    return np.stack(rows) if rows else np.zeros((0, width), np.float32)


def f_audio_cache_params(fps: float, n_frames: int, n_mels: int) -> dict:
    """The parameters aud_mel.npy is keyed on (shared by the writer and the loader)."""
    window = audio_features.F_AUDIO_WINDOW
    return {"fps": float(fps), "n": int(n_frames), "n_mels": int(n_mels), "window": window, "v": 1}


def _wav_seconds(path: str) -> float:
    import soundfile

    try:
        return soundfile.info(path).duration
    except (soundfile.LibsndfileError, RuntimeError):
        return len(audio_features.load_audio(path)) / audio_features.SAMPLE_RATE
