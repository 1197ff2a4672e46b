"""Lip expert (paper §2.1 step 1): a Wav2Lip-style generator of the lower face from audio.

Input: the target face crop with its lower half masked (zeros) stacked on channels with a reference
crop of the same person, (B, S, S, 6) in [0, 1], and the frame's Wav2Lip mel chunk (B, 80, 16).
A conv encoder (one stride-2 stage per width after the first) keeps skip features; the audio
encoder (the SyncNet audio stack) gives a vector that is tiled over the bottleneck; the decoder
upsamples (nearest ×2 then conv, instead of Wav2Lip's transposed convs) through the skips to a
sigmoid RGB crop (B, S, S, 3): the "lip-wav image". Trained with L1 plus the frozen SyncNet's sync
loss (`train/stage1/prior.py`).

Two options exist for short (CPU) schedules, both off in the paper preset:
  audio_norm       the audio stack's norm. GroupNorm normalises each mel window over its own
                   time×frequency extent, which removes most of its loudness — the cue that says
                   how far the mouth opens (Wav2Lip's BatchNorm keeps it). "none" keeps it.
  audio_all_stages the audio vector is also tiled into every decoder stage (not only the
                   bottleneck), so the lower-face pixels see it one conv away.
  audio_proj       with audio_all_stages: each decoder stage gets the audio vector through its
                   own Dense layer to that stage's width (instead of the whole vector), which
                   makes the full-resolution stages several times cheaper.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ua3dtalk_jax.models.prior.conv import ConvBlock, ConvStack


def mask_lower_half(faces: jax.Array) -> jax.Array:
    """Zeros the lower half of (..., S, S, C) crops (Wav2Lip's masked generator input)."""
    s = faces.shape[-3]
    keep = (jnp.arange(s) < s // 2).astype(faces.dtype)[:, None, None]
    return faces * keep


class LipExpert(nn.Module):
    """U-Net generator; `channels` per encoder stage (stage 0 full resolution)."""

    channels: tuple
    audio_specs: tuple
    norm: str = "group"
    audio_norm: str = "group"
    audio_all_stages: bool = False
    audio_proj: bool = False

    @nn.compact
    def __call__(self, faces: jax.Array, mel: jax.Array) -> tuple[jax.Array, dict]:
        """Generates the lip-synced face crops.

        Args:
          faces: (B, S, S, 6) masked target ‖ reference crops in [0, 1]; S divisible by
            2^(len(channels) - 1).
          mel: (B, 80, 16) Wav2Lip mel chunks.
        Returns:
          (B, S, S, 3) images in [0, 1] and {"audio": (B, A)} intermediates.
        """
        skips = []
        x = faces
        for i, c in enumerate(self.channels):
            x = ConvBlock(c, (3, 3), (1, 1) if i == 0 else (2, 2), (1, 1), norm=self.norm)(x)
            x = ConvBlock(c, residual=True, norm=self.norm)(x)
            skips.append(x)
        a = jnp.mean(ConvStack(self.audio_specs, self.audio_norm)(mel[..., None]), axis=(1, 2))
        tiled = lambda v, x: jnp.broadcast_to(v[:, None, None], x.shape[:3] + v.shape[-1:])
        x = jnp.concatenate([x, tiled(a, x)], -1)
        x = ConvBlock(self.channels[-1], norm=self.norm)(x)
        for i in reversed(range(len(self.channels))):
            extra = []
            if self.audio_all_stages:
                v = nn.Dense(self.channels[i], name=f"audio_proj_{i}")(a) if self.audio_proj else a
                extra = [tiled(v, x)]
            x = jnp.concatenate([x, skips[i]] + extra, -1)
            x = ConvBlock(self.channels[i], norm=self.norm)(x)
            x = ConvBlock(self.channels[i], residual=True, norm=self.norm)(x)
            if i > 0:
                b, h, w, c = x.shape
                x = jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest")
        out = nn.sigmoid(nn.Conv(3, (1, 1))(x))
        return out, {"audio": a}
