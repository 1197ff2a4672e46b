"""Rasterises the animated face mesh back over the photo, with a mouth cavity and teeth.

Per frame: vertices = neutral + exp·basis (blendshapes), moved by the frame's viewmat (anchors
blend towards the static camera by `head_weight`), projected with K. The mesh is drawn as a
triangle-id buffer with the painter's algorithm (far triangles first; on a near-frontal face that
is the z-buffer's answer), every pixel then maps through its triangle's affine map into the
texture (one `cv2.remap`), and pixels no triangle covers — the opening between the inner lips —
show the cavity: dark throat, tongue, and upper (skull-fixed) and lower (jaw-fixed) teeth.
Rendering happens at SUPERSAMPLE × the frame size and is area-downsampled, which anti-aliases
the lip edges. The person layer is composited over the clean background plate; the torso layer
(torso_imgs) is that person layer outside the head, the neck continued under the chin.
"""

from __future__ import annotations

import cv2
import numpy as np

from ua3dtalk_jax.data import torso
from ua3dtalk_jax.data.synthetic import blendshapes
from ua3dtalk_jax.data.synthetic.face_model import FaceModel, project
from ua3dtalk_jax.data.synthetic.mediapipe_face import FACE_OVAL, INNER_LIPS, N_FACE, to_68

SUPERSAMPLE = 2
_SHIFT = 4  # cv2 fixed-point bits for sub-pixel triangle corners
NO_TRIANGLE = np.iinfo(np.uint16).max
CAVITY_RGB = np.array([62.0, 20.0, 26.0])
TONGUE_RGB = np.array([150.0, 62.0, 70.0])
TEETH_RGB = np.array([226.0, 220.0, 204.0])
MASK_COVERAGE = 0.5  # a pixel belongs to a region when at least half of its subsamples do
NECK_HALF_WIDTH = 0.4  # neck band half-width, in face widths
NECK_LENGTH = 0.5  # neck band below the chin, in face widths


def camera_vertices(model: FaceModel, exp: np.ndarray, viewmat: np.ndarray) -> np.ndarray:
    """(V, 3) camera-space vertices for expression exp (E,) and head viewmat (4, 4)."""
    verts = model.verts + np.tensordot(exp, model.basis, 1)
    moved = verts @ viewmat[:3, :3].T + viewmat[:3, 3]
    still = verts + model.t0
    w = model.head_weight[:, None]
    return w * moved + (1 - w) * still


