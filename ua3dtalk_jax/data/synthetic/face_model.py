"""Photo → textured 3D face mesh: MediaPipe landmarks lifted to a head-centred 3D model.

A portrait photo (default `skimage.data.astronaut()`) is searched with MediaPipe FaceMesh (478
points; `mediapipe_face.py`). A square head-and-shoulders crop (face ≈ `FACE_FRACTION` of the width)
is resampled into a texture of TEX_SCALE × the frame size; MediaPipe runs again on that crop, and
the person is cut out with SelfieSegmentation so it can be composited over a smooth synthetic
background (bc.jpg exact).

Geometry (head units, OpenCV axes x right, y down, z forward): a static pinhole camera with focal
`FOCAL_FRACTION`·S px and the principal point at the frame centre looks along +z; the world origin
is the face centre, the face spans about ±0.1 (`FACE_WIDTH`), and the neutral viewmat is
[I | t0] with t0 ≈ (tx, ty, ~1). Each landmark (u, v, depth) is unprojected so that K·viewmat puts
it exactly where the photo has it. Pixel coordinates are continuous: pixel (i, j) spans
[i, i+1) × [j, j+1), its centre at (i + 0.5, j + 0.5), as in the project's camera convention (`types`) and MediaPipe's x·W.

Beyond the 478 face vertices, anchor vertices (a ring just outside the face oval that moves with the
head, a second ring that moves half, and a far border that stays) make the mesh a piecewise-affine
warp of the whole person layer, so a dropping chin stretches the neck instead of tearing.
"""

from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np
import scipy.spatial

from ua3dtalk_jax.data.synthetic import blendshapes
from ua3dtalk_jax.data.synthetic.mediapipe_face import (
    FACE_OVAL,
    INNER_LIPS,
    N_FACE,
    N_MESH,
    detect_landmarks,
    detect_landmarks_batch,
    person_alpha,
)

FACE_FRACTION = 0.5  # face-oval width / frame width, as in talking-head crops
CROP_DROP = 0.12  # the crop centre sits this fraction of the crop below the face centre (shoulders)
FOCAL_FRACTION = 2.4  # fx = fy = 2.4·S (TalkingGaussian subjects: ~1200 px at 512²)
FACE_WIDTH = 0.2  # head units spanned by the face oval
TEX_SCALE = 2  # texture resolution / frame resolution
ANCHOR_DEPTH = 0.05  # anchors sit this far behind the face centre
RINGS = ((1.35, 1.0), (1.8, 0.5))  # (scale about the face centre, head-motion weight)
RING_JAW = 0.35  # share of the jaw drop followed by first-ring anchors below the mouth
N_BORDER = 6  # anchor points per side of the far border


@dataclasses.dataclass
class FaceModel:
    """Everything a worker needs to render a frame (plain numpy, picklable).

    Attributes:
      size: frame side S (frames are S×S).
      focal: fx = fy in pixels.
      t0: (3,) neutral world→camera translation (camera rotation is the identity).
      verts: (V, 3) neutral vertices in world (head) coordinates; the first N_FACE are MediaPipe's.
      uv: (V, 2) continuous texture coordinates of each vertex.
      tris: (T, 3) int32 mesh triangles (mouth opening left out).
      basis: (E, V, 3) world displacement per unit expression coefficient (`blendshapes.EXP_NAMES`).
      head_weight: (V,) 1 for vertices moving rigidly with the head, 0 for the static border.
      texture: (R, R, 4) uint8 RGB + person alpha, R = TEX_SCALE·S.
      background: (S, S, 3) uint8 clean backdrop (bc.jpg).
      mouth: teeth and tongue in world coordinates: "upper" (2K, 3) skull-fixed and "lower"
        (2K, 3) jaw-fixed teeth polygons, "tongue" (3,), "jaw" (3,) lower-teeth shift per unit
        jaw_open.
      source: the photo's name (path or description).
    """

    size: int
    focal: float
    t0: np.ndarray
    verts: np.ndarray
    uv: np.ndarray
    tris: np.ndarray
    basis: np.ndarray
    head_weight: np.ndarray
    texture: np.ndarray
    background: np.ndarray
    mouth: dict
    source: str


