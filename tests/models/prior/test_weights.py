"""Pretrained-SyncNet converter: a Wav2Lip checkpoint (torch zip or legacy, read without torch by
`data/torch_file.py`, tested in tests/data/test_torch_file.py), BN folded, BGR-trained first
layer permuted for RGB input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.data.torch_writer import write_torch_file
from ua3dtalk_jax.configs.stage1 import wav2lip_audio_specs, wav2lip_face_specs
from ua3dtalk_jax.models.prior.conv import ConvBlock
from ua3dtalk_jax.models.prior.syncnet import SyncNet
from ua3dtalk_jax.models.prior.weights import (
    BN_EPS,
    bgr_to_rgb_channels,
    load_wav2lip_syncnet,
    wav2lip_syncnet,
)

WIDTHS = (4, 4, 8, 8, 8)  # Wav2Lip's layer list at small widths (the converter is width-agnostic)
FOLD_ATOL = 1e-4
NET_ATOL = 1e-5  # unit embeddings / cosines after 17 folded layers vs the unfolded reference


def _state_dict(rng):
    sd = {}
    for enc, specs, cin in (
        ("face_encoder", wav2lip_face_specs(WIDTHS), 15),
        ("audio_encoder", wav2lip_audio_specs(WIDTHS), 1),
    ):
        for i, (f, kh, kw, *_rest) in enumerate(specs):
            p = f"{enc}.{i}.conv_block."
            sd[p + "0.weight"] = rng.normal(0, 0.2, (f, cin, kh, kw))
            sd[p + "0.bias"] = rng.normal(0, 0.1, f)
            sd[p + "1.weight"] = rng.uniform(0.5, 1.5, f)
            sd[p + "1.bias"] = rng.normal(0, 0.1, f)
            sd[p + "1.running_mean"] = rng.normal(0, 0.1, f)
            sd[p + "1.running_var"] = rng.uniform(0.5, 2.0, f)
            cin = f
    return sd


def _checkpoint(sd):
    """What Wav2Lip's `save_checkpoint` writes: float32 weights under "state_dict", the step."""
    return {"state_dict": {k: v.astype(np.float32) for k, v in sd.items()}, "global_step": 1}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_converter_reads_the_checkpoint_and_folds_batchnorm(tmp_path, legacy):
    sd = _state_dict(np.random.default_rng(0))
    path = str(tmp_path / "lipsync_expert.pth")
    write_torch_file(path, _checkpoint(sd), legacy=legacy)
    params = load_wav2lip_syncnet(path)
    model = SyncNet(wav2lip_face_specs(WIDTHS), wav2lip_audio_specs(WIDTHS), norm="none")
    like = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 80, 16)), jnp.zeros((1, 48, 96, 15)))
    assert jax.tree.map(jnp.shape, like["params"]) == jax.tree.map(jnp.shape, params)
    # first face layer: folded conv + ReLU on RGB frames == ReLU(BN(conv(x))) with the raw torch
    # weights on the same frames in BGR (Wav2Lip read its faces with cv2)
    x_rgb = jax.random.uniform(jax.random.PRNGKey(1), (1, 48, 96, 15))
    x = x_rgb[..., bgr_to_rgb_channels(15)]
    p = "face_encoder.0.conv_block."
    w = jnp.asarray(np.transpose(sd[p + "0.weight"], (2, 3, 1, 0)), jnp.float32)
    conv = (
        jax.lax.conv_general_dilated(
            x, w, (1, 1), ((3, 3), (3, 3)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        + sd[p + "0.bias"]
    )
    bn = (conv - sd[p + "1.running_mean"]) / np.sqrt(sd[p + "1.running_var"] + BN_EPS)
    ref = jax.nn.relu(bn * sd[p + "1.weight"] + sd[p + "1.bias"])
    blk = ConvBlock(WIDTHS[0], (7, 7), (1, 1), (3, 3), norm="none")
    out = blk.apply({"params": params["face_encoder"]["ConvBlock_0"]}, x_rgb)
    np.testing.assert_allclose(out, ref, atol=FOLD_ATOL)
    raw = load_wav2lip_syncnet(path, rgb=False)  # the file's own (BGR) channel order
    np.testing.assert_allclose(
        blk.apply({"params": raw["face_encoder"]["ConvBlock_0"]}, x), ref, atol=FOLD_ATOL
    )
    sim, _ = model.apply({"params": params}, jnp.zeros((2, 80, 16)), jnp.zeros((2, 48, 96, 15)))
    assert sim.shape == (2,)


def test_converter_errors_name_the_file(tmp_path):
    path = str(tmp_path / "other.pth")
    write_torch_file(path, {"state_dict": {"fc.weight": np.ones((2, 2), np.float32)}})
    with pytest.raises(ValueError, match=r"other\.pth: not a Wav2Lip SyncNet state dict"):
        load_wav2lip_syncnet(path)


def test_bgr_to_rgb_channels_reverses_each_frame():
    np.testing.assert_array_equal(bgr_to_rgb_channels(6), [2, 1, 0, 5, 4, 3])
    with pytest.raises(ValueError, match="3 per frame"):
        bgr_to_rgb_channels(7)


def _reference_embedding(sd, enc, specs, x):
    """Wav2Lip's encoder with the raw torch weights: conv → BatchNorm(eval) → (+x) → ReLU."""
    for i, (_f, _kh, _kw, sh, sw, ph, pw, res) in enumerate(specs):
        p = f"{enc}.{i}.conv_block."
        w = jnp.asarray(np.transpose(sd[p + "0.weight"], (2, 3, 1, 0)), jnp.float32)
        y = jax.lax.conv_general_dilated(
            x, w, (sh, sw), ((ph, ph), (pw, pw)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        y = y + sd[p + "0.bias"]
        y = (y - sd[p + "1.running_mean"]) / np.sqrt(sd[p + "1.running_var"] + BN_EPS)
        y = y * sd[p + "1.weight"] + sd[p + "1.bias"]
        x = jax.nn.relu(y + x if res else y)
    e = jnp.mean(x, axis=(1, 2))
    return e / jnp.linalg.norm(e, axis=-1, keepdims=True)


def test_converted_syncnet_reproduces_the_whole_wav2lip_forward(tmp_path):
    """Every layer, both towers: the module `wav2lip_syncnet` builds from the file scores RGB
    stacks exactly as Wav2Lip's BatchNorm net scores the same frames in BGR."""
    sd = _state_dict(np.random.default_rng(1))
    path = str(tmp_path / "lipsync_expert.pth")
    write_torch_file(path, _checkpoint(sd), legacy=True)
    model, params = wav2lip_syncnet(path)
    assert model.norm == "none" and not model.calibrated and not model.centre
    assert model.face_specs == wav2lip_face_specs(WIDTHS)  # widths read from the file
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    mel = jax.random.normal(k1, (3, 80, 16))
    faces_rgb = jax.random.uniform(k2, (3, 48, 96, 15))
    sim, emb = model.apply({"params": params}, mel, faces_rgb)
    a = _reference_embedding(sd, "audio_encoder", wav2lip_audio_specs(WIDTHS), mel[..., None])
    f = _reference_embedding(
        sd, "face_encoder", wav2lip_face_specs(WIDTHS), faces_rgb[..., bgr_to_rgb_channels(15)]
    )
    np.testing.assert_allclose(emb["audio"], a, atol=NET_ATOL)
    np.testing.assert_allclose(emb["face"], f, atol=NET_ATOL)
    np.testing.assert_allclose(sim, jnp.sum(a * f, -1), atol=NET_ATOL)
