"""Per-frame inputs of the speech-emotion encoder (paper §2.2; CA-MSER's three views).

For each video frame i (time i / fps, the project's frame-time convention) a window of
`window_s` seconds centred on it (CA-MSER: 3 s segments; the cpu preset: 1 s) gives
  spec   (h, w, 3)  the CA-MSER spectrogram image: STFT (Hamming 40 ms, hop 10 ms, n_fft 800), first
                    200 bins, dB relative to the window's maximum floored at −top_db, min-max to
                    [0, 1], frequency flipped (low at the bottom), resized to (h, w), jet colour map,
                    ImageNet-normalised;
  mfcc   (Tm, 40)   40 MFCCs (htk mel) at 100 Hz, each frame L2-normalised, every `mfcc_stride`-th;
  wav    (Sw,)      the raw samples, Sw = 160 · round(100 · window_s).
Whole-clip arrays are computed once on the host (`emotion_stream`, via `audio.features`); the
per-window cut and the image transform run in JAX (`window_inputs`), so a training step can draw
random windows without materialising every frame's image. Windows past the clip ends see silence.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.audio import features

SILENCE_DB = -100.0  # librosa's amplitude_to_db floor (amin 1e-5) for the padding
MFCC_NORM_EPS = 1e-8
RANGE_EPS = 1e-6  # min-max normalisation of a silent window
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(rgb01: jax.Array) -> jax.Array:
    """(…, 3) RGB in [0, 1] → (x − mean) / std, the input AlexNet's ImageNet weights expect."""
    return (rgb01 - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


@functools.lru_cache(maxsize=1)
def jet_lut() -> np.ndarray:
    """matplotlib's jet colour map sampled at 256 levels, (256, 3) float32 in [0, 1]."""
    import matplotlib

    return matplotlib.colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)


def window_frames(cfg) -> int:
    """Spectrogram/MFCC rows (10 ms) per window."""
    return round(cfg.window_s * features.SAMPLE_RATE / cfg.hop)


def window_samples(cfg) -> int:
    """Raw samples per window."""
    return window_frames(cfg) * cfg.hop


def emotion_stream(wav: np.ndarray, cfg) -> dict:
    """Whole-clip arrays, padded by half a window of silence at each end.

    Args:
      wav: (S,) float32 16 kHz.
      cfg: the `emotion` sub-config.
    Returns:
      {"spec_db": (T + Wt, F) absolute dB, "mfcc": (T + Wt, 40) L2-normalised rows,
       "wav": (S + Sw,)} float32, T = 1 + S // hop, Wt = window_frames, Sw = window_samples.
    """
    wav = np.asarray(wav, np.float32)
    db = features.stft_db(
        wav,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop,
        win_length=cfg.win_length,
        n_bins=cfg.spec_bins,
        ref=1.0,
        top_db=None,
    )
    mf = features.mfcc(wav, cfg.n_mfcc)
    mf = mf / (np.linalg.norm(mf, axis=-1, keepdims=True) + MFCC_NORM_EPS)
    wt, sw = window_frames(cfg), window_samples(cfg)
    pad_rows = ((wt // 2, wt - wt // 2), (0, 0))
    return {
        "spec_db": np.pad(db, pad_rows, constant_values=SILENCE_DB).astype(np.float32),
        "mfcc": np.pad(mf, pad_rows).astype(np.float32),
        "wav": np.pad(wav, (sw // 2, sw - sw // 2)).astype(np.float32),
    }


def clips_corpus(wavs, labels, cfg) -> dict:
    """Labelled clips → a pre-training corpus: one stream, training windows inside the clips.

    The clips are concatenated with half a window of silence between them; window centres lie
    every `clip_hop_s` inside each clip (at least its middle), so no window mixes two labels much.

    Args:
      wavs: iterable of (S_k,) float32 16 kHz clips.
      labels: one class index per clip.
      cfg: the `emotion` sub-config.
    Returns:
      {"stream": `emotion_stream` arrays, "centres" (M,) int32, "labels" (M,) int32}, numpy.
    """
    gap = window_samples(cfg) // 2
    hop = max(1, int(cfg.clip_hop_s * features.SAMPLE_RATE))
    parts, centres, out_labels, pos = [], [], [], 0
    for wav, label in zip(wavs, labels, strict=True):
        wav = np.asarray(wav, np.float32)
        c = np.arange(hop // 2, len(wav), hop) if len(wav) > hop else np.array([len(wav) // 2])
        centres.append(pos + c)
        out_labels.append(np.full(len(c), label, np.int32))
        parts += [wav, np.zeros(gap, np.float32)]
        pos += len(wav) + gap
    if not parts:
        raise ValueError("an emotion corpus needs at least one clip")
    return {
        "stream": emotion_stream(np.concatenate(parts), cfg),
        "centres": np.concatenate(centres).astype(np.int32),
        "labels": np.concatenate(out_labels),
    }


def frame_centres(n_frames: int, fps: float) -> np.ndarray:
    """(N,) int32 sample index of each video frame's time i / fps."""
    return np.floor(np.arange(n_frames) * features.SAMPLE_RATE / fps + 0.5).astype(np.int32)


def spectrogram_image(db_window: jax.Array, cfg) -> jax.Array:
    """(Wt, F) dB window → (h, w, 3) ImageNet-normalised jet image (CA-MSER's transform)."""
    d = db_window - jnp.max(db_window)
    d = jnp.maximum(d, -cfg.top_db)
    lo, hi = jnp.min(d), jnp.max(d)
    v = (d - lo) / jnp.maximum(hi - lo, RANGE_EPS)
    img = jnp.flip(v.T, axis=0)  # rows = frequency, high at the top; columns = time
    h, w = cfg.image_hw
    img = jnp.clip(jax.image.resize(img, (h, w), "linear"), 0.0, 1.0)
    lut = jnp.asarray(jet_lut())
    x = img * 255.0
    i0 = jnp.clip(jnp.floor(x).astype(jnp.int32), 0, 254)
    t = (x - i0)[..., None]
    rgb = lut[i0] * (1.0 - t) + lut[i0 + 1] * t
    return imagenet_normalize(rgb)


def window_inputs(stream: dict, centres: jax.Array, cfg) -> dict:
    """Cuts the windows centred on `centres` and builds the encoder inputs (jittable).

    Args:
      stream: `emotion_stream` arrays (numpy or jax).
      centres: (B,) int sample positions in the unpadded clip.
      cfg: the `emotion` sub-config.
    Returns:
      {"spec": (B, h, w, 3), "mfcc": (B, Wt // mfcc_stride, 40), "wav": (B, Sw)} float32.
    """
    wt, sw = window_frames(cfg), window_samples(cfg)
    rows = jnp.floor(centres / cfg.hop + 0.5).astype(jnp.int32)  # padded start = centre row

    def one(r, c):
        db = jax.lax.dynamic_slice_in_dim(stream["spec_db"], r, wt, axis=0)
        mf = jax.lax.dynamic_slice_in_dim(stream["mfcc"], r, wt, axis=0)[:: cfg.mfcc_stride]
        wav = jax.lax.dynamic_slice_in_dim(stream["wav"], c, sw, axis=0)
        return spectrogram_image(db, cfg), mf, wav

    spec, mf, wav = jax.vmap(one)(rows, jnp.asarray(centres, jnp.int32))
    return {"spec": spec, "mfcc": mf, "wav": wav}