def render_frame(model: FaceModel, exp: np.ndarray, viewmat: np.ndarray) -> dict:
    """Renders one frame.

    Args:
      model: the face model.
      exp: (E,) expression coefficients (blendshapes.EXP_NAMES).
      viewmat: (4, 4) world→camera of this frame (the head's pose; identity rotation when static).

    Returns:
      dict: "image" (S, S, 3) uint8; "masks" dict of (S, S) bool face, mouth, teeth, hair, neck,
      torso; "torso_rgba" (S, S, 4) uint8 (`torso_layer`); "landmarks" (478, 2) and
      "landmarks68" (68, 2) float32 continuous pixels.
    """
    size, ss = model.size, SUPERSAMPLE
    cam = camera_vertices(model, exp, viewmat)
    pix = project(cam, model.focal, size)
    ids = id_buffer(pix * ss, cam[:, 2], model.tris, size * ss)
    map_x, map_y = texture_maps(ids, pix * ss, model.uv, model.tris)
    rgba = cv2.remap(model.texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    rgba = rgba.astype(np.float32)
    hole = ids == NO_TRIANGLE
    teeth = np.zeros_like(hole)
    lips = pix[list(INNER_LIPS)] * ss
    x0, y0 = np.maximum(np.floor(lips.min(0)).astype(int) - 4, 0)
    x1, y1 = np.minimum(np.ceil(lips.max(0)).astype(int) + 4, size * ss)
    if x1 > x0 and y1 > y0:  # the cavity is only ever seen inside the inner-lip ring
        box = (slice(y0, y1), slice(x0, x1))
        cavity, teeth[box] = _cavity(model, exp, viewmat, ss, (x0, y0, x1 - x0, y1 - y0))
        inside = hole[box]
        rgba[box][inside, :3] = cavity[inside]
    rgba[hole, 3] = 255.0
    teeth &= hole
    if ss > 1:
        rgba = cv2.resize(rgba, (size, size), interpolation=cv2.INTER_AREA)
        hole = cv2.resize(hole.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        teeth = cv2.resize(teeth.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    alpha = rgba[..., 3:] / 255.0
    image = alpha * rgba[..., :3] + (1 - alpha) * model.background
    masks = _masks(pix, alpha[..., 0], hole >= MASK_COVERAGE, teeth >= MASK_COVERAGE, size)
    lms = pix[:N_FACE].astype(np.float32)
    return {
        "image": np.clip(np.round(image), 0, 255).astype(np.uint8),
        "masks": masks,
        "torso_rgba": torso_layer(rgba[..., :3], alpha[..., 0], masks),
        "landmarks": lms,
        "landmarks68": to_68(lms),
    }


def torso_layer(rgb: np.ndarray, alpha: np.ndarray, masks: dict) -> np.ndarray:
    """(S, S, 4) uint8 torso image: the person layer wherever the Gaussians do not model it, and
    the neck continued up under the chin (`data.torso`).

    Everything of the soft person matte outside face, mouth, teeth and hair (neck, torso and the
    matte's half-transparent fringe, e.g. background the segmentation left in the photo), with
    its own alpha, so torso over bc.jpg reproduces the frame outside the head exactly. A binary
    neck|torso cut-out would leave the fringe (alpha < 0.5 belongs to no region) to bc.jpg.
    Under the head the layer is transparent except the authors' neck and torso continuations,
    which keep bc.jpg out of any gap the rendered jaw line leaves.
    """
    head = masks["face"] | masks["mouth"] | masks["teeth"] | masks["hair"]
    return torso.torso_rgba(rgb, alpha, head, masks["neck"], masks["torso"])


def id_buffer(pix: np.ndarray, depth: np.ndarray, tris: np.ndarray, res: int) -> np.ndarray:
    """Index of the front triangle at each pixel centre.

    Args:
      pix: (V, 2) continuous pixel positions at resolution res.
      depth: (V,) camera depths (triangles are drawn far to near by their mean depth).
      tris: (T, 3) vertex indices.
      res: buffer side.

    Returns:
      (res, res) uint16 triangle index, NO_TRIANGLE where none covers the pixel.
    """
    buf = np.full((res, res), NO_TRIANGLE, np.uint16)
    order = np.argsort(-depth[tris].mean(1), kind="stable")
    corners = np.round((pix[tris] - 0.5) * (1 << _SHIFT)).astype(np.int32)
    for t in order:
        cv2.fillConvexPoly(buf, corners[t], int(t), lineType=cv2.LINE_8, shift=_SHIFT)
    return buf


def texture_maps(ids: np.ndarray, pix: np.ndarray, uv: np.ndarray, tris: np.ndarray):
    """Per-pixel texture coordinates through each pixel's triangle (its affine map).

    Args:
      ids: (res, res) id_buffer output.
      pix: (V, 2) continuous pixel positions at resolution res.
      uv: (V, 2) continuous texture coordinates.
      tris: (T, 3) vertex indices.

    Returns:
      map_x, map_y: (res, res) float32 texture index coordinates for cv2.remap (arbitrary where
      ids is NO_TRIANGLE).
    """
    src = np.concatenate([pix[tris] - 0.5, np.ones((*tris.shape, 1))], -1)  # (T, 3, 3)
    dst = uv[tris] - 0.5  # (T, 3, 2) texture index coordinates
    det = np.linalg.det(src)
    src[np.abs(det) < 1e-9] = np.eye(3)  # collapsed triangles cover no pixel
    affine = np.linalg.solve(src, dst).astype(np.float32)  # (T, 3, 2): [x y 1] @ A
    res = ids.shape[0]
    a = affine.reshape(-1, 6)[np.where(ids == NO_TRIANGLE, 0, ids)]  # (res, res, 6)
    x = np.arange(res, dtype=np.float32)[None, :]
    y = np.arange(res, dtype=np.float32)[:, None]
    return x * a[..., 0] + y * a[..., 2] + a[..., 4], x * a[..., 1] + y * a[..., 3] + a[..., 5]


def _cavity(model: FaceModel, exp, viewmat, ss: int, box):
    """The mouth interior inside box = (x0, y0, w, h) of the supersampled frame: (h, w, 3) float
    RGB and the (h, w) teeth mask."""
    x0, y0, w, h = box
    jaw = exp[blendshapes.EXP_NAMES.index("jaw_open")] * model.mouth["jaw"]

    def to_px(points):
        p = points @ viewmat[:3, :3].T + viewmat[:3, 3]
        return project(p, model.focal, model.size) * ss - 0.5 - np.array([x0, y0])

    img = np.empty((h, w, 3), np.float32)
    img[:] = CAVITY_RGB
    tongue = to_px(model.mouth["tongue"][None] + jaw)[0]
    upper, lower = to_px(model.mouth["upper"]), to_px(model.mouth["lower"] + jaw)
    half = 0.5 * (upper[:, 0].max() - upper[:, 0].min())
    axes = (round(half * 0.8), round(half * 0.45))
    cv2.ellipse(
        img, np.round(tongue).astype(int).tolist(), axes, 0, 0, 360, TONGUE_RGB.tolist(), -1
    )
    teeth = np.zeros((h, w), np.uint8)
    for poly in (upper, lower):
        cv2.fillPoly(
            teeth, [np.round(poly * (1 << _SHIFT)).astype(np.int32)], 1, cv2.LINE_8, _SHIFT
        )
    centre_x = upper[:, 0].mean()
    xx = np.arange(w, dtype=np.float32)[None, :] - centre_x
    shade = np.clip(
        1.0 - 0.55 * (np.abs(xx) / max(half, 1.0)) ** 2, 0.35, 1.0
    )  # darker to the back
    gaps = 0.82 + 0.18 * np.abs(np.cos(np.pi * xx / max(half * 0.3, 1.0))) ** 0.3  # incisor gaps
    teeth_rgb = TEETH_RGB * (shade * gaps)[..., None]
    img = np.where(teeth[..., None] > 0, np.broadcast_to(teeth_rgb, img.shape), img)
    img = cv2.GaussianBlur(img, (3, 3), 0.6 * ss)
    return img, teeth > 0


def _masks(pix, alpha, mouth, teeth, size) -> dict:
    """Region masks at (size, size) from the projected face oval and the person alpha."""
    oval = np.zeros((size, size), np.uint8)
    cv2.fillPoly(
        oval, [np.round((pix[list(FACE_OVAL)] - 0.5) * 16).astype(np.int32)], 1, cv2.LINE_8, 4
    )
    face = (oval > 0) & ~mouth
    person = (alpha >= 0.5) & ~face & ~mouth
    oval_pts = pix[list(FACE_OVAL)]
    width = oval_pts[:, 0].max() - oval_pts[:, 0].min()
    chin_y, centre_x = pix[152, 1], oval_pts[:, 0].mean()
    yy, xx = np.mgrid[:size, :size] + 0.5
    above = yy < chin_y - 0.1 * width
    neck_band = (np.abs(xx - centre_x) < NECK_HALF_WIDTH * width) & (
        yy < chin_y + NECK_LENGTH * width
    )
    return {
        "face": face,
        "mouth": mouth,
        "teeth": teeth,
        "hair": person & above,
        "neck": person & ~above & neck_band,
        "torso": person & ~above & ~neck_band,
    }
