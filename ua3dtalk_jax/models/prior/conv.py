"""Conv building blocks shared by the Prior Extraction models (paper §2.1).

`ConvBlock` is Wav2Lip's `Conv2d`: conv → norm → (+ input when residual) → ReLU. Wav2Lip normalises
with BatchNorm; here the norm is stateless GroupNorm ("group") so every model stays a pure
`init`/`apply` function, or absent ("none") — the form a pretrained BatchNorm takes once folded into
its conv (see `weights.py`). `ConvStack` runs a tuple of 8-int layer specs
(features, kh, kw, sh, sw, ph, pw, residual) from `configs/stage1.py`. Images are NHWC.
"""

from __future__ import annotations

import flax.linen as nn
import jax

GROUPS = 8  # GroupNorm groups (fewer when a layer has fewer channels)


def _groups(features: int) -> int:
    g = min(GROUPS, features)
    while features % g:
        g -= 1
    return g


class ConvBlock(nn.Module):
    """conv(k, s, p) → norm → (+x) → ReLU on (B, H, W, C)."""

    features: int
    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (1, 1)
    residual: bool = False
    norm: str = "group"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ph, pw = self.padding
        y = nn.Conv(self.features, self.kernel, self.stride, padding=((ph, ph), (pw, pw)))(x)
        if self.norm == "group":
            y = nn.GroupNorm(num_groups=_groups(self.features))(y)
        elif self.norm != "none":
            raise ValueError(f"unknown norm {self.norm!r}")
        if self.residual:
            y = y + x
        return nn.relu(y)


class ConvStack(nn.Module):
    """A sequence of `ConvBlock`s from 8-int specs; submodules are named ConvBlock_0, 1, …"""

    specs: tuple
    norm: str = "group"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for f, kh, kw, sh, sw, ph, pw, res in self.specs:
            x = ConvBlock(int(f), (kh, kw), (sh, sw), (ph, pw), bool(res), self.norm)(x)
        return x
