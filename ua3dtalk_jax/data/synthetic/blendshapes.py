"""Linear expression blendshapes over the MediaPipe mesh: vertices = neutral + Σₑ expₑ · basisₑ.

The expression vector (E = 16, `EXP_NAMES`) is what the generator animates and writes as the
per-frame f_gt-exp target (exp_coeffs.npy). Each coefficient is ≈ 0..1 (blink exactly 0..1):

     0 jaw_open          lower lip, chin and jaw drop (rotation about the jaw hinge, linearised)
     1 lip_round         corners pulled in and lips pushed forward (o, u, w, ʃ)
     2 lip_spread        corners pulled out (i, e)
     3 lip_press         lips compressed into a line (p, b, m closures)
     4 smile_left        subject's left (image right) corner up and out, cheek up   (AU12)
     5 smile_right       subject's right (image left) corner                      (AU12)
     6 lip_corner_down   corners down, chin raised                                 (AU15/17)
     7 upper_lip_raise   upper lip lifted                                          (AU10)
     8 nose_wrinkle      nose sides and inner brows pulled up / down              (AU9)
     9 brow_inner_raise  inner brows up                                            (AU1)
    10 brow_outer_raise  outer brows up                                            (AU2)
    11 brow_lower        brows down and together                                   (AU4)
    12 eye_wide          upper lids up                                             (AU5)
    13 eye_squint        lids narrowed                                             (AU7)
    14 blink             upper lids down onto the lower lids                       (AU45)
    15 cheek_raise       cheeks and lower lids up                                  (AU6)

Fields are built in a face-local 2D frame (u along the eye line, v down, unit = face-oval width W)
from landmark groups and anisotropic radial falloffs, then mapped to world displacements
(W = blendshapes' unit = FACE_WIDTH head units; w is +z, away from the camera).
"""

from __future__ import annotations

import dataclasses

import numpy as np

EXP_NAMES = (
    "jaw_open",
    "lip_round",
    "lip_spread",
    "lip_press",
    "smile_left",
    "smile_right",
    "lip_corner_down",
    "upper_lip_raise",
    "nose_wrinkle",
    "brow_inner_raise",
    "brow_outer_raise",
    "brow_lower",
    "eye_wide",
    "eye_squint",
    "blink",
    "cheek_raise",
)
E = len(EXP_NAMES)
FACE_UNITS = 0.2  # head units per face width W (face_model.FACE_WIDTH)
N_FACE = 478

UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER = (95, 88, 178, 87, 14, 317, 402, 318, 324)
CORNERS = (61, 291, 78, 308)
EYE_UP = ((246, 161, 160, 159, 158, 157, 173), (466, 388, 387, 386, 385, 384, 398))
EYE_LOW = (
    (33, 7, 163, 144, 145, 153, 154, 155, 133),
    (263, 249, 390, 373, 374, 380, 381, 382, 362),
)
CREASE = ((247, 30, 29, 27, 28, 56, 190), (467, 260, 259, 257, 258, 286, 414))
BROW_INNER, BROW_MID, BROW_OUTER = (
    ((107, 55), (336, 285)),
    ((105, 52), (334, 282)),
    ((70, 46), (300, 276)),
)
CHEEK, NOSE_ALA = (205, 425), (64, 294)
JAW_DROP = 0.13  # lower-lip drop at jaw_open = 1, in W (≈ 17 px at 256²)
TEETH_HALF_WIDTH = 0.8  # teeth arch half-width / mouth half-width
TEETH_SAMPLES = 9


