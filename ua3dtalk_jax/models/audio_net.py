"""Audio code and the face branch's audio + eye/AU view (TalkingGaussian / ER-NeRF baseline, [5]).

AudioNet maps one frame's window of audio features (Wa, F) to a 32-d code with four stride-2 1-D
convolutions (Wa ≤ 16 → 1 in time: DeepSpeech and our mel windows 16, HuBERT 2) and two Linears;
AudioAttNet smooths the codes of an 8-frame window by a learned attention over time (softmax over
the 8 frames). F is 29 for the authors' DeepSpeech
logits, 1024 for HuBERT, 44 for ER-NeRF's esperanto and 32 for ours (`audio.precomputed`).

The face branch's audio view (38-d) is [enc_a ⊙ aud_ch_att(enc_x) (32), enc_e (6)], with
enc_e = [exp_encode(AU01, AU04, AU05, AU06, AU07), AU45] ⊙ ReLU(eye_att(enc_x)). Layouts: "aud"
is (W = 8 frames, Wa time steps, F); the authors' [8, 29, 16] is the transpose of the last two.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ua3dtalk_jax.models.heads import BiasFreeMLP

LEAK = 0.02  # LeakyReLU slope of the ER-NeRF audio nets.


class AudioNet(nn.Module):
    """(W, Wa, F) per-frame feature windows (Wa ≤ 16) → (W, out_dim) codes."""

    out_dim: int = 32
    conv_features: tuple[int, ...] = (32, 32, 64, 64)

    @nn.compact
    def __call__(self, aud: jax.Array) -> jax.Array:
        x = aud
        for c in self.conv_features:
            x = nn.Conv(c, kernel_size=(3,), strides=(2,), padding=((1, 1),))(x)
            x = nn.leaky_relu(x, LEAK)
        x = x.reshape(x.shape[0], -1)  # time is 1 after the convolutions for Wa ≤ 16 steps
        x = nn.leaky_relu(nn.Dense(self.conv_features[-1])(x), LEAK)
        return nn.Dense(self.out_dim)(x)


class AudioAttNet(nn.Module):
    """(W, dim) codes of a W-frame window → (dim,) attention-weighted code, plus the weights."""

    conv_features: tuple[int, ...] = (16, 8, 4, 2, 1)

    @nn.compact
    def __call__(self, codes: jax.Array) -> tuple[jax.Array, jax.Array]:
        y = codes
        for c in self.conv_features:
            y = nn.leaky_relu(nn.Conv(c, kernel_size=(3,), padding=((1, 1),))(y), LEAK)
        logits = nn.Dense(codes.shape[0])(y[:, 0])
        weights = jax.nn.softmax(logits)
        return weights @ codes, weights


class AudioView(nn.Module):
    """Audio (and, for the face, eye/AU) view features per Gaussian.

    Attributes:
      audio_dim: width of the audio code (32).
      channel_attention: gate the audio code per Gaussian by aud_ch_att(enc_x) (face: yes).
      eye: append the eye/AU path enc_e (face: yes).
    """

    audio_dim: int = 32
    channel_attention: bool = True
    eye: bool = True

    @property
    def out_dim(self) -> int:
        return self.audio_dim + (6 if self.eye else 0)

    @nn.compact
    def __call__(
        self, aud: jax.Array, au_exp: jax.Array, enc_x: jax.Array
    ) -> tuple[jax.Array, dict]:
        """Builds the audio view.

        Args:
          aud: (W, Wa, F) audio feature windows of the W frames around this one.
          au_exp: (6,) [AU01, AU04, AU05, AU06, AU07, AU45].
          enc_x: (N, X) xyz encodings.
        Returns:
          (N, out_dim) features and intermediates {"enc_a" (audio_dim,), "time_att" (W,),
          "aud_ch_att_norm" (N,), "eye_att_norm" (N,)} (norms are zeros where a path is off).
        """
        n = enc_x.shape[0]
        enc_a, time_att = AudioAttNet(name="audio_att")(
            AudioNet(self.audio_dim, name="audio_net")(aud)
        )
        aux = {"enc_a": enc_a, "time_att": time_att}
        feat = jnp.broadcast_to(enc_a, (n, self.audio_dim))
        aux["aud_ch_att_norm"] = jnp.zeros((n,), enc_x.dtype)
        aux["eye_att_norm"] = jnp.zeros((n,), enc_x.dtype)
        if self.channel_attention:
            att = BiasFreeMLP(self.audio_dim, 32, 2, name="aud_ch_att")(enc_x)
            feat = feat * att
            aux["aud_ch_att_norm"] = jnp.linalg.norm(att, axis=-1)
        if self.eye:
            eye_att = nn.relu(BiasFreeMLP(6, 16, 2, name="eye_att")(enc_x))
            exp = BiasFreeMLP(5, 16, 2, name="exp_encode")(au_exp[:5])
            enc_e = jnp.concatenate([exp, au_exp[5:6]])[None, :] * eye_att
            feat = jnp.concatenate([feat, enc_e], axis=-1)
            aux["eye_att_norm"] = jnp.linalg.norm(eye_att, axis=-1)
        return feat, aux
