"""Stage-1 training data: per-frame face crops, mel chunks, targets, and the emotion stream.

Everything stage 1 needs from a subject fits in memory at the crop sizes used here (the cpu preset's
48² crops are 6.9 kB a frame: 10 MB for a 60 s, 25 fps clip, 69 MB for 10,000 frames), so
`Stage1Data` holds device arrays and each training step samples its own batch from them with its RNG
key (no host loop, no host↔device copies). The frames themselves are never all in memory:
`from_subject` reads them one at a time (`FrameImages`) and keeps only their crops.

    crops   (N, S, S, 3) uint8   square face crop around the 68 landmarks (Wav2Lip's face box),
                                 box centre and side smoothed over `smooth_frames` frames
    mel     (N, 80, 16) f32      Wav2Lip mel chunk starting at frame i (mel bins × mel frames)
    exp     (N, E) f32           f_gt-exp (exp_coeffs.npy, else track_params.pt's BFM `exp`, E = 79)
                                 standardised with the train-split mean/std (`exp_stats`); with
                                 Deep3DFaceRecon weights (`with_face_recon`) its 64 coefficients
                                 of the real frames, and the tracked ones move to `tracked_exp`
    emotion (N,) i32             EMOTIONS index, −1 unlabelled
    n_train                      frames [0, n_train) are the train split (contiguous, ER-NeRF style)
    stream, centres              `audio.emotion_inputs` whole-clip arrays and frame sample positions
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.audio import emotion_inputs, features
from ua3dtalk_jax.head import face_prior
from ua3dtalk_jax.head.crops import face_boxes, face_crops
from ua3dtalk_jax.train.stage1 import face as stage1_face

STD_FLOOR = 1e-6  # standardisation of a constant coefficient


@dataclasses.dataclass
class Stage1Data:
    crops: jnp.ndarray
    mel: jnp.ndarray
    exp: jnp.ndarray
    emotion: jnp.ndarray
    n_train: int
    fps: float
    wav: np.ndarray
    stream: dict
    centres: jnp.ndarray
    exp_stats: tuple  # (mean (E,), std (E,)) numpy
    # Deep3DFaceRecon path only (`with_face_recon`): the subject's tracked coefficients
    # (standardised; the R² target of f_exp) and `stage1_face.paste_refs` of the references
    tracked_exp: jnp.ndarray | None = None
    face_refs: dict | None = None

    @property
    def n(self) -> int:
        return int(self.crops.shape[0])

    @property
    def exp_dim(self) -> int:
        return int(self.exp.shape[1])

    @classmethod
    def from_arrays(cls, crops, wav, fps, exp, emotion, n_train, emotion_cfg, mel=None):
        """Builds the data from in-memory arrays (crops (N,S,S,3) uint8, wav (S,) 16 kHz)."""
        n = len(crops)
        if mel is None:
            mel = features.mel_chunks(wav, fps, n)
        z, mean, std = standardise(exp, n_train)
        return cls(
            crops=jnp.asarray(crops, jnp.uint8),
            mel=jnp.asarray(np.transpose(mel, (0, 2, 1)), jnp.float32),
            exp=jnp.asarray(z),
            emotion=jnp.asarray(emotion, jnp.int32),
            n_train=int(n_train),
            fps=float(fps),
            wav=np.asarray(wav, np.float32),
            stream={
                k: jnp.asarray(v)
                for k, v in emotion_inputs.emotion_stream(wav, emotion_cfg).items()
            },
            centres=jnp.asarray(emotion_inputs.frame_centres(n, fps)),
            exp_stats=(mean, std),
        )

    @classmethod
    def from_subject(cls, subject, cfg):
        """Reads a `data.Subject` (images, landmarks, f_gt-exp, labels, aud.wav) with the stage-1 cfg."""
        n = len(subject)
        train = np.asarray(subject.split("train"))
        if not np.array_equal(train, np.arange(len(train))):
            raise ValueError("stage 1 expects the train split to be the leading frames")
        lms, exp, emo = [], [], []
        for i in range(n):
            fr = subject.frame(i, keys=("landmarks", "exp", "emotion"))
            lms.append(fr["landmarks"])
            exp.append(fr["exp"])
            emo.append(fr["emotion"])
        images, lms = FrameImages(subject, n), np.stack(lms)  # images: read when used
        if np.asarray(exp).shape[1] == 0:
            raise ValueError(
                f"{subject.path}: stage 1 needs f_gt-exp (expression coefficients): "
                "exp_coeffs.npy, or the face tracker's track_params.pt of a TalkingGaussian dir"
            )
        crops = face_crops(images, lms, cfg.data)
        wav = subject.wav()
        mel = features.mel_chunks(wav, subject.fps, n)
        data = cls.from_arrays(
            crops, wav, subject.fps, np.stack(exp), np.stack(emo), len(train), cfg.emotion, mel=mel
        )
        net = face_prior.load_network(cfg)
        if net is None:
            return data
        dense = subject.dense_landmarks  # (rows by image id) the 478-point mesh, if any
        if dense is not None:
            dense = np.asarray(dense)[np.asarray(subject.img_ids)[:n]]
        points = stage1_face.frame_points(lms, dense, images.shape[1:3])
        return data.with_face_recon(net, images, points, lms, cfg)

    def with_face_recon(self, net, images, points, landmarks, cfg) -> Stage1Data:
        """This data with f_gt-exp from Deep3DFaceRecon (`train.stage1.face`).

        Args:
          net: (model, variables) from `head.face_prior.load_network`.
          images: (N, H, W, 3) uint8 frames; points: (N, 5, 2) their alignment points.
          landmarks: (N, 68, 2) (the face boxes of the crops, as `face_crops` draws them).
          cfg: the stage-1 config.
        Returns:
          A copy whose `exp` is the network's 64 expression coefficients of the real frames
          (standardised over the train frames), `tracked_exp` the old `exp`, and `face_refs` the
          aligned reference frames that lip-wav crops are pasted into.
        """
        z, mean, std = standardise(stage1_face.real_exp(net, images, points), self.n_train)
        ref = reference_indices(self.n_train, cfg.data.n_refs)
        boxes = face_boxes(
            landmarks, cfg.data.crop_scale, cfg.data.smooth_frames, images.shape[1:3]
        )[ref]
        refs = stage1_face.paste_refs(images[ref], points[ref], boxes, cfg.data.face_size)
        return dataclasses.replace(
            self, exp=jnp.asarray(z), exp_stats=(mean, std), tracked_exp=self.exp, face_refs=refs
        )


class FrameImages:
    """A subject's first n frames as a read-only (n, H, W, 3) uint8 sequence read from disk when
    indexed or iterated, so that no more than the frames asked for at once sit in memory.

    Indexing takes an int (one frame), or a slice or an index array (those frames, stacked).
    """

    def __init__(self, subject, n: int):
        self.subject, self.n = subject, int(n)
        self.shape = (self.n, *subject.size, 3)

    def __len__(self) -> int:
        return self.n

    def _read(self, i) -> np.ndarray:
        return self.subject.frame(int(i), keys=("image",))["image"]

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self._read(np.arange(self.n)[idx])
        return np.stack([self._read(i) for i in np.arange(self.n)[idx]]).reshape(
            -1, *self.shape[1:]
        )

    def __iter__(self):
        return (self._read(i) for i in range(self.n))


def standardise(exp, n_train: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exp − mean)/s.d. with the statistics of frames [0, n_train); returns (z, mean, s.d.)."""
    exp = np.asarray(exp, np.float32)
    mean = exp[:n_train].mean(0)
    std = np.maximum(exp[:n_train].std(0), STD_FLOOR)
    return (exp - mean) / std, mean, std


def reference_indices(n_train: int, k: int) -> np.ndarray:
    """k train frames spread evenly over the train split: the fixed lip-wav references."""
    return np.unique(np.linspace(0, n_train - 1, k).round().astype(np.int32))
