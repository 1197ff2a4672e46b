"""Sync-C / Sync-D (LSE-C / LSE-D): the standard SyncNet in Flax and the LSE scoring.

SyncNet is joonson/syncnet_python's `SyncNetModel.S` (the `syncnet_v2.model` architecture), eval
mode: a lip net of 3-D convolutions over 5 BGR 224×224 frames with raw 0–255 values
(N, 5, 224, 224, 3 here; torch N, 3, 5, 224, 224) and an audio net of 2-D convolutions over 20 MFCC
frames (N, 13, 20, 1; torch N, 1, 13, 20), each ending in a 512→512→1024 MLP (BatchNorm eps 1e-5).
Flax submodules are named after the torch state-dict keys (`netcnnlip_0` ↔ `netcnnlip.0.*`), so
`convert_state_dict` is only a transposition: conv (O, I, *k) → (*k, I, O), linear (O, I) → (I, O).
`load_syncnet_v2` reads the `state_dict` file without torch (`data.torch_file.read_state_dict`:
the zip format of torch ≥ 1.6 and the legacy format of earlier versions that `syncnet_v2.model`
may use, through a restricted unpickler like `weights_only=True`).

LSE scoring is SyncNetInstance.evaluate as Wav2Lip's `evaluation/scores_LSE` runs it:
  video window t = frames t..t+4, audio window t = MFCC frames 4t..4t+19 (0.2 s each, 100 Hz MFCC,
  25 fps), for t in range(n_frames − 5) with n_frames = min(#frames, ⌊#samples / 640⌋);
  d_t(k) = ‖v_t − a_{t+k} + 1e-6‖₂ (torch pairwise_distance) for k ∈ [−vshift, vshift], with
  zero embeddings beyond the ends; D(k) = mean_t d_t(k);
  LSE-D = min_k D(k), LSE-C = median_k D(k) − min_k D(k), offset = vshift − argmin_k D(k).
`lse_score` takes any (video-embedding, audio-embedding) pair, so this project's own stage-1
SyncNet is scored by the same code (reported under a different name). MFCC is a NumPy port of
`python_speech_features.mfcc` 0.6 defaults on int16-scaled samples (25 ms / 10 ms, 512-point FFT,
26 filters, pre-emphasis 0.97, lifter 22, c0 = log frame energy). Face crops follow
syncnet_python's `crop_video` (box median-filtered over 13 frames, crop_scale 0.4, pad value 110,
resize to 224²) from boxes of any detector: S3FD's weights, like SyncNet's, are not available
here, and the XVID re-encoding of the official pipeline is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import fft as sp_fft
from scipy import signal as sp_signal

from ua3dtalk_jax.data.torch_file import read_state_dict

BN_EPS = 1e-5  # torch BatchNorm default
PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance adds eps to the difference
VSHIFT = 15  # Wav2Lip's scores_LSE (the syncnet_python demo uses 10)
FRAMES_PER_WINDOW = 5
MFCC_PER_FRAME = 4  # 100 Hz MFCC / 25 fps
MFCC_PER_WINDOW = 20
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
CROP_SCALE = 0.4
CROP_SIZE = 224
CROP_PAD_VALUE = 110
CROP_MEDFILT = 13
# (torch index of the conv; out channels; kernel; stride; padding; max-pool after it as
# (window, stride, padding) or None). Every conv is followed by BatchNorm (index + 1) and ReLU.
AUDIO_CNN = (
    (0, 64, (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1), (0, 0))),
    (4, 192, (3, 3), (1, 1), (1, 1), ((3, 3), (1, 2), (0, 0))),
    (8, 384, (3, 3), (1, 1), (1, 1), None),
    (11, 256, (3, 3), (1, 1), (1, 1), None),
    (14, 256, (3, 3), (1, 1), (1, 1), ((3, 3), (2, 2), (0, 0))),
    (18, 512, (5, 4), (1, 1), (0, 0), None),
)
LIP_CNN = (
    (0, 96, (5, 7, 7), (1, 2, 2), (0, 0, 0), ((1, 3, 3), (1, 2, 2), (0, 0, 0))),
    (4, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1), ((1, 3, 3), (1, 2, 2), (0, 1, 1))),
    (8, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1), None),
    (11, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1), None),
    (14, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1), ((1, 3, 3), (1, 2, 2), (0, 0, 0))),
    (18, 512, (1, 6, 6), (1, 1, 1), (0, 0, 0), None),
)


class _Branch(nn.Module):
    prefix: str  # "aud" or "lip"
    cnn: tuple
    embed_dim: int = 1024

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        bn = lambda i, kind: nn.BatchNorm(
            use_running_average=True, epsilon=BN_EPS, name=f"net{kind}{self.prefix}_{i}"
        )
        for idx, ch, k, s, p, pool in self.cnn:
            conv = nn.Conv(ch, k, s, [(q, q) for q in p], name=f"netcnn{self.prefix}_{idx}")
            x = nn.relu(bn(idx + 1, "cnn")(conv(x)))
            if pool is not None:
                x = nn.max_pool(x, pool[0], pool[1], [(q, q) for q in pool[2]])
        if x.shape[1:-1] != (1,) * (x.ndim - 2):
            raise ValueError(f"SyncNet {self.prefix} input gives {x.shape[1:-1]} ≠ 1×1 output")
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(bn(1, "fc")(nn.Dense(512, name=f"netfc{self.prefix}_0")(x)))
        return nn.Dense(self.embed_dim, name=f"netfc{self.prefix}_3")(x)


class SyncNetV2(nn.Module):
    """syncnet_python's `S` in eval mode; `embed_video` / `embed_audio` are its forward_lip / _aud."""

    embed_dim: int = 1024

    def setup(self):
        self.aud = _Branch("aud", AUDIO_CNN, self.embed_dim)
        self.lip = _Branch("lip", LIP_CNN, self.embed_dim)

    def embed_video(self, frames: jax.Array) -> jax.Array:
        """(B, 5, 224, 224, 3) BGR frames with values 0–255 → (B, 1024) embeddings."""
        return self.lip(frames)

    def embed_audio(self, mfcc: jax.Array) -> jax.Array:
        """(B, 20, 13) MFCC windows (time, coefficient) → (B, 1024) embeddings."""
        return self.aud(jnp.swapaxes(mfcc, 1, 2)[..., None])

    def __call__(self, frames: jax.Array, mfcc: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.embed_video(frames), self.embed_audio(mfcc)


# ---------------------------------------------------------------------------------------------
# Pretrained weights (syncnet_python's torch state_dict)


def convert_state_dict(state: dict[str, np.ndarray]) -> dict:
    """syncnet_python `S` state_dict → Flax variables of `SyncNetV2`.

    Args:
      state: key → array, keys like `netcnnlip.0.weight`, `netfcaud.1.running_var`.

    Returns:
      {"params": ..., "batch_stats": ...} float32, ready for `SyncNetV2().apply`.
    """
    params: dict = {}
    stats: dict = {}
    for key, value in state.items():
        module, idx, leaf = key.rsplit(".", 2)
        name = f"{module}_{idx}"
        w = np.asarray(value, np.float32)
        if leaf == "weight" and w.ndim >= 3:  # conv (O, I, *k) → (*k, I, O)
            params.setdefault(name, {})["kernel"] = np.transpose(w, (*range(2, w.ndim), 1, 0))
        elif leaf == "weight" and w.ndim == 2:  # linear
            params.setdefault(name, {})["kernel"] = w.T
        elif leaf == "weight":  # BatchNorm γ
            params.setdefault(name, {})["scale"] = w
        elif leaf == "bias":
            params.setdefault(name, {})["bias"] = w
        elif leaf in ("running_mean", "running_var"):
            stats.setdefault(name, {})["mean" if leaf == "running_mean" else "var"] = w
        elif leaf != "num_batches_tracked":
            raise KeyError(f"unexpected SyncNet state_dict key {key}")
    group = lambda d, pre: {k: v for k, v in d.items() if pre in k}
    return {
        "params": {"aud": group(params, "aud_"), "lip": group(params, "lip_")},
        "batch_stats": {"aud": group(stats, "aud_"), "lip": group(stats, "lip_")},
    }


def load_syncnet_v2(path: str | None) -> tuple[SyncNetV2, dict] | None:
    """The pretrained SyncNet when `path` names an existing file, else None ("not available")."""
    if not path or not os.path.exists(path):
        return None
    state = read_state_dict(path)
    try:
        variables = convert_state_dict(state)
    except (KeyError, ValueError) as e:  # not syncnet_python's keys: name the file
        raise ValueError(f"{path}: {e}") from None
    return SyncNetV2(), jax.tree.map(jnp.asarray, variables)


# ---------------------------------------------------------------------------------------------
# Inputs: MFCC (python_speech_features port) and face crops (syncnet_python crop_video)


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def _mel_filterbank(nfilt: int, nfft: int, sr: int, lowfreq: float, highfreq: float) -> np.ndarray:
    hz2mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)
    mel2hz = lambda mel: 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    bins = np.floor(
        (nfft + 1) * mel2hz(np.linspace(hz2mel(lowfreq), hz2mel(highfreq), nfilt + 2)) / sr
    )
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        i = np.arange(int(lo), int(mid))
        fb[j, i] = (i - lo) / (mid - lo)
        i = np.arange(int(mid), int(hi))
        fb[j, i] = (hi - i) / (hi - mid)
    return fb