@dataclasses.dataclass
class FaceFrame:
    """Face-local coordinates of the vertices: q = R (p − c) / W for frame pixels p."""

    origin: np.ndarray  # (2,) face-oval centre, px
    axes: np.ndarray  # (2, 2) rows u (along the eyes), v (down), unit vectors in px space
    width_px: float  # W in frame px
    per_px: float  # head units per frame px at the face depth
    q_face: np.ndarray  # (478, 2) local coordinates of the MediaPipe points

    @classmethod
    def from_landmarks(cls, p2: np.ndarray, per_px: float) -> FaceFrame:
        eye_r, eye_l = p2[[33, 133]].mean(0), p2[[263, 362]].mean(0)
        u = (eye_l - eye_r) / np.linalg.norm(eye_l - eye_r)
        axes = np.stack([u, [-u[1], u[0]]])
        width = FACE_UNITS / per_px
        origin = p2[:N_FACE].mean(0)
        return cls(origin, axes, width, per_px, (p2 - origin) @ axes.T / width)

    def local(self, pix: np.ndarray) -> np.ndarray:
        return (pix - self.origin) @ self.axes.T / self.width_px

    def to_world(self, d: np.ndarray) -> np.ndarray:
        """(..., 3) local displacements (du, dv, dw) in W → world displacements in head units."""
        xy = d[..., :2] @ self.axes * FACE_UNITS
        return np.concatenate([xy, d[..., 2:] * FACE_UNITS], -1)


def _rbf(q, centre, sx, s_up, s_down=None):
    d = q - centre
    sy = np.where(d[:, 1] < 0, s_up, s_up if s_down is None else s_down)
    return np.exp(-0.5 * (d[:, 0] / sx) ** 2 - 0.5 * (d[:, 1] / sy) ** 2)


def _smoothstep(x, lo, hi):
    t = np.clip((x - lo) / (hi - lo), 0, 1)
    return t * t * (3 - 2 * t)


def _lip_line(qf):
    """x-sorted inner upper-lip polyline (local) and a function y(x), flat beyond the corners."""
    pts = qf[list(UPPER_INNER)]
    pts = pts[np.argsort(pts[:, 0])]
    return pts, lambda x: np.interp(x, pts[:, 0], pts[:, 1])


def jaw_weight(q: np.ndarray, qf: np.ndarray) -> np.ndarray:
    """(P,) share of the full jaw drop for local points q (0 above the lips, 1 on the chin)."""
    pts, line = _lip_line(qf)
    mid_x, half_w = 0.5 * (pts[0, 0] + pts[-1, 0]), 0.5 * (pts[-1, 0] - pts[0, 0])
    below = _smoothstep(q[:, 1] - line(q[:, 0]), 0.0, 0.035)
    lateral = np.exp(-0.5 * (np.maximum(np.abs(q[:, 0] - mid_x) - 0.6 * half_w, 0) / 0.18) ** 2)
    return below * lateral


