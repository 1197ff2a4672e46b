"""Loads a user's Hugging Face wav2vec 2.0 folder into the Flax `Wav2Vec2Model`, without torch.

Nothing is downloaded. `load_wav2vec2(path)` takes a Hugging Face model folder: `config.json` (the
sizes: `wav2vec_model.Wav2Vec2Config`) and the weights, `model.safetensors`, `pytorch_model.bin` or
a sharded `model.safetensors.index.json` / `pytorch_model.bin.index.json`, read by
`data.torch_file.read_state_dict`. Keys may carry the `wav2vec2.` prefix of the *For…* heads
(Wav2Vec2ForPreTraining / ForCTC / ForSequenceClassification checkpoints) or none
(Wav2Vec2Model); the heads, the quantizer and `masked_spec_embed` are ignored. Layouts:

  Linear    weight (out, in)        → Dense kernel (in, out)
  Conv1d    weight (out, in/g, k)   → Conv kernel (k, in/g, out)
  Norms     weight, bias            → scale, bias
  positional conv: weight-normed along dim 2, stored as `weight_g` (1, 1, k) / `weight_v`
  (H, H/g, k), or since torch 2.1 as `parametrizations.weight.original0` / `original1`; folded
  into w = g · v / ‖v‖ (norm over the first two axes, per kernel tap) in float64. A plain
  `weight` (weight norm removed) is taken as is.

Every parameter the config asks for must be present with its shape, and every tensor of the
feature encoder, projection and encoder must be used (a conv bias the config does not have is an
error, not silently dropped); errors name the file and the tensor.
"""

from __future__ import annotations

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.data.torch_file import read_state_dict
from ua3dtalk_jax.models.emotion.wav2vec_model import Wav2Vec2Config, Wav2Vec2Model

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_MODEL_SCOPES = ("feature_extractor.", "feature_projection.", "encoder.")
_STRIP = re.compile(r"^(?:module\.)?(?:wav2vec2\.)?")
_INDEXED = re.compile(r"^(.*)_(\d+)$")  # flax "layers_3" ↔ torch "layers.3"
_POS_CONV = "encoder.pos_conv_embed.conv."
_PARAMETRIZATIONS = ("parametrizations.weight.original0", "parametrizations.weight.original1")
_WEIGHT_NORM = (("weight_g", "weight_v"), _PARAMETRIZATIONS)


def load_wav2vec2(path: str) -> tuple[Wav2Vec2Model, dict]:
    """A Hugging Face wav2vec 2.0 folder → the Flax model and its variables.

    Args:
      path: the folder (`config.json` plus weights); a weights file inside such a folder is
        accepted too.
    Returns:
      (model, variables): `model.apply(variables, wav)` maps raw input values (B, S) float32 to
      the last hidden state (B, F, hidden_size) float32, as HF's `Wav2Vec2Model` in eval mode;
      `output_hidden_states=True` gives every layer's (`wav2vec_model.Wav2Vec2Model`).
    Raises:
      FileNotFoundError: no config.json or weights file (named).
      ValueError: an unsupported config or a missing / mis-sized tensor (file and tensor named).
    """
    config = read_config(path)
    weights = weights_path(path)
    model = Wav2Vec2Model(config)
    params = params_from_state_dict(_read_weights(weights), config, source=weights)
    return model, {"params": jax.tree.map(jnp.asarray, params)}


def model_folder(path: str) -> str:
    """The folder of `path` (itself when a directory, else the file's folder)."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such wav2vec 2.0 folder or file")
    return path if os.path.isdir(path) else os.path.dirname(path)


def read_config(path: str) -> Wav2Vec2Config:
    """The `Wav2Vec2Config` of the folder `path` (or of the folder holding the file `path`)."""
    cfg_path = os.path.join(model_folder(path), "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(
            f"{cfg_path}: no such file (a Hugging Face wav2vec 2.0 folder has "
            "config.json beside its weights)"
        )
    try:
        with open(cfg_path) as fh:
            d = json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{cfg_path}: not a readable JSON file ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{cfg_path}: not a JSON object")
    return Wav2Vec2Config.from_dict(d, source=cfg_path)


def processor_normalizes(path: str) -> bool:
    """The folder's preprocessor_config.json `do_normalize` (True when absent, as wav2vec2-base)."""
    pre = os.path.join(model_folder(path), "preprocessor_config.json")
    if not os.path.isfile(pre):
        return True
    try:
        with open(pre) as fh:
            return bool(json.load(fh).get("do_normalize", True))
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"{pre}: not a readable JSON object ({e})") from None


