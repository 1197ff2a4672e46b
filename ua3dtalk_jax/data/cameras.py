"""Camera conventions: TalkingGaussian / ER-NeRF transforms ↔ the project's OpenCV viewmat.

The layout's `transform_matrix` (transforms_*.json) is a camera-to-world matrix with OpenGL /
Blender camera axes (x right, y up, z backward): ER-NeRF's `save_transforms` writes the inverse of
the tracked head pose, [Rᵀ | −Rᵀ·t] with R = Rx(θ)·Ry(φ)·Rz(ψ), so the head stays at the origin and the
camera moves. The project uses world-to-camera with OpenCV axes (x right, y down, z forward).

Conversion (TalkingGaussian's `readCamerasFromTransforms`, done once at load):

    c2w_cv  = c2w_gl · diag(1, −1, −1, 1)      (negate the camera's y and z axes: columns 1, 2)
    viewmat = inverse(c2w_cv)

and back (the writer): c2w_gl = inverse(viewmat) · diag(1, −1, −1, 1). diag(1, −1, −1, 1) is its own
inverse, so the two are exact inverses of each other.

Intrinsics: fx = fy = focal_len, principal point at (W/2, H/2) — the layout's cx, cy are ignored by
TalkingGaussian, which builds a centred projection from the field of view. Its rasterizer puts
pixel (i, j)'s centre at integer coordinates and maps the optical axis to (W/2 − 0.5, H/2 − 0.5);
with this project's convention (pixel centres at i + 0.5) that is exactly cx = W/2, cy = H/2.
"""

from __future__ import annotations

import numpy as np

_FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])


def viewmat_from_c2w_gl(c2w_gl: np.ndarray) -> np.ndarray:
    """Layout camera-to-world (OpenGL axes) → world-to-camera (OpenCV axes).

    Args:
      c2w_gl: (..., 4, 4) camera-to-world, camera x right, y up, z backward.

    Returns:
      (..., 4, 4) float32 world-to-camera, camera x right, y down, z forward.
    """
    c2w = np.asarray(c2w_gl, dtype=np.float64) @ _FLIP_YZ
    return _rigid_inverse(c2w).astype(np.float32)


def c2w_gl_from_viewmat(viewmat: np.ndarray) -> np.ndarray:
    """World-to-camera (OpenCV axes) → layout camera-to-world (OpenGL axes); inverse of the above.

    Args:
      viewmat: (..., 4, 4) world-to-camera, OpenCV.

    Returns:
      (..., 4, 4) float64 camera-to-world, OpenGL camera axes.
    """
    return _rigid_inverse(np.asarray(viewmat, dtype=np.float64)) @ _FLIP_YZ


def _rigid_inverse(m: np.ndarray) -> np.ndarray:
    """Inverse of [R | t; 0 0 0 1] as [Rᵀ | −Rᵀt] (exact for rotations; checked to be rigid)."""
    rot, t = m[..., :3, :3], m[..., :3, 3:]
    should_be_eye = rot @ np.swapaxes(rot, -1, -2)
    if not np.allclose(should_be_eye, np.eye(3), atol=RIGID_TOL):
        raise ValueError("camera matrix is not a rigid transform (rotation part not orthonormal)")
    out = np.zeros_like(m)
    out[..., :3, :3] = np.swapaxes(rot, -1, -2)
    out[..., :3, 3:] = -np.swapaxes(rot, -1, -2) @ t
    out[..., 3, 3] = 1.0
    return out


# Rotations in the json are float32 products of three Euler rotations: orthonormal to ~1e-6.
RIGID_TOL = 1e-4


def intrinsics(focal: float, height: int, width: int) -> np.ndarray:
    """Pixel intrinsics with the principal point at the image centre.

    Returns:
      (3, 3) float32 K = [[f, 0, W/2], [0, f, H/2], [0, 0, 1]].
    """
    return np.array(
        [[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]], np.float32
    )


def euler_to_rotation(euler: np.ndarray) -> np.ndarray:
    """ER-NeRF's tracker rotation R = Rx(θ)·Ry(φ)·Rz(ψ) (as its `euler2rot`, radians).

    Args:
      euler: (..., 3) angles (θ, φ, ψ).

    Returns:
      (..., 3, 3) float64 rotation.
    """
    th, ph, ps = (np.asarray(euler, np.float64)[..., k] for k in range(3))
    one, zero = np.ones_like(th), np.zeros_like(th)
    # euler2rot builds each matrix from torch.cat(..., 2) of column triples: these are transposes
    # of the row listing in its source, written out here row by row.
    rx = np.stack(
        [
            np.stack([one, zero, zero], -1),
            np.stack([zero, np.cos(th), -np.sin(th)], -1),
            np.stack([zero, np.sin(th), np.cos(th)], -1),
        ],
        -2,
    )
    ry = np.stack(
        [
            np.stack([np.cos(ph), zero, np.sin(ph)], -1),
            np.stack([zero, one, zero], -1),
            np.stack([-np.sin(ph), zero, np.cos(ph)], -1),
        ],
        -2,
    )
    rz = np.stack(
        [
            np.stack([np.cos(ps), -np.sin(ps), zero], -1),
            np.stack([np.sin(ps), np.cos(ps), zero], -1),
            np.stack([zero, zero, one], -1),
        ],
        -2,
    )
    return rx @ ry @ rz
