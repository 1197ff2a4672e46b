"""Prior Extraction with Deep3DFaceRecon weights (train/stage1/face.py): the paste of lip-expert
crops into the aligned reference frames, the R² of f_exp, and the whole path on the tiny synthetic
subject with a small random-weight checkpoint (written as a torch file by the test writer)."""

import os
import shutil

import jax
import numpy as np
import pytest

from tests.configs.legacy import tiny_resolved, write_version0
from tests.data.torch_writer import write_torch_file
from tests.fixtures.face_recon.make_fixtures import SMALL, seeded_state_dict
from ua3dtalk_jax.configs.migrate import migrate
from ua3dtalk_jax.configs.stage1 import stage1_config
from ua3dtalk_jax.head import face_prior
from ua3dtalk_jax.head import prior as head_prior
from ua3dtalk_jax.head.crops import face_boxes, face_crops
from ua3dtalk_jax.head.workdir import Workdir
from ua3dtalk_jax.models.prior import face_align
from ua3dtalk_jax.models.prior.face_recon import EXP
from ua3dtalk_jax.train.stage1 import face as sf

DOT_TOL_PX = 0.6  # a dot's centroid after crop → paste vs straight alignment (two resamplings)
OUTSIDE_TOL = 1e-6  # outside the pasted lower half the aligned reference is unchanged


def _dot_frame(h, w, dots, sigma=1.5):
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.full((h, w, 3), 40.0)
    for x, y in dots:
        img[..., 1] += 200 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return np.clip(img, 0, 255).round().astype(np.uint8)


def _centroid(img, q, r=5):
    r0, c0 = int(round(q[1])) - r, int(round(q[0])) - r
    win = img[r0 : r0 + 2 * r + 1, c0 : c0 + 2 * r + 1, 1].astype(np.float64)
    win = np.maximum(win - np.median(img[..., 1]), 0)
    yy, xx = np.mgrid[0 : 2 * r + 1, 0 : 2 * r + 1]
    return np.array([(win * xx).sum(), (win * yy).sum()]) / win.sum() + [c0, r0]


def test_pasted_crop_lands_where_the_alignment_puts_the_frame():
    """A dot in the mouth region, cut out by `face_crops` at the lip expert's size and pasted
    back, sits where aligning the frame itself puts it; above the mouth half nothing changes."""
    cfg = stage1_config("paper").data  # 96² crops
    h = w = 160
    ang = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    lms = np.stack([80 + 40 * np.cos(ang), 84 + 50 * np.sin(ang)], 1)[None]  # the face box
    k = 90.0  # px per BFM unit: a frontal face in the box
    five = np.stack([80 + k * face_align.LM3D_STD[:, 0], 80 - k * face_align.LM3D_STD[:, 1]], 1)
    dot = (92.0, 116.0)  # below the box's middle row: in the pasted half
    img = _dot_frame(h, w, [dot])
    crop = face_crops(img[None], lms, cfg)[0]
    boxes = face_boxes(lms, cfg.crop_scale, 1, (h, w))
    plain = _dot_frame(h, w, [])  # the reference: no dot
    refs = sf.paste_refs(plain[None], five[None], boxes, cfg.face_size)
    out = face_prior.paste(crop[None].astype(np.float32) / 255.0, refs, np.array([0]))[0]
    aligned, affine = face_align.align_face(img, five)
    q = face_align.apply_affine(affine, np.array(dot))
    got, want = _centroid((out * 255).round(), q), _centroid(aligned, q)
    np.testing.assert_allclose(got, want, atol=DOT_TOL_PX)
    np.testing.assert_allclose(want, q, atol=DOT_TOL_PX)
    top = int(face_align.apply_affine(affine, [[0.0, boxes[0, 1] - 0.1 * boxes[0, 2]]])[0, 1])
    np.testing.assert_allclose(out[:top], refs["frames"][0, :top] / 255.0, atol=OUTSIDE_TOL)


