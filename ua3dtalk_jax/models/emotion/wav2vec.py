"""Converter of user-provided wav2vec 2.0 weights to the emotion encoder's `WavEncoder` params.

Nothing is downloaded. CA-MSER's waveform branch is wav2vec 2.0; the project trains its conv
feature encoder (`encoder.WavEncoder`) from scratch unless a user provides a Hugging Face
wav2vec 2.0 checkpoint of the "group"-norm kind (wav2vec2-base and its fine-tunes:
`pytorch_model.bin` or `model.safetensors`, read without torch by
`data.torch_file.read_state_dict`).
Only the feature encoder and the feature projection are used (the transformer is not
reproduced). Keys, with an optional `wav2vec2.` prefix (the *For…* heads):

  feature_extractor.conv_layers.<i>.conv.weight        (C, C_in, k), no bias      → Conv_<i>
  feature_extractor.conv_layers.0.layer_norm.{weight,bias}   GroupNorm(C groups)  → GroupNorm_0
  feature_projection.layer_norm.{weight,bias}          LayerNorm(C)               → LayerNorm_0
  feature_projection.projection.{weight,bias}          Linear C → D               → Dense_0

The result fits `WavEncoder(channels=C, out_dim=D)` (C = 512, D = 768 for wav2vec2-base, the
paper preset's `emotion.wav_channels` / `wav_dim`). For the converted weights to compute what they
computed in torch, build the encoder with `torch_numerics=True` (exact GELU, eps 1e-5);
`SpeechEmotionEncoder(wav_torch_numerics=True)` passes it on.
"""

from __future__ import annotations

import re

import numpy as np

from ua3dtalk_jax.data.torch_file import read_state_dict
from ua3dtalk_jax.models.emotion.encoder import WAV2VEC_LAYERS

_PREFIX = re.compile(r"^(?:module\.)?(?:wav2vec2\.)?")


def wav2vec2_params_from_state_dict(state_dict: dict) -> dict:
    """Hugging Face wav2vec 2.0 state dict (numpy) → `WavEncoder` params.

    Args:
      state_dict: {key: array}; other keys (transformer, heads) are ignored.
    Returns:
      {"Conv_i": {"kernel" (k, C_in, C)}, "GroupNorm_0": {"scale", "bias"},
       "LayerNorm_0": {"scale", "bias"}, "Dense_0": {"kernel" (C, D), "bias"}} float32.
    """
    sd = {_PREFIX.sub("", k): np.asarray(v, np.float32) for k, v in state_dict.items()}
    fe, fp = "feature_extractor.conv_layers.", "feature_projection."
    need = [f"{fe}{i}.conv.weight" for i in range(len(WAV2VEC_LAYERS))]
    need += [f"{fe}0.layer_norm.weight", f"{fe}0.layer_norm.bias", f"{fp}layer_norm.weight",
             f"{fp}layer_norm.bias", f"{fp}projection.weight", f"{fp}projection.bias"]  # fmt: skip
    missing = [k for k in need if k not in sd]
    if missing:
        raise ValueError(f"not a wav2vec 2.0 (group-norm) state dict: missing {missing[:3]}")
    if f"{fe}0.conv.bias" in sd or f"{fe}1.layer_norm.weight" in sd:
        raise ValueError(
            "wav2vec 2.0 with conv biases / a norm in every conv layer (the 'layer' "
            "feature-extractor kind, e.g. wav2vec2-large-lv60) is not supported"
        )
    out = {}
    for i, (k, _stride) in enumerate(WAV2VEC_LAYERS):
        w = sd[f"{fe}{i}.conv.weight"]  # (C, C_in, k)
        if w.shape[2] != k:
            raise ValueError(f"conv layer {i}: kernel {w.shape[2]}, not wav2vec 2.0's {k}")
        out[f"Conv_{i}"] = {"kernel": np.transpose(w, (2, 1, 0))}
    gn, ln, proj = f"{fe}0.layer_norm.", f"{fp}layer_norm.", f"{fp}projection."
    out["GroupNorm_0"] = {"scale": sd[gn + "weight"], "bias": sd[gn + "bias"]}
    out["LayerNorm_0"] = {"scale": sd[ln + "weight"], "bias": sd[ln + "bias"]}
    out["Dense_0"] = {"kernel": sd[proj + "weight"].T.copy(), "bias": sd[proj + "bias"]}
    return out


def load_wav2vec2_encoder(path: str) -> dict:
    """Reads a user-provided wav2vec 2.0 checkpoint file → `WavEncoder` params (see above)."""
    state_dict = read_state_dict(path)
    try:
        return wav2vec2_params_from_state_dict(state_dict)
    except ValueError as e:  # a missing key, another kind of wav2vec 2.0: name the file
        raise ValueError(f"{path}: {e}") from None


def encoder_sizes(params: dict) -> tuple[int, int]:
    """(channels, out_dim) of converted `WavEncoder` params: the encoder config they need."""
    return int(params["Conv_0"]["kernel"].shape[-1]), int(params["Dense_0"]["kernel"].shape[-1])