def build_basis(frame: FaceFrame, pix: np.ndarray, *, n_ring1: int, ring_jaw: float) -> np.ndarray:
    """(E, V, 3) world displacement fields for the V = len(pix) vertices (first 478 MediaPipe).

    Args:
      frame: the face-local frame.
      pix: (V, 2) neutral frame pixels of all vertices (face, then anchors).
      n_ring1: anchors right after the face vertices that follow the jaw a little.
      ring_jaw: that share.
    """
    qa = frame.local(pix)
    qf, q = frame.q_face, qa[:N_FACE]
    d = np.zeros((E, len(pix), 3))
    ix = {n: i for i, n in enumerate(EXP_NAMES)}
    pts, line = _lip_line(qf)
    mouth = np.array([0.5 * (pts[0, 0] + pts[-1, 0]), pts[:, 1].mean()])
    half_w = 0.5 * (pts[-1, 0] - pts[0, 0])
    dx, dy = q[:, 0] - mouth[0], q[:, 1] - line(q[:, 0])
    lips = _rbf(q, mouth, 1.1 * half_w, 0.09, 0.09)

    wj = jaw_weight(q, qf)
    wj[list(UPPER_INNER)], wj[list(LOWER_INNER)], wj[list(CORNERS)] = 0.0, 1.0, 0.5
    upper = (dy < 0) & (np.abs(dx) < half_w) & (dy > -0.1)
    d[ix["jaw_open"], :N_FACE, 1] = JAW_DROP * wj - 0.012 * upper * lips
    d[ix["jaw_open"], :N_FACE, 2] = 0.02 * wj
    ring = slice(N_FACE, N_FACE + n_ring1)
    d[ix["jaw_open"], ring, 1] = ring_jaw * JAW_DROP * jaw_weight(qa[ring], qf)

    d[ix["lip_round"], :N_FACE, 0] = -0.45 * dx * lips
    d[ix["lip_round"], :N_FACE, 1] = 0.012 * (wj > 0.9) * lips - 0.01 * upper * lips
    d[ix["lip_round"], :N_FACE, 2] = -0.05 * lips
    d[ix["lip_spread"], :N_FACE, 0] = 0.25 * dx * lips
    outer = _smoothstep(np.abs(dy), 0.004, 0.025)  # the touching inner contour stays put
    d[ix["lip_press"], :N_FACE, 1] = (-0.018 * wj + 0.008 * upper) * lips * outer
    d[ix["lip_press"], :N_FACE, 2] = -0.01 * lips

    for name, corner, sign in (("smile_left", 291, 1.0), ("smile_right", 61, -1.0)):
        gc = _rbf(q, qf[corner], 0.1, 0.1)
        cheek = _rbf(q, qf[CHEEK[sign > 0]], 0.12, 0.1, 0.08)
        d[ix[name], :N_FACE, 0] = sign * 0.05 * gc
        d[ix[name], :N_FACE, 1] = -0.05 * gc - 0.025 * cheek
    for corner, sign in ((291, 1.0), (61, -1.0)):
        gc = _rbf(q, qf[corner], 0.09, 0.09)
        d[ix["lip_corner_down"], :N_FACE, 0] -= sign * 0.01 * gc
        d[ix["lip_corner_down"], :N_FACE, 1] += 0.055 * gc
    d[ix["lip_corner_down"], :N_FACE, 1] -= 0.012 * _rbf(q, qf[17], 0.1, 0.04, 0.12) * (wj > 0.5)
    up_lip = _rbf(q, mouth + [0, -0.03], 0.12, 0.05)
    d[ix["upper_lip_raise"], :N_FACE, 1] = -0.03 * up_lip * (dy < 0.005)

    for side in range(2):
        d[ix["nose_wrinkle"], :N_FACE, 1] -= 0.022 * _rbf(q, qf[NOSE_ALA[side]], 0.07, 0.07)
        d[ix["nose_wrinkle"], :N_FACE, 1] += 0.015 * _rbf(
            q, qf[list(BROW_INNER[side])].mean(0), 0.08, 0.12, 0.05
        )
        d[ix["nose_wrinkle"], :N_FACE, 1] -= 0.3 * 0.03 * up_lip * (dy < 0.005)
        for name, pts_, amp in (
            ("brow_inner_raise", BROW_INNER, 0.06),
            ("brow_outer_raise", BROW_OUTER, 0.045),
        ):
            d[ix[name], :N_FACE, 1] -= amp * _rbf(q, qf[list(pts_[side])].mean(0), 0.09, 0.2, 0.045)
        g = _rbf(q, qf[list(BROW_MID[side])].mean(0), 0.13, 0.2, 0.045)
        d[ix["brow_lower"], :N_FACE, 1] += 0.05 * g
        d[ix["brow_lower"], :N_FACE, 0] += 0.025 * g * np.sign(mouth[0] - q[:, 0])
        up, low, crease = list(EYE_UP[side]), list(EYE_LOW[side]), list(CREASE[side])
        d[ix["eye_wide"], up, 1] = -0.022
        d[ix["eye_wide"], crease, 1] = -0.012
        d[ix["eye_squint"], low[1:-1], 1] = -0.01
        d[ix["eye_squint"], up, 1] = 0.006
        lo = qf[low][np.argsort(qf[low][:, 0])]
        drop = np.interp(q[up, 0], lo[:, 0], lo[:, 1]) - 0.002 - q[up, 1]
        d[ix["blink"], up, 1] = drop
        d[ix["blink"], crease, 1] = 0.45 * drop
        cheek = _rbf(q, qf[CHEEK[side]] + [0, -0.06], 0.12, 0.08, 0.1)
        d[ix["cheek_raise"], :N_FACE, 1] -= 0.025 * cheek
        d[ix["cheek_raise"], low[1:-1], 1] -= 0.01
        d[ix["smile_left" if side else "smile_right"], low[1:-1], 1] -= 0.006
    d[:, 468:N_FACE] = 0.0  # iris points: landmarks only, kept at rest
    for k in range(E):  # iris follows the lids' mean shift so closed eyes stay plausible
        for side, iris in ((0, range(468, 473)), (1, range(473, 478))):
            d[k, list(iris)] = 0.5 * d[k, list(EYE_UP[side])].mean(0)
    return frame.to_world(d)


