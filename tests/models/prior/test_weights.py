"""Pretrained-SyncNet converter: a torch-format zip checkpoint parsed without torch, BN folded,
BGR-trained first layer permuted for RGB input; the safetensors reader."""

import io
import pickle
import sys
import types
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.configs.stage1 import wav2lip_audio_specs, wav2lip_face_specs
from ua3dtalk_jax.models.prior.conv import ConvBlock
from ua3dtalk_jax.models.prior.syncnet import SyncNet
from ua3dtalk_jax.models.prior.weights import (
    BN_EPS,
    bgr_to_rgb_channels,
    load_wav2lip_syncnet,
    read_checkpoint,
    wav2lip_syncnet,
)

WIDTHS = (4, 4, 8, 8, 8)  # Wav2Lip's layer list at small widths (the converter is width-agnostic)
FOLD_ATOL = 1e-4
NET_ATOL = 1e-5  # unit embeddings / cosines after 17 folded layers vs the unfolded reference


def _write_torch_zip(path, state_dict):
    """Writes `state_dict` in torch's zip format (data.pkl + data/<key>) with stand-in globals."""
    fake_utils = types.ModuleType("torch._utils")
    fake_torch = types.ModuleType("torch")

    def _rebuild_tensor_v2(*a):  # only its pickled name matters
        raise AssertionError

    class FloatStorage:
        pass

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    fake_utils._rebuild_tensor_v2, fake_torch.FloatStorage = _rebuild_tensor_v2, FloatStorage
    storages = {}

    class T:
        def __init__(self, a):
            self.key = str(len(storages))
            storages[self.key] = np.ascontiguousarray(a, np.float32)

        def __reduce__(self):
            a = storages[self.key]
            stride = tuple(s // 4 for s in a.strides)
            return (_rebuild_tensor_v2, (("storage", self.key, a.size), 0, a.shape, stride, False, {}))

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, tuple) and len(obj) == 3 and obj[0] == "storage":
                return ("storage", FloatStorage, obj[1], "cpu", obj[2])
            return None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": fake_torch, "torch._utils": fake_utils})
    try:
        buf = io.BytesIO()
        P(buf, protocol=2).dump({"state_dict": {k: T(v) for k, v in state_dict.items()}})
    finally:
        for k, v in saved.items():
            sys.modules.pop(k) if v is None else sys.modules.__setitem__(k, v)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        for k, a in storages.items():
            zf.writestr(f"archive/data/{k}", a.tobytes())


def _state_dict(rng):
    sd = {}
    for enc, specs, cin in (("face_encoder", wav2lip_face_specs(WIDTHS), 15),
                            ("audio_encoder", wav2lip_audio_specs(WIDTHS), 1)):  # fmt: skip
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


def test_converter_parses_torch_zip_and_folds_batchnorm(tmp_path):
    sd = _state_dict(np.random.default_rng(0))
    path = str(tmp_path / "lipsync_expert.pth")
    _write_torch_zip(path, sd)
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
    conv = jax.lax.conv_general_dilated(x, w, (1, 1), ((3, 3), (3, 3)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + sd[p + "0.bias"]  # fmt: skip
    bn = (conv - sd[p + "1.running_mean"]) / np.sqrt(sd[p + "1.running_var"] + BN_EPS)
    ref = jax.nn.relu(bn * sd[p + "1.weight"] + sd[p + "1.bias"])
    blk = ConvBlock(WIDTHS[0], (7, 7), (1, 1), (3, 3), norm="none")
    out = blk.apply({"params": params["face_encoder"]["ConvBlock_0"]}, x_rgb)
    np.testing.assert_allclose(out, ref, atol=FOLD_ATOL)
    raw = load_wav2lip_syncnet(path, rgb=False)  # the file's own (BGR) channel order
    np.testing.assert_allclose(blk.apply({"params": raw["face_encoder"]["ConvBlock_0"]}, x), ref,
                               atol=FOLD_ATOL)  # fmt: skip
    sim, _ = model.apply({"params": params}, jnp.zeros((2, 80, 16)), jnp.zeros((2, 48, 96, 15)))
    assert sim.shape == (2,)


def test_converter_refuses_arbitrary_globals(tmp_path):
    path = str(tmp_path / "evil.pth")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": np.float64}, protocol=2))
    with pytest.raises(pickle.UnpicklingError):
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
        y = jax.lax.conv_general_dilated(x, w, (sh, sw), ((ph, ph), (pw, pw)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip
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
    _write_torch_zip(path, sd)
    model, params = wav2lip_syncnet(path)
    assert model.norm == "none" and not model.calibrated and not model.centre
    assert model.face_specs == wav2lip_face_specs(WIDTHS)  # widths read from the file
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    mel = jax.random.normal(k1, (3, 80, 16))
    faces_rgb = jax.random.uniform(k2, (3, 48, 96, 15))
    sim, emb = model.apply({"params": params}, mel, faces_rgb)
    a = _reference_embedding(sd, "audio_encoder", wav2lip_audio_specs(WIDTHS), mel[..., None])
    f = _reference_embedding(sd, "face_encoder", wav2lip_face_specs(WIDTHS),
                             faces_rgb[..., bgr_to_rgb_channels(15)])  # fmt: skip
    np.testing.assert_allclose(emb["audio"], a, atol=NET_ATOL)
    np.testing.assert_allclose(emb["face"], f, atol=NET_ATOL)
    np.testing.assert_allclose(sim, jnp.sum(a * f, -1), atol=NET_ATOL)


def write_safetensors(path, tensors: dict, dtypes: dict | None = None):
    """Writes {name: array} in the safetensors layout (u64 header length, JSON header, raw data)."""
    import json  # noqa: PLC0415

    codes = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<i8"): "I64"}
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors.items():
        code = (dtypes or {}).get(name)
        if code == "BF16":  # the high half of each float32
            raw = (np.asarray(a, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            a = np.ascontiguousarray(a)
            code, raw = codes[a.dtype], a.tobytes()
        span = [off, off + len(raw)]
        header[name] = {"dtype": code, "shape": list(np.shape(a)), "data_offsets": span}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    with open(path, "wb") as fh:
        fh.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def test_safetensors_reader(tmp_path):
    path = str(tmp_path / "model.safetensors")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1.5, -2.0], np.float16)
    c = np.array([1.0, -0.5, 3.0], np.float32)  # exactly representable in bfloat16
    write_safetensors(path, {"a": a, "b": b, "c": c}, {"c": "BF16"})
    out = read_checkpoint(path)
    assert set(out) == {"a", "b", "c"}
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], b)
    assert out["c"].dtype == np.float32
    np.testing.assert_array_equal(out["c"], c)
