"""Speech-emotion encoder of Emotion Distillation (paper §2.2, Eq. 5; CA-MSER's co-attention).

Three views of the audio window centred on a video frame:
  spectrogram image (B, h, w, 3) → AlexNet conv stack → Dropout → Linear → ReLU → s (128)
  MFCC sequence     (B, Tm, 40)  → BiLSTM → flatten → Dropout → Linear → ReLU → m (128)
  raw waveform      (B, Sw)      → wav2vec 2.0 → w (B, F, D)
Co-attention: a = ReLU(Linear([s ‖ m])) (B, F) weights the F waveform frames (no softmax, as in
CA-MSER), f_emo-attn = ReLU(Linear(pooled)) (128), and an expression predictor (E) on f_emo-attn
gives Eq. 5's L2 term. Two waveform branches:

  pretrained (`wav2vec` set: a user's Hugging Face wav2vec 2.0, `wav2vec.load_wav2vec2`):
      CA-MSER's `Ser_Model`. The complete wav2vec 2.0 (`wav2vec_model.Wav2Vec2Model`, its last
      hidden state), frozen: run in eval mode under stop_gradient (CA-MSER fine-tunes it with
      the rest; a frozen feature extractor is what the paper's pipeline can afford, and the
      stage-1 optimiser leaves it untouched). The window is first zero-mean/unit-variance
      normalised as HF's Wav2Vec2FeatureExtractor does (`do_normalize`, wav2vec2-base's
      preprocessor setting). pooled = Σ_f a_f w_f (CA-MSER's matmul), Dropout before the
      co-attention Linear and before f's Linear, and the classifier on [s ‖ m ‖ f]:
      Dropout → 384→128 ReLU → Dropout → 128→128 ReLU → 128→C.
  from scratch (no weights; the cpu/tiny presets): wav2vec 2.0's conv feature encoder and
      projection only (`WavEncoder`, trained here), pooled = Σ_f a_f w_f / F (a mean, so that
      the scale does not depend on the window), and the classifier on f_emo-attn alone
      (128 → 128 ReLU → C), so that the feature stage 2 consumes is the one trained to carry
      the emotion.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ua3dtalk_jax.models.emotion.alexnet import AlexNetFeatures
from ua3dtalk_jax.models.emotion.wav2vec_model import Wav2Vec2Config, Wav2Vec2Model
from ua3dtalk_jax.models.prior.stylenet import BiLSTM

# wav2vec 2.0 feature-encoder (kernel, stride) per layer: 320× downsampling, 25 ms receptive field.
WAV2VEC_LAYERS = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))
WAV_NORM_EPS = 1e-7  # both normalisations below: the wav2vec2 processor's variance floor


def wav_frames(n_samples: int) -> int:
    """Number of frames the wav2vec-2.0 conv encoder gives for `n_samples` (48000 → 149)."""
    n = n_samples
    for k, s in WAV2VEC_LAYERS:
        n = (n - k) // s + 1
    return n


class WavEncoder(nn.Module):
    """wav2vec 2.0 conv feature encoder (GroupNorm on layer 0, tanh GELU) + feature projection,
    trained from scratch (without pretrained weights)."""

    channels: int = 512
    out_dim: int = 768

    @nn.compact
    def __call__(self, wav: jax.Array) -> jax.Array:
        """(B, S) waveform → (B, wav_frames(S), out_dim)."""
        mu = jnp.mean(wav, axis=-1, keepdims=True)
        sd = jnp.std(wav, axis=-1, keepdims=True)
        x = ((wav - mu) / (sd + WAV_NORM_EPS))[..., None]  # the wav2vec2 processor's normalisation
        for i, (k, s) in enumerate(WAV2VEC_LAYERS):
            x = nn.Conv(self.channels, (k,), (s,), padding="VALID", use_bias=False)(x)
            if i == 0:
                x = nn.GroupNorm(num_groups=self.channels, epsilon=1e-6)(x)
            x = nn.gelu(x)
        return nn.Dense(self.out_dim)(nn.LayerNorm(epsilon=1e-6)(x))


def processor_normalize(wav: jax.Array) -> jax.Array:
    """HF Wav2Vec2FeatureExtractor's do_normalize per row: (x − mean) / √(var + 1e-7); (B, S)."""
    mu = jnp.mean(wav, axis=-1, keepdims=True)
    var = jnp.var(wav, axis=-1, keepdims=True)
    return (wav - mu) / jnp.sqrt(var + WAV_NORM_EPS)


