"""wav2vec 2.0 converter: a Hugging Face state dict (torch zip or safetensors) → WavEncoder params
that reproduce the torch feature encoder + projection (numpy reference below)."""

import math

import jax
import numpy as np
import pytest

from tests.data.torch_writer import write_safetensors, write_torch_file
from ua3dtalk_jax.models.emotion.encoder import WAV2VEC_LAYERS, WavEncoder, wav_frames
from ua3dtalk_jax.models.emotion.wav2vec import (
    encoder_sizes,
    load_wav2vec2_encoder,
    wav2vec2_params_from_state_dict,
)

C, D = 8, 16  # wav2vec2-base: 512, 768 (the converter is width-agnostic)
SAMPLES = 1600  # 0.1 s → 4 encoder frames
TORCH_EPS, WAV_EPS = 1e-5, 1e-7
REF_ATOL = 1e-4  # float32 vs float64 reference through 7 convs, two norms and a projection


def hf_state_dict(rng, prefix="wav2vec2."):
    sd, cin = {}, 1
    for i, (k, _s) in enumerate(WAV2VEC_LAYERS):
        w = rng.normal(0, 1 / math.sqrt(cin * k), (C, cin, k))
        sd[f"{prefix}feature_extractor.conv_layers.{i}.conv.weight"] = w
        cin = C
    fe0 = f"{prefix}feature_extractor.conv_layers.0.layer_norm."
    sd[fe0 + "weight"], sd[fe0 + "bias"] = rng.uniform(0.5, 1.5, C), rng.normal(0, 0.1, C)
    fp = f"{prefix}feature_projection."
    sd[fp + "layer_norm.weight"] = rng.uniform(0.5, 1.5, C)
    sd[fp + "layer_norm.bias"] = rng.normal(0, 0.1, C)
    sd[fp + "projection.weight"] = rng.normal(0, 0.3, (D, C))
    sd[fp + "projection.bias"] = rng.normal(0, 0.1, D)
    sd[f"{prefix}encoder.layers.0.attention.k_proj.weight"] = rng.normal(0, 1, (4, 4))  # ignored
    return {k: np.asarray(v, np.float32) for k, v in sd.items()}


def reference(sd, wav, prefix="wav2vec2."):
    """Hugging Face's Wav2Vec2FeatureEncoder + FeatureProjection in float64: (B, S) → (B, F, D)."""
    erf = np.vectorize(math.erf)
    gelu = lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))  # noqa: E731
    x = (wav - wav.mean(-1, keepdims=True)) / (wav.std(-1, keepdims=True) + WAV_EPS)
    x = x[:, None, :].astype(np.float64)  # (B, C_in, T) as torch
    for i, (k, s) in enumerate(WAV2VEC_LAYERS):
        w = sd[f"{prefix}feature_extractor.conv_layers.{i}.conv.weight"].astype(np.float64)
        win = np.lib.stride_tricks.sliding_window_view(x, k, axis=2)[:, :, ::s]  # (B, Cin, T', k)
        x = np.einsum("bitk,oik->bot", win, w)
        if i == 0:  # GroupNorm(C groups): each channel over time
            g = f"{prefix}feature_extractor.conv_layers.0.layer_norm."
            x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + TORCH_EPS)
            x = x * sd[g + "weight"][:, None] + sd[g + "bias"][:, None]
        x = gelu(x)
    x = np.transpose(x, (0, 2, 1))  # (B, F, C)
    fp = f"{prefix}feature_projection."
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + TORCH_EPS)
    x = x * sd[fp + "layer_norm.weight"] + sd[fp + "layer_norm.bias"]
    return x @ sd[fp + "projection.weight"].T.astype(np.float64) + sd[fp + "projection.bias"]


@pytest.mark.parametrize("fmt", ["safetensors", "torch_zip"])
def test_converted_wav2vec2_reproduces_the_torch_feature_encoder(tmp_path, fmt):
    sd = hf_state_dict(np.random.default_rng(0))
    path = str(tmp_path / ("model.safetensors" if fmt == "safetensors" else "pytorch_model.bin"))
    (write_safetensors if fmt == "safetensors" else write_torch_file)(path, sd)  # a bare state dict
    params = load_wav2vec2_encoder(path)
    assert encoder_sizes(params) == (C, D)
    wav = np.random.default_rng(1).normal(0, 0.1, (2, SAMPLES)).astype(np.float32)
    enc = WavEncoder(C, D, torch_numerics=True)
    like = enc.init(jax.random.PRNGKey(0), wav)["params"]
    assert jax.tree.map(np.shape, like) == jax.tree.map(np.shape, params)
    out = enc.apply({"params": params}, wav)
    assert out.shape == (2, wav_frames(SAMPLES), D)
    np.testing.assert_allclose(out, reference(sd, wav), atol=REF_ATOL)
    # the default numerics (tanh GELU, flax eps) drift through the 7 layers: why the flag exists
    approx = WavEncoder(C, D).apply({"params": params}, wav)
    assert float(np.abs(approx - out).max()) > 10 * REF_ATOL


def test_converter_accepts_bare_keys_and_refuses_other_layouts(tmp_path):
    bare = hf_state_dict(np.random.default_rng(2), prefix="")
    params = wav2vec2_params_from_state_dict(bare)
    assert params["Conv_0"]["kernel"].shape == (10, 1, C)
    assert params["Dense_0"]["kernel"].shape == (C, D)
    with pytest.raises(ValueError, match="missing"):
        only_one = {"feature_extractor.conv_layers.0.conv.weight": np.zeros((C, 1, 10))}
        wav2vec2_params_from_state_dict(only_one)
    layer_kind = dict(bare, **{"feature_extractor.conv_layers.1.layer_norm.weight": np.ones(C)})
    with pytest.raises(ValueError, match="not supported"):
        wav2vec2_params_from_state_dict(layer_kind)
    path = str(tmp_path / "pytorch_model.bin")
    write_torch_file(path, {k: v.astype(np.float32) for k, v in layer_kind.items()})
    with pytest.raises(ValueError, match=r"pytorch_model\.bin: .*not supported"):
        load_wav2vec2_encoder(path)
