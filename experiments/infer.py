"""Renders a trained talking head speaking new audio, as an mp4 with that audio.

  python -m experiments.infer --workdir=DIR --audio=FILE [--audio_features=FILE.npy]
      [--subject=synthetic|NAME|PATH]
      [--emotion=LABEL [--intensity=1..3] | --emotion_mix=happy:0.7,sad:0.3]
      [--poses=val|static|FILE] --out=out.mp4

A model trained on a subject's precomputed DeepSpeech / HuBERT / esperanto windows (aud_ds.npy,
aud_hu.npy, aud_eo.npy) needs the new clip's windows from the same tool as --audio_features (what
TalkingGaussian's --aud takes); the wav still drives stage 1 and is the soundtrack, and the video
has the .npy's frame count (one frame of rounding against the wav is tolerated).

Audio: wav, flac, mp3, ogg, m4a … at any rate (resampled to 16 kHz mono). The video has the
subject's fps and size and round(duration · fps) frames. By default the face is driven by the audio
alone (the paper's setting); --emotion / --emotion_mix replace f_emo-attn by stage 1's class-mean
emotion features (see ua3dtalk_jax/infer/synthesize.py). --poses: the held-out frames' head motion
played ping-pong (val), the first held-out frame (static), or a .npy (P, 4, 4) of world→camera
OpenCV matrices / a transforms .json (see ua3dtalk_jax/infer/poses.py). --subject must be the
subject the workdir was trained on (default: the one its subject.json records, else the synthetic
subject of the workdir's preset).
"""

from __future__ import annotations

from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Trained workdir (stage 2 finished).")
_AUDIO = flags.DEFINE_string("audio", None, "Audio file (wav, flac, mp3, m4a, ...).")
_FEATURES = flags.DEFINE_string(
    "audio_features",
    None,
    "The clip's precomputed audio windows (.npy) for a model trained on "
    "DeepSpeech/HuBERT/esperanto features (TalkingGaussian's --aud).",
)
_OUT = flags.DEFINE_string("out", None, "Output video (.mp4).")
_SUBJECT, _DATA_ROOT = cli.define_subject()
_EMOTION = flags.DEFINE_string("emotion", None, "Emotion label (e.g. happy); default: from audio.")
_INTENSITY = flags.DEFINE_integer("intensity", None, "MEAD intensity level 1..3 of the emotion.")
_MIX = flags.DEFINE_string("emotion_mix", None, "Blend, e.g. happy:0.7,sad:0.3 (or audio:0.5).")
_POSES = flags.DEFINE_string("poses", "val", "val | static | a .npy / .json pose file.")
_CACHE = cli.define_compile_cache()


def main(argv):
    del argv
    from ua3dtalk_jax.head import emotion_control
    from ua3dtalk_jax.head.workdir import Workdir, check_drivable
    from ua3dtalk_jax.infer import synthesize as syn
    from ua3dtalk_jax.infer import trained_model as tm
    from ua3dtalk_jax.infer.poses import MODES, read_viewmats
    from ua3dtalk_jax.train.run import enable_compile_cache

    cli.quiet_orbax()
    try:
        cli.require(workdir=_WORKDIR.value, out=_OUT.value)
        syn.check_output(_OUT.value)
        emotion_control.emotion_spec(
            _EMOTION.value, _INTENSITY.value, _MIX.value
        )  # flag errors first
        if _POSES.value not in MODES:
            read_viewmats(_POSES.value)
        wd = Workdir(_WORKDIR.value)
        cfg = wd.load_config()  # the audio is checked before the model is loaded
        check_drivable(cfg, _WORKDIR.value)
        if not _AUDIO.value:
            raise ValueError(
                "--audio is missing: the clip's speech drives stage 1 and is the "
                f"soundtrack: {tm.infer_command(cfg, _WORKDIR.value)}"
            )
        tm.check_audio_features(cfg, _WORKDIR.value, _FEATURES.value)
        tm.load_waveform(_AUDIO.value)
        enable_compile_cache(_CACHE.value)
        model = wd.load_trained(wd.subject_dir(_SUBJECT.value, _DATA_ROOT.value))
        levels = emotion_control.class_levels(model.subject)
        spec = emotion_control.emotion_spec(_EMOTION.value, _INTENSITY.value, _MIX.value, levels)
        res = syn.synthesize(
            model,
            _AUDIO.value,
            _OUT.value,
            emotion=spec,
            poses=_POSES.value,
            features=_FEATURES.value,
        )
    except (OSError, ValueError) as e:
        cli.fail("infer", e)
    h, w = res["size"]
    print(
        f"wrote {res['path']}: {res['frames']} frames, {w}x{h} at {res['fps']:g} fps, "
        f"audio {res['audio_seconds']:.2f} s; emotion: {spec or 'from the audio'}"
    )
    print(
        f"rendered {res['render_fps']:.2f} frames/s (first frame, with compilation: "
        f"{res['first_frame_seconds']:.1f} s; total {res['seconds']:.1f} s)"
    )


if __name__ == "__main__":
    cli.run(main)
