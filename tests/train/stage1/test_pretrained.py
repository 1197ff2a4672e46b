"""User-provided weights in stage-1 training: a Wav2Lip SyncNet (`syncnet.pretrained`, frozen, its
mel offset used wherever it scores faces). The files are small random ones in the original's
layout, written without torch (tests/data/torch_writer.py). wav2vec 2.0 (`emotion.wav2vec_weights`):
tests/train/stage1/test_emotion_wav2vec.py."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.data.torch_writer import write_torch_file
from tests.models.prior.test_weights import _checkpoint, _state_dict
from ua3dtalk_jax.configs.io import stage1_from_dict
from ua3dtalk_jax.configs.stage1 import stage1_config
from ua3dtalk_jax.head import prior as head_prior
from ua3dtalk_jax.models.prior.weights import WAV2LIP_MEL_OFFSET, wav2lip_syncnet
from ua3dtalk_jax.train.stage1 import prior
from ua3dtalk_jax.train.stage1.loop import init_state

EXP_DIM = 8
N_FRAMES = 12
SCORE_ATOL = 1e-6  # the same module and params run twice


@pytest.fixture(scope="module")
def syncnet_file(tmp_path_factory):
    """A Wav2Lip colour-SyncNet checkpoint (legacy torch format) at small widths."""
    path = str(tmp_path_factory.mktemp("w") / "lipsync_expert.pth")
    write_torch_file(path, _checkpoint(_state_dict(np.random.default_rng(0))), legacy=True)
    return path


def tiny_cfg(**syncnet):
    """The tiny preset (tiny lip expert) at Wav2Lip's 96² crops, `syncnet` fields overridden."""
    cfg = stage1_config("tiny").copy_and_resolve_references()
    cfg.data.face_size = prior.WAV2LIP_FACE
    cfg.syncnet.update(syncnet)
    return cfg


def test_pretrained_syncnet_refuses_other_crops(syncnet_file):
    cfg = stage1_config("tiny").copy_and_resolve_references()
    cfg.syncnet.pretrained = syncnet_file
    with pytest.raises(ValueError, match=r"lipsync_expert\.pth.*stage1\.data\.face_size=32"):
        prior.pretrained_syncnet(cfg)
    plain = stage1_config("tiny")
    assert prior.pretrained_syncnet(plain) == (plain, None)  # empty: train our own


def test_pretrained_syncnet_config_builds_the_loaded_module(syncnet_file):
    cfg = tiny_cfg(pretrained=syncnet_file)
    cfg2, params = prior.pretrained_syncnet(cfg)
    assert cfg.syncnet.mel_offset == 0 and cfg.syncnet.norm == "group"  # the input is untouched
    assert cfg2.syncnet.mel_offset == WAV2LIP_MEL_OFFSET == 1
    assert cfg2.syncnet.steps == 0 and cfg2.syncnet.nce_weight == 0.0
    ref, ref_params = wav2lip_syncnet(syncnet_file)
    # the checkpoint stores cfg2 as JSON; load_stage1 rebuilds the modules from it (`stage1_from_dict`)
    saved = stage1_from_dict(json.loads(json.dumps(cfg2.to_dict())))
    for c in (cfg2, saved):
        models = head_prior.build_models(c, EXP_DIM)
        net = models["syncnet"]
        assert (net.face_specs, net.audio_specs, net.norm, net.calibrated, net.centre) == (
            ref.face_specs,
            ref.audio_specs,
            "none",
            False,
            False,
        )
        like = jax.eval_shape(
            lambda k: head_prior.init_params(models, c, k, EXP_DIM),  # noqa: B023
            jax.random.PRNGKey(0),
        )
        assert jax.tree.map(np.shape, like["syncnet"]) == jax.tree.map(np.shape, params)
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    mel, faces = jax.random.normal(k1, (3, 80, 16)), jax.random.uniform(k2, (3, 48, 96, 15))
    sim, _ = net.apply({"params": params}, mel, faces)
    sim_ref, _ = ref.apply({"params": ref_params}, mel, faces)
    np.testing.assert_allclose(sim, sim_ref, atol=SCORE_ATOL)


