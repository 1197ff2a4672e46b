"""SubjectWriter → Subject round trip, our additions, and the writer's refusals."""

import json
import os

import numpy as np
import pytest

from ua3dtalk_jax.data import Subject, SubjectWriter
from ua3dtalk_jax.data.cameras import euler_to_rotation

H, W, FPS, FOCAL = 24, 32, 30.0, 40.0
CAM_TOL = 1e-5
JPEG_TOL = 12  # quality-95 JPEG of ±20 noise, 4:2:0 chroma: mean absolute pixel error
JPEG_MEAN_TOL = 2  # per-channel mean (DC) survives JPEG; a channel swap would be off by ~100


def _viewmat(i):
    v = np.eye(4)
    v[:3, :3] = euler_to_rotation([0.05 * i, -0.03 * i, 0.02])
    v[:3, 3] = [0.01 * i, -0.02, 1.2]
    return v


def _masks(i):
    rr, cc = np.mgrid[:H, :W]
    face = ((rr - 10) / 7.0) ** 2 + ((cc - 16) / 7.0) ** 2 <= 1
    mouth = (rr >= 13) & (rr < 14 + i % 3) & (abs(cc - 16) < 3)
    teeth = mouth & (rr == 13) & (abs(cc - 16) < 2)
    return {
        "face": face & ~mouth,
        "mouth": mouth,
        "teeth": teeth,
        "hair": rr < 2,
        "neck": (rr >= 18) & (rr < 21) & (abs(cc - 16) < 4),
        "torso": rr >= 21,
    }


def _write(root, n=11, *, image_ext=".png", audio_s=None, lms=True, **kw):
    rng = np.random.default_rng(0)
    w = SubjectWriter(str(root), fps=FPS, height=H, width=W, focal=FOCAL, image_ext=image_ext)
    images = []
    for i in range(n):
        noise = rng.integers(-20, 21, (H, W, 3))
        img = np.clip(np.array([200, 100, 30]) + noise, 0, 255).astype(np.uint8)
        images.append(img)
        lm68 = np.stack([np.linspace(5, 27, 68), 10 + np.sin(np.arange(68) + i) * 3], 1)
        w.add_frame(
            img,
            viewmat=_viewmat(i),
            masks=_masks(i),
            landmarks68=lm68 if lms else None,
            landmarks=np.full((5, 2), i, np.float32),
            aus={"AU45_r": 0.5 * i, " AU01_r": 1.0, "AU25": 0.2},
            emotion=None if i == 0 else "happy",
            intensity=None if i == 0 else 1 + i % 3,
            exp=np.arange(8, dtype=np.float32) + i,
        )
    w.set_background(np.full((H, W, 3), 90, np.uint8))
    t = np.arange(int((n / FPS if audio_s is None else audio_s) * 16000)) / 16000
    w.set_audio(np.stack([np.sin(2 * np.pi * 300 * t)] * 2, 1) * 0.2, 16000)  # stereo
    w.add_metadata(note="test", n=n)
    w.add_array("basis", np.eye(3))
    w.finish(**kw)
    return images


def test_round_trip(tmp_path):
    images = _write(tmp_path)
    s = Subject.open(str(tmp_path))
    assert len(s) == 11 and s.fps == FPS and s.size == (H, W)
    np.testing.assert_array_equal(s.split("train"), np.arange(10))
    np.testing.assert_array_equal(s.split("val"), [10])
    assert s.audio_source == "aud.wav" and s.audio_dim == 32 and s.exp_dim == 8
    for i in (0, 4, 10):
        fr = s.frame(i)
        np.testing.assert_array_equal(fr["image"], images[i])
        np.testing.assert_allclose(fr["viewmat"], _viewmat(i), atol=CAM_TOL)
        m = _masks(i)
        np.testing.assert_array_equal(fr["face_mask"], m["face"] & ~m["teeth"])
        np.testing.assert_array_equal(fr["mouth_mask"], m["mouth"] | m["teeth"])
        np.testing.assert_array_equal(fr["teeth_mask"], m["teeth"])
        np.testing.assert_array_equal(fr["hair_mask"], m["hair"])
        np.testing.assert_array_equal(fr["neck_mask"], m["neck"])
        np.testing.assert_array_equal(fr["torso_mask"], m["torso"])
        body = m["neck"] | m["torso"]
        np.testing.assert_array_equal(fr["background"][body], images[i][body])
        assert (fr["background"][~body] == 90).all()
        np.testing.assert_allclose(fr["blink"], min(0.5 * i, 2) / 2, atol=1e-6)
        assert fr["au_exp"][0] == 1.0 and fr["au25"] == pytest.approx(0.2)
        assert fr["emotion"] == (-1 if i == 0 else 5)
        assert fr["intensity"] == (0 if i == 0 else 1 + i % 3)
        np.testing.assert_array_equal(fr["exp"], np.arange(8) + i)
        np.testing.assert_array_equal(fr["dense_landmarks"], np.full((5, 2), i))
        assert fr["aud"].shape == (8, 16, 32)
    info = json.loads((tmp_path / "subject.json").read_text())
    assert info["metadata"] == {"note": "test", "n": 11} and info["arrays"] == ["basis"]
    np.testing.assert_array_equal(np.load(tmp_path / "basis.npy"), np.eye(3))
    assert not (tmp_path / ".ua3d_incomplete").exists()
    assert not list(tmp_path.glob("*.part"))


