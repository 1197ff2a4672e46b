"""The notebook API: a trained UA-3DTalk workdir as pure functions over pytrees.

Everything here is re-exported from `infer.trained_model`, `infer.poses` and `infer.synthesize`, the
code that `python -m experiments.infer` runs (`load` is `head.workdir.Workdir.load_trained`), so a
notebook and the CLI share one path.

    from ua3dtalk_jax import api

    model = api.load("workdirs/synthetic_default-cpu", "data/synthetic_default")
    feats = api.audio_features(model, "speech.wav")            # {"aud", "f_exp", "f_tone", "f_emo"}
    poses = api.pose_schedule(model.subject, "val")            # frame t -> camera, AUs, torso
    frame = api.frame_conditioning(model, feats, 0, poses(model.subject, 0))
    rgb = api.render(model, frame)                             # (H, W, 3) in [0, 1]
    face = api.deform(model, "face", frame)                    # Deformed(gaussians, delta, aux)
    unc = api.read_uncertainty(model, "face", frame)           # per-view, per-Gaussian
    api.synthesize(model, "speech.wav", "out.mp4")             # what the CLI does

Functions (shapes: N video frames, G Gaussian slots, M live Gaussians, V fused views):

    load(workdir, subject) -> TrainedModel      cfg, heads {"face"|"mouth": (net, params,
                                                gaussians)}, subject, stage1; raises
                                                FileNotFoundError (no finished stage 2) or
                                                ValueError (another version's model)
    load_waveform(audio, sample_rate=None)      (S,) float32 16 kHz mono from any file / array;
                                                refuses empty, non-finite and silent audio
    audio_features(model, audio, emotion=None,  per-frame features of a clip (N frames at the
                   features=None)               subject's fps): aud (N, Wa, F), f_exp (N, 64),
                                                f_tone (N, 64), f_emo (N, 128); `emotion` is a
                                                `head.emotion_control` spec ("happy@1.5:1",
                                                "happy:0.7+sad:0.3"), None = from the audio;
                                                also f_emo_audio, the audio's own f_emo. A
                                                model trained on precomputed DeepSpeech /
                                                HuBERT / esperanto windows
                                                (model.needs_audio_features) takes the clip's
                                                windows as `features` (.npy path or array),
                                                N = their count
    with_emotion(model, feats, emotion)         the same features with another emotion spec
                                                (no audio reprocessed)
    emotion_spec(emotion, intensity, mix)       the CLI's --emotion/--intensity/--emotion_mix as
                                                such a spec
    pose_schedule(subject, "val"|"static"|FILE) callable (subject, t) -> pose dict
    subject_pose(model, position)               the pose of one subject frame
    frame_conditioning(model, feats, t, pose)   one frame's inputs (dict of arrays)
    deform(model, part, frame) -> Deformed      deformed Gaussians (G slots), delta (Δμ, Δr, Δs)
                                                and aux: aleatoric / epistemic / view_weights
                                                (V, G), fused_mu, fused_var, attention norms
    read_uncertainty(model, part, frame)        the uncertainty entries over the M live Gaussians
    render(model, frame) -> (H, W, 3)           the fused frame (face over mouth over torso)
    synthesize(model, audio, out, features=None, a whole clip to an mp4 with its audio
               ...)                             (`features` as in audio_features)

`deform` and `render` are jitted (the networks are static arguments): the first call compiles,
every later frame of the same model reuses the executable. The model is read-only; features and
frames are plain dicts of numpy arrays, the outputs jax arrays.
"""

from ua3dtalk_jax.head.emotion_control import class_levels, emotion_spec, with_emotion
from ua3dtalk_jax.head.trained import TrainedModel
from ua3dtalk_jax.head.workdir import Workdir
from ua3dtalk_jax.infer.poses import PoseSchedule, pingpong, pose_schedule, read_viewmats
from ua3dtalk_jax.infer.synthesize import synthesize
from ua3dtalk_jax.infer.trained_model import (
    Deformed,
    audio_features,
    deform,
    frame_conditioning,
    load_waveform,
    read_uncertainty,
    render,
    subject_pose,
)

__all__ = [
    "Deformed",
    "PoseSchedule",
    "TrainedModel",
    "audio_features",
    "class_levels",
    "deform",
    "emotion_spec",
    "frame_conditioning",
    "load",
    "load_waveform",
    "pingpong",
    "pose_schedule",
    "read_uncertainty",
    "read_viewmats",
    "render",
    "subject_pose",
    "synthesize",
    "with_emotion",
]


def load(workdir: str, subject: str | None = None) -> TrainedModel:
    """A finished workdir for new audio (`Workdir.load_trained`); subject None: the recorded one."""
    return Workdir(workdir).load_trained(subject)