def weights_path(path: str) -> str:
    """The weights file: `path` itself when a file, else the folder's (module docstring)."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    if os.path.isfile(path):
        return path
    for name in WEIGHT_FILES:
        for candidate in (name, name + ".index.json"):
            if os.path.isfile(os.path.join(path, candidate)):
                return os.path.join(path, candidate)
    raise FileNotFoundError(f"{path}: no {' or '.join(WEIGHT_FILES)} (or a sharded *.index.json)")


def _read_weights(path: str) -> dict:
    if not path.endswith(".index.json"):
        return read_state_dict(path)
    with open(path) as fh:
        shards = sorted(set(json.load(fh).get("weight_map", {}).values()))
    if not shards:
        raise ValueError(f"{path}: no weight_map")
    out = {}
    for shard in shards:
        out.update(read_state_dict(os.path.join(os.path.dirname(path), shard)))
    return out


def expected_shapes(config: Wav2Vec2Config) -> dict:
    """The Flax parameter tree's shapes for `config` (abstract: nothing is computed)."""
    model = Wav2Vec2Model(config)
    wav = jnp.zeros((1, config.min_samples()), jnp.float32)
    shapes = jax.eval_shape(lambda k: model.init(k, wav), jax.random.PRNGKey(0))["params"]
    return jax.tree.map(lambda s: tuple(s.shape), shapes)


def params_from_state_dict(state_dict: dict, config: Wav2Vec2Config, source: str = "state dict"):
    """HF wav2vec 2.0 state dict (numpy arrays) → the Flax params of `Wav2Vec2Model(config)`.

    Args:
      state_dict: {key: array}, keys with or without the `wav2vec2.` prefix.
      config: the sizes (from the same folder's config.json).
      source: the file, for error messages.
    Returns:
      The nested params dict, float32 numpy arrays.
    Raises:
      ValueError: a missing tensor, a tensor of another shape than the config gives, or a model
        tensor the config has no place for (each named with `source`).
    """
    sd = {_STRIP.sub("", k): v for k, v in state_dict.items()}
    used: set[str] = set()

    def take(key: str, want: tuple) -> np.ndarray:
        if key not in sd:
            raise ValueError(
                f"{source}: no tensor {key!r} (with or without the 'wav2vec2.' "
                "prefix); is this the wav2vec 2.0 config.json describes?"
            )
        a = np.asarray(sd[key], np.float32)
        if tuple(a.shape) != tuple(want):
            raise ValueError(
                f"{source}: tensor {key!r} has shape {tuple(a.shape)}, but "
                f"config.json gives {tuple(want)}"
            )
        used.add(key)
        return a

    def convert(path: tuple, shape: tuple) -> np.ndarray:
        key = ".".join(_torch_name(p) for p in path[:-1])
        leaf = path[-1]
        if leaf == "bias":
            return take(f"{key}.bias", shape)
        if leaf == "scale":
            return take(f"{key}.weight", shape)
        torch_shape = shape[::-1] if len(shape) == 2 else (shape[2], shape[1], shape[0])
        w = (
            _pos_conv_weight(sd, take, torch_shape)
            if key + "." == _POS_CONV
            else take(f"{key}.weight", torch_shape)
        )
        return w.T.copy() if w.ndim == 2 else np.ascontiguousarray(np.transpose(w, (2, 1, 0)))

    flat, treedef = jax.tree_util.tree_flatten_with_path(expected_shapes(config), is_leaf=_is_shape)
    leaves = [convert(tuple(p.key for p in path), shape) for path, shape in flat]
    unused = sorted(k for k in sd if k.startswith(_MODEL_SCOPES) and k not in used)
    if unused:
        raise ValueError(
            f"{source}: tensor {unused[0]!r} has no place in the model config.json "
            f"describes ({len(unused)} such; e.g. conv_bias, feat_extract_norm, "
            "num_hidden_layers)"
        )
    return jax.tree.unflatten(treedef, leaves)


def _is_shape(x) -> bool:
    return isinstance(x, tuple) and all(isinstance(d, int) for d in x)


def _torch_name(flax_name: str) -> str:
    m = _INDEXED.match(flax_name)
    return f"{m.group(1)}.{m.group(2)}" if m else flax_name


def _pos_conv_weight(sd: dict, take, shape: tuple) -> np.ndarray:
    """The positional conv's weight (H, H/g, k) from its weight-norm pair (or a plain weight)."""
    for g_name, v_name in _WEIGHT_NORM:
        if _POS_CONV + g_name in sd or _POS_CONV + v_name in sd:
            g = take(_POS_CONV + g_name, (1, 1, shape[2])).astype(np.float64)
            v = take(_POS_CONV + v_name, shape).astype(np.float64)
            norm = np.sqrt(np.sum(v * v, axis=(0, 1), keepdims=True))
            return (g * v / norm).astype(np.float32)
    return take(_POS_CONV + "weight", shape)