def load_photo(photo=None) -> tuple[np.ndarray, str]:
    """The portrait as (H, W, 3) uint8 RGB and a name for messages (the path, or a description)."""
    if photo is None:
        import skimage.data

        return skimage.data.astronaut(), "skimage.data.astronaut()"
    if isinstance(photo, (str, os.PathLike)):
        path = os.fspath(photo)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: photo not found")
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: not a readable image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), path
    img = np.asarray(photo)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"photo array must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    return img, "<photo array>"


def make_background(size: int, seed: int) -> np.ndarray:
    """(S, S, 3) uint8 smooth studio backdrop: a vertical gradient with a soft light behind the head."""
    rng = np.random.default_rng([seed, 7])
    top = np.array([88, 104, 128]) + rng.uniform(-12, 12, 3)
    bottom = np.array([42, 50, 66]) + rng.uniform(-8, 8, 3)
    yy, xx = (np.mgrid[:size, :size] + 0.5) / size
    grad = top * (1 - yy[..., None]) + bottom * yy[..., None]
    glow = np.exp(-((xx - 0.5) ** 2 + (yy - 0.35) ** 2) / 0.08)[..., None] * 30.0
    return np.clip(grad + glow, 0, 255).astype(np.uint8)


def build_face_model(photo=None, *, size: int = 256, seed: int = 0) -> FaceModel:
    """Builds the renderable face model from a portrait.

    Args:
      photo: None (astronaut), a path, or an (H, W, 3) uint8 array.
      size: frame side S in pixels.
      seed: varies only the background tint.

    Returns:
      The FaceModel.
    """
    rgb, name = load_photo(photo)
    texture, lm_t = _texture(rgb, name, size)

    # Camera and the 3D lift: frame px = texture px / TEX_SCALE.
    focal = FOCAL_FRACTION * size
    p2 = lm_t[:, :2] / TEX_SCALE
    depth_px = lm_t[:, 2] / TEX_SCALE
    oval2 = p2[list(FACE_OVAL)]
    per_px = FACE_WIDTH / (oval2[:, 0].max() - oval2[:, 0].min())  # head units per px at z0
    z0 = focal * per_px
    c2 = oval2.mean(0)
    cam_z = z0 + (depth_px - depth_px[:N_MESH].mean()) * per_px
    t0 = _unproject(c2[None], np.array([z0]), focal, size)[0]
    anchors2, weights = _anchors(c2, oval2, size)
    anchor_cam = _unproject(anchors2, np.full(len(anchors2), z0 + ANCHOR_DEPTH), focal, size)

    pix = np.concatenate([p2, anchors2])
    head_weight = np.concatenate([np.ones(N_FACE), weights])
    frame = blendshapes.FaceFrame.from_landmarks(p2, per_px)
    basis = blendshapes.build_basis(frame, pix, n_ring1=len(oval2), ring_jaw=RING_JAW)
    tris = _triangulate(pix, basis, frame)
    # The rest pose closes the photo's lips; texture coordinates stay where the photo has them.
    rest = pix + blendshapes.close_mouth(frame, pix, basis[blendshapes.EXP_NAMES.index("jaw_open")])
    depth = np.concatenate([cam_z, anchor_cam[:, 2]])
    verts = _unproject(rest, depth, focal, size) - t0
    return FaceModel(
        size=size,
        focal=focal,
        t0=t0,
        verts=verts,
        uv=pix * TEX_SCALE,
        tris=tris,
        basis=basis,
        head_weight=head_weight,
        texture=texture,
        background=make_background(size, seed),
        mouth=_mouth(frame, verts, basis, t0, focal, size),
        source=name,
    )


