"""Speech-emotion encoder of Emotion Distillation (paper §2.2, Eq. 5; CA-MSER's co-attention).

Three views of the audio window centred on a video frame:
  spectrogram image (B, h, w, 3) → AlexNet conv stack → Dropout → Linear → ReLU → s (128)
  MFCC sequence     (B, Tm, 40)  → BiLSTM → flatten → Dropout → Linear → ReLU → m (128)
  raw waveform      (B, Sw)      → wav2vec-2.0 conv feature encoder → w (B, F, D)
Co-attention: a = ReLU(Linear([s ‖ m])) (B, F) weights the F waveform frames (no softmax, as in
CA-MSER; averaged over F rather than summed so the scale does not depend on the window), then
f_emo-attn = ReLU(Linear(Σ_f a_f w_f / F)) (128). f_emo-attn alone feeds the emotion classifier
(C classes) and the expression predictor (E): CA-MSER classifies from [s ‖ m ‖ f]; here the
classifier sees only f_emo-attn so that the feature stage 2 consumes is the one that is trained
to carry the emotion. The wav2vec 2.0 transformer is not reproduced (no pretrained weights exist
offline; the conv encoder is trained here).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ua3dtalk_jax.models.emotion.alexnet import AlexNetFeatures
from ua3dtalk_jax.models.prior.stylenet import BiLSTM

# wav2vec 2.0 feature-encoder (kernel, stride) per layer: 320× downsampling, 25 ms receptive field.
WAV2VEC_LAYERS = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))
WAV_NORM_EPS = 1e-7
TORCH_NORM_EPS = 1e-5  # torch's GroupNorm / LayerNorm default (flax: 1e-6)


def wav_frames(n_samples: int) -> int:
    """Number of frames the wav2vec-2.0 conv encoder gives for `n_samples` (48000 → 149)."""
    n = n_samples
    for k, s in WAV2VEC_LAYERS:
        n = (n - k) // s + 1
    return n


class WavEncoder(nn.Module):
    """wav2vec 2.0 conv feature encoder (GroupNorm on layer 0, GELU) + feature projection.

    `torch_numerics`: exact GELU and eps 1e-5 as in torch, for weights converted from a wav2vec 2.0
    checkpoint (`wav2vec.load_wav2vec2_encoder`); off (tanh GELU, flax eps) when trained here.
    """

    channels: int = 512
    out_dim: int = 768
    torch_numerics: bool = False

    @nn.compact
    def __call__(self, wav: jax.Array) -> jax.Array:
        """(B, S) waveform → (B, wav_frames(S), out_dim)."""
        mu = jnp.mean(wav, axis=-1, keepdims=True)
        sd = jnp.std(wav, axis=-1, keepdims=True)
        x = ((wav - mu) / (sd + WAV_NORM_EPS))[..., None]  # the wav2vec2 processor's normalisation
        eps = TORCH_NORM_EPS if self.torch_numerics else 1e-6
        for i, (k, s) in enumerate(WAV2VEC_LAYERS):
            x = nn.Conv(self.channels, (k,), (s,), padding="VALID", use_bias=False)(x)
            if i == 0:
                x = nn.GroupNorm(num_groups=self.channels, epsilon=eps)(x)
            x = nn.gelu(x, approximate=not self.torch_numerics)
        return nn.Dense(self.out_dim)(nn.LayerNorm(epsilon=eps)(x))


class SpeechEmotionEncoder(nn.Module):
    """Co-attention speech-emotion encoder → f_emo-attn, emotion logits, expression prediction."""

    n_classes: int
    exp_dim: int
    n_wav_frames: int
    alexnet_pool: int = 6
    alexnet_trainable: bool = True
    lstm_hidden: int = 256
    lstm_layers: int = 2
    wav_channels: int = 512
    wav_dim: int = 768
    feature_dim: int = 128
    dropout: float = 0.1
    lstm_dropout: float = 0.5
    wav_torch_numerics: bool = False  # WavEncoder.torch_numerics (converted wav2vec 2.0 weights)

    @nn.compact
    def __call__(
        self, spec: jax.Array, mfcc: jax.Array, wav: jax.Array, *, train: bool = False
    ) -> tuple[jax.Array, jax.Array, dict]:
        """Encodes a batch of audio windows.

        Args:
          spec: (B, h, w, 3) ImageNet-normalised jet spectrogram images.
          mfcc: (B, Tm, 40) per-frame L2-normalised MFCC sequences.
          wav: (B, Sw) raw waveform windows, Sw giving `n_wav_frames` encoder frames.
          train: enables dropout (needs a "dropout" rng).
        Returns:
          logits (B, n_classes), predicted expression (B, exp_dim), and intermediates
          {"f_emo": (B, 128), "spec": (B, 128), "mfcc": (B, 128), "attention": (B, F)}.
        """
        drop = lambda x: nn.Dropout(self.dropout, deterministic=not train)(x)
        s, _ = AlexNetFeatures(self.alexnet_pool, name="alexnet")(spec)
        if not self.alexnet_trainable:
            s = jax.lax.stop_gradient(s)
        s = nn.relu(nn.Dense(self.feature_dim, name="spec_fc")(drop(s)))
        m = BiLSTM(self.lstm_hidden, self.lstm_layers, self.lstm_dropout)(mfcc, train=train)
        m = nn.relu(nn.Dense(self.feature_dim, name="mfcc_fc")(drop(m.reshape(m.shape[0], -1))))
        w = WavEncoder(self.wav_channels, self.wav_dim, self.wav_torch_numerics,
                       name="wav_encoder")(wav)  # (B, F, D)
        if w.shape[1] != self.n_wav_frames:
            raise ValueError(f"wav window gives {w.shape[1]} frames, expected {self.n_wav_frames}")
        att = nn.relu(nn.Dense(self.n_wav_frames, name="coattention")(jnp.concatenate([s, m], -1)))
        pooled = jnp.einsum("bf,bfd->bd", att, w) / self.n_wav_frames
        f_emo = nn.relu(nn.Dense(self.feature_dim, name="emo_fc")(pooled))
        h = nn.relu(nn.Dense(self.feature_dim, name="cls_hidden")(drop(f_emo)))
        logits = nn.Dense(self.n_classes, name="classifier")(h)
        e = nn.relu(nn.Dense(self.feature_dim, name="exp_hidden")(f_emo))
        exp = nn.Dense(self.exp_dim, name="exp_head")(e)
        return logits, exp, {"f_emo": f_emo, "spec": s, "mfcc": m, "attention": att}


def finetune_loss(
    logits: jax.Array, labels: jax.Array, exp_pred: jax.Array, exp_gt: jax.Array, weight: float
) -> tuple[jax.Array, dict]:
    """Eq. 5: −Σ y log ŷ + ‖f_emo − f_gt-emo‖² (unlabelled frames, label −1, skip the CE term).

    Args:
      logits: (B, C); labels: (B,) int, −1 = unlabelled; exp_pred, exp_gt: (B, E).
      weight: weight of the L2 term (1 in Eq. 5).
    Returns:
      scalar loss and {"ce", "l2", "acc"}.
    """
    ce, acc = cross_entropy(logits, labels)
    l2 = jnp.mean(jnp.sum((exp_pred - exp_gt) ** 2, axis=-1))
    return ce + weight * l2, {"ce": ce, "l2": l2, "acc": acc}


def cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean CE and accuracy over entries with label ≥ 0; (B, C), (B,) → scalars."""
    valid = (labels >= 0).astype(logits.dtype)
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, jnp.maximum(labels, 0)[:, None], axis=-1)[:, 0]
    n = jnp.maximum(jnp.sum(valid), 1.0)
    acc = jnp.sum((jnp.argmax(logits, -1) == labels) * valid) / n
    return jnp.sum(nll * valid) / n, acc
