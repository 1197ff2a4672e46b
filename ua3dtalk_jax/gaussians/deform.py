"""Applying the deformation δ = {Δμ, Δr, Δs} (paper Eq. 3) to the static Gaussians.

    μ' = μ + Δμ,   scales_raw' = scales_raw + Δs  (scale' = softplus(scales_raw')),
    q' = q + Δr    (normalised on activation),     opacity and colour unchanged.

This matches the authors' renderer (reference §3 step 9). Inactive slots are deformed too but stay
invisible (their opacity is masked to 0 by `params.activated`).
"""

from __future__ import annotations

import chex

from ua3dtalk_jax.gaussians.params import GaussianState
from ua3dtalk_jax.models.motion import DeformOut


def apply_deformation(state: GaussianState, deform: DeformOut) -> GaussianState:
    """The deformed state for one frame.

    Args:
      state: static Gaussians, N slots.
      deform: `DeformOut` with d_xyz (N, 3), d_rot (N, 4), d_scale (N, 3).
    Returns:
      a `GaussianState` of the same shapes with moved centres, raw rotations and raw scales.
    """
    n = state.capacity
    chex.assert_shape(deform.d_xyz, (n, 3))
    chex.assert_shape(deform.d_rot, (n, 4))
    chex.assert_shape(deform.d_scale, (n, 3))
    return state.replace(
        means=state.means + deform.d_xyz,
        quats=state.quats + deform.d_rot,
        scales_raw=state.scales_raw + deform.d_scale,
    )
