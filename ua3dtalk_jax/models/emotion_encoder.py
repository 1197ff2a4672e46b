"""Emotion encoding f_emotion (paper Eq. 6): hexplane features ⊙ codebook-quantised emotion.

    e = Linear(f_emo-attn)                                   (128 → 64)
    for each scale s ∈ multires (paper {1, 2, 4}):
        C_s   ∈ R^{(64·s) × 64}  learned codebook (entries = base_res · s)
        q_s   = softmax(e C_sᵀ / √64) C_s                     attention query of the codebook
        f_s   = Π_{(i,j)} Interp(R^s_{ij}(p)) ⊙ q_s           plane product ⊙ queried code
    f_emotion = ⊕_s f_s                                      (N, 64 · len(multires)) = (N, 192)

The codebooks are initialised uniform(0.1, 0.5) like the planes (the authors' choice).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ua3dtalk_jax.models.hexplane import HexPlaneField, uniform_init


class EmotionEncoder(nn.Module):
    """f_emo-attn (E,) and points (N, 3) → f_emotion (N, dim · len(multires)).

    Attributes:
      dim: width of the projected emotion code, the codebook entries and the plane channels (64).
      bound, base_res, multires: the emotion hexplane (±0.15, 64, (1, 2, 4)).
    """

    dim: int = 64
    bound: float = 0.15
    base_res: int = 64
    multires: tuple[int, ...] = (1, 2, 4)

    @property
    def out_dim(self) -> int:
        return self.dim * len(self.multires)

    @nn.compact
    def __call__(self, f_emo: jax.Array, xyz: jax.Array) -> tuple[jax.Array, dict]:
        """Encodes the emotion at every Gaussian.

        Args:
          f_emo: (E,) emotion-attended audio embedding f_emo-attn (E = 128).
          xyz: (N, 3) Gaussian centres.
        Returns:
          (N, dim · S) f_emotion and {"code_att": list of (base_res·s,) attention weights,
          "query": (S, dim) queried codes}.
        """
        if f_emo.ndim != 1:
            raise ValueError(f"f_emo must be one frame's (E,) vector, got {f_emo.shape}")
        e = nn.Dense(self.dim, name="proj")(f_emo)
        _, planes = HexPlaneField(self.bound, self.base_res, self.multires, self.dim, name="grid")(
            xyz
        )
        feats, atts, queries = [], [], []
        for s_idx, mult in enumerate(self.multires):
            book = self.param(
                f"codebook_{s_idx}", uniform_init(0.1, 0.5), (self.base_res * mult, self.dim)
            )
            att = jax.nn.softmax(book @ e / jnp.sqrt(float(self.dim)))
            query = att @ book
            feats.append(planes["per_scale"][s_idx] * query[None, :])
            atts.append(att)
            queries.append(query)
        return jnp.concatenate(feats, axis=-1), {"code_att": atts, "query": jnp.stack(queries)}