def mfcc(audio: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """`python_speech_features.mfcc(audio, sample_rate)` with its default settings.

    Args:
      audio: (S,) samples on the int16 scale (as `scipy.io.wavfile` reads a 16-bit wav; use
        `int16_scale` for float audio in [-1, 1]).
      sample_rate: Hz (16000 for SyncNet).

    Returns:
      (A, 13) float64 MFCC at 100 Hz, A = 1 + ⌈(S − 400) / 160⌉ at 16 kHz.
    """
    winlen, winstep, nfft, nfilt, numcep, preemph, lift = 0.025, 0.01, 512, 26, 13, 0.97, 22
    x = np.asarray(audio, np.float64)
    x = np.append(x[0], x[1:] - preemph * x[:-1])
    flen, fstep = _round_half_up(winlen * sample_rate), _round_half_up(winstep * sample_rate)
    n = 1 if len(x) <= flen else 1 + int(np.ceil((len(x) - flen) / fstep))
    x = np.concatenate([x, np.zeros((n - 1) * fstep + flen - len(x))])
    frames = x[np.arange(flen)[None, :] + fstep * np.arange(n)[:, None]]
    pspec = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    eps = np.finfo(float).eps
    energy = np.where((e := pspec.sum(1)) == 0, eps, e)
    feat = pspec @ _mel_filterbank(nfilt, nfft, sample_rate, 0, sample_rate / 2).T
    feat = sp_fft.dct(np.log(np.where(feat == 0, eps, feat)), type=2, axis=1, norm="ortho")
    feat = feat[:, :numcep] * (1 + (lift / 2.0) * np.sin(np.pi * np.arange(numcep) / lift))
    feat[:, 0] = np.log(energy)
    return feat


def int16_scale(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] → the int16 values ffmpeg's pcm_s16le would store (×32768, clip)."""
    return np.clip(np.round(np.asarray(audio, np.float64) * 32768.0), -32768, 32767)


def crop_faces(frames: np.ndarray, boxes: np.ndarray, crop_scale: float = CROP_SCALE) -> np.ndarray:
    """syncnet_python's `crop_video` on one face track.

    Args:
      frames: (F, H, W, 3) uint8 frames (channel order is kept).
      boxes: (F, 4) face boxes (x0, y0, x1, y1) in pixels, one per frame.
      crop_scale: the pipeline's crop_scale.

    Returns:
      (F, 224, 224, 3) uint8 crops.
    """
    import cv2

    b = np.asarray(boxes, np.float64)
    s = sp_signal.medfilt(np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) / 2, CROP_MEDFILT)
    cy = sp_signal.medfilt((b[:, 1] + b[:, 3]) / 2, CROP_MEDFILT)
    cx = sp_signal.medfilt((b[:, 0] + b[:, 2]) / 2, CROP_MEDFILT)
    out = []
    for img, bs, my, mx in zip(frames, s, cy, cx):
        bsi = int(bs * (1 + 2 * crop_scale))
        pad = np.pad(img, ((bsi, bsi), (bsi, bsi), (0, 0)), constant_values=CROP_PAD_VALUE)
        my, mx = my + bsi, mx + bsi
        face = pad[
            int(my - bs) : int(my + bs * (1 + 2 * crop_scale)),
            int(mx - bs * (1 + crop_scale)) : int(mx + bs * (1 + crop_scale)),
        ]
        out.append(cv2.resize(face, (CROP_SIZE, CROP_SIZE)))
    return np.stack(out)


