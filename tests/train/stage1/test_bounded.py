"""Stage 1 in bounded memory: each streamed or chunked path against its whole-array twin.

`Stage1Data.from_subject` reads frames one at a time (`FrameImages`) instead of stacking them all;
`expression_features` encodes each chunk of lip-wav images as it is generated; `tone_features`,
`sync_auc` and the regressor's validation run in chunks. Every result is the same bitwise: the
chunks hold the same rows the whole arrays were cut into, and no score depends on its neighbours.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.configs import get_config
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.data.synthetic.generate import ensure_synthetic
from ua3dtalk_jax.head import prior as head_prior
from ua3dtalk_jax.head.crops import face_crops
from ua3dtalk_jax.train.stage1 import prior
from ua3dtalk_jax.train.stage1.data import FrameImages, Stage1Data

EXP = 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = get_config("tiny").stage1
    models = head_prior.build_models(cfg, EXP)
    params = head_prior.init_params(models, cfg, jax.random.PRNGKey(0), EXP)
    return cfg, models, params


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return Subject.open(ensure_synthetic(str(tmp_path_factory.mktemp("s")), "tiny", "tiny"))


def test_frame_images_index_like_the_stacked_frames(subject):
    n = len(subject)
    frames = FrameImages(subject, n)
    whole = np.stack([subject.frame(i, keys=("image",))["image"] for i in range(n)])
    assert frames.shape == whole.shape and len(frames) == n
    np.testing.assert_array_equal(frames[3], whole[3])
    np.testing.assert_array_equal(frames[-1], whole[-1])
    np.testing.assert_array_equal(frames[4:9], whole[4:9])
    np.testing.assert_array_equal(frames[np.array([7, 2, 7])], whole[[7, 2, 7]])
    lms = np.stack([subject.frame(i, keys=("landmarks",))["landmarks"] for i in range(n)])
    cfg = get_config("tiny").stage1.data
    np.testing.assert_array_equal(face_crops(frames, lms, cfg), face_crops(whole, lms, cfg))
    data = Stage1Data.from_subject(subject, get_config("tiny").stage1)
    np.testing.assert_array_equal(np.asarray(data.crops), face_crops(whole, lms, cfg))


def test_expression_features_streamed_equal_the_whole_array(tiny):
    cfg, models, params = tiny
    s = cfg.data.face_size
    refs = jax.random.uniform(jax.random.PRNGKey(1), (3, s, s, 3))
    mel = jax.random.normal(jax.random.PRNGKey(2), (head_prior.GEN_CHUNK + 9, 80, 16))
    got = head_prior.expression_features(models, params, refs, mel, images=True)
    lw = np.asarray(head_prior.lipwav_images(models["lip_expert"], params["lip_expert"], refs, mel))
    np.testing.assert_array_equal(np.asarray(got["lipwav"]), lw)
    n = len(lw)
    idx = [
        np.minimum(np.arange(a, a + head_prior.GEN_CHUNK), n - 1)
        for a in range(0, n, head_prior.GEN_CHUNK)
    ]
    want = np.concatenate(
        [
            head_prior._encode(models["expr_prior"], params["expr_prior"], jnp.asarray(lw[i]))
            for i in idx
        ]
    )[:n]
    np.testing.assert_array_equal(np.asarray(got["f_exp"]), want)
    plain = head_prior.expression_features(models, params, refs, mel)
    assert "lipwav" not in plain
    np.testing.assert_array_equal(np.asarray(plain["f_exp"]), want)


def test_chunked_tone_and_auc_equal_one_batch(tiny, monkeypatch):
    cfg, models, params = tiny
    n = 70
    mel = jax.random.normal(jax.random.PRNGKey(3), (n, 80, 16))
    f_exp = jnp.zeros((n, 64))
    s = cfg.data.face_size
    crops = jax.random.randint(jax.random.PRNGKey(4), (n, s, s, 3), 0, 256).astype(jnp.uint8)
    t = cfg.data.sync_frames

    def run():
        tone = head_prior.tone_features(models, params, mel, f_exp, cfg.stylenet.seq_len)["f_tone"]
        auc = prior.sync_auc(
            models["syncnet"], params["syncnet"], {"crops": crops, "mel": mel}, 0, n, t, 5
        )
        return np.asarray(tone), float(auc)

    whole = run()
    monkeypatch.setattr(head_prior, "WINDOW_CHUNK", 3)
    monkeypatch.setattr(prior, "AUC_CHUNK", 7)
    chunked = run()
    np.testing.assert_array_equal(chunked[0], whole[0])
    assert chunked[1] == whole[1]
