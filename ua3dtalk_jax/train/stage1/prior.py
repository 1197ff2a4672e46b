"""Prior Extraction training (paper §2.1): SyncNet → lip expert → expression prior → StyleNet+FuseNet.

  SyncNet      BCE of cos(audio, 5 lower faces) on in-sync (1) vs shifted (0, ≥ min_shift frames),
               + nce_weight · InfoNCE of the batch's windows with their in-sync audio (cpu/tiny)
  lip expert   (1 − w)·L1(gen, target) + w·BCE(cos(SyncNet(mel, gen lower faces)), 1), SyncNet frozen
  expr prior   ‖ê − f_gt-exp‖² on real face crops (standardised coefficients); with a user's
               Deep3DFaceRecon weights (`stage1.prior.face_recon_weights`) that network instead,
               frozen, on aligned frames (train/stage1/face.py)
  StyleNet+Fuse  Eq. 4, L_recon = ‖FuseNet(f_exp, f_tone) − f_gt-exp‖², where f_exp comes from the
               frozen expression prior applied to lip-wav images (frozen lip expert, fixed references)

Each `make_*_step(cfg, model(s), n_train)` returns a jitted `step(state, data, key)`; the batch is
drawn inside the step from the train split [0, n_train).
The modules themselves and running them on a clip (lip-wav images, f_exp, f_tone) are
`head.prior`, shared with inference.

A SyncNet scores the faces of frames s … s + T − 1 against the mel chunk of frame
s + `syncnet.mel_offset` (0 for ours; 1 for a user's Wav2Lip SyncNet, `pretrained_syncnet`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ua3dtalk_jax.data.images import to_float
from ua3dtalk_jax.head.prior import generator_mel
from ua3dtalk_jax.models.prior.expression_prior import ExpressionPrior, recon_loss
from ua3dtalk_jax.models.prior.fuse import FuseNet
from ua3dtalk_jax.models.prior.lip_expert import LipExpert, mask_lower_half
from ua3dtalk_jax.models.prior.stylenet import (
    StyleNet,
)
from ua3dtalk_jax.models.prior.syncnet import (
    SyncNet,
    info_nce,
    roc_auc,
    stack_lower_halves,
    sync_bce,
)
from ua3dtalk_jax.models.prior.weights import WAV2LIP_MEL_OFFSET, wav2lip_syncnet
from ua3dtalk_jax.train.stage1.loop import TrainState, apply_grads

WAV2LIP_FACE, WAV2LIP_FRAMES = 96, 5  # a Wav2Lip SyncNet's input: 96² crops (48×96 halves) × 5


def sync_mel(mel: jax.Array, s, offset: int) -> jax.Array:
    """The mel chunk a SyncNet pairs with the window of faces starting at frame s: that of frame
    s + offset, clamped to the clip. mel (N, 80, 16), s (B,) → (B, 80, 16)."""
    return mel[jnp.clip(jnp.asarray(s) + offset, 0, mel.shape[0] - 1)]


def pretrained_syncnet(cfg):
    """The config and frozen params of the user's Wav2Lip SyncNet, `cfg.syncnet.pretrained`.

    Returns:
      (cfg, None) when the field is empty; else (a copy of cfg whose syncnet fields describe the
      loaded module: its layer specs, norm "none", raw cosine, no training, Wav2Lip's mel offset,
      so `head.prior.build_models` and `head.stage1_model.load_stage1` rebuild exactly it, params).
    Raises:
      ValueError: the file is not a Wav2Lip SyncNet, or the crops are not Wav2Lip's (named).
    """
    path = str(cfg.syncnet.pretrained)
    if not path:
        return cfg, None
    s, t = cfg.data.face_size, cfg.data.sync_frames
    if (s, t) != (WAV2LIP_FACE, WAV2LIP_FRAMES):
        raise ValueError(
            f"stage1.syncnet.pretrained={path}: a Wav2Lip SyncNet takes {WAV2LIP_FRAMES} frames "
            f"of {WAV2LIP_FACE}² face crops, but stage1.data.face_size={s}, "
            f"stage1.data.sync_frames={t}; use --config=paper or --set=stage1.data.face_size="
            f"{WAV2LIP_FACE} (and stage1.data.sync_frames={WAV2LIP_FRAMES})"
        )
    model, params = wav2lip_syncnet(path)
    out = cfg.copy_and_resolve_references()
    out.syncnet.update(
        face_specs=model.face_specs,
        audio_specs=model.audio_specs,
        norm=model.norm,
        calibrated=model.calibrated,
        centre=model.centre,
        nce_weight=0.0,
        steps=0,
        mel_offset=WAV2LIP_MEL_OFFSET,
    )
    return out, params


MOUTH_ROWS, MOUTH_COLS = (0.5, 0.8), (0.25, 0.75)  # the mouth box of a face crop, as fractions


def mouth_weight_map(size: int, weight: float) -> jax.Array:
    """(size, size, 1) L1 weights: `weight` inside the crop's mouth box, 1 outside, mean 1."""
    r0, r1 = (int(f * size) for f in MOUTH_ROWS)
    c0, c1 = (int(f * size) for f in MOUTH_COLS)
    w = np.ones((size, size, 1), np.float32)
    w[r0:r1, c0:c1] = weight
    return jnp.asarray(w / w.mean())


