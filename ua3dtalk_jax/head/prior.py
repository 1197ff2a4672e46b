"""Prior Extraction at inference (paper §2.1): audio + stored reference crops → f_exp, f_tone.

    lip expert      reference crop refs[i mod K] (masked lower half + itself) + mel chunk of frame i
                    → lip-wav image (Wav2Lip inference with a looped reference set)
    expr prior      lip-wav image → f_exp (the regressor; or Deep3DFaceRecon, `head.face_prior`)
    StyleNet+Fuse   mel windows → f_tone; FuseNet(f_exp, f_tone) → f_gen-exp (Eq. 4)

The modules are built from a stage-1 config (`build_models`, `init_params`); training them is
`train/stage1/prior.py`. Inference arrays are padded to buckets (`bucket`) so that clips of
nearby lengths share one compiled program.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.head import face_prior
from ua3dtalk_jax.models.init import init_params as init_module
from ua3dtalk_jax.models.prior.expression_prior import ExpressionPrior
from ua3dtalk_jax.models.prior.fuse import FuseNet
from ua3dtalk_jax.models.prior.lip_expert import LipExpert, mask_lower_half
from ua3dtalk_jax.models.prior.stylenet import (
    StyleNet,
    sequence_apply,
    window_assignment,
    window_starts,
)
from ua3dtalk_jax.models.prior.syncnet import SyncNet

GEN_CHUNK = 64  # frames per jitted lip-wav generation call
GEN_MEL_OFFSET = 2  # the generator's chunk for frame i starts at frame i − 2 (centred on frame i)


def generator_mel(mel: jax.Array, idx) -> jax.Array:
    """The lip expert's mel chunk of each frame index: the 0.2 s centred on the frame.

    Wav2Lip's generator reads `crop_audio_window(spec, i - 2)` for frame i (its SyncNet reads the
    chunk starting at a window's first frame, as `train.stage1.prior.sync_pairs` does); chunks before the clip's start
    are clamped to the first one.
    """
    return mel[jnp.maximum(jnp.asarray(idx) - GEN_MEL_OFFSET, 0)]


def build_models(cfg, exp_dim: int) -> dict:
    """The four Prior Extraction modules for a stage-1 config."""
    return {
        "syncnet": SyncNet(
            tuple(cfg.syncnet.face_specs),
            tuple(cfg.syncnet.audio_specs),
            cfg.syncnet.norm,
            cfg.syncnet.calibrated,
            cfg.syncnet.centre,
        ),
        "lip_expert": LipExpert(
            tuple(cfg.lip_expert.channels),
            tuple(cfg.lip_expert.audio_specs),
            cfg.lip_expert.norm,
            cfg.lip_expert.audio_norm,
            cfg.lip_expert.audio_all_stages,
            cfg.lip_expert.audio_proj,
        ),
        "expr_prior": ExpressionPrior(
            tuple(cfg.expr_prior.channels), exp_dim, cfg.expr_prior.feature_dim, cfg.expr_prior.norm
        ),
        "stylenet": StyleNet(
            cfg.stylenet.lstm_hidden,
            cfg.stylenet.lstm_layers,
            tuple(cfg.stylenet.mlp),
            cfg.stylenet.out_dim,
            cfg.stylenet.dropout,
            tuple(cfg.stylenet.frame_mlp),
            cfg.stylenet.frame_dropout,
            cfg.stylenet.out_scale,
        ),
        "fuse": FuseNet(cfg.fuse.hidden, exp_dim),
    }


def init_params(models: dict, cfg, key: jax.Array, exp_dim: int) -> dict:
    """Initial parameters of every Prior Extraction module (dummy inputs of the config's sizes)."""
    s, t = cfg.data.face_size, cfg.data.sync_frames
    ks = jax.random.split(key, 5)
    mel = jnp.zeros((1, 80, 16))
    return {
        "syncnet": init_module(models["syncnet"], ks[0], mel, jnp.zeros((1, s - s // 2, s, 3 * t))),
        "lip_expert": init_module(models["lip_expert"], ks[1], jnp.zeros((1, s, s, 6)), mel),
        "expr_prior": init_module(models["expr_prior"], ks[2], jnp.zeros((1, s, s, 3))),
        "stylenet": init_module(models["stylenet"], ks[3], jnp.zeros((1, 2, 80, 16))),
        "fuse": init_module(models["fuse"], ks[4], jnp.zeros((1, 64)), jnp.zeros((1, 64))),
    }


def bucket(n: int, size: int) -> int:
    """n rounded up to a multiple of `size` (≥ size): inference arrays are padded to such lengths
    so that clips of nearby lengths share one compiled program."""
    return max(size, -(-int(n) // size) * size)


MEL_BUCKET = 256  # mel frames (~10 s at 25 fps)
WINDOW_BUCKET = 16  # StyleNet windows
WINDOW_CHUNK = 512  # StyleNet windows per call: a 4,000-frame clip at the cpu preset's 16 is one


@functools.partial(jax.jit, static_argnums=0)
def _generate(lip: LipExpert, params, refs, mel, idx):
    """Lip-wav images of frames `idx`; the gathers stay inside the program (eager ones are slow)."""
    r = refs[idx % refs.shape[0]]
    return lip.apply(
        {"params": params}, jnp.concatenate([mask_lower_half(r), r], -1), generator_mel(mel, idx)
    )[0]


def lipwav_images(lip: LipExpert, params, refs: jax.Array, mel: jax.Array) -> jax.Array:
    """Lip-wav images for every frame of an audio clip, from audio and reference crops only.

    Frame i uses reference crop refs[i mod K] both as the masked identity input and as the
    reference (Wav2Lip inference with a looped reference set), so no video frame of the audio's
    own clip is needed. One compiled program per model and mel bucket (`MEL_BUCKET`: frames past
    the clip's end are never read, `generator_mel` only looks back).

    Args:
      refs: (K, S, S, 3) float reference crops in [0, 1].
      mel: (N, 80, 16) mel chunks of the audio.
    Returns:
      (N, S, S, 3) float in [0, 1].
    """
    return jnp.asarray(
        np.concatenate([g for _, g in _lipwav_chunks(lip, params, refs, mel)])[: mel.shape[0]]
    )


def _lipwav_chunks(lip: LipExpert, params, refs, mel):
    """(first frame a, lip-wav images of frames a … a + GEN_CHUNK − 1 clamped to N − 1) pairs."""
    n = mel.shape[0]
    mel_p = np.zeros((bucket(n, MEL_BUCKET), *mel.shape[1:]), np.float32)
    mel_p[:n] = np.asarray(mel)
    mel_p, refs = jnp.asarray(mel_p), jnp.asarray(refs)
    for a in range(0, n, GEN_CHUNK):
        idx = np.minimum(np.arange(a, a + GEN_CHUNK), n - 1)  # fixed shape → one compile
        yield a, np.asarray(_generate(lip, params, refs, mel_p, jnp.asarray(idx)))


@functools.partial(jax.jit, static_argnums=0)
def _encode(prior_net: ExpressionPrior, params, images):
    return prior_net.apply({"params": params}, images)[1]["f_exp"]


def expression_features(
    models: dict,
    params: dict,
    refs: jax.Array,
    mel: jax.Array,
    face: face_prior.FacePrior | None = None,
    *,
    images: bool = False,
) -> dict:
    """f_exp (N, 64) of an audio clip (no video needed): from the expression-prior regressor, or
    Deep3DFaceRecon's exp coefficients when `face` is given; with `images` also the lip-wav images
    (N, S, S, 3) as "lipwav".

    On the regressor path each `GEN_CHUNK` of lip-wav images is encoded as it is generated (the
    same chunks, padded with the last frame, that the whole array was cut into), so unless
    `images` is asked for, no (N, S, S, 3) array is held.
    """
    if face is not None:
        lw = lipwav_images(models["lip_expert"], params["lip_expert"], refs, mel)
        out = {"f_exp": jnp.asarray(face_prior.lipwav_exp(face, np.asarray(lw)))}
        return dict(out, lipwav=lw) if images else out
    n, chunks, kept = mel.shape[0], [], []
    for a, gen in _lipwav_chunks(models["lip_expert"], params["lip_expert"], refs, mel):
        m = min(GEN_CHUNK, n - a)  # rows past the clip's end repeat its last frame
        x = gen[np.minimum(np.arange(GEN_CHUNK), m - 1)]
        chunks.append(
            np.asarray(_encode(models["expr_prior"], params["expr_prior"], jnp.asarray(x)))
        )
        if images:
            kept.append(gen[:m])
    out = {"f_exp": jnp.asarray(np.concatenate(chunks)[:n])}
    return dict(out, lipwav=jnp.asarray(np.concatenate(kept))) if images else out


@functools.partial(jax.jit, static_argnums=0)
def _style_windows(style: StyleNet, params, windows):
    """(W, L, 80, 16) windows → (W, L, 64) f_tone, each window alone (as in training)."""
    return jax.vmap(lambda w: style.apply({"params": params}, w[None])[0][0])(windows)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _style_clip(style: StyleNet, params, mel, seq_len: int):
    return sequence_apply(lambda x: style.apply({"params": params}, x)[0], mel, seq_len)


@functools.partial(jax.jit, static_argnums=0)
def _fuse(fuse: FuseNet, params, f_exp, f_tone):
    return fuse.apply({"params": params}, f_exp, f_tone)


def tone_features(models: dict, params: dict, mel: jax.Array, f_exp: jax.Array, seq_len: int):
    """f_tone (N, 64) from StyleNet and FuseNet's f_gen-exp (N, E) given f_exp.

    A clip longer than `seq_len` is cut into the windows of `models.prior.stylenet.sequence_apply`
    (half-window hop, each frame from the window it is most central in), run in batches of
    `WINDOW_CHUNK` windows (memory bounded whatever the clip's length), the last one padded to
    `WINDOW_BUCKET` windows, so clips of many lengths share few compiled programs.
    """
    style, sp = models["stylenet"], params["stylenet"]
    n = mel.shape[0]
    if n <= seq_len:
        f_tone = _style_clip(style, sp, jnp.asarray(mel), seq_len)
    else:
        starts = window_starts(n, seq_len)
        mel_np = np.asarray(mel)
        outs = []
        for a in range(0, len(starts), WINDOW_CHUNK):
            part = starts[a : a + WINDOW_CHUNK]
            windows = np.zeros(
                (bucket(len(part), WINDOW_BUCKET), seq_len, *mel.shape[1:]), np.float32
            )
            windows[: len(part)] = mel_np[part[:, None] + np.arange(seq_len)]
            outs.append(np.asarray(_style_windows(style, sp, jnp.asarray(windows)))[: len(part)])
        outs = np.concatenate(outs)
        best, offset = window_assignment(starts, n, seq_len)
        f_tone = jnp.asarray(outs[best, offset])
    gen, _ = _fuse(models["fuse"], params["fuse"], jnp.asarray(f_exp), f_tone)
    return {"f_tone": f_tone, "f_gen_exp": gen}


def prior_features(
    models: dict,
    params: dict,
    refs: jax.Array,
    mel: jax.Array,
    seq_len: int,
    face: face_prior.FacePrior | None = None,
):
    """f_exp (N, 64), f_tone (N, 64) and f_gen-exp (N, E) of an audio clip (no video needed);
    `face`: the Deep3DFaceRecon path (`expression_features`)."""
    e = expression_features(models, params, refs, mel, face)
    t = tone_features(models, params, mel, e["f_exp"], seq_len)
    return {"f_exp": e["f_exp"], "f_tone": t["f_tone"], "f_gen_exp": t["f_gen_exp"]}
