"""Audio–lip synchronisation expert (paper §2.1 step 1): the Wav2Lip colour SyncNet.

A face encoder sees the lower halves of T = 5 consecutive face crops stacked on the channel axis
(B, S/2, S, 3T) in [0, 1]; an audio encoder sees the Wav2Lip mel window of the same 0.2 s as a
one-channel image (B, 80, 16, 1) (mel bins × mel frames, as Wav2Lip's [1, 80, 16]). Both end in a
global average pool (the identity on Wav2Lip's 1×1 output) and are L2-normalised; after the final
ReLU both embeddings are non-negative, so the cosine similarity lies in [0, 1] and is trained with
binary cross-entropy against in-sync (1) / shifted (0) labels (Wav2Lip's `cosine_loss`).
`calibrated=True` (cpu/tiny presets) maps the cosine through σ(a·cos + b) with two learned scalars:
the raw-cosine BCE sits at ln 2 for thousands of steps before it starts to separate (a known Wav2Lip
behaviour), too long for a CPU budget; the calibrated head only rescales the same score, so the
ranking (AUC) and the frozen-expert use are unchanged in kind.
`centre=True` (cpu/tiny presets) subtracts each pooled embedding's mean over its channels before
the L2 normalisation (a LayerNorm without gain), so the embeddings are signed and the cosine spans
[-1, 1] instead of crowding near one corner of the positive orthant. With the contrastive term of
the training step (`info_nce`, `train/stage1/prior.py`) this is what lets the cpu-sized SyncNet
leave the ln 2 plateau within a few hundred steps (BUILD_NOTES, "A SyncNet that separates").
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ua3dtalk_jax.models.prior.conv import ConvStack

NORM_EPS = 1e-12  # F.normalize's eps
BCE_EPS = 1e-7  # clip of the similarity inside the log
CAL_SCALE0 = 10.0  # initial logit scale of the calibrated head


def l2_normalize(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), NORM_EPS)


class SyncNet(nn.Module):
    """Wav2Lip-style SyncNet; specs from `configs.stage1` (exact Wav2Lip layers in "paper")."""

    face_specs: tuple
    audio_specs: tuple
    norm: str = "group"
    calibrated: bool = False  # p = σ(a·cos + b) with learned a, b instead of p = cos
    centre: bool = False  # subtract each embedding's channel mean before normalising

    def setup(self):
        self.face_encoder = ConvStack(self.face_specs, self.norm)
        self.audio_encoder = ConvStack(self.audio_specs, self.norm)
        if self.calibrated:
            self.logit_scale = self.param("logit_scale", lambda _: jnp.float32(CAL_SCALE0))
            b0 = 0.0 if self.centre else -CAL_SCALE0 / 2  # the cosine that maps to p = 0.5: 0 or ½
            self.logit_bias = self.param("logit_bias", lambda _: jnp.float32(b0))

    def embed_face(self, faces: jax.Array) -> jax.Array:
        """(B, S/2, S, 3T) lower-face stacks in [0, 1] → (B, D) unit embeddings."""
        return self._unit(jnp.mean(self.face_encoder(faces), axis=(1, 2)))

    def embed_audio(self, mel: jax.Array) -> jax.Array:
        """(B, 80, 16) mel windows → (B, D) unit embeddings."""
        return self._unit(jnp.mean(self.audio_encoder(mel[..., None]), axis=(1, 2)))

    def _unit(self, x: jax.Array) -> jax.Array:
        return l2_normalize(x - jnp.mean(x, axis=-1, keepdims=True) if self.centre else x)

    def __call__(self, mel: jax.Array, faces: jax.Array) -> tuple[jax.Array, dict]:
        """Cosine similarity of each (mel, faces) pair.

        Args:
          mel: (B, 80, 16) Wav2Lip mel windows.
          faces: (B, S/2, S, 3T) stacked lower-face crops.
        Returns:
          sim (B,) in [0, 1] ([-1, 1] for a centred, uncalibrated net) and {"audio": (B, D),
          "face": (B, D), "cos": (B,)}.
        """
        return self.score(self.embed_audio(mel), self.embed_face(faces))

    def score(self, a: jax.Array, f: jax.Array) -> tuple[jax.Array, dict]:
        """(B, D) unit audio and face embeddings → sim (B,) as `__call__` returns it."""
        cos = jnp.sum(a * f, axis=-1)
        if not self.calibrated:
            return cos, {"audio": a, "face": f, "cos": cos}
        p = nn.sigmoid(self.logit_scale * cos + self.logit_bias)
        return p, {"audio": a, "face": f, "cos": cos}


def sync_bce(sim: jax.Array, label: jax.Array) -> jax.Array:
    """Mean binary cross-entropy of similarities (B,) against labels (B,) in {0, 1}."""
    p = jnp.clip(sim, BCE_EPS, 1.0 - BCE_EPS)
    return -jnp.mean(label * jnp.log(p) + (1.0 - label) * jnp.log1p(-p))


def info_nce(audio: jax.Array, face: jax.Array, scale: float) -> jax.Array:
    """Symmetric InfoNCE of B in-sync (audio, face) unit-embedding pairs (B, D): row i's positive
    is column i, the other B − 1 windows of the batch are its negatives (CLIP's loss, fixed
    temperature 1/scale)."""
    logits = scale * audio @ face.T
    ce = lambda z: -jnp.mean(jnp.diagonal(jax.nn.log_softmax(z, axis=-1)))
    return 0.5 * (ce(logits) + ce(logits.T))


def stack_lower_halves(frames: jax.Array) -> jax.Array:
    """(B, T, S, S, 3) face crops → (B, S/2, S, 3T) lower halves, frames stacked on channels."""
    b, t, s, _, c = frames.shape
    lower = frames[:, :, s // 2 :]
    return jnp.transpose(lower, (0, 2, 3, 1, 4)).reshape(b, s - s // 2, s, t * c)


def roc_auc(pos: jax.Array, neg: jax.Array) -> float:
    """Area under the ROC curve of scores `pos` (P,) over `neg` (Q,) (ties count one half)."""
    gt = jnp.mean((pos[:, None] > neg[None, :]).astype(jnp.float32))
    eq = jnp.mean((pos[:, None] == neg[None, :]).astype(jnp.float32))
    return float(gt + 0.5 * eq)