def _texture(rgb: np.ndarray, name: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The head-and-shoulders crop as an (R, R, 4) RGBA texture (R = TEX_SCALE·S, alpha = the
    person) and its (478, 3) landmarks in texture pixels (MediaPipe run again on the crop)."""
    lm = detect_landmarks(rgb, name)
    oval = lm[list(FACE_OVAL), :2]
    face_w = oval[:, 0].max() - oval[:, 0].min()
    crop = face_w / FACE_FRACTION
    centre = oval.mean(0) + [0.0, CROP_DROP * crop]
    res = TEX_SCALE * size
    s = res / crop
    affine = np.array([[s, 0, res / 2 - s * centre[0]], [0, s, res / 2 - s * centre[1]]])
    tex_rgb = cv2.warpAffine(
        rgb,
        affine,
        (res, res),
        flags=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )
    lm_t = detect_landmarks_batch([tex_rgb])[0]
    if lm_t is None:
        raise ValueError(f"{name}: the face is lost in the {res}² head-and-shoulders crop")
    alpha = person_alpha(tex_rgb, lm_t[list(FACE_OVAL), :2])
    texture = np.concatenate([tex_rgb, np.round(alpha * 255).astype(np.uint8)[..., None]], -1)
    return texture, lm_t


def _anchors(c2: np.ndarray, oval2: np.ndarray, size: int) -> tuple[np.ndarray, list]:
    """Anchor pixels (A, 2) and their head-motion weights: two rings around the face oval
    `oval2` (centre `c2`), moving with the head (RINGS), and a far static border."""
    ring_pts, weights = [], []
    for scale, weight in RINGS:
        ring_pts.append(c2 + scale * (oval2 - c2))
        weights += [weight] * len(oval2)
    lo, hi = -0.5 * size, 1.5 * size
    edge = np.linspace(lo, hi, N_BORDER, endpoint=False)
    border = np.concatenate(
        [
            np.stack([edge, np.full_like(edge, lo)], 1),
            np.stack([np.full_like(edge, hi), edge], 1),
            np.stack([hi + lo - edge, np.full_like(edge, hi)], 1),
            np.stack([np.full_like(edge, lo), hi + lo - edge], 1),
        ]
    )
    weights += [0.0] * len(border)
    return np.concatenate(ring_pts + [border]), weights


def _mouth(frame, verts, basis, t0, focal: float, size: int) -> dict:
    """FaceModel.mouth: teeth polygons and tongue in world coordinates, the jaw's teeth shift."""
    teeth = blendshapes.mouth_geometry(frame, verts[:N_FACE] + t0, basis)
    mouth = {"jaw": teeth["jaw"]}
    for key in ("upper", "lower", "tongue"):
        px = teeth[key + "_px"].reshape(-1, 3)  # frame pixels + camera depth
        mouth[key] = _unproject(px[:, :2], px[:, 2], focal, size) - t0
    mouth["tongue"] = mouth["tongue"][0]
    return mouth


def _unproject(pix: np.ndarray, z: np.ndarray, focal: float, size: int) -> np.ndarray:
    """(P, 2) continuous pixels and (P,) camera depths → (P, 3) camera-space points."""
    xy = (pix - size / 2) * (z / focal)[:, None]
    return np.concatenate([xy, z[:, None]], 1)


def _triangulate(pix: np.ndarray, basis: np.ndarray, frame) -> np.ndarray:
    """Delaunay over the mesh vertices with the mouth and eyes held wide open (so no triangle
    bridges the lips), then the triangles inside the open inner-lip ring are dropped."""
    names = blendshapes.EXP_NAMES
    open_delta = basis[names.index("jaw_open")] + basis[names.index("eye_wide")]
    pts = pix + open_delta[:, :2] / frame.per_px
    keep = np.r_[np.arange(N_MESH), np.arange(N_FACE, len(pix))]
    tri = scipy.spatial.Delaunay(pts[keep]).simplices
    tri = keep[tri]
    centroid = pts[tri].mean(1).astype(np.float32)
    ring = pts[list(INNER_LIPS)].astype(np.float32)
    inside = np.array(
        [cv2.pointPolygonTest(ring, tuple(map(float, c)), False) > 0 for c in centroid]
    )
    return tri[~inside].astype(np.int32)


def project(verts_cam: np.ndarray, focal: float, size: int) -> np.ndarray:
    """(..., V, 3) camera-space points → (..., V, 2) continuous pixels."""
    return verts_cam[..., :2] / verts_cam[..., 2:3] * focal + size / 2
