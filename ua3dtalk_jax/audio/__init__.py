"""Audio: loading, resampling and per-video-frame features (see `features.py`)."""

from ua3dtalk_jax.audio.features import (
    F_AUDIO_DIM,
    F_AUDIO_RATE,
    F_AUDIO_WINDOW,
    MEL_RATE,
    MFCC_RATE,
    SAMPLE_RATE,
    f_audio,
    frame_windows,
    load_audio,
    mel_chunks,
    mfcc,
    num_frames,
    stft_db,
    wav2lip_mel,
    wav_segments,
)

__all__ = [
    "F_AUDIO_DIM",
    "F_AUDIO_RATE",
    "F_AUDIO_WINDOW",
    "MEL_RATE",
    "MFCC_RATE",
    "SAMPLE_RATE",
    "f_audio",
    "frame_windows",
    "load_audio",
    "mel_chunks",
    "mfcc",
    "num_frames",
    "stft_db",
    "wav2lip_mel",
    "wav_segments",
]
