"""Uncertainty maps (beyond the paper): each Gaussian's uncertainty and fusion weights, splatted.

In "eval" mode the MotionNetwork returns, per view v (`spec.view_names`) and Gaussian n (Eq. 7–12):
  aleatoric  a_vn = tr(E_t[diag σ_t²]) / D       (mean over latent dims of the members' variance)
  epistemic  e_vn = tr(Cov_t[μ_t]) / D           (spread of the T members' means)
  weight     w_vn = tr(Σ̂_v⁻¹) / Σ_j tr(Σ̂_j⁻¹)    (the view's share of the fused precision, Eq. 12)
These 3V numbers are rendered as extra colour channels of the frame's deformed Gaussians with the
geometry held fixed (stop_gradient, as the attention maps of `head/render.py`): a pixel
gets Σ_i w_i c_i over the compositing weights w_i of the Gaussians it sees; divided by the
accumulated alpha Σ_i w_i it is the opacity-weighted mean of the quantity over those Gaussians.
Pixels with alpha below ALPHA_MIN are blank. "fused" composites face over mouth per channel as
`gaussians.composite` does colour (the mouth has no emotion view: that channel is the face's
alone); "face" / "mouth" show one branch.

Naming: V views, H×W image; maps are (V, H, W) per quantity.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

QUANTITIES = ("aleatoric", "epistemic", "view_weights")
BRANCHES = ("fused", "face", "mouth")
ALPHA_MIN = 0.05  # below this accumulated opacity a pixel has no meaningful Gaussian average
RANGE_FRAMES = 16  # frames (evenly spaced) whose maps fix the colour scale of the whole sequence
RANGE_PERCENTILES = (1.0, 99.0)
LOG_SCALE_RATIO = 10.0  # colour scales spanning at least this factor are logarithmic


def branch_maps(
    net, params, gaussians, frame: dict, *, width: int, height: int, backend: str = "auto"
) -> dict:
    """One branch's render with its per-view quantities as extra channels.

    Args:
      net, params, gaussians: the branch (`load_stage2` heads entry).
      frame: one frame (cameras and conditioning; see `head.render`).
      width, height: image size.
      backend: rasterizer backend.
    Returns:
      {"rgb" (H, W, 3) over green, "alpha" (H, W), "values" (3V, H, W) not divided by alpha, in
       QUANTITIES-major order}.
    Raises:
      ValueError: the network has no uncertainty blocks (model.ablation.uncertainty=False).
    """
    from ua3dtalk_jax.gaussians import activated, camera_center
    from ua3dtalk_jax.gaussians.compose import GREEN
    from ua3dtalk_jax.head.render import deform
    from ua3dtalk_jax.render import rasterize

    if not net.spec.uncertainty:
        raise ValueError(
            f"the {net.spec.name} branch was trained without uncertainty blocks "
            "(model.ablation.uncertainty=False): there is nothing to map"
        )
    g, _, aux = deform(net, params, gaussians, frame, mode="eval", rng=None)
    viewmat, k = frame["viewmat"], frame["K"]
    means, quats, scales, opac, colors = activated(g, camera_center(viewmat))
    vals = jnp.concatenate([aux[q].T for q in QUANTITIES], axis=-1)  # (N, 3V)
    geo = jax.tree.map(jax.lax.stop_gradient, (means, quats, scales, opac))
    bg = jnp.concatenate([jnp.asarray(GREEN, jnp.float32), jnp.zeros(vals.shape[1], jnp.float32)])
    out = rasterize(
        *geo,
        jnp.concatenate([colors, vals], -1),
        viewmat,
        k,
        width=width,
        height=height,
        background=bg,
        backend=backend,
    )
    return {
        "rgb": out.rgb[..., :3],
        "alpha": out.alpha,
        "values": jnp.moveaxis(out.rgb[..., 3:], -1, 0),
    }


def combine(face: dict | None, mouth: dict | None, face_views, mouth_views, background=None):
    """Face-over-mouth (or one branch's) alpha-normalised maps.

    Args:
      face, mouth: `branch_maps` results (either may be None for a single branch).
      face_views, mouth_views: their view names.
      background: (H, W, 3) float torso/background frame behind the colour (None: keep green).
    Returns:
      rgb (H, W, 3), views (names), {quantity: (V, H, W)} with NaN where alpha < ALPHA_MIN.
    """
    from ua3dtalk_jax.gaussians import composite
    from ua3dtalk_jax.gaussians.compose import GREEN

    parts = [(b, list(v)) for b, v in ((face, face_views), (mouth, mouth_views)) if b is not None]
    views = list(parts[0][1]) + [v for v in parts[-1][1] if v not in parts[0][1]]
    if background is None:  # keep the green the branches were rendered over
        background = jnp.broadcast_to(jnp.asarray(GREEN, jnp.float32), parts[0][0]["rgb"].shape)
    if face is not None and mouth is not None:
        rgb, _ = composite(face["rgb"], face["alpha"], mouth["rgb"], mouth["alpha"], background)
    else:  # one branch over the frame: the green swapped as `composite` does
        b = parts[0][0]
        t = (1.0 - b["alpha"])[..., None]
        rgb = b["rgb"] + (background - jnp.asarray(GREEN, jnp.float32)) * t
    maps = {}
    for qi, q in enumerate(QUANTITIES):
        num, den = [], []
        for v in views:
            n = jnp.zeros_like(parts[0][0]["alpha"])
            d, trans = jnp.zeros_like(n), jnp.ones_like(n)
            for b, names in parts:  # front (face) to back (mouth)
                if v in names:
                    n = n + trans * b["values"][qi * len(names) + names.index(v)]
                    d = d + trans * b["alpha"]
                trans = trans * (1.0 - b["alpha"])
            num.append(n)
            den.append(d)
        num, den = jnp.stack(num), jnp.stack(den)
        maps[q] = jnp.where(den >= ALPHA_MIN, num / jnp.maximum(den, ALPHA_MIN), jnp.nan)
    return jnp.clip(rgb, 0.0, 1.0), views, maps


def make_frame_fn(cfg, heads, *, width: int, height: int, branch: str = "fused"):
    """A jitted frame → (rgb, {quantity: (V, H, W)}) function and the view names."""
    from ua3dtalk_jax.data.images import to_float

    if branch not in BRANCHES:
        raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
    if not cfg.train.deform:
        raise ValueError(
            "the workdir was trained with train.deform=False (static heads): "
            "no deformation network, no uncertainty"
        )
    names = {p: heads[p][0].spec.view_names for p in ("face", "mouth")}
    use = ("face", "mouth") if branch == "fused" else (branch,)

    @jax.jit
    def fn(frame):
        maps = {
            p: branch_maps(*heads[p], frame, width=width, height=height, backend=cfg.backend)
            for p in use
        }
        rgb, _, m = combine(
            maps.get("face"),
            maps.get("mouth"),
            names["face"],
            names["mouth"],
            to_float(frame["background"]),
        )
        return rgb, m

    f_views = list(names["face"]) if "face" in use else []
    m_views = list(names["mouth"]) if "mouth" in use else []
    return fn, f_views + [v for v in m_views if v not in f_views]


def colour_ranges(samples: list[dict]) -> dict:
    """Colour scale per quantity from sample maps: log-scale percentiles; weights fixed to [0, 1]."""
    out = {"view_weights": (0.0, 1.0)}
    for q in ("aleatoric", "epistemic"):
        v = np.concatenate([np.asarray(s[q]).ravel() for s in samples])
        v = v[np.isfinite(v) & (v > 0)]
        if not v.size:
            out[q] = (1e-6, 1.0)
            continue
        lo, hi = np.percentile(v, RANGE_PERCENTILES)
        out[q] = (float(lo), float(max(hi, lo * 1.01)))
    return out


TITLES = {"aleatoric": "aleatoric", "epistemic": "epistemic", "view_weights": "fusion weight"}
CMAPS = {"aleatoric": "magma", "epistemic": "viridis", "view_weights": "cividis"}


def figure(
    rgb: np.ndarray, real: np.ndarray, maps: dict, views, ranges: dict, title: str = ""
) -> np.ndarray:
    """One frame's panel grid: frame | real | error, then one row per quantity, one column per view.

    Args:
      rgb, real: (H, W, 3) float in [0, 1].
      maps: {quantity: (V, H, W)} (NaN = blank).
      views: V names.
      ranges: `colour_ranges` output.
      title: figure title.
    Returns:
      (H', W', 3) uint8 RGB image, even sides (for H.264).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    w = rgb.shape[1]
    panel = max(1.6, w / 100.0)
    fig, ax = plt.subplots(
        len(QUANTITIES),
        1 + len(views),
        squeeze=False,
        figsize=(panel * (1 + len(views)) + 1.2, panel * len(QUANTITIES) + 0.5),
        dpi=100,
        layout="constrained",
    )
    err = np.abs(np.asarray(rgb) - np.asarray(real)).mean(-1)
    for r, (img, name) in enumerate(((rgb, "rendered"), (real, "real"), (err, "|error|"))):
        ax[r, 0].imshow(
            img,
            cmap="gray" if img.ndim == 2 else None,
            vmin=0,
            vmax=1 if r < 2 else 0.5,
            interpolation="nearest",
        )
        ax[r, 0].set_title(name, fontsize=8)
    for r, q in enumerate(QUANTITIES):
        lo, hi = ranges[q]
        # log scale only where the range spans a decade (it does for epistemic, rarely aleatoric)
        log = q != "view_weights" and hi / max(lo, 1e-30) >= LOG_SCALE_RATIO
        norm = mcolors.LogNorm(lo, hi) if log else mcolors.Normalize(lo, hi)
        cmap = matplotlib.colormaps[CMAPS[q]].with_extremes(bad="white")
        for c, v in enumerate(views):
            m = np.asarray(maps[q][c])
            im = ax[r, c + 1].imshow(
                np.ma.masked_invalid(m), cmap=cmap, norm=norm, interpolation="nearest"
            )
            ax[r, c + 1].set_title(f"{TITLES[q]}: {v}", fontsize=8)
        fig.colorbar(
            im, ax=list(ax[r, 1:]), shrink=0.9, extend="both" if q != "view_weights" else "neither"
        )
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    pad = ((0, img.shape[0] % 2), (0, img.shape[1] % 2), (0, 0))
    return np.pad(img, pad, constant_values=255)


def parse_frames(spec: str | None, subject) -> np.ndarray:
    """Frame positions from a spec: None/"val"/"train" (a split), "a:b" (range), "3,7,9" (list)."""
    if spec in (None, "", "val", "train"):
        return np.asarray(subject.split(spec or "val"))
    try:
        if ":" in spec:
            a, b = spec.split(":", 1)
            idx = np.arange(int(a or 0), int(b) if b else len(subject))
        else:
            idx = np.asarray([int(s) for s in spec.split(",") if s.strip()])
    except ValueError as e:
        raise ValueError(f"--frames={spec!r}: expected val, train, a:b or a comma list") from e
    if not idx.size or idx.min() < 0 or idx.max() >= len(subject):
        raise ValueError(f"--frames={spec!r}: positions must lie in 0..{len(subject) - 1}")
    return idx


def render_uncertainty(
    workdir: str,
    subject_path: str,
    *,
    frames: str | None = None,
    out_dir: str | None = None,
    branch: str = "fused",
    log=print,
) -> dict:
    """Writes the uncertainty figure of every selected frame as PNG and all of them as an mp4.

    Args:
      workdir: a finished training workdir.
      subject_path: its subject.
      frames: `parse_frames` spec (default the val split).
      out_dir: destination (default workdir/uncertainty).
      branch: "fused", "face" or "mouth".
      log: progress printer.
    Returns:
      {"pngs": paths, "mp4": path, "views": names, "ranges": colour ranges,
       "stats": {quantity: (V,) mean over frames of each view's spatial mean}}.
    """
    from ua3dtalk_jax.audio.features import SAMPLE_RATE
    from ua3dtalk_jax.data.video import VideoWriter
    from ua3dtalk_jax.head.features import frame_with_features
    from ua3dtalk_jax.head.workdir import Workdir

    wd = Workdir(workdir)
    model = wd.load_trained(subject_path, drivable=False)
    cfg, heads, subject = model.cfg, model.heads, model.subject
    idx = parse_frames(frames, subject)
    features = wd.stage1_features(subject, cfg)
    h, w = subject.size
    fn, views = make_frame_fn(cfg, heads, width=w, height=h, branch=branch)

    def run(i):
        f = {k: jnp.asarray(v) for k, v in frame_with_features(subject, features, int(i)).items()}
        rgb, maps = fn(f)
        return np.asarray(rgb), {q: np.asarray(m) for q, m in maps.items()}

    sample = idx[np.unique(np.linspace(0, len(idx) - 1, min(RANGE_FRAMES, len(idx))).astype(int))]
    ranges = colour_ranges([run(i)[1] for i in sample])
    out_dir = out_dir or os.path.join(workdir, "uncertainty")
    os.makedirs(out_dir, exist_ok=True)
    contiguous = len(idx) > 1 and bool(np.all(np.diff(idx) == 1))
    audio = None
    if contiguous and subject.has("aud.wav"):
        a, b = (round(float(x) / subject.fps * SAMPLE_RATE) for x in (idx[0], idx[-1] + 1))
        audio = subject.wav()[a:b]
    pngs, writer, sums = [], None, {q: [] for q in QUANTITIES}
    mp4 = os.path.join(out_dir, f"uncertainty_{branch}.mp4")
    import cv2

    try:
        for n, i in enumerate(idx):
            rgb, maps = run(i)
            real = subject.frame(int(i), keys=("image",))["image"].astype(np.float32) / 255.0
            img = figure(rgb, real, maps, views, ranges, f"{branch} · frame {int(i)}")
            path = os.path.join(out_dir, f"{branch}_{int(i):05d}.png")
            cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            pngs.append(path)
            for q in QUANTITIES:
                sums[q].append(np.nanmean(maps[q].reshape(len(views), -1), axis=1))
            if writer is None:
                writer = VideoWriter(
                    mp4, fps=subject.fps, size=img.shape[:2], audio=audio, sample_rate=SAMPLE_RATE
                )
            writer.write(img)
            if n % 25 == 0:
                log(f"uncertainty maps: {n + 1}/{len(idx)} frames")
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    writer.close()
    stats = {q: np.mean(np.stack(v), axis=0).tolist() for q, v in sums.items()}
    return {"pngs": pngs, "mp4": mp4, "views": views, "ranges": ranges, "stats": stats}
