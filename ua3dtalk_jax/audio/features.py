"""Audio features aligned to the video frame rate (numpy, host side).

Everything works on 16 kHz mono float32 waveforms (`load_audio` resamples anything else). Feature
frames come from a centred STFT (librosa's `center=True`: frame k is centred on sample k·hop, i.e. on
time k/rate), so a feature frame and a video frame line up when k/rate = i/fps.

Per-video-frame features (N = number of video frames, all vectorised gathers, no per-frame loop):

    f_audio      (N, 16, F_AUDIO_DIM)  the deformation network's audio input: 16 log-mel frames at
                                       50 Hz (0.32 s) centred on frame i (8 per side), edge-padded. It
                                       stands in for DeepSpeech's aud_ds.npy (also 16 frames at 50 Hz),
                                       which cannot be computed offline; AudioNet learns on top of it.
    mel_chunks   (N, 16, 80)           Wav2Lip's 0.2 s mel chunk that *starts* at frame i's time.
    wav_segments (N, L)                raw samples centred on frame i, zero-padded.
    frame_windows                      the generic gather behind all three (any feature, any rate).

Whole-clip features: `wav2lip_mel` (T80, 80), `mfcc` (T100, n_mfcc), `stft_db` (T100, bins) — the
CA-MSER spectrogram whose image transform lives in `audio/emotion_inputs.py`.

Shapes: S samples; T80 / T50 / T100 feature frames at 80 / 50 / 100 Hz (T = 1 + S // hop).
"""

from __future__ import annotations

import os
import subprocess

import librosa
import numpy as np
import scipy.fft
import scipy.signal
import soundfile

from ua3dtalk_jax import ffmpeg, native_log

SAMPLE_RATE = 16000

# Wav2Lip hparams (audio.py / hparams.py): 80 mel frames per second.
W2L_N_FFT, W2L_HOP, W2L_WIN = 800, 200, 800
W2L_N_MELS, W2L_FMIN, W2L_FMAX = 80, 55.0, 7600.0
W2L_PREEMPHASIS = 0.97
W2L_REF_DB, W2L_MIN_DB, W2L_MAX_ABS = 20.0, -100.0, 4.0
MEL_RATE = SAMPLE_RATE // W2L_HOP  # 80 Hz
MEL_CHUNK = 16  # 0.2 s per video frame

# Our default f_audio: Wav2Lip-normalised log-mel, 32 bands at 50 Hz (DeepSpeech's frame rate).
F_AUDIO_HOP = 320
F_AUDIO_RATE = SAMPLE_RATE // F_AUDIO_HOP  # 50 Hz
F_AUDIO_DIM = 32
F_AUDIO_WINDOW = 16

# CA-MSER features (features_util.py): 10 ms hop, pre-emphasis 0.97.
CAMSER_HOP = 160
MFCC_RATE = SAMPLE_RATE // CAMSER_HOP  # 100 Hz

# Frames per block in stft_magnitude (its float64 temporaries: ~100 MB a block at n_fft 2048).
STFT_BLOCK = 2048

# Keeps floor(i * rate / fps) exact where float arithmetic gives 7.9999999 for an exact 8.
_INDEX_EPS = 1e-6


