"""Jitted stage-2 steps: face and mouth branches (Eq. 13) and the fuse step (Eq. 14).

The losses of each step are `losses.branches` (targets, regularisers, late LPIPS). The mouth's
final phase (flag "final", the authors' it > bg_iter) freezes the motion network and the geometry
(FINAL_FROZEN); only the colours train. Patch LPIPS draws one even patch size per step from a key
shared by every frame and device of the step. The network's learning-rate schedule counts every
iteration: steps that do not update the network (the static warm-up, the mouth's final phase)
advance only its schedule counts (`optim.advance_schedules`), as PyTorch's per-iteration
`scheduler.step()`. Static variants (one compilation each): `Variant(deform, mode)`; per-iteration
switches that change no shapes (hair, erode, late, final) are traced scalars, the late LPIPS under
`lax.cond` (compiled only into the variants whose iterations reach `lpips_from`). Each step runs
inside `parallel.data_parallel`: gradients, metrics and densification statistics are reduced over
the device axis, a non-finite loss or gradient leaves the state unchanged (metrics["finite"] = 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ua3dtalk_jax.gaussians import accumulate_grad_stats
from ua3dtalk_jax.gaussians.params import trainable
from ua3dtalk_jax.head.render import render_branch, render_fused
from ua3dtalk_jax.losses.branches import Variant, background, face_loss, fuse_loss, mouth_loss
from ua3dtalk_jax.train import parallel
from ua3dtalk_jax.train.optim import advance_schedules

# Gaussian fields the mouth's final phase freezes (the authors set requires_grad = False on xyz,
# opacity, scaling and rotation after bg_iter; the SH colours keep training).
FINAL_FROZEN = ("means", "scales_raw", "quats", "opacity_logits")
PATCH_SIZE_STREAM = 11  # fold_in tag of the step's patch-size key


def _finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves))


def _select(ok, new, old):
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)


def make_branch_step(cfg, part: str, net, g_tx, n_tx, v: Variant, *, width: int, height: int, mesh):
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
                r = render_branch(
                    net,
                    n_params,
                    gs,
                    frame,
                    width=width,
                    height=height,
                    background=bg,
                    use_deform=v.deform,
                    mode=v.mode,
                    rng=k_m,
                    offset=offset,
                    backend=backend,
                    attention=attention,
                )
                loss, m = loss_of(cfg, r, frame, flags, v, k_l, size_key)
                return loss, (m, r["radii"])

            losses, (m, radii) = jax.vmap(one)(batch, offsets, keys)
            return jnp.mean(losses), (jax.tree.map(jnp.mean, m), radii)

        offsets = jnp.zeros((nb, n, 2), jnp.float32)
        g_params = trainable(state.gaussians)
        (loss, (m, radii)), grads = jax.value_and_grad(total, argnums=(0, 1, 2), has_aux=True)(
            g_params, state.net, offsets
        )
        g_grad, n_grad, off_grad = grads
        # The mean over devices of per-device means = the mean over the global batch; the
        # per-frame screen gradients (of the local mean) are rescaled to single-frame units.
        g_grad, n_grad, loss, m = jax.lax.pmean((g_grad, n_grad, loss, m), parallel.AXIS)
        stats = state.stats
        for i in range(nb):
            stats = accumulate_grad_stats(
                stats, off_grad[i] * nb, radii[i], width=width, height=height
            )
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
    new_g = {
        k: jnp.where(final, g_params[k], x) if k in FINAL_FROZEN else x for k, x in new_g.items()
    }
    return state.replace(
        gaussians=state.gaussians.replace(**new_g),
        net=net,
        g_opt=_keep_fields(final, g_opt, state.g_opt, FINAL_FROZEN),
        n_opt=n_opt,
    )


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
            params = {
                p: {
                    k: v if k in live[p] else jax.lax.stop_gradient(v) for k, v in params[p].items()
                }
                for p in params
            }
            branch = {
                p: (nets[p], states[p].net, states[p].gaussians.replace(**params[p]))
                for p in ("face", "mouth")
            }

            def one(frame, k):
                fused = render_fused(
                    branch["face"],
                    branch["mouth"],
                    frame,
                    width=width,
                    height=height,
                    backend=backend,
                )
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
