"""FuseNet (paper §2.1 step 3, Eq. 4): f_exp (64) + f_tone (64) → f_gen-exp (E).

No public code exists; designed from the paper's description — f_exp carries the
content-synchronised expression and f_tone complements it with person-specific style — as a linear
content path plus an MLP correction that sees both:

    f_gen-exp = A · f_exp + MLP([f_exp ‖ f_tone]),     MLP = Linear→LReLU→Linear→LReLU→Linear

trained with L_recon = ‖f_gen-exp − f_gt-exp‖² (Eq. 4). The linear path keeps the reconstruction
well-posed from the first step; the MLP can only add what the tone explains.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

LEAK = 0.2


class FuseNet(nn.Module):
    hidden: int
    out_dim: int

    @nn.compact
    def __call__(self, f_exp: jax.Array, f_tone: jax.Array) -> tuple[jax.Array, dict]:
        """Fuses the prior features.

        Args:
          f_exp: (..., 64) expression feature.
          f_tone: (..., 64) tone feature.
        Returns:
          f_gen-exp (..., out_dim) and {"content": (..., out_dim), "style": (..., out_dim)}.
        """
        content = nn.Dense(self.out_dim, name="content")(f_exp)
        x = jnp.concatenate([f_exp, f_tone], axis=-1)
        x = nn.leaky_relu(nn.Dense(self.hidden)(x), LEAK)
        x = nn.leaky_relu(nn.Dense(self.hidden)(x), LEAK)
        style = nn.Dense(self.out_dim, name="style")(x)
        return content + style, {"content": content, "style": style}