def close_mouth(frame: FaceFrame, pix: np.ndarray, jaw_world: np.ndarray) -> np.ndarray:
    """(V, 2) pixel offsets that close a photo's parted lips (the rest pose has a closed mouth).

    The jaw field raises the lower face by the lip gap; then the inner lower lip is laid exactly
    on the inner upper lip line.

    Args:
      frame: the face-local frame of the photo.
      pix: (V, 2) photo-pose frame pixels.
      jaw_world: (V, 3) the jaw_open field (head units per unit coefficient).
    """
    qf = frame.q_face
    _, line = _lip_line(qf)
    gap = max(qf[14, 1] - line(qf[14:15, 0])[0], 0.0)
    offset = -gap / JAW_DROP * jaw_world[:, :2] / frame.per_px
    lower = list(LOWER_INNER)
    q = frame.local(pix[lower] + offset[lower])
    q[:, 1] = line(q[:, 0]) + 0.002
    offset[lower] = q * frame.width_px @ frame.axes + frame.origin - pix[lower]
    return offset


def mouth_geometry(frame: FaceFrame, cam: np.ndarray, basis: np.ndarray) -> dict:
    """Teeth and tongue behind the lips, for the renderer.

    Args:
      frame: the face-local frame.
      cam: (478, 3) rest-pose camera-space face vertices (for the mouth's depth).
      basis: (E, V, 3) blendshapes (the lower teeth follow the lower lip's jaw_open shift).

    Returns:
      dict: "upper_px", "lower_px" (2K, 3) teeth polygons and "tongue_px" (3,) as frame pixels
      plus camera depth; "jaw" (3,) world shift of the lower teeth per unit jaw_open.
    """
    qf = frame.q_face
    pts, line = _lip_line(qf)
    mid_x, half_w = 0.5 * (pts[0, 0] + pts[-1, 0]), 0.5 * (pts[-1, 0] - pts[0, 0])
    xs = mid_x + np.linspace(-1, 1, TEETH_SAMPLES) * TEETH_HALF_WIDTH * half_w
    edge = line(xs)
    depth = cam[[13, 14], 2].mean() + 0.03 * FACE_UNITS  # behind the lips
    arch = 0.08 * FACE_UNITS * (np.linspace(-1, 1, TEETH_SAMPLES) ** 2)

    def poly(top, bottom):
        local = np.concatenate([np.stack([xs, top], 1), np.stack([xs, bottom], 1)[::-1]])
        xy = (local * frame.width_px) @ frame.axes + frame.origin  # frame px
        z = depth + np.concatenate([arch, arch[::-1]])
        return np.concatenate([xy, z[:, None]], 1)

    jaw = basis[EXP_NAMES.index("jaw_open"), 14]
    return {
        "upper_px": poly(edge - 0.08, edge + 0.03),
        "lower_px": poly(edge - 0.01, edge + 0.08),
        "tongue_px": np.array(
            [
                *(
                    (np.array([mid_x, edge.mean() + 0.06]) * frame.width_px) @ frame.axes
                    + frame.origin
                ),
                depth + 0.02 * FACE_UNITS,
            ]
        ),
        "jaw": 0.9 * jaw,
    }
