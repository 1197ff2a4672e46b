"""Initial Gaussian centres of a branch: the authors' random box, or points lifted from the images.

`model.gaussians.<part>.init` chooses:

  "box"    the authors' initialisation (reference §2): `init_num` points uniform in
           [−init_box, init_box]³, grey colour. Their 50,000 iterations move and recolour them.
  "image"  (our addition for the short presets) `init_num` pixels drawn uniformly from the branch's
           region — face: head mask minus mouth interior and teeth; mouth: mouth interior and teeth
           — of `init_frames` evenly spaced training frames, lifted along their camera rays to the
           depth of the head centre (the world origin of the TalkingGaussian layout) ± `init_depth`
           × that depth, and coloured with the pixel. 1,500 iterations cannot move random box points
           across a 256² head (the position rate is ~3e-5 per step); lifted points start where the
           head is and with its colours, and optimisation refines depth, shape and colour.

Both are functions of the run seed, so a resumed run starts from the same points.
"""

from __future__ import annotations

import numpy as np

INIT_MODES = ("box", "image")


def region(frame: dict, part: str) -> np.ndarray:
    """(H, W) bool: the pixels a branch is trained on (see module docstring)."""
    mouth = frame["mouth_mask"] | frame["teeth_mask"]
    if part == "face":
        return frame["head_mask"] & ~mouth
    if part == "mouth":
        return mouth
    raise ValueError(f"unknown branch {part!r}; expected 'face' or 'mouth'")


def lift(pixels: np.ndarray, depth: np.ndarray, viewmat: np.ndarray, k: np.ndarray) -> np.ndarray:
    """World points of (M, 2) pixel coordinates (x, y; centres at +0.5) at camera depths (M,)."""
    uv1 = np.concatenate([pixels + 0.5, np.ones((len(pixels), 1))], axis=1)
    cam = (np.linalg.inv(k) @ uv1.T).T * depth[:, None]
    r, t = viewmat[:3, :3], viewmat[:3, 3]
    return (cam - t) @ r  # R^T (x − t), row-wise


def image_points(
    subject, part: str, num: int, seed: int, *, frames: int = 8, depth_jitter: float = 0.005
) -> tuple[np.ndarray, np.ndarray, float]:
    """`num` points lifted from the branch's region of `frames` training frames.

    Args:
      subject: a `data.Subject`.
      part: "face" or "mouth".
      num: number of points M.
      seed: the run seed (points are a function of it).
      frames: how many evenly spaced training frames to draw pixels from.
      depth_jitter: ± fraction of the head-centre depth added uniformly to each point's depth.
    Returns:
      points (M, 3) float32 world coordinates, colors (M, 3) float32 RGB in [0, 1], and the
      world-space spacing of M points spread over one frame's region (a scale bound).
    Raises:
      ValueError: the region is empty in every chosen frame.
    """
    rng = np.random.default_rng([seed, {"face": 1, "mouth": 2}[part], 7])
    train = subject.split("train")
    if len(train) == 0:
        raise ValueError(f"{subject.path}: no training frames to initialise the {part} from")
    ids = _spaced(train, frames)
    if part == "mouth":  # the mouth is open in few frames: the widest of MOUTH_CANDIDATES
        cand = _spaced(train, MOUTH_CANDIDATES)
        open_px = [int(region(subject.frame(int(i), keys=_KEYS), part).sum()) for i in cand]
        ids = cand[np.argsort(open_px, kind="stable")[::-1][:frames]]
    pix, cols, views = [], [], []
    for i in ids:
        f = subject.frame(int(i), keys=_KEYS)
        ys, xs = np.nonzero(region(f, part))
        pix.append(np.stack([xs, ys], 1).astype(np.float64))
        cols.append(f["image"][ys, xs].astype(np.float32) / 255.0)
        views.append(np.full(len(xs), len(views)))
    n_px = sum(len(p) for p in pix)
    if n_px == 0:
        raise ValueError(
            f"{subject.path}: the {part} region is empty in training frames "
            f"{ids.tolist()}; check the parsing masks"
        )
    pick = rng.choice(n_px, size=num, replace=num > n_px)
    pix, cols, views = (
        np.concatenate(pix)[pick],
        np.concatenate(cols)[pick],
        np.concatenate(views)[pick],
    )
    pix = pix + rng.uniform(-0.5, 0.5, pix.shape)
    points = np.empty((num, 3))
    for v, i in enumerate(ids):
        sel = views == v
        if not sel.any():
            continue
        vm = subject.viewmat(int(i)).astype(np.float64)
        k = subject.frame(int(i), keys=("K",))["K"].astype(np.float64)
        centre = vm[2, 3]  # camera depth of the world origin (the head centre)
        depth = centre * (1.0 + rng.uniform(-depth_jitter, depth_jitter, int(sel.sum())))
        points[sel] = lift(pix[sel], depth, vm, k)
    vm = subject.viewmat(int(ids[0]))
    fx = float(subject.frame(int(ids[0]), keys=("K",))["K"][0, 0])
    spacing = float(np.sqrt(n_px / len(ids) / num) * vm[2, 3] / fx)
    return points.astype(np.float32), cols.astype(np.float32), spacing


_KEYS = ("image", "head_mask", "mouth_mask", "teeth_mask")
MOUTH_CANDIDATES = 64  # frames searched for the widest-open mouths


def _spaced(ids: np.ndarray, n: int) -> np.ndarray:
    return ids[np.unique(np.linspace(0, len(ids) - 1, min(n, len(ids))).round().astype(int))]