# ---------------------------------------------------------------------------------------------
# LSE scoring


class LSEResult(NamedTuple):
    lse_c: float  # median_k D(k) − min_k D(k)  (Sync-C, higher is better)
    lse_d: float  # min_k D(k)                  (Sync-D, lower is better)
    offset: int  # vshift − argmin_k D(k), in video frames
    mean_dists: np.ndarray  # (2·vshift + 1,) D(k) for k = −vshift..vshift


def sync_distances(
    video_emb: np.ndarray, audio_emb: np.ndarray, vshift: int = VSHIFT
) -> np.ndarray:
    """syncnet_python's `calc_pdist`.

    Args:
      video_emb: (T, D) embeddings of video windows.
      audio_emb: (T, D) embeddings of the matching audio windows.
      vshift: largest shift in frames.

    Returns:
      (T, 2·vshift + 1) distances d_t(k) = ‖v_t − a_{t+k} + 1e-6‖ (zero audio beyond the ends).
    """
    v, a = np.asarray(video_emb, np.float64), np.asarray(audio_emb, np.float64)
    ap = np.pad(a, ((vshift, vshift), (0, 0)))
    win = np.arange(2 * vshift + 1)[None, :] + np.arange(len(v))[:, None]  # (T, 2v+1)
    return np.linalg.norm(v[:, None, :] - ap[win] + PAIRWISE_EPS, axis=-1)