def test_paste_mask_covers_the_generated_half():
    m = face_prior.paste_mask(96)
    assert m.shape == (96, 96) and (m[48:] == 1).all() and (m[: 48 - 6] == 0).all()
    assert np.all(np.diff(m[:, 0]) >= 0)


def test_exp_r2_scores_a_linear_readout_on_held_out_frames():
    rng = np.random.default_rng(0)
    n, n_train = 2000, 1500  # ~25 train frames per feature: little over-fitting of the readout
    f = rng.standard_normal((n, 64))
    y = f[:, :8] @ rng.standard_normal((8, 5)) + 0.3
    assert sf.exp_r2(f, y, n_train) == pytest.approx(1.0, abs=1e-3)  # the ridge's shrinkage only
    assert abs(sf.exp_r2(rng.standard_normal((n, 64)), y, n_train)) < 0.05  # unrelated
    noisy = y + rng.standard_normal(y.shape) * y.std(0)
    assert 0.42 < sf.exp_r2(f, noisy, n_train) < 0.52  # half the variance is noise
    assert np.isnan(sf.exp_r2(f, y, n))  # no held-out frames
    # invariant to f_exp's offset and per-component scale (lip-wav f_exp: mean 0.6, s.d. 0.01)
    scaled = 0.6 + f * np.geomspace(1e-3, 10, 64)
    assert sf.exp_r2(scaled, noisy, n_train) == pytest.approx(sf.exp_r2(f, noisy, n_train))
    # a component constant over the train frames (floored s.d.: huge held-out values) is left out
    unseen = np.c_[noisy, np.r_[np.zeros(n_train), np.full(n - n_train, 1e6)]]
    assert sf.exp_r2(f, unseen, n_train) == pytest.approx(sf.exp_r2(f, noisy, n_train))


def test_frame_points_prefer_the_mesh_and_fill_missing_frames():
    rng = np.random.default_rng(1)
    mesh = rng.uniform(10, 50, (3, 478, 2))
    lm68 = rng.uniform(10, 50, (3, 68, 2))
    lm68[2] = 0
    p = sf.frame_points(lm68, mesh, (64, 64))
    np.testing.assert_allclose(p[0], face_align.five_points(mesh[0]))
    np.testing.assert_allclose(
        sf.frame_points(lm68, None, (64, 64))[1], face_align.five_points(lm68[1])
    )
    np.testing.assert_allclose(
        sf.frame_points(lm68, None, (64, 64))[2], face_align.missing_points((64, 64))
    )


def test_configs_without_the_prior_section_read_as_the_regressor_path(tmp_path):
    cfg = stage1_config("cpu")
    assert face_prior.weights_path(cfg) == "" and face_prior.load_network(cfg) is None
    old = {"stage1": {k: v for k, v in cfg.to_dict().items() if k != "prior"}}
    assert migrate(old)["stage1"]["prior"] == {"face_recon_weights": ""}
    # a workdir saved before the field resumes; --set names it
    write_version0(str(tmp_path), lambda d: d["stage1"].pop("prior"))
    Workdir(str(tmp_path)).check_config(tiny_resolved())
    other = tiny_resolved(["stage1.prior.face_recon_weights=/w.pth"])
    assert other.stage1.prior.face_recon_weights == "/w.pth"
    with pytest.raises(ValueError, match=r"stage1\.prior\.face_recon_weights"):
        Workdir(str(tmp_path)).check_config(other)
    cfg.prior.face_recon_weights = "/nonexistent/epoch_20.pth"
    with pytest.raises(FileNotFoundError, match="stage1.prior.face_recon_weights"):
        face_prior.load_network(cfg)


