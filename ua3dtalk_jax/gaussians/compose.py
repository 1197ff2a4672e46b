"""Compositing the branches: face over mouth over torso/background (the authors' fuse step, §4).

The face and mouth branches are rendered over the training background g (green); with their
accumulated alphas α the background is swapped for what lies behind:

    M = mouth_rgb − g (1 − α_m) + B (1 − α_m)        mouth over the torso/background image B
    I = face_rgb  − g (1 − α_f) + M (1 − α_f)        face over that

With g = 0 (black render background) this is ordinary front-to-back "over" compositing.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

GREEN = (0.0, 1.0, 0.0)  # training background of both branches


def composite(
    face_rgb: jax.Array,
    face_alpha: jax.Array,
    mouth_rgb: jax.Array,
    mouth_alpha: jax.Array,
    background: jax.Array,
    render_bg=GREEN,
) -> tuple[jax.Array, dict]:
    """Fuses the branch renders over the torso/background frame.

    Args:
      face_rgb, mouth_rgb: (H, W, 3) renders over the constant colour `render_bg`.
      face_alpha, mouth_alpha: (H, W) accumulated alphas of those renders.
      background: (H, W, 3) torso composited over the static background (B).
      render_bg: (3,) the colour the branches were rendered over (g).
    Returns:
      (H, W, 3) fused image I and {"mouth_over_bg": (H, W, 3) M}.
    """
    chex.assert_equal_shape([face_rgb, mouth_rgb, background])
    chex.assert_shape([face_alpha, mouth_alpha], face_rgb.shape[:2])
    g = jnp.asarray(render_bg, face_rgb.dtype)
    tm = (1.0 - mouth_alpha)[..., None]
    tf = (1.0 - face_alpha)[..., None]
    mouth_over = mouth_rgb - g * tm + background * tm
    fused = face_rgb - g * tf + mouth_over * tf
    return fused, {"mouth_over_bg": mouth_over}
