"""Stage 2's audio input as a run records it: the kind (`data.audio_feature`) and window shape.

Training resolves `data.audio_feature` against the subject (`resolve_audio`: "auto" becomes the kind
actually loaded) and writes the window shape into `model.audio` (steps, in_dim), so the saved
config says what the audio network was built for. Everything that later reopens the subject for a
trained model (evaluation, uncertainty maps, inference) goes through `open_for_model`, which loads
the same kind and refuses another, naming the kind the model was trained on.

Both take sub-configs: `data_cfg` = config.data, `audio_cfg` = config.model.audio.
"""

from __future__ import annotations

from ua3dtalk_jax.audio import precomputed
from ua3dtalk_jax.data.subject import Subject


def trained_on(data_cfg, audio_cfg) -> str:
    """ "deepspeech (aud_ds.npy, windows [16, 29])": what a resolved config was trained on."""
    return precomputed.describe(data_cfg.audio_feature, audio_cfg.steps, audio_cfg.in_dim)


def resolve_audio(data_cfg, audio_cfg, subject: Subject) -> str:
    """Records the subject's loaded audio windows in the config; returns the run's log line.

    Args:
      data_cfg: config.data; its audio_feature becomes the kind loaded (never "auto").
      audio_cfg: config.model.audio; steps and in_dim become the windows' (Wa, F).
      subject: the subject opened with `data_cfg.audio_feature`.
    """
    data_cfg.audio_feature = subject.audio_kind
    audio_cfg.steps, audio_cfg.in_dim = int(subject.audio_window), int(subject.audio_dim)
    return (
        f"stage 2 audio: {trained_on(data_cfg, audio_cfg)} for {len(subject.audio)} frames; "
        "stage 1 reads aud.wav"
    )


def match_subject(data_cfg, audio_cfg, subject: Subject) -> None:
    """Resolves an unresolved config against an open subject, or checks that they agree.

    Raises:
      ValueError naming both: the subject was opened with another kind or window shape than the
        config records.
    """
    if data_cfg.audio_feature == precomputed.AUTO:
        resolve_audio(data_cfg, audio_cfg, subject)
        return
    got = precomputed.describe(subject.audio_kind, subject.audio_window, subject.audio_dim)
    want = trained_on(data_cfg, audio_cfg)
    if got != want:
        raise ValueError(f"{subject.path}: its audio is {got}, but the config says {want}")


def open_for_model(path: str, data_cfg, audio_cfg) -> Subject:
    """Opens a subject for a trained model: the kind it was trained on, windows of its shape.

    Raises:
      FileNotFoundError: no subject directory (from `Subject.open`).
      ValueError naming the trained kind: the subject lacks that kind's file, or its windows have
        another shape.
    """
    kind = precomputed.check_choice(data_cfg.audio_feature)
    if kind == precomputed.AUTO:  # resolved configs never hold "auto"
        raise ValueError("data.audio_feature='auto' in a trained config: it was never resolved")
    want = trained_on(data_cfg, audio_cfg)
    try:
        subject = Subject.open(path, audio_feature=kind)
    except FileNotFoundError as e:
        if kind == precomputed.MEL or precomputed.FILES[kind] not in str(e):
            raise
        raise ValueError(f"the model was trained on {want}, but {e}") from None
    got = (subject.audio_window, subject.audio_dim)
    if got != (audio_cfg.steps, audio_cfg.in_dim):
        raise ValueError(
            f"{subject.path}: its {subject.audio_source} has windows [{got[0]}, {got[1]}], but the "
            f"model was trained on {want}"
        )
    return subject