def test_tg_files_follow_layout(tmp_path):
    images = _write(tmp_path, image_ext=".jpg", val_start=7)
    doc = json.loads((tmp_path / "transforms_val.json").read_text())
    assert doc["focal_len"] == FOCAL and (doc["cx"], doc["cy"]) == (W / 2, H / 2)
    assert [f["img_id"] for f in doc["frames"]] == [7, 8, 9, 10]
    header = (tmp_path / "au.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "frame" and " AU45_r" in header and " AU25_r" in header
    for sub in ("ori_imgs/3.jpg", "ori_imgs/3.lms", "gt_imgs/3.jpg", "parsing/3.png"):
        assert (tmp_path / sub).exists(), sub
    assert (tmp_path / "torso_imgs/3.png").exists() and (tmp_path / "teeth_mask/3.npy").exists()
    s = Subject.open(str(tmp_path))
    np.testing.assert_array_equal(s.split("val"), [7, 8, 9, 10])
    err = s.frame(2)["image"].astype(float) - images[2]
    assert np.abs(err).mean() <= JPEG_TOL and np.abs(err.mean((0, 1))).max() <= JPEG_MEAN_TOL
    # The camera convention on disk is the layout's camera-to-world (OpenGL axes).
    train = json.loads((tmp_path / "transforms_train.json").read_text())
    c2w = np.asarray(train["frames"][2]["transform_matrix"])
    np.testing.assert_allclose(
        np.linalg.inv(c2w @ np.diag([1, -1, -1, 1])), _viewmat(2), atol=CAM_TOL
    )


def test_mouth_boxes_without_landmarks(tmp_path):
    _write(tmp_path, lms=False)
    s = Subject.open(str(tmp_path))
    fr = s.frame(2)
    rmin, rmax, cmin, cmax = fr["lips_rect"]
    rows, cols = np.nonzero(fr["mouth_mask"])
    assert rmin <= rows.min() and rows.max() <= rmax and cmin <= cols.min() and cols.max() <= cmax
    assert fr["mouth_open"] == rows.max() - rows.min()
    assert (fr["landmarks"] == 0).all()


def test_writer_refusals(tmp_path):
    w = SubjectWriter(str(tmp_path / "a"), fps=25, height=H, width=W, focal=FOCAL)
    img = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(ValueError, match="unknown emotion label 'joy'"):
        w.add_frame(img, viewmat=np.eye(4), masks=_masks(0), emotion="joy")
    with pytest.raises(ValueError, match="intensity must be 1-3"):
        w.add_frame(img, viewmat=np.eye(4), masks=_masks(0), emotion="sad", intensity=4)
    with pytest.raises(ValueError, match="exactly one of masks= or parsing="):
        w.add_frame(img, viewmat=np.eye(4))
    with pytest.raises(ValueError, match=r"must be \(24, 32, 3\) uint8"):
        w.add_frame(img[:, :-1], viewmat=np.eye(4), masks=_masks(0))
    with pytest.raises(FileExistsError, match="not empty"):
        SubjectWriter(str(tmp_path / "a"), fps=25, height=H, width=W, focal=FOCAL)


def test_unfinished_dir_is_refused(tmp_path):
    w = SubjectWriter(str(tmp_path), fps=25, height=H, width=W, focal=FOCAL)
    w.add_frame(np.zeros((H, W, 3), np.uint8), viewmat=np.eye(4), masks=_masks(0))
    with pytest.raises(ValueError, match="writer did not finish"):
        Subject.open(str(tmp_path))


def test_partial_per_frame_values_rejected(tmp_path):
    w = SubjectWriter(str(tmp_path), fps=25, height=H, width=W, focal=FOCAL)
    w.add_frame(np.zeros((H, W, 3), np.uint8), viewmat=np.eye(4), masks=_masks(0), exp=[1.0])
    w.add_frame(np.zeros((H, W, 3), np.uint8), viewmat=np.eye(4), masks=_masks(1))
    w.set_background(np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match="exp_coeffs.npy given for some frames but not frame 1"):
        w.finish()


def test_audio_length_mismatch(tmp_path):
    with pytest.raises(ValueError, match=r"aud\.wav: audio lasts 2\.00 s but 11 frames"):
        _write(tmp_path / "long", audio_s=2.0)
    with pytest.warns(UserWarning, match=r"aud\.wav: audio and video differ by -0\.1"):
        _write(tmp_path / "short", audio_s=11 / FPS - 0.1)
    with pytest.warns(UserWarning, match="audio padded"):
        assert Subject.open(str(tmp_path / "short")).audio.shape == (11, 16, 32)
    assert os.path.exists(tmp_path / "short" / "aud_mel.npy")
