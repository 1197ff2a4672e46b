"""Precomputed audio windows (`audio.precomputed`): the layouts TalkingGaussian, ER-NeRF and their
feature extractors write, read as (N, Wa, F) float32; refusals name the file."""

import numpy as np
import pytest

from ua3dtalk_jax.audio import precomputed


def _save(tmp_path, name, arr):
    path = tmp_path / name
    np.save(path, arr)
    return str(path)


@pytest.mark.parametrize(
    "name, shape",
    [("aud_ds.npy", (7, 16, 29)), ("aud_hu.npy", (7, 2, 1024)), ("aud_eo.npy", (7, 16, 44))],
)
def test_windows_as_the_tools_save_them_are_read_unchanged(tmp_path, name, shape):
    arr = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    got = precomputed.load_windows(_save(tmp_path, name, arr))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, arr)


def test_vectors_per_frame_are_windows_of_one_step(tmp_path):
    """ER-NeRF-family encoders (e.g. SyncTalk's audio-visual encoder) write one vector per frame."""
    arr = np.random.default_rng(1).normal(size=(9, 512)).astype(np.float64)
    got = precomputed.load_windows(_save(tmp_path, "aud_ds.npy", arr))
    assert got.shape == (9, 1, 512)
    np.testing.assert_allclose(got[:, 0], arr, rtol=1e-7)


@pytest.mark.parametrize("kind, steps, width", [("deepspeech", 16, 29), ("hubert", 2, 1024)])
def test_the_transposed_conv1d_layout_is_turned_back(tmp_path, kind, steps, width):
    arr = np.random.default_rng(2).normal(size=(5, steps, width)).astype(np.float32)
    path = _save(tmp_path, precomputed.FILES[kind], np.swapaxes(arr, 1, 2))
    np.testing.assert_array_equal(precomputed.load_windows(path), arr)


def test_refusals_name_the_file_and_the_problem(tmp_path):
    cases = {
        "labels.npy": (np.zeros((6, 16), np.int64), "label indices"),
        "empty.npy": (np.zeros((0, 16, 29), np.float32), "expected per-frame windows"),
        "rank4.npy": (np.zeros((2, 3, 16, 29), np.float32), r"shape \(2, 3, 16, 29\)"),
        "nan.npy": (np.full((4, 16, 29), np.nan, np.float32), "non-finite values"),
    }
    for name, (arr, msg) in cases.items():
        with pytest.raises(ValueError, match=f"{name}: .*{msg}"):
            precomputed.load_windows(_save(tmp_path, name, arr))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="junk.npy: unreadable"):
        precomputed.load_windows(str(tmp_path / "junk.npy"))
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        precomputed.load_windows(str(tmp_path / "missing.npy"))
    with pytest.raises(ValueError, match="data.audio_feature='wav2vec'"):
        precomputed.check_choice("wav2vec")
