"""A trained workdir as pure functions: load it, featurise audio, condition, deform, render.

This is the one code path of inference (`infer.synthesize`), the notebook API (`ua3dtalk_jax.api`)
and anything else that drives a trained model frame by frame:

    model = Workdir(workdir).load_trained(subject)      # head: TrainedModel(cfg, heads, ...)
    feats = audio_features(model, "speech.m4a")         # per-frame features of the whole clip
    frame = frame_conditioning(model, feats, t, pose)   # one frame's inputs (a dict of arrays)
    out   = deform(model, "face", frame)                # Deformed(gaussians, delta, aux)
    rgb   = render(model, frame)                        # (H, W, 3) fused frame in [0, 1]

Per-frame features (N video frames at the subject's fps, N = round(S · fps / 16000), half up):

    aud    (N, Wa, F)   stage 2's audio windows of the kind the model was trained on
                        (`audio.precomputed`): our log-mel windows, computed from the audio by
                        `audio.features.f_audio` exactly as `data.Subject` computes them from
                        aud.wav; or, for a model trained on a tool's precomputed windows
                        (DeepSpeech, HuBERT, esperanto), the new clip's windows from that tool,
                        given as `features` (TalkingGaussian's `--aud`), N = their count
    f_exp  (N, 64)      expression prior, f_tone (N, 64), f_emo (N, 128) f_emo-attn: the frozen
                        stage 1 (`head.features.stage1_features`), with an optional emotion spec
                        (`head.emotion_control`) replacing or blending f_emo (`with_emotion`;
                        the audio's own one stays in f_emo_audio)

A frame dict holds viewmat (4, 4), K (3, 3), au_exp (6,), background (H, W, 3) uint8 (from a pose,
see `infer.poses`), aud (8, Wa, F) (the AudioAttNet context of frames t−4 … t+3, zeros past either
end, as `Subject.frame`), f_exp, f_tone, f_emo. `deform` and `render` are jitted once per model
shape: every frame of a clip reuses one executable.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import flax.struct
import jax
import numpy as np

from ua3dtalk_jax.audio import features as audio_lib
from ua3dtalk_jax.audio import precomputed
from ua3dtalk_jax.data.stage2_audio import trained_on
from ua3dtalk_jax.data.subject import AUD_CONTEXT
from ua3dtalk_jax.gaussians import GaussianState
from ua3dtalk_jax.head.emotion_control import with_emotion
from ua3dtalk_jax.head.features import stage1_features
from ua3dtalk_jax.head.render import deform as deform_branch
from ua3dtalk_jax.head.render import render_fused
from ua3dtalk_jax.head.trained import TrainedModel
from ua3dtalk_jax.models.motion import DeformOut

PARTS = ("face", "mouth")
# Peak below −60 dBFS: digital silence or dither, nothing a lip-sync model can follow.
SILENCE_PEAK = 1e-3
POSE_KEYS = ("viewmat", "K", "au_exp", "background")
_NET_KEYS = ("aud", "au_exp", "f_exp", "f_tone", "f_emo")


def load_waveform(audio, sample_rate: int | None = None, *, name: str = "audio") -> np.ndarray:
    """Any audio → float32 16 kHz mono, refusing what cannot drive a talking head.

    Args:
      audio: a file path (wav, flac, mp3, ogg through soundfile; m4a/aac and anything else through
        imageio-ffmpeg's ffmpeg) or an array (S,) / (S, C) at `sample_rate` (default 16 kHz).
      name: how errors name an array source (a path names itself).
    Returns:
      (S,) float32 at 16 kHz.
    Raises:
      FileNotFoundError, ValueError: missing, undecodable, empty, non-finite or silent audio.
    """
    what = os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else name
    try:
        wav = audio_lib.load_audio(audio, sample_rate)
    except (RuntimeError, TypeError, EOFError) as e:  # decoder errors not already ValueError
        raise ValueError(f"{what}: cannot decode audio ({type(e).__name__}: {e})") from None
    if wav.size == 0:
        raise ValueError(f"{what}: empty audio (no samples)")
    if not np.all(np.isfinite(wav)):
        raise ValueError(f"{what}: audio holds NaN or infinite samples")
    peak = float(np.max(np.abs(wav)))
    if peak < SILENCE_PEAK:
        raise ValueError(
            f"{what}: the audio is silent (peak {peak:.2g} < {SILENCE_PEAK:g}, −60 dBFS); "
            "a talking head needs speech"
        )
    return wav


def audio_features(
    model: TrainedModel,
    audio,
    emotion: str | None = None,
    *,
    features=None,
    sample_rate: int | None = None,
    name: str = "audio",
) -> dict:
    """Per-frame features of a clip at the subject's fps (see the module docstring).

    Args:
      model: a `TrainedModel`.
      audio: a file path or a waveform (see `load_waveform`): stage 1's input.
      emotion: None/"audio" (f_emo-attn from the audio, the paper's setting) or a
        `head.emotion_control` spec ("happy", "happy:0.7", "happy@1.2:0.7+sad:0.3").
      features: for a model trained on precomputed windows (`TrainedModel.needs_audio_features`),
        the clip's windows from the same tool: a .npy path or an array, in any layout
        `audio.precomputed.load_windows` reads; None for a model trained on our mel windows.
      sample_rate: the rate of an array `audio` (default 16 kHz).
      name: how errors name an array `audio`.
    Returns:
      {"aud" (N, Wa, F), "f_exp" (N, 64), "f_tone" (N, 64), "f_emo" (N, 128) (after `emotion`),
       "f_emo_audio" (N, 128) (the audio's own f_emo-attn, kept for `with_emotion`)} float32;
      N = round(duration · fps), or the number of `features` windows.
    Raises:
      ValueError: audio that cannot drive a head (`load_waveform`), `features` missing for such a
        model or given for a mel model, windows of another shape than the model's, or a feature
        count more than one frame away from the audio's length (both named).
    """
    what = os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else name
    feats_in = check_audio_features(model.cfg, model.workdir, features)
    wav = load_waveform(audio, sample_rate, name=name)
    s = model.subject
    n_wav = audio_lib.num_frames(wav, s.fps)
    if feats_in is None:
        n = n_wav
        if n == 0:
            raise ValueError(
                f"{what}: {len(wav) / audio_lib.SAMPLE_RATE * 1e3:.1f} ms of audio "
                f"is shorter than half a video frame at {s.fps:g} fps"
            )
        aud = audio_lib.f_audio(wav, s.fps, n, n_mels=s.audio_dim, window=s.audio_window)
    else:
        aud, n = feats_in, len(feats_in)
        if abs(n - n_wav) > MAX_FEATURE_FRAMES_OFF:
            src = os.fspath(features) if isinstance(features, (str, os.PathLike)) else "features"
            raise ValueError(
                f"{src} has {n} frames of audio features but {what} lasts "
                f"{len(wav) / audio_lib.SAMPLE_RATE:.2f} s = {n_wav} frames at {s.fps:g} fps; "
                "compute both from the same clip"
            )
    out = stage1_features(wav, model.stage1, fps=s.fps, n_frames=n)
    feats = {"aud": aud, **out, "f_emo_audio": out["f_emo"]}
    return with_emotion(model, feats, emotion)


# Precomputed windows and the wav of one clip may differ by a frame of rounding (DeepSpeech's
# 50 Hz windows, HuBERT's even-length trim); more means they come from different clips.
MAX_FEATURE_FRAMES_OFF = 1


def infer_command(cfg, workdir: str) -> str:
    """The inference command line that works for the model of `cfg` (for refusals)."""
    tail = ""
    kind = cfg.data.audio_feature
    if kind in precomputed.FILES:
        stem = precomputed.FILES[kind].removeprefix("aud").removesuffix(".npy")
        tail = f" --audio_features=NEW{stem}.npy"
    return f"python -m experiments.infer --workdir={workdir} --audio=NEW.wav{tail} --out=OUT.mp4"


def check_audio_features(cfg, workdir: str, features):
    """`features` read and checked against a trained config (see `audio_features`).

    Args:
      cfg: the workdir's config (`TrainedModel.cfg`, or `Workdir.load_config` before loading).
      workdir: for messages.
      features: None, a .npy path or an array.
    Returns:
      (N, Wa, F) float32 windows, or None (a model trained on our mel windows).
    """
    want = trained_on(cfg.data, cfg.model.audio)
    if cfg.data.audio_feature not in precomputed.FILES:
        if features is not None:
            raise ValueError(
                f"{workdir}: the model was trained on {want}, computed from the audio itself; "
                f"drop the audio features: {infer_command(cfg, workdir)}"
            )
        return None
    if features is None:
        raise ValueError(
            f"{workdir}: the model was trained on {want} features, which this project cannot "
            "compute from audio; pass the new clip's windows from the same tool beside its wav: "
            f"{infer_command(cfg, workdir)}"
        )
    if isinstance(features, (str, os.PathLike)):
        src = os.fspath(features)
        arr = precomputed.load_windows(src, cfg.data.audio_feature)
    else:
        src, arr = "features", np.asarray(features, np.float32)
        arr = arr[:, None, :] if arr.ndim == 2 else arr
    a = cfg.model.audio
    if arr.ndim != 3 or arr.shape[1:] != (a.steps, a.in_dim) or len(arr) == 0:
        raise ValueError(
            f"{src}: windows of shape {tuple(arr.shape)}, but the model was trained "
            f"on {want}; compute them with the same tool"
        )
    return arr


def subject_pose(model: TrainedModel, position: int) -> dict:
    """The camera, blink AUs and torso/background of one of the subject's frames.

    Returns:
      {"viewmat" (4, 4), "K" (3, 3), "au_exp" (6,), "background" (H, W, 3) uint8}.
    """
    return model.subject.frame(int(position), keys=POSE_KEYS)


def frame_conditioning(model: TrainedModel, feats: dict, t: int, pose: dict) -> dict:
    """One frame's inputs: frame t's features plus a pose (camera, AUs, background).

    Args:
      model: a `TrainedModel`.
      feats: `audio_features` output (N frames).
      t: frame index in 0..N-1.
      pose: {"viewmat" (4, 4), "K" (3, 3), "au_exp" (6,), "background" (H, W, 3) uint8}.
    Returns:
      the frame dict of the module docstring (numpy arrays).
    """
    aud = feats["aud"]
    n = len(aud)
    if not 0 <= t < n:
        raise IndexError(f"frame {t} outside 0..{n - 1}")
    missing = [k for k in POSE_KEYS if k not in pose]
    if missing:
        raise KeyError(f"pose lacks {missing}; expected keys {POSE_KEYS}")
    if pose["background"].shape != (*model.size, 3):
        raise ValueError(
            f"pose background {pose['background'].shape} is not the subject's {(*model.size, 3)}"
        )
    # AudioAttNet context t−4 … t+3, zero outside the clip (Subject.frame's "aud" rule).
    idx = t + np.arange(-(AUD_CONTEXT // 2), AUD_CONTEXT // 2)
    inside = (idx >= 0) & (idx < n)
    window = aud[np.clip(idx, 0, n - 1)] * inside[:, None, None]
    frame = {k: np.asarray(pose[k]) for k in POSE_KEYS}
    frame["aud"] = window.astype(np.float32)
    for k in ("f_exp", "f_tone", "f_emo"):
        frame[k] = np.asarray(feats[k][t], np.float32)
    return frame


@flax.struct.dataclass
class Deformed:
    """One branch's deformed Gaussians for one frame and the MotionNetwork's intermediates.

    Attributes:
      gaussians: the deformed `GaussianState` (N slots; `active` marks the live ones).
      delta: `DeformOut` (d_xyz (N, 3), d_rot (N, 4), d_scale (N, 3)).
      aux: "aleatoric", "epistemic" (V, N) mean variance per latent dimension of each view,
        "view_weights" (V, N) fusion weights (precision shares, sum 1 over V), "view_mu" (V, N, D),
        "fused_mu" (N, D), "fused_var" (N,), "aud_ch_att_norm", "eye_att_norm" (N,),
        "time_att" (8,); the uncertainty entries exist only with the U switch on, and aux is
        empty for a model trained without deformation. V follows `TrainedModel.view_names`.
    """

    gaussians: GaussianState
    delta: DeformOut | None
    aux: dict


@functools.partial(jax.jit, static_argnums=0)
def _deform(net, params, gaussians, inputs: dict) -> Deformed:
    g, d, aux = deform_branch(net, params, gaussians, inputs, mode="eval", rng=None)
    return Deformed(g, d, aux)


def deform(model: TrainedModel, part: str, frame: dict, fast: bool = False) -> Deformed:
    """Deforms one branch's static Gaussians for one frame (all T ensemble members, Eq. 10–12).

    Args:
      model: a `TrainedModel`.
      part: "face" or "mouth".
      frame: a `frame_conditioning` dict.
      fast: run the network `render` runs (`inference_net`): the same deformation, but aux holds
        no uncertainty entries.
    Returns:
      `Deformed` (jax arrays); for a model trained with train.deform=False the static Gaussians,
      zero delta and empty aux.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    net, params, gaussians = model.heads[part]
    if not model.cfg.train.deform:
        return Deformed(gaussians, None, {})
    net = inference_net(net) if fast else net
    return _deform(net, params, gaussians, {k: frame[k] for k in _NET_KEYS})


@functools.cache
def inference_net(net):
    """The branch network `render` runs: the same parameters with the mean-only form of Eq. 10–12
    (`models.uncertainty.ensemble_fused_mean`: the fused μ by Woodbury, factorisations and solves;
    the render uses nothing else), equal to the dense form to float32 rounding, ≈ 4× faster per
    frame for the cpu face; training, the held-out evaluation and `deform` keep the config's form.
    `net`: a MotionNetwork (hashable)."""
    spec = getattr(net, "spec", None)
    if spec is None or not spec.uncertainty:
        return net
    return net.clone(spec=dataclasses.replace(net.spec, fusion="mean"))


@functools.partial(jax.jit, static_argnames=("nets", "width", "height", "backend", "use_deform"))
def _render(trees, frame, *, nets, width, height, backend, use_deform):
    face, mouth = ((net, *tree) for net, tree in zip(nets, trees))
    out = render_fused(
        face, mouth, frame, width=width, height=height, backend=backend, use_deform=use_deform
    )
    return out["rgb"]


def render(model: TrainedModel, frame: dict) -> jax.Array:
    """The fused frame: face over mouth over the pose's torso/background (eval mode, full ensemble).

    Args:
      model: a `TrainedModel`.
      frame: a `frame_conditioning` dict; its background's (H, W) is the size rendered (the
        model's, unless K and the background were rescaled together, as `bench_infer --size`).
    Returns:
      (H, W, 3) float32 RGB in [0, 1] (a jax array; dispatch is asynchronous).
    """
    nets = tuple(inference_net(model.heads[p][0]) for p in PARTS)
    trees = tuple(tuple(model.heads[p][1:]) for p in PARTS)
    h, w = np.shape(frame["background"])[:2]
    inputs = {k: frame[k] for k in (*_NET_KEYS, "viewmat", "K", "background")}
    return _render(
        trees,
        inputs,
        nets=nets,
        width=w,
        height=h,
        backend=model.cfg.backend,
        use_deform=bool(model.cfg.train.deform),
    )


def read_uncertainty(model: TrainedModel, part: str, frame: dict) -> dict:
    """The per-Gaussian uncertainty of one branch for one frame, live Gaussians only (numpy).

    Args:
      model: a `TrainedModel` trained with the U switch on and with deformation.
      part: "face" or "mouth".
      frame: a `frame_conditioning` dict.
    Returns:
      {"views": V names, "means" (M, 3) deformed centres, "aleatoric" (V, M), "epistemic" (V, M),
       "view_weights" (V, M), "fused_var" (M,)} over the M active Gaussians.
    Raises:
      ValueError: the model has no uncertainty fusion (U off, or no deformation).
    """
    out = deform(model, part, frame)
    if "aleatoric" not in out.aux:
        raise ValueError(
            f"{model.workdir}: the {part} branch has no uncertainty fusion "
            "(trained with model.ablation.uncertainty=False or train.deform=False)"
        )
    live = np.asarray(out.gaussians.active)
    res = {"views": model.view_names(part), "means": np.asarray(out.gaussians.means)[live]}
    for k in ("aleatoric", "epistemic", "view_weights"):
        res[k] = np.asarray(out.aux[k])[:, live]
    res["fused_var"] = np.asarray(out.aux["fused_var"])[live]
    return res