def lse_from_distances(dists: np.ndarray) -> LSEResult:
    """LSE-C, LSE-D and the offset from `sync_distances` output (T, 2·vshift + 1)."""
    mean = np.asarray(dists).mean(axis=0)
    k = int(np.argmin(mean))
    return LSEResult(
        float(np.median(mean) - mean[k]), float(mean[k]), (len(mean) - 1) // 2 - k, mean
    )


def lse_score(
    embed_video: Callable[[np.ndarray], np.ndarray],
    embed_audio: Callable[[np.ndarray], np.ndarray],
    video: np.ndarray,
    audio_feats: np.ndarray,
    *,
    n_frames: int | None = None,
    frames_per_window: int = FRAMES_PER_WINDOW,
    feats_per_frame: float = MFCC_PER_FRAME,
    feats_per_window: int = MFCC_PER_WINDOW,
    vshift: int = VSHIFT,
    batch_size: int = 20,
) -> LSEResult:
    """LSE-C / LSE-D of one clip for any pair of embedding functions.

    Args:
      embed_video: (B, frames_per_window, ...) video windows → (B, D).
      embed_audio: (B, feats_per_window, ...) audio-feature windows → (B, D).
      video: (F, ...) per-frame inputs (for SyncNet v2: 224² BGR crops, 0–255).
      audio_feats: (A, ...) audio features along time (for SyncNet v2: (A, 13) MFCC at 100 Hz).
      n_frames: usable frames (syncnet_python: min(F, ⌊samples/640⌋)); default min(F, A/rate).
      frames_per_window, feats_per_window: window lengths (0.2 s each).
      feats_per_frame: audio-feature steps per video frame; window t starts at ⌊t·rate⌋.
      vshift: largest shift in frames.
      batch_size: windows per embedding call.

    Returns:
      LSEResult over windows t = 0 .. n_frames − frames_per_window − 1.
    """
    if n_frames is None:
        n_frames = min(len(video), int(len(audio_feats) // feats_per_frame))
    starts = [(t, int(t * feats_per_frame)) for t in range(n_frames - frames_per_window)]
    if not starts or starts[-1][1] + feats_per_window > len(audio_feats):
        raise ValueError(f"{n_frames} frames / {len(audio_feats)} audio steps give no full window")
    v_emb, a_emb = [], []
    for i in range(0, len(starts), batch_size):
        ts, As = zip(*starts[i : i + batch_size])
        v_emb.append(
            np.asarray(embed_video(np.stack([video[t : t + frames_per_window] for t in ts])))
        )
        a_emb.append(
            np.asarray(embed_audio(np.stack([audio_feats[a : a + feats_per_window] for a in As])))
        )
    return lse_from_distances(sync_distances(np.concatenate(v_emb), np.concatenate(a_emb), vshift))


def syncnet_v2_score(
    model: SyncNetV2,
    variables: dict,
    crops_rgb: np.ndarray,
    audio: np.ndarray,
    sample_rate: int = 16000,
    *,
    vshift: int = VSHIFT,
) -> LSEResult:
    """Sync-C / Sync-D of one clip with the pretrained SyncNet.

    Args:
      model, variables: from `load_syncnet_v2`.
      crops_rgb: (F, 224, 224, 3) uint8 RGB face crops at 25 fps (see `crop_faces`).
      audio: (S,) 16 kHz mono samples on the int16 scale (`int16_scale` for float audio).
      sample_rate: must be 16000 (SyncNet's MFCC windows assume 100 Hz features, 25 fps video).
      vshift: largest shift in frames.

    Returns:
      LSEResult.
    """
    if sample_rate != 16000:
        raise ValueError(f"SyncNet v2 expects 16 kHz audio, got {sample_rate}")
    # Weights are jit arguments, not closed-over constants (50 MB would be folded into the HLO).
    ev = jax.jit(lambda w, x: model.apply(w, x, method=SyncNetV2.embed_video))
    ea = jax.jit(lambda w, x: model.apply(w, x, method=SyncNetV2.embed_audio))
    video = np.asarray(crops_rgb)[..., ::-1].astype(np.float32)  # cv2 frames are BGR
    n_frames = min(len(video), len(audio) // SAMPLES_PER_FRAME)
    feats = mfcc(audio, sample_rate).astype(np.float32)
    embed_v, embed_a = (lambda x: ev(variables, x)), (lambda x: ea(variables, x))
    return lse_score(embed_v, embed_a, video, feats, n_frames=n_frames, vshift=vshift)
