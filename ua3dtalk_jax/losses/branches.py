"""The branch losses of stage 2: face and mouth (Eq. 13) and the fused frame (Eq. 14).

    L_D = L1 + λ·(1 − SSIM)  (+ regularisers)       face on its region, mouth inside the mouth
    L_F = L1 + λ·(1 − SSIM) + γ·patch-LPIPS          the fused frame against the whole image

Targets as the authors build them (reference §4):
  face   GT = gt·head + green·(1 − head), the mouth interior and teeth set to green (the mouth branch
         owns them; that mask eroded by 2 px late in training); on "hair iterations" the hair pixels
         are green in render and GT alike. Regularisers after the warm-up: 1e-5·mean|δ| (over
         the live slots), 1e-3 alpha mask on the head, 1e-4 eye attention inside the lips
         rectangle, and on non-hair iterations 1e-4 audio and eye attention over the hair.
         Late: 0.01·LPIPS on the lips crop and 0.2·patch LPIPS with the lips rectangle set to
         the background in both images.
  mouth  GT = gt·mouth + background elsewhere; rendered pixels in (lips rect XOR mouth) forced to
         the background; 1e-3 alpha mask on the lips rectangle; late: 0.5·patch LPIPS. Its final
         phase (flag "final"): black background instead of green.
Patch LPIPS draws one even patch size per step (`losses.image.patch_lpips`) from `size_key`.
Each loss takes one frame's render dict (`head.render.render_branch` / `render_fused`), the
frame, the step's traced flags and its static `Variant`; the jitted steps are
`train/stage2/step.py`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ua3dtalk_jax.data.images import to_float
from ua3dtalk_jax.gaussians.compose import GREEN
from ua3dtalk_jax.losses import image as image_losses
from ua3dtalk_jax.losses import regularizers

BLACK = (0.0, 0.0, 0.0)  # the mouth's final-phase background


class Variant(NamedTuple):
    deform: bool  # MotionNetwork on (after the static warm-up)
    mode: str  # "train" (one random member per view) or "eval" (full ensemble)


def reaches_late(b, v: Variant) -> bool:
    """Whether iterations of variant `v` can reach `b.lpips_from` (the late LPIPS is compiled into
    those variants only: the one-member "train" steps end at `ensemble_from`)."""
    return v.deform and (v.mode == "eval" or b.lpips_from < b.ensemble_from)


def background(flags: dict) -> jax.Array:
    """(3,) training background: green, black in the mouth's final phase (traced flag)."""
    final = flags.get("final", False)
    return jnp.where(final, jnp.asarray(BLACK, jnp.float32), jnp.asarray(GREEN, jnp.float32))


def _late(on, fn) -> jax.Array:
    """fn() when the traced flag `on` is set, else 0 (one program, no recompilation)."""
    return jax.lax.cond(on, fn, lambda: jnp.zeros((), jnp.float32))


def _erode(mask: jax.Array, px: int) -> jax.Array:
    m = mask.astype(jnp.float32)
    for _ in range(px):
        m = -jax.lax.reduce_window(-m, -jnp.inf, jax.lax.max, (3, 3), (1, 1), "SAME")
    return m > 0.5


def _fill(shape_hw, colour) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(colour, jnp.float32), tuple(shape_hw) + (3,))


