"""Converter of a user-provided pretrained Wav2Lip SyncNet (`lipsync_expert.pth`) to SyncNet params.

Nothing is downloaded. The file is a torch checkpoint {"state_dict": …} (or a bare state dict)
whose keys are `face_encoder.<i>.conv_block.0.{weight,bias}` (conv) and
`face_encoder.<i>.conv_block.1.{weight,bias,running_mean,running_var}` (BatchNorm), likewise
`audio_encoder.<i>…`. Torch ≥ 1.6 writes a zip archive (`<name>/data.pkl` + `<name>/data/<key>`
raw little-endian storages); that format is parsed here **without torch** (zipfile + a restricted
unpickler that only rebuilds tensors). The legacy non-zip format needs the optional `torch`
package (`pip install torch`), used only when it is installed.

Each BatchNorm is folded into its conv (eval mode, eps 1e-5):
    s = γ / √(σ² + eps),   W' = W · s,   b' = (b − μ) · s + β
so the result is the params of `SyncNet(face_specs, audio_specs, norm="none", calibrated=False)`
with the paper preset's (= Wav2Lip's) layer specs, convs transposed OIHW → HWIO.
"""

from __future__ import annotations

import collections
import os
import pickle
import re
import zipfile

import numpy as np

BN_EPS = 1e-5
_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ByteStorage": np.uint8,
           "BoolStorage": np.bool_, "BFloat16Storage": None}  # fmt: skip
_KEY = re.compile(r"^(?:module\.)?(face_encoder|audio_encoder)\.(\d+)\.conv_block\.([01])\.(\w+)$")


def _rebuild_tensor(storage, offset, size, stride, *_args):
    item = storage.itemsize
    flat = storage[offset:]
    if not size:
        return flat[:1].reshape(()).copy()
    return np.lib.stride_tricks.as_strided(flat, tuple(size), tuple(s * item for s in stride)).copy()


class _TorchZipUnpickler(pickle.Unpickler):
    """Rebuilds tensors as numpy arrays; refuses every other global (no code execution)."""

    def __init__(self, fh, archive: zipfile.ZipFile, prefix: str):
        super().__init__(fh)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, *_: data
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        dtype = _DTYPES.get(storage_type if isinstance(storage_type, str) else str(storage_type))
        if dtype is None:
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        raw = self.archive.read(f"{self.prefix}/data/{key}")
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))


def read_torch_checkpoint(path: str):
    """A torch checkpoint's pickled object with tensors as numpy arrays."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
            prefix = os.path.dirname(pkl)
            with zf.open(pkl) as fh:
                return _TorchZipUnpickler(fh, zf, prefix).load()
    try:
        import torch  # optional: only for the legacy (pre-1.6) serialisation format
    except ImportError as err:
        raise ImportError(f"{path} is a legacy torch file; install the optional `torch` package "
                          "or re-save it with torch ≥ 1.6") from err  # fmt: skip
    obj = torch.load(path, map_location="cpu", weights_only=True)
    sd = obj.get("state_dict", obj)
    return {"state_dict": {k: v.numpy() for k, v in sd.items()}}


def syncnet_params_from_state_dict(state_dict: dict) -> dict:
    """Wav2Lip SyncNet state dict (numpy) → params of SyncNet(norm="none", calibrated=False)."""
    layers: dict = {}
    for k, v in state_dict.items():
        m = _KEY.match(k)
        if m:
            enc, idx, part, name = m.groups()
            layers.setdefault(enc, {}).setdefault(int(idx), {})[(part, name)] = np.asarray(v)
    if set(layers) != {"face_encoder", "audio_encoder"}:
        raise ValueError("not a Wav2Lip SyncNet state dict (no face_encoder/audio_encoder convs)")
    out = {}
    for enc, by_idx in layers.items():
        out[enc] = {}
        for j, idx in enumerate(sorted(by_idx)):  # dropout entries leave index gaps
            p = by_idx[idx]
            w, b = p[("0", "weight")], p[("0", "bias")]
            s = p[("1", "weight")] / np.sqrt(p[("1", "running_var")] + BN_EPS)
            kernel = np.transpose(w * s[:, None, None, None], (2, 3, 1, 0)).astype(np.float32)
            bias = ((b - p[("1", "running_mean")]) * s + p[("1", "bias")]).astype(np.float32)
            out[enc][f"ConvBlock_{j}"] = {"Conv_0": {"kernel": kernel, "bias": bias}}
    return out


def load_wav2lip_syncnet(path: str) -> dict:
    """Reads `lipsync_expert.pth` (or any Wav2Lip colour-SyncNet checkpoint) → SyncNet params."""
    obj = read_torch_checkpoint(path)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    return syncnet_params_from_state_dict(sd)
