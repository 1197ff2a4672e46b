"""Subject loader on a TalkingGaussian-layout directory written by tests/data/tg_layout.py."""

import json
import pickle
import zipfile

import numpy as np
import pytest

from tests.data import tg_layout
from tests.data.torch_writer import write_torch_file
from ua3dtalk_jax.data import FRAME_KEYS, Subject
from ua3dtalk_jax.data.cameras import c2w_gl_from_viewmat, euler_to_rotation, viewmat_from_c2w_gl

N = 12
CAM_TOL = 1e-5  # json stores float64, the viewmat is float32
JPEG_TOL = 2  # cv2 and PIL decode the same JPEG with libjpeg variants: ±1-2 levels


@pytest.fixture(scope="module")
def tg(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tg"))
    truth = tg_layout.write_tg_subject(root, N)
    return Subject.open(root), truth


def test_basic_properties(tg):
    subject, _ = tg
    assert len(subject) == N
    assert subject.size == (tg_layout.H, tg_layout.W)
    assert subject.fps == 25.0
    assert subject.audio_source == "aud_ds.npy" and subject.audio_dim == 29
    np.testing.assert_array_equal(subject.split("train"), np.arange(10))  # int(12·10/11) = 10
    np.testing.assert_array_equal(subject.split("val"), [10, 11])
    k = subject.frame(0)["K"]
    np.testing.assert_allclose(k, [[55, 0, 24], [0, 55, 20], [0, 0, 1]])


def test_frame_keys_shapes_dtypes(tg):
    subject, _ = tg
    fr = subject.frame(3)
    assert set(FRAME_KEYS) <= set(fr)
    h, w = subject.size
    expect = {
        "image": ((h, w, 3), np.uint8),
        "viewmat": ((4, 4), np.float32),
        "aud": ((8, 16, 29), np.float32),
        "au_exp": ((6,), np.float32),
        "face_mask": ((h, w), np.bool_),
        "background": ((h, w, 3), np.uint8),
        "lips_rect": ((4,), np.int32),
        "exp": ((tg_layout.BFM_EXP,), np.float32),  # track_params.pt's BFM coefficients
        "landmarks": ((68, 2), np.float32),
        "emotion": ((), np.int32),
        "blink": ((), np.float32),
    }
    for key, (shape, dtype) in expect.items():
        assert np.shape(fr[key]) == shape and np.asarray(fr[key]).dtype == dtype, key
    assert fr["emotion"] == -1 and fr["intensity"] == 0 and fr["index"] == 3


@pytest.mark.parametrize("legacy", [False, True])
def test_exp_from_track_params_by_img_id(tmp_path, legacy):
    """Without exp_coeffs.npy, f_gt-exp is track_params.pt's `exp` row img_id (not the position):
    the val json lists its frames in reverse here. torch < 1.6 files read the same."""
    truth = tg_layout.write_tg_subject(str(tmp_path), N, wav=False)
    if legacy:
        write_torch_file(str(tmp_path / "track_params.pt"), {"exp": truth["exp"]}, legacy=True)
    val = tmp_path / "transforms_val.json"
    doc = json.loads(val.read_text())
    doc["frames"] = doc["frames"][::-1]
    val.write_text(json.dumps(doc))
    subject = Subject.open(str(tmp_path))
    assert subject.exp_source == "track_params.pt" and subject.exp_dim == tg_layout.BFM_EXP
    for i in range(N):
        exp = subject.frame(i, keys=("exp",))["exp"]
        assert exp.dtype == np.float32
        np.testing.assert_array_equal(exp, truth["exp"][subject.img_ids[i]])
    assert subject.img_ids[-1] == N - 2  # the reversal took effect

    np.save(tmp_path / "exp_coeffs.npy", np.ones((N, 16), np.float32))  # ours takes precedence
    subject = Subject.open(str(tmp_path))
    assert subject.exp_source == "exp_coeffs.npy" and subject.frame(0)["exp"].shape == (16,)


def test_no_expression_coefficients_without_either_file(tmp_path):
    tg_layout.write_tg_subject(str(tmp_path), N, wav=False, track=False)
    subject = Subject.open(str(tmp_path))
    assert subject.exp_source is None and subject.exp_dim == 0
    assert subject.frame(0, keys=("exp",))["exp"].shape == (0,)


def test_camera_conversion_matches_head_pose(tg):
    """viewmat maps world → OpenCV camera: flip(y, z) · [R | t] with ER-NeRF's R, t."""
    subject, truth = tg
    for i in (0, 5, 11):
        rot = tg_layout.euler2rot(truth["euler"][i])
        w2c_gl = np.eye(4)
        w2c_gl[:3, :3], w2c_gl[:3, 3] = rot, truth["trans"][i]
        expected = np.diag([1.0, -1, -1, 1]) @ w2c_gl
        np.testing.assert_allclose(subject.viewmat(i), expected, atol=CAM_TOL)
        np.testing.assert_allclose(euler_to_rotation(truth["euler"][i]), rot, atol=1e-12)
        head_in_cam = subject.viewmat(i) @ [0, 0, 0, 1]
        assert head_in_cam[2] > 0.5  # the head at the origin is in front of the camera


def test_camera_round_trip():
    rng = np.random.default_rng(1)
    rot = euler_to_rotation(rng.uniform(-np.pi, np.pi, (5, 3)))
    c2w = np.tile(np.eye(4), (5, 1, 1))
    c2w[:, :3, :3], c2w[:, :3, 3] = rot, rng.normal(size=(5, 3))
    np.testing.assert_allclose(c2w_gl_from_viewmat(viewmat_from_c2w_gl(c2w)), c2w, atol=CAM_TOL)
    with pytest.raises(ValueError, match="rigid"):
        viewmat_from_c2w_gl(np.diag([2.0, 1, 1, 1]))


def test_aus_blink(tg):
    subject, truth = tg
    au45 = truth["aus"]["AU45_r"]
    for i in range(N):
        fr = subject.frame(i, keys=["au_exp", "blink", "au25"])
        np.testing.assert_allclose(fr["blink"], np.clip(au45[i], 0, 2) / 2, atol=1e-6)
        want = [truth["aus"][k][i] for k in ("AU01_r", "AU04_r", "AU05_r", "AU06_r", "AU07_r")]
        np.testing.assert_allclose(fr["au_exp"], [*want, np.clip(au45[i], 0, 2)], atol=1e-6)
        assert set(fr) == {"au_exp", "blink", "au25"}
    assert subject.frame(0)["blink"] == 1.0 and subject.frame(1)["blink"] == 0.0
    au25 = truth["aus"]["AU25_r"]
    np.testing.assert_allclose(subject.au25_stats[3], np.percentile(au25, 95), atol=1e-6)


def test_parsing_masks(tg):
    subject, truth = tg
    for i in (0, 1, 2):
        fr = subject.frame(i)
        p, teeth = truth["parsing"][i], truth["teeth"][i]
        blue = (p == (0, 0, 255)).all(-1)
        grey = (p == (100, 100, 100)).all(-1)
        black = (p == 0).all(-1)
        np.testing.assert_array_equal(fr["face_mask"], blue ^ teeth)
        np.testing.assert_array_equal(fr["mouth_mask"], grey | teeth)
        np.testing.assert_array_equal(fr["hair_mask"], black)
        np.testing.assert_array_equal(fr["head_mask"], (blue ^ teeth) | black)
        np.testing.assert_array_equal(fr["neck_mask"], (p == (0, 255, 0)).all(-1))
        np.testing.assert_array_equal(fr["torso_mask"], (p == (255, 0, 0)).all(-1))
        np.testing.assert_array_equal(fr["teeth_mask"], teeth)
        assert fr["mouth_mask"].sum() > 0 and fr["teeth_mask"].sum() == 3


def test_background_composite_and_image(tg):
    subject, truth = tg
    fr = subject.frame(4)
    torso = truth["torso"][4].astype(np.float64)
    a = torso[..., 3:] / 255.0
    want = (torso[..., :3] * a + truth["bc"] * (1 - a)).astype(np.uint8)
    np.testing.assert_array_equal(fr["background"], want)
    diff = np.abs(fr["image"].astype(int) - truth["gt"][4].astype(int))
    assert diff.max() <= JPEG_TOL


def test_lips_rect_mouth_bounds(tg):
    subject, truth = tg
    lms = np.stack(truth["lms"])
    opening = [int(m[60:68, 1].max()) - int(m[60:68, 1].min()) for m in lms]
    for i in (0, 7):
        lips = lms[i, 48:60]
        xmin, xmax = int(lips[:, 1].min()), int(lips[:, 1].max())  # TG's "x" is the row
        ymin, ymax = int(lips[:, 0].min()), int(lips[:, 0].max())
        cx, cy, half = (xmin + xmax) // 2, (ymin + ymax) // 2, max(xmax - xmin, ymax - ymin) // 2
        fr = subject.frame(i)
        np.testing.assert_array_equal(fr["lips_rect"], [cx - half, cx + half, cy - half, cy + half])
        assert fr["mouth_open"] == opening[i]
        np.testing.assert_allclose(fr["landmarks"], lms[i], atol=1e-5)
    assert subject.mouth_bounds == (min(opening[:10]), max(opening[:10]))


def test_audio_context_window(tg):
    subject, truth = tg
    ds = truth["aud_ds"]
    first = subject.frame(0, keys=["aud"])["aud"]
    np.testing.assert_array_equal(first[:4], 0)  # frames -4..-1 are zero padding
    np.testing.assert_array_equal(first[4:], ds[0:4])
    last = subject.frame(N - 1, keys=["aud"])["aud"]
    np.testing.assert_array_equal(last[:5], ds[N - 5 :])
    np.testing.assert_array_equal(last[5:], 0)
    mid = subject.frame(6, keys=["aud"])["aud"]
    np.testing.assert_array_equal(mid, ds[2:10])


def test_mel_fallback_without_precomputed_features(tmp_path):
    tg_layout.write_tg_subject(str(tmp_path), N, aud_ds=False)
    subject = Subject.open(str(tmp_path))
    assert subject.audio_source == "aud.wav" and subject.audio_dim == 32
    assert subject.frame(2, keys=["aud"])["aud"].shape == (8, 16, 32)
    assert (tmp_path / "aud_mel.npy").exists() and (tmp_path / "aud_mel.json").exists()
    again = Subject.open(str(tmp_path))  # served from the cache
    np.testing.assert_array_equal(again.audio, subject.audio)
    assert subject.wav().dtype == np.float32 and abs(len(subject.wav()) - N / 25 * 16000) < 2
    assert subject.mel_chunks().shape == (N, 16, 80)


def test_audio_feature_kinds_auto_order_and_explicit_choice(tmp_path):
    """auto: aud_ds.npy, else aud_hu.npy, else aud_eo.npy, else mel; each kind by name."""
    truth = tg_layout.write_tg_subject(str(tmp_path), N, aud_hu=True, aud_eo=True)
    auto = Subject.open(str(tmp_path))
    assert (auto.audio_kind, auto.audio_source) == ("deepspeech", "aud_ds.npy")
    shapes = {"deepspeech": (16, 29), "hubert": (2, 1024), "esperanto": (16, 44), "mel": (16, 32)}
    for kind, shape in shapes.items():
        s = Subject.open(str(tmp_path), audio_feature=kind)
        assert s.audio_kind == kind and (s.audio_window, s.audio_dim) == shape
        assert s.frame(6, keys=["aud"])["aud"].shape == (8, *shape)
    hu = Subject.open(str(tmp_path), audio_feature="aud_hu.npy")  # a file name works too
    np.testing.assert_array_equal(hu.audio, truth["aud_hu"])
    np.testing.assert_array_equal(hu.frame(6, keys=["aud"])["aud"], truth["aud_hu"][2:10])
    (tmp_path / "aud_ds.npy").unlink()
    assert Subject.open(str(tmp_path)).audio_kind == "hubert"
    (tmp_path / "aud_hu.npy").unlink()
    assert Subject.open(str(tmp_path)).audio_kind == "esperanto"
    (tmp_path / "aud_eo.npy").unlink()
    assert Subject.open(str(tmp_path)).audio_kind == "mel"
    with pytest.raises(FileNotFoundError, match=r"aud_hu\.npy: missing; data.audio_feature=hubert"):
        Subject.open(str(tmp_path), audio_feature="hubert")
    with pytest.raises(ValueError, match="data.audio_feature='ds'"):
        Subject.open(str(tmp_path), audio_feature="ds")


def test_ua_extras_read_from_torch_files_in_json_order(tmp_path):
    tg_layout.write_tg_subject(str(tmp_path), N, wav=False)
    want = tg_layout.write_ua_extras(str(tmp_path), N)
    extras = Subject.open(str(tmp_path)).ua_extras()
    assert set(extras) == {"f_exp", "f_tone", "f_emo"}
    for name, rows in want.items():
        assert extras[name].dtype == np.float32
        np.testing.assert_allclose(extras[name], rows, rtol=1e-6)

    subject = Subject.open(str(tmp_path))
    (tmp_path / "mser_emotion_val.pth").unlink()
    with pytest.raises(FileNotFoundError, match=r"mser_emotion_val\.pth: missing"):
        subject.ua_extras()
    write_torch_file(str(tmp_path / "mser_emotion_val.pth"), [want["f_emo"][0]])
    with pytest.raises(ValueError, match=r"mser_emotion_val\.pth: 1 entries .* 2 frames"):
        subject.ua_extras()
    write_torch_file(str(tmp_path / "mser_emotion_val.pth"), list(want["f_exp"][:2]))
    with pytest.raises(ValueError, match=r"mser_emotion_val\.pth: entry 0 has 64 values"):
        subject.ua_extras()
    with zipfile.ZipFile(tmp_path / "mser_emotion_val.pth", "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(np.float64, protocol=2))  # a foreign global
    with pytest.raises(ValueError, match=r"mser_emotion_val\.pth: unreadable .*\(refusing"):
        subject.ua_extras()