def face_loss(
    cfg, r: dict, frame: dict, flags: dict, v: Variant, rng, size_key=None
) -> tuple[jax.Array, dict]:
    """Loss of one face-branch render `r` (see module docstring).

    Args:
      rng: key of this frame's patch grid; size_key: the step's patch-size key (unbatched).
    """
    b, lam = cfg.train.face, cfg.train.lambda_ssim
    gt = to_float(frame["image"])
    green = _fill(gt.shape[:2], GREEN)
    mouth = frame["mouth_mask"] | frame["teeth_mask"]
    mouth = jnp.where(flags["erode"], _erode(mouth, 2), mouth)
    head = frame["head_mask"] & ~mouth
    target = jnp.where(head[..., None], gt, green)
    pred = r["rgb"]
    hair = flags["hair"] & frame["hair_mask"]
    target = jnp.where(hair[..., None], green, target)
    pred = jnp.where(hair[..., None], green, pred)
    l1, ds = image_losses.l1(pred, target), image_losses.d_ssim(pred, target)
    loss = l1 + lam * ds
    m = {"l1": l1, "psnr": image_losses.psnr(pred, target)}
    if v.deform:
        d = r["deform"]
        # mean over the live slots only (the authors' buffer has no empty ones)
        loss += b.reg_deform * regularizers.deformation_l1(d.d_xyz, d.d_rot, d.d_scale, r["active"])
        loss += b.reg_alpha * regularizers.alpha_mask(r["alpha"], frame["head_mask"])
        if b.reg_attention > 0:
            h, w = gt.shape[:2]
            lips = regularizers.rect_mask(frame["lips_rect"], h, w)
            att = r["att"]
            loss += b.reg_attention * regularizers.masked_map_mean(att[..., 1], lips)
            on_hair = (~flags["hair"]).astype(jnp.float32)
            hair_att = regularizers.masked_map_mean(att[..., 0], frame["hair_mask"])
            hair_att += regularizers.masked_map_mean(att[..., 1], frame["hair_mask"])
            loss += b.reg_attention * on_hair * hair_att

    def late():
        h, w = gt.shape[:2]
        lips = regularizers.rect_mask(frame["lips_rect"], h, w)[..., None]
        crop = image_losses.crop_lpips(pred, target, frame["lips_rect"], size=cfg.train.lips_crop)
        patch = _patch_lpips(
            cfg, "face", jnp.where(lips, green, pred), jnp.where(lips, green, target), rng, size_key
        )
        return b.lpips_lips * crop + b.lpips_patch * patch

    if reaches_late(b, v) and (b.lpips_lips > 0 or b.lpips_patch > 0):
        loss += _late(flags["late"], late)
    return loss, m


def _patch_lpips(cfg, part, pred, target, rng, size_key):
    t = cfg.train
    field = "patch_sizes_face" if part == "face" else "patch_sizes_mouth"  # the fuse: the mouth's
    sizes = t[field]
    largest = image_losses.even_sizes(*sizes, t.patch_size_step)[-1]
    if largest > min(pred.shape[0], pred.shape[1]):
        raise ValueError(
            f"train.{field} = {tuple(sizes)}: patches of {largest} px do not fit the "
            f"subject's {pred.shape[0]}×{pred.shape[1]} frames; pass a smaller "
            f'range, e.g. --set=train.{field}="(32, 32)"'
        )
    size_key = rng if size_key is None else size_key
    return image_losses.patch_lpips(
        pred, target, sizes=tuple(sizes), step=t.patch_size_step, size_key=size_key, rng=rng
    )


def mouth_loss(
    cfg, r: dict, frame: dict, flags: dict, v: Variant, rng, size_key=None
) -> tuple[jax.Array, dict]:
    """Loss of one mouth-branch render `r` (see module docstring; `r` rendered over
    `background(flags)`). rng, size_key: as `face_loss`."""
    b, lam = cfg.train.mouth, cfg.train.lambda_ssim
    gt = to_float(frame["image"])
    h, w = gt.shape[:2]
    bg = jnp.broadcast_to(background(flags), (h, w, 3))
    mouth = frame["mouth_mask"] | frame["teeth_mask"]
    lips = regularizers.rect_mask(frame["lips_rect"], h, w)
    target = jnp.where(mouth[..., None], gt, bg)
    pred = jnp.where((lips ^ mouth)[..., None], bg, r["rgb"])
    l1, ds = image_losses.l1(pred, target), image_losses.d_ssim(pred, target)
    loss = l1 + lam * ds
    if v.deform:
        loss += b.reg_alpha * regularizers.alpha_mask(r["alpha"], lips)
    if reaches_late(b, v) and b.lpips_patch > 0:
        loss += _late(
            flags["late"],
            lambda: b.lpips_patch * _patch_lpips(cfg, "mouth", pred, target, rng, size_key),
        )
    return loss, {"l1": l1, "psnr": image_losses.psnr(pred, target)}


def fuse_loss(cfg, fused: dict, frame: dict, late, rng, size_key=None) -> tuple[jax.Array, dict]:
    """Eq. 14 on the whole frame (`late`: traced flag of the patch-LPIPS term; rng, size_key: as
    `face_loss`; the authors' fuse patches are the mouth's 32-42)."""
    gt = to_float(frame["image"])
    pred = fused["rgb"]
    l1, ds = image_losses.l1(pred, gt), image_losses.d_ssim(pred, gt)
    loss = l1 + cfg.train.lambda_ssim * ds
    if cfg.train.gamma_lpips > 0:
        loss += _late(
            late,
            lambda: cfg.train.gamma_lpips * _patch_lpips(cfg, "mouth", pred, gt, rng, size_key),
        )
    return loss, {"l1": l1, "psnr": image_losses.psnr(pred, gt)}
