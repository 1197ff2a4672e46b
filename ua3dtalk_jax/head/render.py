"""Rendering a branch and the fused frame (paper Eq. 3 and Fig. 2; reference §4 "Fuse", §5).

    render_branch   static Gaussians H (+ the MotionNetwork's δ = {Δμ, Δr, Δs}) → rasterizer
    render_fused    face over mouth over the torso/background frame (`gaussians.composite`)

Batch layout (`frame_batch` below, from `train.stage2.sampler`): every key has a leading frame axis B;
these functions work on one frame and are vmapped by the caller. Images arrive as uint8 and are
converted here, on the device. The attention maps of the authors' regularisers are rendered by the
same rasterizer with the colours [‖aud_att‖, ‖eye_att‖, 0] and detached geometry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ua3dtalk_jax.data.images import to_float
from ua3dtalk_jax.gaussians import activated, apply_deformation, camera_center, composite
from ua3dtalk_jax.gaussians.compose import GREEN
from ua3dtalk_jax.models.motion import FrameInputs
from ua3dtalk_jax.render import rasterize


def frame_inputs(frame: dict) -> FrameInputs:
    """The MotionNetwork conditioning of one frame (or of a batch, with a leading axis)."""
    return FrameInputs(
        aud=frame["aud"],
        au_exp=frame["au_exp"],
        f_exp=frame["f_exp"],
        f_tone=frame["f_tone"],
        f_emo=frame["f_emo"],
    )


def deform(net, params, gaussians, frame: dict, *, mode: str, rng):
    """The deformed Gaussians of one frame and the network's intermediates."""
    d, aux = net.apply({"params": params}, gaussians.means, frame_inputs(frame), mode=mode, rng=rng)
    return apply_deformation(gaussians, d), d, aux


def render_branch(
    net,
    params,
    gaussians,
    frame: dict,
    *,
    width: int,
    height: int,
    background=GREEN,
    use_deform: bool = True,
    mode: str = "eval",
    rng=None,
    offset=None,
    backend: str = "auto",
    attention: bool = False,
) -> dict:
    """Renders one branch for one frame.

    Args:
      net, params: the branch's MotionNetwork and its parameters.
      gaussians: the static `GaussianState`.
      frame: one frame of a batch (see module docstring).
      width, height: image size.
      background: (3,) colour behind the branch (green in training).
      use_deform: False renders the static Gaussians (warm-up; the no-deformation ablation).
      mode, rng: MotionNetwork mode ("train": one random member per view) and its key.
      offset: optional (N, 2) zeros whose gradient is the screen-space mean gradient.
      backend: rasterizer backend.
      attention: also render the attention maps (needs `use_deform` and the face branch).
    Returns:
      {"rgb" (H, W, 3), "alpha" (H, W), "radii" (N, 2), "deform" DeformOut or None, "aux" dict,
       "active" (N,) the live slots, "att" (H, W, 2) when `attention`}.
    """
    d, aux = None, {}
    g = gaussians
    if use_deform:
        g, d, aux = deform(net, params, gaussians, frame, mode=mode, rng=rng)
    viewmat, k = frame["viewmat"], frame["K"]
    means, quats, scales, opac, colors = activated(g, camera_center(viewmat))
    bg = jnp.asarray(background, jnp.float32)
    out = rasterize(
        means,
        quats,
        scales,
        opac,
        colors,
        viewmat,
        k,
        width=width,
        height=height,
        background=bg,
        backend=backend,
        means2d_offset=offset,
    )
    res = {
        "rgb": out.rgb,
        "alpha": out.alpha,
        "radii": out.radii,
        "deform": d,
        "aux": aux,
        "active": gaussians.active,
    }
    if attention:
        att = jnp.stack([aux["aud_ch_att_norm"], aux["eye_att_norm"], jnp.zeros_like(opac)], -1)
        geo = jax.tree.map(jax.lax.stop_gradient, (means, quats, scales, opac))
        maps = rasterize(
            *geo,
            att,
            viewmat,
            k,
            width=width,
            height=height,
            background=jnp.zeros((3,), jnp.float32),
            backend=backend,
        )
        res["att"] = maps.rgb[..., :2]
    return res


def render_fused(
    face,
    mouth,
    frame: dict,
    *,
    width: int,
    height: int,
    backend: str = "auto",
    mode: str = "eval",
    rng=None,
    use_deform: bool = True,
) -> dict:
    """Face over mouth over the frame's torso/background image (the fuse step and inference).

    Args:
      face, mouth: (net, params, gaussians) of each branch.
      frame: one frame (needs "background" (H, W, 3) uint8, cameras and conditioning).
    Returns:
      {"rgb" (H, W, 3) fused image, "face": face render dict, "mouth": mouth render dict}.
    """
    kw = {
        "width": width,
        "height": height,
        "backend": backend,
        "use_deform": use_deform,
        "mode": mode,
    }
    keys = (None, None) if rng is None else tuple(jax.random.split(rng))
    f = render_branch(*face, frame, rng=keys[0], **kw)
    m = render_branch(*mouth, frame, rng=keys[1], **kw)
    rgb, _ = composite(f["rgb"], f["alpha"], m["rgb"], m["alpha"], to_float(frame["background"]))
    return {"rgb": jnp.clip(rgb, 0.0, 1.0), "face": f, "mouth": m}
