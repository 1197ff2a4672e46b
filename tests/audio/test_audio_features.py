"""Audio features: shapes, alignment to 25 and 30 fps video, and numpy-vs-librosa twins."""

import subprocess

import imageio_ffmpeg
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import soundfile

from ua3dtalk_jax.audio import emotion_inputs as ei
from ua3dtalk_jax.audio import features as af
from ua3dtalk_jax.audio.cache import cached_array
from ua3dtalk_jax.configs.stage1 import stage1_config

SR = af.SAMPLE_RATE
STFT_TOL = 1e-3  # float32 FFT vs librosa's; relative to the peak magnitude
MFCC_TOL = 1e-2  # dB-domain DCT of float32 powers
RESAMPLE_LEN_TOL = 2  # samples, soxr's output length rounding


def _click_wav(seconds, t_click):
    wav = np.zeros(int(seconds * SR), np.float32)
    k = int(t_click * SR)
    wav[k : k + 16] = np.hanning(16) * 0.9  # a 1 ms broadband click
    return wav


@pytest.mark.parametrize("fps", [25, 30])
def test_frame_windows_index_alignment(fps):
    rows = np.arange(140, dtype=np.float32)[:, None]  # row k holds k
    n = 40
    centre = af.frame_windows(rows, 50, fps, n, 16)[..., 0]
    want_centre = np.floor(np.arange(n) * 50 / fps + 0.5)
    np.testing.assert_array_equal(centre[:, 8], want_centre)  # 8 rows before the centre row
    np.testing.assert_array_equal(centre[0, :8], 0)  # edge padding at the start
    np.testing.assert_array_equal(np.diff(centre[20]), 1)
    start = af.frame_windows(rows, 80, fps, n, 16, anchor="start", pad="zero")[..., 0]
    np.testing.assert_array_equal(start[:, 0], (np.arange(n) * 80) // fps)  # exact, no 7.999
    short = af.frame_windows(rows[:60], 80, fps, n, 16, anchor="start", pad="zero")[..., 0]
    assert (short[-1] == 0).all()  # zero padding past the end


@pytest.mark.parametrize("fps", [25, 30])
@pytest.mark.parametrize("t_click", [0.61, 1.23, 1.9])
def test_click_lands_in_its_video_frame(fps, t_click):
    wav = _click_wav(2.6, t_click)
    n = af.num_frames(wav, fps)
    assert n == round(2.6 * fps)
    frame = round(t_click * fps)
    # f_audio: the click's energy is largest at the centre row of frame round(t·fps)'s window.
    feats = af.f_audio(wav, fps, n)
    centre_energy = feats[:, 8].mean(-1)  # row round(i·50/fps)
    assert centre_energy.argmax() == frame
    # Wav2Lip chunks start at the frame time: the click sits in the first rows of that chunk.
    chunks = af.mel_chunks(wav, fps, n)
    assert chunks.shape == (n, 16, 80)
    peak_row = chunks[frame].mean(-1).argmax()
    assert peak_row <= 80 / fps + 1
    # Raw segments are centred on the frame time.
    seg = af.wav_segments(wav, fps, n, 1601)
    assert abs(np.abs(seg[frame]).argmax() - 800 - (t_click - frame / fps) * SR) <= 16


def test_shapes_and_ranges():
    wav = np.random.default_rng(0).normal(scale=0.1, size=SR * 2 + 123).astype(np.float32)
    mel = af.wav2lip_mel(wav)
    assert mel.shape == (1 + len(wav) // 200, 80) and mel.dtype == np.float32
    assert mel.min() >= -4 and mel.max() <= 4
    assert af.f_audio(wav, 25, 50).shape == (50, 16, 32)
    assert af.mfcc(wav).shape == (1 + len(wav) // 160, 40)
    spec = af.stft_db(wav)
    assert spec.shape == (1 + len(wav) // 160, 200) and spec.max() <= 0 and spec.min() >= -80
    assert af.wav_segments(wav, 30, 60, 480).shape == (60, 480)


def test_mel_band_of_a_tone():
    t = np.arange(SR) / SR
    mel = af.wav2lip_mel((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    centres = librosa.mel_frequencies(80 + 2, fmin=55, fmax=7600)[1:-1]
    assert abs(centres[mel[20:-20].mean(0).argmax()] - 1000) < 60


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_stft_matches_librosa(pad_mode):
    wav = np.random.default_rng(1).normal(size=4000).astype(np.float32)
    ours = af.stft_magnitude(
        wav, n_fft=800, hop_length=160, win_length=640, window="hamming", pad_mode=pad_mode
    )
    ref = np.abs(
        librosa.stft(
            wav, n_fft=800, hop_length=160, win_length=640, window="hamming", pad_mode=pad_mode
        )
    ).T
    np.testing.assert_allclose(ours, ref, atol=STFT_TOL * ref.max())


def test_mfcc_matches_librosa():
    wav = np.random.default_rng(2).normal(scale=0.1, size=8000).astype(np.float32)
    ref = librosa.feature.mfcc(
        y=librosa.effects.preemphasis(wav, zi=[0.0]), sr=SR, n_mfcc=40, hop_length=160, htk=True
    ).T
    np.testing.assert_allclose(af.mfcc(wav), ref, atol=MFCC_TOL * np.abs(ref).max())


def test_load_audio_resamples_and_mixes(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], 1) * 0.5
    out = af.load_audio(stereo, 44100)
    assert out.dtype == np.float32 and abs(len(out) - SR) <= RESAMPLE_LEN_TOL
    soundfile.write(tmp_path / "a.wav", stereo, 44100)
    from_file = af.load_audio(str(tmp_path / "a.wav"))
    assert abs(len(from_file) - SR) <= RESAMPLE_LEN_TOL
    spectrum = np.abs(np.fft.rfft(from_file))
    assert abs(spectrum.argmax() * SR / len(from_file) - 440) < 2
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        af.load_audio(str(tmp_path / "nope.wav"))


def test_load_m4a_through_ffmpeg(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.zeros(22050, np.float32) + 0.01, 22050)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "a.wav")]
    subprocess.run(cmd + [str(tmp_path / "a.m4a")], check=True)
    out = af.load_audio(str(tmp_path / "a.m4a"))
    assert abs(len(out) - SR) < 0.1 * SR  # AAC adds priming frames
    (tmp_path / "bad.m4a").write_bytes(b"not audio")
    with pytest.raises(ValueError, match="bad.m4a: cannot decode audio"):
        af.load_audio(str(tmp_path / "bad.m4a"))


def test_feature_cache(tmp_path):
    src = tmp_path / "aud.wav"
    soundfile.write(src, np.zeros(1600, np.float32), SR)
    calls = []

    def compute():
        calls.append(1)
        return np.full(3, len(calls), np.float32)

    a = cached_array(str(tmp_path), "f", {"k": 1}, compute, source=str(src))
    b = cached_array(str(tmp_path), "f", {"k": 1}, compute, source=str(src))
    np.testing.assert_array_equal(a, b)
    assert len(calls) == 1
    c = cached_array(str(tmp_path), "f", {"k": 2}, compute, source=str(src))
    assert len(calls) == 2 and c[0] == 2
    soundfile.write(src, np.zeros(3200, np.float32), SR)  # new source → recompute
    cached_array(str(tmp_path), "f", {"k": 2}, compute, source=str(src))
    assert len(calls) == 3


@pytest.mark.parametrize("fps", [25, 30])
def test_emotion_encoder_windows_centre_on_their_video_frame(fps):
    """(b) MFCC, (c) the AlexNet spectrogram image and (d) raw segments of the emotion encoder: a
    click at t sits in the middle of frame round(t·fps)'s windows and one frame off in its
    neighbours'."""
    cfg = stage1_config("tiny").emotion
    rows, samples = ei.window_frames(cfg), ei.window_samples(cfg)
    assert cfg.image_hw[1] == rows  # one image column per 10 ms row: columns are rows
    rows_per_frame = SR / fps / cfg.hop
    lut = ei.jet_lut()
    for t_click in (0.61, 1.9):
        wav = _click_wav(2.6, t_click)
        k = round(t_click * fps)
        centres = ei.frame_centres(af.num_frames(wav, fps), fps)[[k - 1, k, k + 1]]
        x = ei.window_inputs(ei.emotion_stream(wav, cfg), jnp.asarray(centres), cfg)
        rgb = np.asarray(x["spec"]) * ei.IMAGENET_STD + np.asarray(ei.IMAGENET_MEAN)
        level = np.abs(rgb[..., None, :] - lut).sum(-1).argmin(-1)  # invert the jet colour map
        column = level.mean(1).argmax(-1)  # the click's column in each window
        assert abs(column[1] - rows // 2) <= rows_per_frame / 2 + 1
        np.testing.assert_allclose(np.diff(column), -rows_per_frame, atol=1)
        mf = np.asarray(x["mfcc"])
        mfcc_row = np.abs(mf - mf[:, :1]).sum(-1).argmax(-1) * cfg.mfcc_stride
        assert abs(mfcc_row[1] - rows // 2) <= rows_per_frame / 2 + cfg.mfcc_stride + 1
        peak = np.abs(np.asarray(x["wav"])).argmax(-1) - samples // 2  # click peak re. centre
        np.testing.assert_allclose(peak, t_click * SR - centres, atol=16)
        assert abs(peak[1]) <= SR / fps / 2 + 16


def test_decoder_chatter_goes_to_the_debug_log(tmp_path, monkeypatch, capfd):
    """libmpg123's resync notes on a damaged mp3, and ffmpeg's output on an undecodable file,
    land in the debug log; the terminal sees nothing, the error one line naming the log."""
    log = tmp_path / "debug.log"
    monkeypatch.setenv("UA3D_DEBUG_LOG", str(log))
    soundfile.write(tmp_path / "t.wav", 0.3 * np.sin(np.arange(32000) / 10.0), 16000)
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-i",
            str(tmp_path / "t.wav"),
            str(tmp_path / "t.mp3"),
        ],
        check=True,
    )
    data = (tmp_path / "t.mp3").read_bytes()
    half = len(data) // 2
    (tmp_path / "hurt.mp3").write_bytes(data[:half] + bytes(500) + data[half + 100 :])
    assert len(af.load_audio(str(tmp_path / "hurt.mp3"))) > 16000
    (tmp_path / "junk.m4a").write_bytes(b"junk" * 100)
    with pytest.raises(ValueError, match=r"junk.m4a: cannot decode audio \(.*\); ffmpeg's output"):
        af.load_audio(str(tmp_path / "junk.m4a"))
    assert capfd.readouterr().err == ""
    assert "Illegal Audio-MPEG-Header" in log.read_text()


def test_stft_in_blocks_is_bitwise_one_piece(monkeypatch):
    """stft_magnitude frames its FFT in blocks of STFT_BLOCK rows (bounded float64 temporaries
    for long clips); the blocks change nothing, to the bit."""
    wav = np.random.default_rng(3).standard_normal(16000 * 3 + 17).astype(np.float32)
    kw = {"n_fft": 2048, "hop_length": 160}
    monkeypatch.setattr(af, "STFT_BLOCK", 10**9)
    whole = af.stft_magnitude(wav, **kw)
    for block in (1, 7, 64):
        monkeypatch.setattr(af, "STFT_BLOCK", block)
        np.testing.assert_array_equal(af.stft_magnitude(wav, **kw), whole)
    assert whole.shape == (1 + len(wav) // 160, 1025) and whole.dtype == np.float32
