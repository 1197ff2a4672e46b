"""StyleNet audio encoder (paper §2.1 step 3; NeRF-3DTalker's `Audio2style`): f_tone (64).

Each frame's Wav2Lip mel chunk (80, 16) is flattened to 1280; a bidirectional LSTM runs along the
frame sequence (the original treats its batch of consecutive frames as one sequence); then
Linear 2H→640→320→64, each with LeakyReLU(0.2), with Dropout(0.5) after the two hidden ones (the
original also drops out the 64-wide output; here f_tone is left intact — stage 2 consumes it).

Optional per-frame encoder (`frame_mlp`, empty in the original and the paper preset): Dense layers
with LeakyReLU applied to each flattened chunk before the LSTM, each preceded by Dropout
(`frame_dropout`). On a minute of audio the 1280-wide LSTM input memorises the training frames
(held-out R² of f_tone for the jaw 0.32); a 256-wide frame encoder with input dropout does not
(BUILD_NOTES, "f_tone that speaks"). `out_scale` > 0 replaces the output LeakyReLU by a
parameter-free LayerNorm times that scale, so stage 2 sees f_tone at a fixed magnitude.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

LEAK = 0.2


class BiLSTM(nn.Module):
    """`layers` stacked bidirectional LSTMs over axis 1 of (B, L, F) → (B, L, 2·hidden)."""

    hidden: int
    layers: int = 1
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        for i in range(self.layers):
            if i > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
            fwd = nn.RNN(nn.OptimizedLSTMCell(self.hidden))
            bwd = nn.RNN(nn.OptimizedLSTMCell(self.hidden))
            x = nn.Bidirectional(fwd, bwd)(x)
        return x


class StyleNet(nn.Module):
    """Mel-chunk sequence → per-frame f_tone."""

    lstm_hidden: int
    lstm_layers: int
    mlp: tuple
    out_dim: int = 64
    dropout: float = 0.5
    frame_mlp: tuple = ()
    frame_dropout: float = 0.0
    out_scale: float = 0.0  # > 0: f_tone = out_scale · LayerNorm(Linear(x)), no LeakyReLU

    @nn.compact
    def __call__(self, mel: jax.Array, *, train: bool = False) -> tuple[jax.Array, dict]:
        """Encodes a sequence of consecutive frames' mel chunks.

        Args:
          mel: (B, L, 80, 16) mel chunks of L consecutive video frames.
          train: enables dropout (needs a "dropout" rng).
        Returns:
          f_tone (B, L, out_dim) and {"lstm": (B, L, 2·lstm_hidden)}.
        """
        b, n = mel.shape[:2]
        x = mel.reshape(b, n, -1)
        for i, width in enumerate(self.frame_mlp):  # named: the other layers keep their names
            x = nn.Dropout(self.frame_dropout, deterministic=not train)(x)
            x = nn.leaky_relu(nn.Dense(width, name=f"frame_{i}")(x), LEAK)
        h = BiLSTM(self.lstm_hidden, self.lstm_layers, self.dropout)(x, train=train)
        x = h
        for width in self.mlp:
            x = nn.leaky_relu(nn.Dense(width)(x), LEAK)
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        f_tone = nn.Dense(self.out_dim)(x)
        if self.out_scale > 0:  # a fixed scale for stage 2 (parameter-free normalisation)
            f_tone = self.out_scale * nn.LayerNorm(use_bias=False, use_scale=False)(f_tone)
        else:
            f_tone = nn.leaky_relu(f_tone, LEAK)
        return f_tone, {"lstm": h}


def sequence_apply(fn, mel: jax.Array, window: int) -> jax.Array:
    """Runs a sequence model over a long (N, 80, 16) clip in overlapping windows.

    The clip is cut into windows of `window` frames with a half-window hop; each output frame is
    taken from the window in which it lies closest to the centre, so every frame sees context on
    both sides as in training (sequences of `window` frames).

    Args:
      fn: (1, L, 80, 16) → (1, L, D).
      mel: (N, 80, 16).
      window: training sequence length L.
    Returns:
      (N, D).
    """
    n = mel.shape[0]
    if n <= window:
        return fn(mel[None])[0]
    starts = window_starts(n, window)
    outs = jax.vmap(lambda s: fn(jax.lax.dynamic_slice_in_dim(mel, s, window)[None])[0])(
        jnp.asarray(starts)
    )  # (K, L, D)
    best, offset = window_assignment(starts, n, window)
    return outs[best, offset]


def window_starts(n: int, window: int) -> np.ndarray:
    """(K,) first frames of `sequence_apply`'s windows over n > window frames: a half-window hop,
    the last window ending at the clip's end."""
    hop = max(1, window // 2)
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] != n - window:
        starts.append(n - window)
    return np.asarray(starts)


def window_assignment(starts: np.ndarray, n: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) window and (N,) position in it of each frame: the window whose centre is closest (the
    first on a tie). Windows lie inside the clip, so that window always contains the frame."""
    frame = np.arange(n)
    centre = np.asarray(starts)[:, None] + (window - 1) / 2.0
    best = np.argmin(np.abs(frame[None, :] - centre), axis=0)
    return best, np.clip(frame - np.asarray(starts)[best], 0, window - 1)
