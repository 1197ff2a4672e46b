"""Converter of a user-provided pretrained Wav2Lip SyncNet (`lipsync_expert.pth`) to SyncNet params.

Nothing is downloaded. The file is a torch checkpoint {"state_dict": …} (or a bare state dict)
whose keys are `face_encoder.<i>.conv_block.0.{weight,bias}` (conv) and
`face_encoder.<i>.conv_block.1.{weight,bias,running_mean,running_var}` (BatchNorm), likewise
`audio_encoder.<i>…`. Torch ≥ 1.6 writes a zip archive (`<name>/data.pkl` + `<name>/data/<key>`
raw little-endian storages); that format is parsed here **without torch** (zipfile + a restricted
unpickler that only rebuilds tensors), and so is the safetensors format (`read_checkpoint`). The
legacy non-zip torch format needs the optional `torch` package (`pip install torch`), used only
when it is installed.

Each BatchNorm is folded into its conv (eval mode, eps 1e-5):
    s = γ / √(σ² + eps),   W' = W · s,   b' = (b − μ) · s + β
so the result is the params of `SyncNet(face_specs, audio_specs, norm="none", calibrated=False)`
with the paper preset's (= Wav2Lip's) layer specs, convs transposed OIHW → HWIO
(`wav2lip_syncnet` builds that module with the widths read from the file).

Input conventions of the pretrained net (Wav2Lip's `color_syncnet_train.py`):
  * faces were read with cv2, i.e. **BGR**; the crops here are RGB, so by default (`rgb=True`)
    the first face conv's input channels are reversed within each frame's three, and the
    converted net takes this project's RGB stacks (`syncnet.stack_lower_halves`) unchanged;
  * the mel window paired with the 5 faces starting at frame s starts at frame s + 1
    (`crop_audio_window` converts to 1-indexing): `WAV2LIP_MEL_OFFSET`. A caller scoring
    in-sync pairs with a loaded net should read `mel[s + WAV2LIP_MEL_OFFSET]`;
  * faces are S3FD boxes (bottom padded by 10 px) resized to 96², lower half 48×96, in [0, 1].
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import re
import zipfile

import numpy as np

from ua3dtalk_jax.configs.stage1 import wav2lip_audio_specs, wav2lip_face_specs
from ua3dtalk_jax.models.prior.syncnet import SyncNet

BN_EPS = 1e-5
WAV2LIP_MEL_OFFSET = 1  # frames; see the module docstring
RGB = 3  # colour channels per stacked face frame
FACE_STAGE_FIRST_BLOCK = (0, 1, 4, 8, 11)  # face convs that set the widths c0..c4
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


def read_checkpoint(path: str):
    """A weights file's object, tensors as numpy: torch zip, safetensors or legacy torch."""
    if not zipfile.is_zipfile(path) and _is_safetensors(path):
        return read_safetensors(path)
    return read_torch_checkpoint(path)


_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
              "I8": "i1", "U8": "u1", "BOOL": "?", "BF16": "<u2"}  # fmt: skip
_ST_HEADER_MAX = 100 << 20  # the format's own limit on the JSON header


def _is_safetensors(path: str) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= min(_ST_HEADER_MAX, os.path.getsize(path) - 8) and head[8:9] == b"{"


def read_safetensors(path: str) -> dict:
    """{name: numpy array} of a safetensors file (8-byte header length, JSON header, raw data)."""
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
        data = fh.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _ST_DTYPES:
            raise ValueError(f"{path}: unsupported safetensors dtype {info['dtype']} of {name}")
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=_ST_DTYPES[info["dtype"]])
        if info["dtype"] == "BF16":  # bfloat16 = the high half of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr.reshape(info["shape"]).copy()
    return out


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


def syncnet_params_from_state_dict(state_dict: dict, rgb: bool = True) -> dict:
    """Wav2Lip SyncNet state dict (numpy) → params of SyncNet(norm="none", calibrated=False).

    Args:
      state_dict: {key: array} with the keys of the module docstring ("module." prefixes allowed).
      rgb: reverse the colour order of the first face conv's inputs (BGR-trained → RGB input).
    Returns:
      {"face_encoder": {"ConvBlock_j": {"Conv_0": {"kernel" (kh, kw, in, out), "bias"}}}, ...}.
    """
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
            if rgb and enc == "face_encoder" and j == 0:
                kernel = kernel[:, :, bgr_to_rgb_channels(kernel.shape[2])]
            out[enc][f"ConvBlock_{j}"] = {"Conv_0": {"kernel": kernel, "bias": bias}}
    return out


def bgr_to_rgb_channels(n: int) -> np.ndarray:
    """Channel permutation of n = 3T stacked frames that reverses each frame's colour order."""
    if n % RGB:
        raise ValueError(f"the first face conv has {n} input channels, not 3 per frame")
    f = np.arange(n) // RGB
    return RGB * f + (RGB - 1 - np.arange(n) % RGB)


def load_wav2lip_syncnet(path: str, rgb: bool = True) -> dict:
    """Reads `lipsync_expert.pth` (or any Wav2Lip colour-SyncNet checkpoint) → SyncNet params."""
    obj = read_checkpoint(path)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    return syncnet_params_from_state_dict(sd, rgb)


def wav2lip_syncnet(path: str, rgb: bool = True):
    """The frozen-expert SyncNet module and its params from a user-provided Wav2Lip checkpoint.

    The widths are read from the file (Wav2Lip's: 32, 64, 128, 256, 512); the module is the paper
    preset's layer list with BatchNorm folded (norm "none"), raw cosine (uncalibrated, uncentred),
    i.e. Wav2Lip's own forward. Inputs: (B, 80, 16) mel windows, (B, 48, 96, 15) RGB lower faces.

    Returns:
      (SyncNet, params) for `SyncNet.apply({"params": params}, mel, faces)`.
    """
    params = load_wav2lip_syncnet(path, rgb)
    face = params["face_encoder"]
    widths = tuple(int(face[f"ConvBlock_{j}"]["Conv_0"]["kernel"].shape[-1])
                   for j in FACE_STAGE_FIRST_BLOCK)  # fmt: skip
    if len(face) != len(wav2lip_face_specs(widths)):
        raise ValueError(f"{path}: {len(face)} face convs, Wav2Lip's colour SyncNet has 17")
    model = SyncNet(wav2lip_face_specs(widths), wav2lip_audio_specs(widths), norm="none")
    return model, params
