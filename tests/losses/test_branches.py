"""The face-branch loss's deformation regulariser counts only the live Gaussian slots."""

import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.configs import get_config
from ua3dtalk_jax.losses.branches import Variant, face_loss
from ua3dtalk_jax.models.motion import DeformOut

H = W = 16
N = 6


def _inputs(d_xyz, active):
    rng = np.random.default_rng(0)
    frame = {
        "image": jnp.asarray(rng.integers(0, 255, (H, W, 3)), jnp.uint8),
        "mouth_mask": jnp.zeros((H, W), bool).at[10:12, 6:10].set(True),
        "teeth_mask": jnp.zeros((H, W), bool),
        "head_mask": jnp.zeros((H, W), bool).at[2:14, 3:13].set(True),
        "hair_mask": jnp.zeros((H, W), bool).at[2:4, 3:13].set(True),
        "lips_rect": jnp.asarray([9, 13, 5, 11], jnp.int32),
    }
    r = {
        "rgb": jnp.asarray(rng.random((H, W, 3)), jnp.float32),
        "alpha": jnp.full((H, W), 0.5, jnp.float32),
        "deform": DeformOut(d_xyz=d_xyz, d_rot=jnp.zeros((N, 4)), d_scale=jnp.zeros((N, 3))),
        "active": active,
        "att": jnp.zeros((H, W, 2), jnp.float32),
    }
    flags = {"hair": jnp.asarray(False), "erode": jnp.asarray(False), "late": jnp.asarray(False)}
    return r, frame, flags


def test_deformation_term_ignores_empty_slots():
    cfg = get_config("tiny")
    b = cfg.train.face
    b.lpips_lips = b.lpips_patch = 0.0  # the late LPIPS terms need larger images; not under test
    b.reg_deform = 1.0  # (1e-5 in the schedule) large enough to read in float32
    active = jnp.asarray([True, True, True, False, False, False])
    small = jnp.full((N, 3), 0.01, jnp.float32)
    huge_in_empty = small.at[3:].set(100.0)
    loss = lambda d: float(face_loss(cfg, *_inputs(d, active), Variant(True, "train"), None)[0])
    assert loss(huge_in_empty) == pytest.approx(loss(small), rel=1e-6)
    # a live slot's deformation does count: mean |Δμ| is over the 3 live slots
    moved = small.at[0].set(1.0)
    expected = b.reg_deform * (np.mean(np.abs(np.asarray(moved[:3]))) - 0.01)
    assert loss(moved) - loss(small) == pytest.approx(expected, rel=1e-3)