def load_audio(path_or_array, sample_rate: int | None = None) -> np.ndarray:
    """Loads audio as float32 16 kHz mono.

    Args:
      path_or_array: a file path (wav/flac/ogg/mp3 through soundfile; anything else, e.g. m4a,
        through imageio-ffmpeg's bundled ffmpeg) or an array (S,) or (S, C) / (C, S) with C ≤ 8.
      sample_rate: the array's rate (None means 16 kHz); ignored for files (their header rules).

    Returns:
      (S16,) float32 samples at 16 kHz.
    """
    if isinstance(path_or_array, (str, os.PathLike)):
        path = os.fspath(path_or_array)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: audio file not found")
        try:
            with native_log.quiet():  # libmpg123's resync notes go to the debug log
                data, rate = soundfile.read(path, dtype="float32", always_2d=True)
            wav = data.mean(axis=1)
        except (soundfile.LibsndfileError, RuntimeError, TypeError):
            return _ffmpeg_decode(path)
    else:
        wav = np.asarray(path_or_array, dtype=np.float32)
        rate = SAMPLE_RATE if sample_rate is None else int(sample_rate)
        if wav.ndim == 2:
            channel_axis = 1 if wav.shape[1] <= 8 else 0
            wav = wav.mean(axis=channel_axis)
        elif wav.ndim != 1:
            raise ValueError(f"audio array must be (S,) or (S, C), got shape {wav.shape}")
    if rate != SAMPLE_RATE:
        wav = librosa.resample(wav, orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    return np.ascontiguousarray(wav, dtype=np.float32)


def _ffmpeg_decode(path: str) -> np.ndarray:
    cmd = [ffmpeg.exe(), "-v", "error", "-i", path]
    cmd += ["-vn", "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        msg = proc.stderr.decode(errors="replace").strip()
        first = native_log.last_line(msg, "no audio stream")
        log = native_log.append(f"ffmpeg decoding {path}", msg) if msg else None
        where = f"; ffmpeg's output is in {log}" if log else ""
        raise ValueError(f"{path}: cannot decode audio ({first}){where}")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def num_frames(wav: np.ndarray, fps: float) -> int:
    """Number of video frames spanned by a 16 kHz waveform: round(S · fps / 16000)."""
    return int(np.floor(len(wav) * fps / SAMPLE_RATE + 0.5))


def preemphasis(wav: np.ndarray, coef: float) -> np.ndarray:
    """y[t] = x[t] − coef·x[t−1] (scipy lfilter, as Wav2Lip and librosa with zi=0)."""
    return scipy.signal.lfilter([1.0, -coef], [1.0], wav).astype(np.float32)


def stft_magnitude(
    wav: np.ndarray,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: str = "hann",
    pad_mode: str = "constant",
) -> np.ndarray:
    """|STFT| with librosa's centred framing, vectorised in numpy.

    Args:
      wav: (S,) float32.
      n_fft, hop_length, win_length: FFT size, hop, window length (≤ n_fft, centre-padded).
      window: a scipy window name ("hann", "hamming", ...), periodic as in librosa.
      pad_mode: np.pad mode for the n_fft//2 centring pad ("constant" = librosa ≥ 0.10,
        "reflect" = librosa ≤ 0.9, which Wav2Lip used).

    Returns:
      (1 + S // hop_length, n_fft // 2 + 1) float32 magnitudes.
    """
    win_length = win_length or n_fft
    win = scipy.signal.get_window(window, win_length, fftbins=True)
    lpad = (n_fft - win_length) // 2
    win = np.pad(win, (lpad, n_fft - win_length - lpad))
    x = np.asarray(wav, dtype=np.float32)
    pad = n_fft // 2
    if pad_mode == "reflect" and len(x) <= pad:
        pad_mode = "constant"  # reflect needs more samples than the pad
    x = np.pad(x, pad, mode=pad_mode)
    n = 1 + (len(x) - n_fft) // hop_length
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop_length][:n]
    # In blocks of frames: the windowed frames and their FFT are float64 / complex128, 24·n_fft
    # bytes a frame (3.5 GB for 15 min of audio at n_fft 2048 in one piece); each row is its own
    # transform, so the result is bitwise that of one piece (tests/audio/test_audio_features.py).
    out = np.empty((n, n_fft // 2 + 1), np.float32)
    for s in range(0, n, STFT_BLOCK):
        out[s : s + STFT_BLOCK] = np.abs(np.fft.rfft(frames[s : s + STFT_BLOCK] * win, axis=-1))
    return out


def _normalised_log_mel(
    wav: np.ndarray, *, hop: int, n_mels: int, pad_mode: str = "reflect"
) -> np.ndarray:
    """Wav2Lip's melspectrogram recipe at any hop: (1 + S // hop, n_mels) in [−4, 4]."""
    mag = stft_magnitude(
        preemphasis(wav, W2L_PREEMPHASIS),
        n_fft=W2L_N_FFT,
        hop_length=hop,
        win_length=W2L_WIN,
        pad_mode=pad_mode,
    )
    basis = librosa.filters.mel(
        sr=SAMPLE_RATE, n_fft=W2L_N_FFT, n_mels=n_mels, fmin=W2L_FMIN, fmax=W2L_FMAX
    )
    mel = mag @ basis.T.astype(np.float32)
    min_level = np.exp(W2L_MIN_DB / 20 * np.log(10))
    db = 20 * np.log10(np.maximum(min_level, mel)) - W2L_REF_DB
    scaled = 2 * W2L_MAX_ABS * (db - W2L_MIN_DB) / (-W2L_MIN_DB) - W2L_MAX_ABS
    return np.clip(scaled, -W2L_MAX_ABS, W2L_MAX_ABS).astype(np.float32)


def wav2lip_mel(wav: np.ndarray) -> np.ndarray:
    """Wav2Lip's normalised mel spectrogram.

    Args:
      wav: (S,) float32 at 16 kHz.

    Returns:
      (T80, 80) float32 in [−4, 4], T80 = 1 + S // 200; row k is centred on time k / 80 s.
    """
    return _normalised_log_mel(wav, hop=W2L_HOP, n_mels=W2L_N_MELS)


def frame_windows(
    features: np.ndarray,
    feature_rate: float,
    fps: float,
    n_frames: int,
    length: int,
    *,
    anchor: str = "center",
    pad: str = "edge",
) -> np.ndarray:
    """Gathers one window of `length` feature rows per video frame.

    Frame i sits at feature row r_i = i · feature_rate / fps. With anchor "center" the window is rows
    round(r_i) − length//2 ... round(r_i) + (length − length//2) − 1 (for 16: 8 before, the centre
    row and 7 after); with "start" it begins at floor(r_i) (Wav2Lip's chunks).

    Args:
      features: (T, ...) rows at `feature_rate` per second.
      feature_rate: rows per second (e.g. 50, 80, 100, or 16000 for raw samples).
      fps: video frame rate.
      n_frames: N, number of windows.
      length: window length in rows.
      anchor: "center" or "start".
      pad: "edge" repeats the first/last row past the ends; "zero" pads with zeros.

    Returns:
      (N, length, ...) array of features' dtype.
    """
    features = np.asarray(features)
    if len(features) == 0:
        raise ValueError("frame_windows: empty feature array")
    pos = np.arange(n_frames, dtype=np.float64) * (feature_rate / fps)
    if anchor == "center":
        start = np.floor(pos + 0.5).astype(np.int64) - length // 2
    elif anchor == "start":
        start = np.floor(pos + _INDEX_EPS).astype(np.int64)
    else:
        raise ValueError(f"anchor must be 'center' or 'start', got {anchor!r}")
    idx = start[:, None] + np.arange(length)[None, :]
    clipped = np.clip(idx, 0, len(features) - 1)
    out = features[clipped]
    if pad == "zero":
        outside = (idx < 0) | (idx >= len(features))
        out[outside] = 0
    elif pad != "edge":
        raise ValueError(f"pad must be 'edge' or 'zero', got {pad!r}")
    return out


def mel_chunks(wav: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """Wav2Lip's per-frame mel chunks.

    Chunk i starts at mel row floor(80·i/fps) and spans 16 rows (0.2 s); like Wav2Lip, a chunk that
    would run past the end is moved back to the last 16 rows (clips shorter than 16 rows are
    edge-padded).

    Args:
      wav: (S,) float32 at 16 kHz.
      fps: video frame rate.
      n_frames: N.

    Returns:
      (N, 16, 80) float32.
    """
    mel = wav2lip_mel(wav)
    if len(mel) < MEL_CHUNK:
        mel = np.pad(mel, ((0, MEL_CHUNK - len(mel)), (0, 0)), mode="edge")
    start = np.floor(np.arange(n_frames) * (MEL_RATE / fps) + _INDEX_EPS).astype(np.int64)
    start = np.minimum(start, len(mel) - MEL_CHUNK)
    return mel[start[:, None] + np.arange(MEL_CHUNK)[None, :]]


def f_audio_frames(wav: np.ndarray, n_mels: int = F_AUDIO_DIM) -> np.ndarray:
    """The 50 Hz log-mel rows behind `f_audio`: (T50, n_mels) float32 in [−4, 4]."""
    return _normalised_log_mel(wav, hop=F_AUDIO_HOP, n_mels=n_mels)


def f_audio(
    wav: np.ndarray,
    fps: float,
    n_frames: int,
    *,
    n_mels: int = F_AUDIO_DIM,
    window: int = F_AUDIO_WINDOW,
) -> np.ndarray:
    """Default deformation-network audio feature (replaces DeepSpeech's aud_ds.npy).

    Args:
      wav: (S,) float32 at 16 kHz.
      fps: video frame rate (25 or 30 in practice; any works).
      n_frames: N.
      n_mels: F, mel bands.
      window: rows per window (16 = 0.32 s, 8 per side of the frame's row), edge-padded.

    Returns:
      (N, window, n_mels) float32, the same layout as aud_ds.npy's (N, 16, 29).
    """
    rows = f_audio_frames(wav, n_mels)
    return frame_windows(rows, F_AUDIO_RATE, fps, n_frames, window, anchor="center", pad="edge")


def wav_segments(wav: np.ndarray, fps: float, n_frames: int, length: int) -> np.ndarray:
    """Raw waveform segments of `length` samples centred on each video frame, zero-padded.

    Returns:
      (N, length) float32.
    """
    return frame_windows(
        np.asarray(wav, np.float32), SAMPLE_RATE, fps, n_frames, length, pad="zero"
    )


def stft_db(
    wav: np.ndarray,
    *,
    n_fft: int = 800,
    hop_length: int = CAMSER_HOP,
    win_length: int = 640,
    window: str = "hamming",
    n_bins: int | None = 200,
    preemphasis_coef: float | None = W2L_PREEMPHASIS,
    ref: str | float = "max",
    top_db: float | None = 80.0,
) -> np.ndarray:
    """Log-magnitude spectrogram (CA-MSER's extract_logspec by default).

    Args:
      wav: (S,) float32 at 16 kHz.
      n_fft, hop_length, win_length, window: STFT settings (defaults: 800, 10 ms, 40 ms, Hamming).
      n_bins: keep the first n_bins frequency bins (None keeps all n_fft // 2 + 1).
      preemphasis_coef: applied first (None skips it).
      ref: "max" (librosa amplitude_to_db(ref=np.max): the loudest bin is 0 dB) or a float.
      top_db: floor at max − top_db (None: no floor).

    Returns:
      (1 + S // hop_length, n_bins) float32 dB values, time-major.
    """
    x = wav if preemphasis_coef is None else preemphasis(wav, preemphasis_coef)
    mag = stft_magnitude(
        x, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window
    )
    mag_ref = float(mag.max()) if ref == "max" else float(ref)
    db = librosa.amplitude_to_db(mag, ref=mag_ref, top_db=top_db)  # floor set on all bins
    return db[:, :n_bins].astype(np.float32)


def mfcc(
    wav: np.ndarray,
    n_mfcc: int = 40,
    *,
    preemphasis_coef: float | None = W2L_PREEMPHASIS,
    n_fft: int = 2048,
    n_mels: int = 128,
) -> np.ndarray:
    """MFCCs at 100 Hz as CA-MSER computes them (librosa.feature.mfcc defaults, htk mel).

    Args:
      wav: (S,) float32 at 16 kHz.
      n_mfcc: coefficients kept.
      preemphasis_coef: applied first (CA-MSER pre-emphasises); None skips it.
      n_fft, n_mels: librosa's defaults.

    Returns:
      (T100, n_mfcc) float32, T100 = 1 + S // 160.
    """
    x = wav if preemphasis_coef is None else preemphasis(wav, preemphasis_coef)
    power = stft_magnitude(x, n_fft=n_fft, hop_length=CAMSER_HOP)
    np.square(power, out=power)  # in place: the (T100, 1025) array is 0.37 GB for 15 min
    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=n_fft, n_mels=n_mels, htk=True)
    db = librosa.power_to_db(power @ basis.T, ref=1.0, amin=1e-10, top_db=80.0)
    return scipy.fft.dct(db, axis=-1, type=2, norm="ortho")[:, :n_mfcc].astype(np.float32)