def test_lip_step_with_the_pretrained_syncnet_runs(syncnet_file):
    cfg, sync_params = prior.pretrained_syncnet(tiny_cfg(pretrained=syncnet_file))
    models = head_prior.build_models(cfg, EXP_DIM)
    s = cfg.data.face_size
    rng = np.random.default_rng(2)
    data = {
        "crops": jnp.asarray(rng.integers(0, 256, (N_FRAMES, s, s, 3), np.uint8)),
        "mel": jnp.asarray(rng.normal(0, 1, (N_FRAMES, 80, 16)), jnp.float32),
        "syncnet": sync_params,
    }
    lp = models["lip_expert"].init(jax.random.PRNGKey(3), jnp.zeros((1, s, s, 6)), data["mel"][:1])
    step, tx = prior.make_lip_step(cfg, models["lip_expert"], models["syncnet"], N_FRAMES)
    _, m = step(init_state(lp["params"], tx), data, jax.random.PRNGKey(4))
    assert all(np.isfinite(float(v)) for v in m.values()), m


def test_sync_mel_reads_the_offset_chunk_clamped():
    mel = jnp.arange(10.0)[:, None, None] * jnp.ones((10, 80, 16))
    got = prior.sync_mel(mel, jnp.array([0, 3, 8, 9]), 1)[:, 0, 0]
    np.testing.assert_array_equal(got, [1, 4, 9, 9])
    np.testing.assert_array_equal(prior.sync_mel(mel, jnp.array([0, 9]), 0)[:, 0, 0], [0, 9])


class MarkerSync:
    """A stand-in SyncNet: `sim` is the mel window's marker (its first entry), faces ignored, or,
    with `faces=True`, 1 where the mel marker is the first face's marker + 1 (Wav2Lip's pairing).
    Its "embeddings" are the markers; `method` as SyncNet's (embed_audio, embed_face, score)."""

    def __init__(self, faces=False):
        self.faces = faces

    def apply(self, _variables, *args, method="__call__"):
        if method == "embed_audio":
            return args[0][:, 0, :1]  # (B, 1): the mel marker
        if method == "embed_face":
            return jnp.round(args[0][:, 0, 0, :1] * 255.0)  # frame 0's red channel
        if method == "__call__":
            args = (self.apply(None, args[0], method="embed_audio"),) + (
                self.apply(None, args[1], method="embed_face"),
            )
        a, f = args
        if not self.faces:
            return a[:, 0], {}
        return (jnp.round(a[:, 0]) == f[:, 0] + 1).astype(jnp.float32), {}


@pytest.mark.parametrize("offset", [0, 1])
def test_lip_step_sync_loss_reads_the_offset_chunk(offset):
    """With n_train = sync_frames the only window starts at frame 0; the sync term is the BCE of
    the stand-in's score, i.e. −log(marker of the chunk at frame 0 + offset)."""
    cfg = stage1_config("tiny").copy_and_resolve_references()
    cfg.syncnet.mel_offset = offset
    s, t = cfg.data.face_size, cfg.data.sync_frames
    markers = np.array([0.2, 0.8, 0.5, 0.5, 0.5, 0.5], np.float32)
    data = {
        "crops": jnp.zeros((len(markers), s, s, 3), jnp.uint8),
        "mel": jnp.asarray(markers[:, None, None] * np.ones((1, 80, 16), np.float32)),
        "syncnet": {},
    }
    lip = head_prior.build_models(cfg, EXP_DIM)["lip_expert"]
    lp = lip.init(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 6)), data["mel"][:1])
    step, tx = prior.make_lip_step(cfg, lip, MarkerSync(), t)
    _, m = step(init_state(lp["params"], tx), data, jax.random.PRNGKey(1))
    assert float(m["sync"]) == pytest.approx(-np.log(markers[offset]), rel=1e-5)


def test_sync_auc_pairs_faces_with_the_offset_chunk():
    """Faces of frame i carry marker i, mel chunk i marker i: a net trained on Wav2Lip's pairing
    (chunk s + 1 with faces from s) separates perfectly only when scored with offset 1."""
    n, s, t = 30, 8, 5
    crops = jnp.broadcast_to(jnp.arange(n, dtype=jnp.uint8)[:, None, None, None], (n, s, s, 3))
    mel = jnp.arange(n, dtype=jnp.float32)[:, None, None] * jnp.ones((n, 80, 16))
    data = {"crops": crops, "mel": mel}
    auc = {o: prior.sync_auc(MarkerSync(faces=True), {}, data, 0, n, t, 5, o) for o in (0, 1)}
    assert auc[1] == 1.0 and auc[0] == 0.5, auc
