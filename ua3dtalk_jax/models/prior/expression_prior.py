"""3D expression prior (paper §2.1 step 2): face image → expression coefficients, f_exp (64).

The authors use Deep3DFaceRecon (SadTalker's `CropAndExtract`, a ResNet-50 regressing 257 BFM
coefficients, of which the 64 expression ones are f_exp). No 3DMM fitter or its weights exist here,
so this encoder is trained to regress the subject's tracked expression coefficients f_gt-exp (E)
from real face crops, through a 64-wide linear bottleneck that *is* f_exp:

    f_exp = W₁ · pool(conv(image)) + b₁   (64),     ê = W₂ · f_exp + b₂   (E)

Applied to the lip expert's lip-wav images, f_exp is the content-synchronised expression feature.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ua3dtalk_jax.models.prior.conv import ConvBlock


class ExpressionPrior(nn.Module):
    """Conv encoder (stride 2 per stage) → f_exp (feature_dim) → coefficients (exp_dim)."""

    channels: tuple
    exp_dim: int
    feature_dim: int = 64
    norm: str = "group"

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, dict]:
        """Regresses expression coefficients.

        Args:
          images: (B, S, S, 3) face crops in [0, 1].
        Returns:
          coefficients (B, exp_dim) and {"f_exp": (B, feature_dim)}.
        """
        x = images * 2.0 - 1.0
        for c in self.channels:
            x = ConvBlock(c, (3, 3), (2, 2), (1, 1), norm=self.norm)(x)
            x = ConvBlock(c, residual=True, norm=self.norm)(x)
        # Pool to a 2×2 grid rather than 1×1: where the mouth is matters for an expression code.
        b, h, w, c = x.shape
        x = jax.image.resize(x, (b, 2, 2, c), "linear") if (h, w) != (2, 2) else x
        f_exp = nn.Dense(self.feature_dim, name="to_f_exp")(x.reshape(b, -1))
        coeffs = nn.Dense(self.exp_dim, name="to_coeffs")(f_exp)
        return coeffs, {"f_exp": f_exp}


def recon_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """‖pred − target‖² summed over features, mean over the batch (Eq. 4's form)."""
    return jnp.mean(jnp.sum((pred - target) ** 2, axis=-1))