def sync_pairs(key, crops, mel, lo, hi, batch, frames, min_shift, max_shift, offset=0):
    """Half in-sync, half shifted (mel, lower-face stack, label) triples from frames [lo, hi);
    a window's in-sync chunk is `sync_mel(mel, s, offset)`.

    Returns:
      mel (B, 80, 16), faces (B, S/2, S, 3T), label (B,) float {1 in sync, 0 shifted}, and
      mel_sync (B, 80, 16): every window's in-sync chunk (= mel where label is 1).
    """
    k1, k2, k3 = jax.random.split(key, 3)
    s = jax.random.randint(k1, (batch,), lo, hi - frames + 1)
    label = (jnp.arange(batch) % 2 == 0).astype(jnp.float32)
    mag = jax.random.randint(k2, (batch,), min_shift, max_shift + 1)
    sign = jnp.where(jax.random.bernoulli(k3, 0.5, (batch,)), 1, -1)
    t = s + sign * mag
    t = jnp.where((t < lo) | (t > hi - frames), s - sign * mag, t)
    t = jnp.clip(t, lo, hi - frames)
    a = jnp.where(label > 0, s, t)
    faces = stack_lower_halves(to_float(crops[s[:, None] + jnp.arange(frames)]))
    return sync_mel(mel, a, offset), faces, label, sync_mel(mel, s, offset)


def make_syncnet_step(cfg, model: SyncNet, n_train: int):
    tx = optax.adam(cfg.syncnet.lr)
    c = cfg.syncnet
    nce_w = float(c.nce_weight)

    @jax.jit
    def step(state: TrainState, data: dict, key: jax.Array):
        mel, faces, label, mel_sync = sync_pairs(
            key,
            data["crops"],
            data["mel"],
            0,
            n_train,
            c.batch,
            cfg.data.sync_frames,
            c.min_shift,
            c.max_shift,
            c.mel_offset,
        )

        def loss_fn(p):
            v = {"params": p}
            f = model.apply(v, faces, method=SyncNet.embed_face)  # one face pass for both terms
            a = model.apply(
                v, jnp.concatenate([mel, mel_sync]) if nce_w else mel, method=SyncNet.embed_audio
            )
            sim, _ = model.apply(v, a[: len(f)], f, method=SyncNet.score)
            bce = sync_bce(sim, label)
            if not nce_w:
                return bce, (sim, {"bce": bce})
            nce = info_nce(a[len(f) :], f, c.nce_scale)
            return bce + nce_w * nce, (sim, {"bce": bce, "nce": nce})

        (loss, (sim, parts)), g = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        acc = jnp.mean((sim > 0.5) == (label > 0))
        return apply_grads(state, g, tx), {"loss": loss, "acc": acc, **parts}

    return step, tx


AUC_CHUNK = 256  # windows per SyncNet call of `sync_auc` (the last one padded): memory bounded


def sync_auc(
    model: SyncNet, params, data: dict, lo: int, hi: int, frames: int, shift: int, offset: int = 0
) -> float:
    """AUC of in-sync vs `shift`-frame-shifted pairs over every window start in [lo, hi); faces
    from s are in sync with the mel chunk of s + offset (`sync_mel`).

    Each window's audio and faces are embedded once (`AUC_CHUNK` windows per call; each
    embedding is its own, so the chunks change nothing) and the pairs are scored from the
    embeddings: in sync (s, s), shifted audio (s + shift, s) and shifted faces (s, s + shift).
    """
    starts = np.arange(lo, hi - frames - shift + 1)
    windows = np.arange(lo, hi - frames + 1)  # every start s and s + shift
    chunks = [
        _embed_windows(model, params, data, windows[a : a + AUC_CHUNK], frames, offset)
        for a in range(0, len(windows), AUC_CHUNK)
    ]
    a, f = (jnp.concatenate([c[k] for c in chunks]) for k in (0, 1))
    i = jnp.asarray(starts - lo)
    j = i + shift
    score = lambda x, y: model.apply({"params": params}, x, y, method="score")[0]
    return roc_auc(score(a[i], f[i]), jnp.concatenate([score(a[j], f[i]), score(a[i], f[j])]))