@pytest.mark.slow
def test_stage1_with_face_recon_weights_end_to_end(tmp_path_factory):
    """The tiny synthetic subject, a reduced-width random-weight checkpoint: f_gt-exp is the
    network on the aligned real frames, f_exp on the pasted lip-wav frames, the R² is logged, and
    the checkpoint reloads the network and gives the same features for the audio."""
    from ua3dtalk_jax.data import Subject
    from ua3dtalk_jax.data.synthetic.generate import generate_preset
    from ua3dtalk_jax.head.features import compute_features
    from ua3dtalk_jax.train.stage1 import emotion as emo
    from ua3dtalk_jax.train.stage1.data import Stage1Data, reference_indices
    from ua3dtalk_jax.train.stage1.driver import train_stage1

    root = tmp_path_factory.mktemp("face_recon")
    subject = Subject.open(generate_preset(str(root / "subject"), "tiny", seed=0))
    weights = str(root / "epoch_20.pth")
    write_torch_file(weights, {"net_recon": seeded_state_dict(SMALL), "epoch": 20})
    cfg = stage1_config("tiny")
    cfg.prior.face_recon_weights = weights
    # no training steps: every module still runs forward (features, AUC, R², checkpoint), and
    # the test costs the forward compiles only (~1 min of CPU, most of it the emotion encoder)
    for part in ("syncnet", "lip_expert", "stylenet"):
        cfg[part].steps = 0
    cfg.emotion.pretrain_steps = cfg.emotion.finetune_steps = 0
    data = Stage1Data.from_subject(subject, cfg)
    net = face_prior.load_network(cfg)

    # f_gt-exp: the network's exp coefficients of frame i aligned by its mesh points
    i = 7
    fr = subject.frame(i, keys=("image", "dense_landmarks"))
    aligned, _ = face_align.align_face(fr["image"], face_align.five_points(fr["dense_landmarks"]))
    exp_i = face_prior.coefficients(net, aligned[None])[0, EXP]
    mean, std = data.exp_stats
    np.testing.assert_allclose(np.asarray(data.exp[i]) * std + mean, exp_i, rtol=1e-4, atol=1e-5)
    assert data.exp.shape == (len(subject), 64) and data.tracked_exp.shape == (len(subject), 16)
    k = len(reference_indices(data.n_train, cfg.data.n_refs))
    assert data.face_refs["frames"].shape == (k, 224, 224, 3)

    corpus = emo.corpus_from_frames(data, np.arange(data.n_train), with_exp=False)
    lines = []
    model, m = train_stage1(
        data, cfg, str(root / "work"), corpus=corpus, corpus_classes=8, log=lines.append
    )
    assert m["expr_prior"] == {"face_recon": 1.0}  # the regressor is not trained
    assert np.isfinite(m["f_exp"]["r2_val"])
    assert any(
        line.startswith("f_exp: held-out R²") and "Deep3DFaceRecon" in line for line in lines
    )

    # f_exp of frame j: its lip-wav crop pasted into reference j mod K, through the network
    refs = np.asarray(model.refs, np.float32) / 255.0
    feats = head_prior.expression_features(
        model.models, model.params, refs, data.mel, model.face, images=True
    )
    j = 11
    pasted = face_prior.paste(
        np.asarray(feats["lipwav"][j : j + 1]), data.face_refs, np.array([j % k])
    )
    np.testing.assert_allclose(
        feats["f_exp"][j], face_prior.coefficients(net, pasted)[0, EXP], rtol=1e-4, atol=1e-5
    )

    # the checkpoint: aligned references stored, the network reloaded from the config's path
    restored = Workdir(str(root / "work")).load_stage1()
    np.testing.assert_array_equal(restored.face.frames, data.face_refs["frames"])
    a = compute_features(model, subject.wav(), subject.fps, 40)
    b = compute_features(restored, subject.wav(), subject.fps, 40)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    shutil.copytree(root / "work", root / "moved")
    os.remove(weights)
    with pytest.raises(FileNotFoundError, match="face_recon_weights"):
        Workdir(str(root / "moved")).load_stage1()
