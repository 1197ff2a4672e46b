"""Bad subject directories: every error names the offending file and the problem."""

import os

import numpy as np
import pytest
import soundfile

from tests.data import tg_layout
from tests.data.torch_writer import write_torch_file
from ua3dtalk_jax.data import Subject

N = 12


@pytest.fixture
def root(tmp_path):
    tg_layout.write_tg_subject(str(tmp_path), N, wav=False)
    return tmp_path


def test_missing_per_frame_file(root):
    os.remove(root / "gt_imgs" / "7.jpg")
    with pytest.raises(FileNotFoundError, match=r"gt_imgs/7\.jpg: file not found"):
        Subject.open(str(root))


@pytest.mark.parametrize("name", ["transforms_val.json", "au.csv", "bc.jpg", "aud_ds.npy"])
def test_missing_subject_file(root, name):
    os.remove(root / name)
    match = "aud.wav" if name == "aud_ds.npy" else name.replace(".", r"\.")
    with pytest.raises(FileNotFoundError, match=match):
        Subject.open(str(root))


def test_corrupt_image(root):
    (root / "parsing" / "3.png").write_bytes(b"\x89PNG not really")
    subject = Subject.open(str(root))
    subject.frame(2)
    with pytest.raises(ValueError, match=r"parsing/3\.png: corrupt or unreadable image"):
        subject.frame(3)


def test_audio_length_disagrees_by_over_a_second(root):
    np.save(root / "aud_ds.npy", np.zeros((N + 40, 16, 29), np.float32))  # 1.6 s too long
    with pytest.raises(ValueError, match=r"aud_ds\.npy: audio lasts 2\.08 s .* 12 frames"):
        Subject.open(str(root))


def test_small_audio_mismatch_padded_with_warning(root):
    feats = np.random.default_rng(0).normal(size=(N - 3, 16, 29)).astype(np.float32)
    np.save(root / "aud_ds.npy", feats)
    with pytest.warns(UserWarning, match=r"aud_ds\.npy: audio and video differ .* padded"):
        subject = Subject.open(str(root))
    assert subject.audio.shape == (N, 16, 29)
    np.testing.assert_array_equal(subject.audio[N - 3 :], feats[[-1, -1, -1]])


def test_unknown_emotion_label(root):
    (root / "emotion.csv").write_text("frame,emotion,intensity\n0,happy,2\n1,joyful,1\n")
    with pytest.raises(ValueError, match=r"emotion\.csv:3: unknown emotion label 'joyful'"):
        Subject.open(str(root))


def test_emotion_labels_read(root):
    (root / "emotion.csv").write_text("frame,emotion,intensity\n0,happy,2\n5,neutral,1\n")
    subject = Subject.open(str(root))
    assert subject.frame(0)["emotion"] == 5 and subject.frame(0)["intensity"] == 2
    assert subject.frame(5)["emotion"] == 0 and subject.frame(1)["emotion"] == -1


def test_au_csv_without_leading_space_and_missing_column(root):
    text = (root / "au.csv").read_text()
    (root / "au.csv").write_text(text.replace(", ", ","))  # names without the leading space
    Subject.open(str(root))
    (root / "au.csv").write_text(text.replace(" AU45_r", " AU46_r"))
    with pytest.raises(ValueError, match=r"au\.csv: column ' AU45_r' missing"):
        Subject.open(str(root))


def test_incomplete_writer_dir_refused(root):
    (root / ".ua3d_incomplete").write_text("")
    with pytest.raises(ValueError, match="writer did not finish"):
        Subject.open(str(root))


def test_bad_exp_rows(root):
    np.save(root / "exp_coeffs.npy", np.zeros((N - 2, 64), np.float32))
    with pytest.raises(ValueError, match=r"exp_coeffs\.npy: shape \(10, 64\)"):
        Subject.open(str(root))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"euler": np.zeros((N, 3), np.float32)}, r"no 'exp' entry \(keys \['euler'\]\)"),
        (
            {"exp": np.zeros((N, 79, 1), np.float32)},
            r"'exp' is \(12, 79, 1\), expected an \[N, 79\]",
        ),
        (
            {"exp": np.zeros((N - 2, 79), np.float32)},
            r"'exp' has 10 rows but the transforms json go up to img_id 11",
        ),
        ({"exp": np.full((N, 79), np.nan, np.float32)}, r"'exp' holds non-finite values"),
        ([np.zeros((N, 79), np.float32)], r"expected the face tracker's dict, got list"),
    ],
)
def test_bad_track_params(root, params, match):
    write_torch_file(str(root / "track_params.pt"), params)
    with pytest.raises(ValueError, match=r"track_params\.pt: " + match):
        Subject.open(str(root))


def test_wav_length_checked_when_features_come_from_aud_wav(tmp_path):
    tg_layout.write_tg_subject(str(tmp_path), N, aud_ds=False)
    soundfile.write(tmp_path / "aud.wav", np.zeros(int((N / 25 + 0.5) * 16000)), 16000)
    warning = r"aud\.wav: audio and video differ by \+0\.500 s; audio trimmed"
    with pytest.warns(UserWarning, match=warning):
        assert Subject.open(str(tmp_path)).audio.shape == (N, 16, 32)
    soundfile.write(tmp_path / "aud.wav", np.zeros(int((N / 25 + 1.5) * 16000)), 16000)
    with pytest.raises(ValueError, match=r"aud\.wav: audio lasts 1\.98 s .* 12 frames"):
        Subject.open(str(tmp_path))