def _embed_windows(model: SyncNet, params, data: dict, idx: np.ndarray, frames: int, offset: int):
    """(audio, face) unit embeddings (n, D) of the windows starting at `idx` (n ≤ AUC_CHUNK; padded
    to AUC_CHUNK so that every call runs one compiled program)."""
    n = len(idx)
    padded = np.concatenate([idx, np.full(AUC_CHUNK - n, idx[-1])]) if n < AUC_CHUNK else idx
    a, f = _embed(model, params, data, jnp.asarray(padded), frames, offset)
    return a[:n], f[:n]


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _embed(model: SyncNet, params, data: dict, idx: jax.Array, frames: int, offset: int):
    faces = stack_lower_halves(to_float(data["crops"][idx[:, None] + jnp.arange(frames)]))
    a = model.apply({"params": params}, sync_mel(data["mel"], idx, offset), method="embed_audio")
    return a, model.apply({"params": params}, faces, method="embed_face")


def make_lip_step(cfg, lip: LipExpert, sync: SyncNet, n_train: int):
    """Lip-expert step; `data["syncnet"]` carries the frozen SyncNet params."""
    tx = optax.adam(cfg.lip_expert.lr)
    b, t, w = cfg.lip_expert.batch, cfg.data.sync_frames, cfg.lip_expert.sync_weight
    l1_map = mouth_weight_map(cfg.data.face_size, cfg.lip_expert.mouth_weight)
    offset = cfg.syncnet.mel_offset

    @jax.jit
    def step(state: TrainState, data: dict, key: jax.Array):
        k1, k2 = jax.random.split(key)
        s = jax.random.randint(k1, (b,), 0, n_train - t + 1)
        idx = s[:, None] + jnp.arange(t)
        target = to_float(data["crops"][idx])  # (B, T, S, S, 3)
        ref = to_float(data["crops"][jax.random.randint(k2, (b, t), 0, n_train)])
        sz = target.shape[2]
        inp = jnp.concatenate([mask_lower_half(target), ref], -1).reshape(b * t, sz, sz, 6)
        mel_i = generator_mel(data["mel"], idx).reshape(b * t, 80, 16)

        def loss_fn(p):
            gen, _ = lip.apply({"params": p}, inp, mel_i)
            gen = gen.reshape(b, t, sz, sz, 3)
            l1 = jnp.mean(jnp.abs(gen - target) * l1_map)
            sim, _ = sync.apply(
                {"params": data["syncnet"]},
                sync_mel(data["mel"], s, offset),
                stack_lower_halves(gen),
            )
            sl = sync_bce(sim, jnp.ones_like(sim))
            return (1.0 - w) * l1 + w * sl, {"l1": l1, "sync": sl}

        (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return apply_grads(state, g, tx), {"loss": loss, **aux}

    return step, tx


def make_prior_step(cfg, model: ExpressionPrior, n_train: int):
    tx = optax.adam(cfg.expr_prior.lr)
    b = cfg.expr_prior.batch

    @jax.jit
    def step(state: TrainState, data: dict, key: jax.Array):
        i = jax.random.randint(key, (b,), 0, n_train)
        img, y = to_float(data["crops"][i]), data["exp"][i]

        def loss_fn(p):
            return recon_loss(model.apply({"params": p}, img)[0], y)

        loss, g = jax.value_and_grad(loss_fn)(state.params)
        return apply_grads(state, g, tx), {"loss": loss}

    return step, tx


def make_style_step(cfg, style: StyleNet, fuse: FuseNet, n_train: int):
    """Eq. 4 step over {"stylenet", "fuse"} params; `data["f_exp"]` holds lip-wav f_exp (N, 64)."""
    tx = optax.adam(cfg.stylenet.lr)
    b, n = cfg.stylenet.batch, cfg.stylenet.seq_len

    @jax.jit
    def step(state: TrainState, data: dict, key: jax.Array):
        k1, k2, k3 = jax.random.split(key, 3)
        idx = jax.random.randint(k1, (b,), 0, n_train - n + 1)[:, None] + jnp.arange(n)
        keep = jax.random.bernoulli(k3, 1.0 - cfg.fuse.exp_dropout, (b, 1, 1))
        f_exp = jnp.where(keep, data["f_exp"][idx], 0.0)  # whole sequences dropped

        def loss_fn(p):
            tone, _ = style.apply(
                {"params": p["stylenet"]}, data["mel"][idx], train=True, rngs={"dropout": k2}
            )
            gen, _ = fuse.apply({"params": p["fuse"]}, f_exp, tone)
            return recon_loss(gen, data["exp"][idx])

        loss, g = jax.value_and_grad(loss_fn)(state.params)
        return apply_grads(state, g, tx), {"loss": loss}

    return step, tx
