"""Multi-head Gaussian deformation decoder (paper §2.3 (2), Fig. 2 right) and the plain MLPs.

After the uncertainty-aware fusion (Eq. 12) the fused state vector μ (D = 48) is concatenated with
the xyz encoding and mapped by Linear(D + X → 64); each head is ReLU → Linear(64, 64) → ReLU →
Linear(64, k) and predicts one modification: Δμ (k = 3), Δr (k = 4), Δs (k = 3). Each head's output
is multiplied by a per-component scale (Δμ ×1e-2; the mouth's Δμ x and z a further /5). Heads named
in `zero_init` start with a zero last layer, i.e. at the identity deformation (the short presets:
`configs.model`).

`BiasFreeMLP` is the authors' `MLP(in, out, hidden, L)`: bias-free Linear layers with ReLU between
them and none after the last; it serves the attention nets of the audio stream and the baseline's
single concatenation MLP (ablation U off).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Width of each head's output, by name.
HEAD_WIDTHS = {"xyz": 3, "rot": 4, "scale": 3}


class BiasFreeMLP(nn.Module):
    """`layers` bias-free Dense layers, ReLU between them: (..., in) → (..., out).

    `zero_cols`: output columns whose last-layer weights start at zero.
    """

    out_dim: int
    hidden: int
    layers: int = 2
    zero_cols: tuple[int, ...] = ()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.layers):
            last = i == self.layers - 1
            init = nn.initializers.lecun_normal()
            if last and self.zero_cols:
                init = _zero_columns(init, self.zero_cols)
            x = nn.Dense(self.out_dim if last else self.hidden, use_bias=False, kernel_init=init)(x)
            if not last:
                x = nn.relu(x)
        return x


def _zero_columns(init, cols: tuple[int, ...]):
    def wrapped(key, shape, dtype=jnp.float32):
        keep = jnp.ones((shape[-1],), dtype).at[jnp.asarray(cols)].set(0)
        return init(key, shape, dtype) * keep

    return wrapped


def scale_outputs(raw: dict, scales: dict) -> dict:
    """Multiplies each head's raw output by its per-component scale tuple."""
    return {k: raw[k] * jnp.asarray(scales[k], raw[k].dtype) for k in raw}


class DeformHeads(nn.Module):
    """Fused state ⊕ xyz encoding → {name: (N, k) modification}.

    Attributes:
      outputs: head names, a subset of ("xyz", "rot", "scale").
      scales: {name: per-component multipliers (length k)}.
      hidden: decoder width (64).
    """

    outputs: tuple[str, ...] = ("xyz", "rot", "scale")
    scales: tuple[tuple[str, tuple[float, ...]], ...] = ()
    hidden: int = 64
    zero_init: tuple[str, ...] = ()

    @nn.compact
    def __call__(self, state: jax.Array, enc_x: jax.Array) -> tuple[dict, dict]:
        """Decodes per-Gaussian modifications.

        Args:
          state: (N, D) fused state vectors.
          enc_x: (N, X) xyz encodings.
        Returns:
          ({name: (N, k)} scaled outputs, {"h": (N, hidden)}).
        """
        h = nn.Dense(self.hidden, name="fc")(jnp.concatenate([state, enc_x], axis=-1))
        raw = {}
        for name in self.outputs:
            y = nn.Dense(self.hidden, name=f"{name}_0")(nn.relu(h))
            init = (
                nn.initializers.zeros if name in self.zero_init else nn.initializers.lecun_normal()
            )
            raw[name] = nn.Dense(HEAD_WIDTHS[name], kernel_init=init, name=f"{name}_1")(nn.relu(y))
        return scale_outputs(raw, dict(self.scales)), {"h": h}


class ConcatMLPHeads(nn.Module):
    """The baseline's one-size-fits-all fusion (ablation U off): concat of all views → one MLP.

    TalkingGaussian's `sigma_net = MLP(in, out, 64, 3)`; its output is split into the same heads
    and scaled like `DeformHeads`.
    """

    outputs: tuple[str, ...] = ("xyz", "rot", "scale")
    scales: tuple[tuple[str, tuple[float, ...]], ...] = ()
    hidden: int = 64
    layers: int = 3
    zero_init: tuple[str, ...] = ()

    @nn.compact
    def __call__(self, features: jax.Array) -> tuple[dict, dict]:
        """Args: features (N, Σ view widths). Returns ({name: (N, k)}, {})."""
        widths = [HEAD_WIDTHS[n] for n in self.outputs]
        starts = np.cumsum([0] + widths)
        zero = tuple(
            int(c)
            for n, a, w in zip(self.outputs, starts, widths)
            if n in self.zero_init
            for c in range(a, a + w)
        )
        y = BiasFreeMLP(sum(widths), self.hidden, self.layers, zero, name="sigma_net")(features)
        splits = jnp.split(y, starts[1:-1].tolist(), axis=-1)
        raw = dict(zip(self.outputs, splits))
        return scale_outputs(raw, dict(self.scales)), {}
