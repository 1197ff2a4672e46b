"""Photo → textured 3D face mesh: MediaPipe landmarks lifted to a head-centred 3D model.

A portrait photo (default `skimage.data.astronaut()`) is searched with MediaPipe FaceMesh (478
points). A square head-and-shoulders crop (face ≈ `FACE_FRACTION` of the width) is resampled into
a texture of TEX_SCALE × the frame size; MediaPipe runs again on that crop, and the person is cut out
with SelfieSegmentation so it can be composited over a smooth synthetic background (bc.jpg exact).

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

from ua3dtalk_jax import native_log  # MediaPipe's C++ log lines → the debug log
from ua3dtalk_jax.data.synthetic import blendshapes

FACE_FRACTION = 0.5  # face-oval width / frame width, as in talking-head crops
CROP_DROP = 0.12  # the crop centre sits this fraction of the crop below the face centre (shoulders)
FOCAL_FRACTION = 2.4  # fx = fy = 2.4·S (TalkingGaussian subjects: ~1200 px at 512²)
FACE_WIDTH = 0.2  # head units spanned by the face oval
TEX_SCALE = 2  # texture resolution / frame resolution
ANCHOR_DEPTH = 0.05  # anchors sit this far behind the face centre
RINGS = ((1.35, 1.0), (1.8, 0.5))  # (scale about the face centre, head-motion weight)
RING_JAW = 0.35  # share of the jaw drop followed by first-ring anchors below the mouth
N_BORDER = 6  # anchor points per side of the far border
N_FACE = 478  # MediaPipe FaceMesh with refine_landmarks (468 + 10 iris)
N_MESH = 468  # the iris points are landmarks only, not mesh vertices

FACE_OVAL = (
    10,
    338,
    297,
    332,
    284,
    251,
    389,
    356,
    454,
    323,
    361,
    288,
    397,
    365,
    379,
    378,
    400,
    377,
    152,
    148,
    176,
    149,
    150,
    136,
    172,
    58,
    132,
    93,
    234,
    127,
    162,
    21,
    54,
    103,
    67,
    109,
)
INNER_LIPS = (
    78,
    191,
    80,
    81,
    82,
    13,
    312,
    311,
    310,
    415,
    308,
    324,
    318,
    402,
    317,
    14,
    87,
    178,
    88,
    95,
)
# MediaPipe → iBUG-68 (PeizhiYan/Mediapipe_2_Dlib_Landmarks); a pair is averaged.
TO_68 = (
    127,
    234,
    93,
    (132, 58),
    (58, 172),
    136,
    150,
    176,
    152,
    400,
    379,
    365,
    (397, 288),
    361,
    323,
    454,
    356,
    70,
    63,
    105,
    66,
    107,
    336,
    296,
    334,
    293,
    300,
    (168, 6),
    (197, 195),
    5,
    4,
    75,
    97,
    2,
    326,
    305,
    33,
    160,
    158,
    133,
    153,
    144,
    362,
    385,
    387,
    263,
    373,
    380,
    61,
    39,
    37,
    0,
    267,
    269,
    291,
    321,
    314,
    17,
    84,
    91,
    78,
    82,
    13,
    312,
    308,
    317,
    14,
    87,
)
_TO68_A = np.array([p[0] if isinstance(p, tuple) else p for p in TO_68])
_TO68_B = np.array([p[1] if isinstance(p, tuple) else p for p in TO_68])


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


def detect_landmarks(rgb: np.ndarray, name: str = "<image>") -> np.ndarray:
    """MediaPipe FaceMesh on one image.

    Args:
      rgb: (H, W, 3) uint8.
      name: used in the error message.

    Returns:
      (478, 3) float64: x, y in continuous pixels, z in pixels (MediaPipe's z·W, negative = nearer).

    Raises:
      ValueError: naming `name` when no face is found.
    """
    found = detect_landmarks_batch([rgb])[0]
    if found is None:
        raise ValueError(f"{name}: MediaPipe FaceMesh found no face in this image")
    return found


def detect_landmarks_batch(images) -> list:
    """FaceMesh (static mode) on each image; a (478, 3) array or None per image."""
    import mediapipe as mp

    out = []
    with (
        native_log.quiet(),
        mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, refine_landmarks=True, max_num_faces=1
        ) as mesh,
    ):
        for img in images:
            res = mesh.process(np.ascontiguousarray(img))
            if not res.multi_face_landmarks:
                out.append(None)
                continue
            h, w = img.shape[:2]
            pts = res.multi_face_landmarks[0].landmark
            out.append(np.array([[p.x * w, p.y * h, p.z * w] for p in pts], np.float64))
    return out


def to_68(points: np.ndarray) -> np.ndarray:
    """(..., 478, D) MediaPipe points → (..., 68, D) iBUG-68 points (pairs averaged)."""
    return 0.5 * (points[..., _TO68_A, :] + points[..., _TO68_B, :])


def _person_alpha(rgb: np.ndarray, oval: np.ndarray) -> np.ndarray:
    import mediapipe as mp

    with (
        native_log.quiet(),
        mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg,
    ):
        alpha = seg.process(np.ascontiguousarray(rgb)).segmentation_mask.astype(np.float32)
    alpha = np.clip((alpha - 0.2) / 0.6, 0, 1)  # sharpen the soft edge a little
    face = np.zeros(alpha.shape, np.uint8)
    cv2.fillPoly(face, [np.round(oval - 0.5).astype(np.int32)], 1)
    face = cv2.dilate(face, np.ones((5, 5), np.uint8))
    return np.maximum(alpha, face.astype(np.float32))  # never a hole in the face


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
    alpha = _person_alpha(tex_rgb, lm_t[list(FACE_OVAL), :2])
    texture = np.concatenate([tex_rgb, np.round(alpha * 255).astype(np.uint8)[..., None]], -1)

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

    # Anchors: two rings around the oval (moving with the head) and a far static border.
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
    anchors2 = np.concatenate(ring_pts + [border])
    weights += [0.0] * len(border)
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
    teeth = blendshapes.mouth_geometry(frame, verts[:N_FACE] + t0, basis)
    mouth = {"jaw": teeth["jaw"]}
    for key in ("upper", "lower", "tongue"):
        px = teeth[key + "_px"].reshape(-1, 3)  # frame pixels + camera depth
        mouth[key] = _unproject(px[:, :2], px[:, 2], focal, size) - t0
    mouth["tongue"] = mouth["tongue"][0]
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
        mouth=mouth,
        source=name,
    )


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
