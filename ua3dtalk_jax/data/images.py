"""The image convention between the subject loader and the networks: frames, crops and masks are
read as uint8 (…, 3) and become float32 in [0, 1] inside the jitted steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def to_float(image: jax.Array) -> jax.Array:
    """uint8 (…, 3) → float32 in [0, 1]."""
    return image.astype(jnp.float32) / 255.0