class SpeechEmotionEncoder(nn.Module):
    """Co-attention speech-emotion encoder → f_emo-attn, emotion logits, expression prediction.

    `wav2vec` set: the pretrained branch and CA-MSER's head (module docstring); its params go
    under "wav2vec2" (`wav2vec.load_wav2vec2`'s), and `wav_channels`/`wav_dim` are unused.
    """

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
    wav2vec: Wav2Vec2Config | None = None  # a pretrained wav2vec 2.0's config: CA-MSER's branch
    wav2vec_normalize: bool = True  # HF processor's do_normalize before the pretrained wav2vec

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
        if self.wav2vec is None:
            w = WavEncoder(self.wav_channels, self.wav_dim, name="wav_encoder")(wav)  # (B, F, D)
        else:
            x = processor_normalize(wav) if self.wav2vec_normalize else wav
            w = jax.lax.stop_gradient(Wav2Vec2Model(self.wav2vec, name="wav2vec2")(x))  # frozen
        if w.shape[1] != self.n_wav_frames:
            raise ValueError(f"wav window gives {w.shape[1]} frames, expected {self.n_wav_frames}")
        if self.wav2vec is None:
            f_emo, att, logits = self._scratch_head(s, m, w, drop)
        else:
            f_emo, att, logits = self._ca_mser_head(s, m, w, drop)
        e = nn.relu(nn.Dense(self.feature_dim, name="exp_hidden")(f_emo))
        exp = nn.Dense(self.exp_dim, name="exp_head")(e)
        return logits, exp, {"f_emo": f_emo, "spec": s, "mfcc": m, "attention": att}

    def _scratch_head(self, s, m, w, drop) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Mean-pooled co-attention; the classifier on f_emo-attn alone → (f_emo, att, logits)."""
        att = nn.relu(nn.Dense(self.n_wav_frames, name="coattention")(jnp.concatenate([s, m], -1)))
        pooled = jnp.einsum("bf,bfd->bd", att, w) / self.n_wav_frames
        f_emo = nn.relu(nn.Dense(self.feature_dim, name="emo_fc")(pooled))
        h = nn.relu(nn.Dense(self.feature_dim, name="cls_hidden")(drop(f_emo)))
        return f_emo, att, nn.Dense(self.n_classes, name="classifier")(h)

    def _ca_mser_head(self, s, m, w, drop) -> tuple[jax.Array, jax.Array, jax.Array]:
        """CA-MSER's Ser_Model: summed co-attention, the classifier on [s ‖ m ‖ f]."""
        sm = jnp.concatenate([s, m], -1)
        att = nn.relu(nn.Dense(self.n_wav_frames, name="coattention")(drop(sm)))
        pooled = jnp.einsum("bf,bfd->bd", att, w)  # torch.matmul((B, 1, F), (B, F, D))
        f_emo = nn.relu(nn.Dense(self.feature_dim, name="emo_fc")(drop(pooled)))
        h = jnp.concatenate([s, m, f_emo], -1)
        h = nn.relu(nn.Dense(self.feature_dim, name="fusion_1")(drop(h)))
        h = nn.relu(nn.Dense(self.feature_dim, name="fusion_2")(drop(h)))
        return f_emo, att, nn.Dense(self.n_classes, name="classifier")(h)


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
