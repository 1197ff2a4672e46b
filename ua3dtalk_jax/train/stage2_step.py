"""Jitted stage-2 steps: face and mouth branches (Eq. 13) and the fuse step (Eq. 14).

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
         phase (flag "final", the authors' it > bg_iter): black background instead of green, the
         motion network and the geometry (FINAL_FROZEN) frozen, only the colours train.
Patch LPIPS draws one even patch size per step (`losses.image.patch_lpips`) from a key shared by
every frame and device of the step. The network's learning-rate schedule counts every iteration:
steps that do not update the network (the static warm-up, the mouth's final phase) advance only
its schedule counts (`optim.advance_schedules`), as PyTorch's per-iteration `scheduler.step()`.
Static variants (one compilation each): `Variant(deform, mode)`; per-iteration switches that
change no shapes (hair, erode, late, final) are traced scalars, the late LPIPS under `lax.cond`
(compiled only into the variants whose iterations reach `lpips_from`). Each step runs inside
`parallel.data_parallel`: gradients, metrics and densification statistics are reduced over the
device axis, a non-finite loss or gradient leaves the state unchanged (metrics["finite"] = 0).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ua3dtalk_jax.data.images import to_float
from ua3dtalk_jax.gaussians import accumulate_grad_stats
from ua3dtalk_jax.gaussians.compose import GREEN
from ua3dtalk_jax.gaussians.params import trainable
from ua3dtalk_jax.head.render import render_branch, render_fused
from ua3dtalk_jax.losses import image as image_losses
from ua3dtalk_jax.losses import regularizers
from ua3dtalk_jax.train import parallel
from ua3dtalk_jax.train.optim import advance_schedules

BLACK = (0.0, 0.0, 0.0)  # the mouth's final-phase background
# Gaussian fields the mouth's final phase freezes (the authors set requires_grad = False on xyz,
# opacity, scaling and rotation after bg_iter; the SH colours keep training).
FINAL_FROZEN = ("means", "scales_raw", "quats", "opacity_logits")
PATCH_SIZE_STREAM = 11  # fold_in tag of the step's patch-size key


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


def face_loss(cfg, r: dict, frame: dict, flags: dict, v: Variant, rng,
              size_key=None) -> tuple[jax.Array, dict]:  # fmt: skip
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
        patch = _patch_lpips(cfg, "face", jnp.where(lips, green, pred),
                             jnp.where(lips, green, target), rng, size_key)  # fmt: skip
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
        raise ValueError(f"train.{field} = {tuple(sizes)}: patches of {largest} px do not fit the "
                         f"subject's {pred.shape[0]}×{pred.shape[1]} frames; pass a smaller "
                         f"range, e.g. --set=train.{field}=\"(32, 32)\"")  # fmt: skip
    size_key = rng if size_key is None else size_key
    return image_losses.patch_lpips(pred, target, sizes=tuple(sizes), step=t.patch_size_step,
                         size_key=size_key, rng=rng)  # fmt: skip


def mouth_loss(cfg, r: dict, frame: dict, flags: dict, v: Variant, rng,
               size_key=None) -> tuple[jax.Array, dict]:  # fmt: skip
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
        loss += _late(flags["late"], lambda: b.lpips_patch * _patch_lpips(
            cfg, "mouth", pred, target, rng, size_key))  # fmt: skip
    return loss, {"l1": l1, "psnr": image_losses.psnr(pred, target)}


def fuse_loss(cfg, fused: dict, frame: dict, late, rng, size_key=None) -> tuple[jax.Array, dict]:
    """Eq. 14 on the whole frame (`late`: traced flag of the patch-LPIPS term; rng, size_key: as
    `face_loss`; the authors' fuse patches are the mouth's 32-42)."""
    gt = to_float(frame["image"])
    pred = fused["rgb"]
    l1, ds = image_losses.l1(pred, gt), image_losses.d_ssim(pred, gt)
    loss = l1 + cfg.train.lambda_ssim * ds
    if cfg.train.gamma_lpips > 0:
        loss += _late(late, lambda: cfg.train.gamma_lpips * _patch_lpips(
            cfg, "mouth", pred, gt, rng, size_key))  # fmt: skip
    return loss, {"l1": l1, "psnr": image_losses.psnr(pred, gt)}


def _finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves))


def _select(ok, new, old):
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)


def make_branch_step(cfg, part: str, net, g_tx, n_tx, v: Variant, *, width: int, height: int,
                     mesh):  # fmt: skip
    """The jitted step of one branch and variant.

    Returns:
      step(state, batch, flags) → (state, metrics); batch: dict of (B, …) arrays sharded over the
      mesh's data axis; flags: {"hair", "erode", "late", "final"} bool scalars.
    """
    loss_of = face_loss if part == "face" else mouth_loss
    attention = part == "face" and v.deform and cfg.train.face.reg_attention > 0
    backend = cfg.backend

    def branch_step(state, batch, flags):
        key = jax.random.fold_in(state.key, state.step)
        # one patch size per step, the same on every device and frame (an unbatched switch)
        size_key = jax.random.fold_in(key, PATCH_SIZE_STREAM)
        nb = batch["image"].shape[0]
        dev = jax.lax.axis_index(parallel.AXIS)
        keys = jax.random.split(jax.random.fold_in(key, dev), nb)
        n = state.gaussians.capacity
        bg = background(flags)

        def total(g_params, n_params, offsets):
            gs = state.gaussians.replace(**g_params)

            def one(frame, offset, k):
                k_m, k_l = jax.random.split(k)
                r = render_branch(net, n_params, gs, frame, width=width, height=height,
                                  background=bg, use_deform=v.deform, mode=v.mode, rng=k_m,
                                  offset=offset, backend=backend, attention=attention)  # fmt: skip
                loss, m = loss_of(cfg, r, frame, flags, v, k_l, size_key)
                return loss, (m, r["radii"])

            losses, (m, radii) = jax.vmap(one)(batch, offsets, keys)
            return jnp.mean(losses), (jax.tree.map(jnp.mean, m), radii)

        offsets = jnp.zeros((nb, n, 2), jnp.float32)
        g_params = trainable(state.gaussians)
        (loss, (m, radii)), grads = jax.value_and_grad(total, argnums=(0, 1, 2), has_aux=True)(
            g_params, state.net, offsets)  # fmt: skip
        g_grad, n_grad, off_grad = grads
        # The mean over devices of per-device means = the mean over the global batch; the
        # per-frame screen gradients (of the local mean) are rescaled to single-frame units.
        g_grad, n_grad, loss, m = jax.lax.pmean((g_grad, n_grad, loss, m), parallel.AXIS)
        stats = state.stats
        for i in range(nb):
            stats = accumulate_grad_stats(stats, off_grad[i] * nb, radii[i],
                                          width=width, height=height)  # fmt: skip
        delta = jax.tree.map(lambda a, b: a - b, stats, state.stats)
        delta = jax.lax.psum(delta, parallel.AXIS)
        stats = state.stats.replace(
            grad_accum=state.stats.grad_accum + delta.grad_accum,
            count=state.stats.count + delta.count,
            max_radii=jax.lax.pmax(stats.max_radii, parallel.AXIS),
        )
        ok = jnp.isfinite(loss) & _finite((g_grad, n_grad))
        new = updated_state(state, g_grad, n_grad, g_tx, n_tx, v.deform, flags.get("final", False))
        new = _select(ok, new.replace(stats=stats), state).replace(step=state.step + 1)
        return new, dict(m, loss=loss, finite=ok.astype(jnp.float32))

    return jax.jit(parallel.data_parallel(branch_step, mesh, batch_argnums=(1,)))


def updated_state(state, g_grad, n_grad, g_tx, n_tx, deform: bool, final):
    """The state after one optimiser step of the Gaussians and (when `deform`) the network.

    The network's schedule counts advance in every step; a step that does not update it (static,
    or the traced `final` flag) leaves its weights, moments and Adam count as they are. `final`
    also keeps the FINAL_FROZEN Gaussian fields and their moments (torch's Adam skips parameters
    without a gradient).

    Args:
      state: `BranchState` before the step.
      g_grad: gradients of `trainable(state.gaussians)` (dict of (N, …) arrays).
      n_grad: gradients of `state.net` (same tree); ignored when not `deform`.
      g_tx, n_tx: the branch's optimisers (`init_branch`).
      deform: static, whether the network trains in this variant.
      final: () bool, traced: the mouth's final phase.
    Returns:
      the `BranchState` with updated gaussians, net, g_opt and n_opt (stats and step as given).
    """
    g_params = trainable(state.gaussians)
    g_up, g_opt = g_tx.update(g_grad, state.g_opt, g_params)
    new_g = jax.tree.map(lambda p, u: p + u, g_params, g_up)
    idle_opt = advance_schedules(state.n_opt)
    if deform:
        n_up, n_opt = n_tx.update(n_grad, state.n_opt, state.net)
        net = _select(final, state.net, jax.tree.map(lambda p, u: p + u, state.net, n_up))
        n_opt = _select(final, idle_opt, n_opt)
    else:
        net, n_opt = state.net, idle_opt
    new_g = {k: jnp.where(final, g_params[k], x) if k in FINAL_FROZEN else x
             for k, x in new_g.items()}  # fmt: skip
    return state.replace(gaussians=state.gaussians.replace(**new_g), net=net,
                         g_opt=_keep_fields(final, g_opt, state.g_opt, FINAL_FROZEN),
                         n_opt=n_opt)  # fmt: skip


def _keep_fields(on, new_opt, old_opt, fields):
    """`new_opt` with the per-field leaves (dict key in `fields`) taken from `old_opt` where
    the traced flag `on` is set."""

    def one(path, a, b):
        named = any(getattr(k, "key", None) in fields for k in path)
        return jnp.where(on, b, a) if named else a

    return jax.tree_util.tree_map_with_path(one, new_opt, old_opt)


def make_fuse_step(cfg, nets, txs, *, width: int, height: int, mesh):
    """The jitted fuse step: colours of both branches and the face opacity (frozen networks).

    Args:
      nets: {"face": MotionNetwork, "mouth": MotionNetwork}; txs: their fuse Gaussian optimisers.
    Returns:
      step(states, batch, late) → (states, metrics) with states = {"face": BranchState, ...};
      late: bool scalar, the patch-LPIPS term on.
    """
    backend = cfg.backend

    def fuse_step(states, batch, late):
        st = states["face"]
        key = jax.random.fold_in(jax.random.fold_in(st.key, st.step), 7)
        size_key = jax.random.fold_in(key, PATCH_SIZE_STREAM)  # as in the branch step
        nb = batch["image"].shape[0]
        keys = jax.random.split(jax.random.fold_in(key, jax.lax.axis_index(parallel.AXIS)), nb)
        params = {p: trainable(states[p].gaussians) for p in ("face", "mouth")}

        def total(params):
            # Only the colours and the face opacity train: the frozen fields are cut from the
            # graph, so no gradient flows back through the deformation networks.
            live = {"face": ("sh", "opacity_logits"), "mouth": ("sh",)}
            params = {p: {k: v if k in live[p] else jax.lax.stop_gradient(v)
                          for k, v in params[p].items()} for p in params}  # fmt: skip
            branch = {p: (nets[p], states[p].net, states[p].gaussians.replace(**params[p]))
                      for p in ("face", "mouth")}  # fmt: skip

            def one(frame, k):
                fused = render_fused(branch["face"], branch["mouth"], frame, width=width,
                                     height=height, backend=backend)  # fmt: skip
                return fuse_loss(cfg, fused, frame, late, k, size_key)

            losses, m = jax.vmap(one)(batch, keys)
            return jnp.mean(losses), jax.tree.map(jnp.mean, m)

        (loss, m), grads = jax.value_and_grad(total, has_aux=True)(params)
        grads, loss, m = jax.lax.pmean((grads, loss, m), parallel.AXIS)
        ok = jnp.isfinite(loss) & _finite(grads)
        new = {}
        for p in ("face", "mouth"):
            up, opt = txs[p].update(grads[p], states[p].g_opt, params[p])
            g = states[p].gaussians.replace(**jax.tree.map(lambda a, u: a + u, params[p], up))
            cand = states[p].replace(gaussians=g, g_opt=opt)
            new[p] = _select(ok, cand, states[p]).replace(step=states[p].step + 1)
        return new, dict(m, loss=loss, finite=ok.astype(jnp.float32))

    return jax.jit(parallel.data_parallel(fuse_step, mesh, batch_argnums=(1,)))
