"""Reads weight and feature files written by torch or safetensors, without torch, as numpy.

The project's one reader of such files: UA-3DTalk's per-frame extras (`train_auds_exp.pth`, ...;
see `layout.UA_EXTRAS`), Wav2Lip's `lipsync_expert.pth`, syncnet_python's `syncnet_v2.model` and
Hugging Face wav2vec 2.0 checkpoints. Three formats:

  * torch ≥ 1.6 zip: `<name>/data.pkl` (the pickled object) and `<name>/data/<key>` (each storage
    as raw bytes, little-endian unless `<name>/byteorder` says "big");
  * torch < 1.6 legacy: pickles of the magic number, the protocol version and sys info, then the
    object, then the sorted storage keys, then per storage an int64 element count and its
    little-endian bytes (persistent ids carry a 6th field, a storage view or None);
  * safetensors: an 8-byte little-endian header length, a JSON header {name: dtype, shape,
    data_offsets}, then the raw data.

Every pickle (the legacy header pickles too) goes through one restricted unpickler that, like
`torch.load(weights_only=True)`, resolves only OrderedDict, the tensor-rebuild functions and the
storage types and refuses every other global, so a file can never run code. Tensors are rebuilt
in two steps: unpickling leaves `_Tensor(storage, offset, size, stride)` placeholders (a legacy
file's storages follow its object), `_resolve` then replaces them with numpy arrays throughout
dicts, OrderedDicts, lists and tuples (UA-3DTalk's extras are lists of tensors). A tensor's
extent is checked against its storage before the strided view is taken. bfloat16 comes back as
float32 (bf16 is the high half of a float32). Every error names the file.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pickle
import zipfile

import numpy as np

# torch storage type → numpy dtype of its little-endian bytes; bf16 is read as uint16 and widened.
_DTYPES = {"DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2",
           "BFloat16Storage": "<u2", "LongStorage": "<i8", "IntStorage": "<i4",
           "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
           "UntypedStorage": "u1"}  # fmt: skip
_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
              "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}  # fmt: skip
_ST_HEADER_MAX = 100 << 20  # the safetensors format's own limit on the JSON header
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_MALFORMED = (pickle.UnpicklingError, EOFError, KeyError, IndexError, TypeError, ValueError,
              AttributeError, OverflowError, zipfile.BadZipFile)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _Storage:
    key: str
    type_name: str  # a key of _DTYPES
    view: tuple | None  # legacy storage view: (view key, offset, size) in elements


@dataclasses.dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, offset, size, stride, *_requires_grad_hooks_metadata):
    return _Tensor(storage, int(offset), tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, storages: dict[str, _Storage] | None = None):
        super().__init__(fh)
        self.storages = {} if storages is None else storages  # key → the first storage met

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name in ("_rebuild_parameter",
                                                 "_rebuild_parameter_with_state"):  # fmt: skip
            return lambda data, *_: data
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        if pid[1] not in _DTYPES:
            raise pickle.UnpicklingError(f"unsupported storage type {pid[1]!r}")
        s = _Storage(str(pid[2]), pid[1], pid[5] if len(pid) > 5 else None)
        self.storages.setdefault(s.key, s)  # a legacy file's views of one key share its type
        return s


def _materialise(t: _Tensor, flat: np.ndarray) -> np.ndarray:
    if t.storage.view is not None:
        _view_key, start, n = t.storage.view
        flat = flat[start : start + n]
    if t.offset < 0 or any(s < 0 for s in t.stride) or any(n < 0 for n in t.size):
        raise ValueError(f"tensor with negative offset, size or stride {t.size} {t.stride}")
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if all(t.size) and last >= flat.size:  # as_strided does not check: it would read past the end
        raise ValueError(f"tensor of size {t.size} ends at {last}, its storage has {flat.size}")
    if not all(t.size):
        out = np.zeros(t.size, flat.dtype)
    else:
        strides = tuple(s * flat.itemsize for s in t.stride)
        out = np.array(np.lib.stride_tricks.as_strided(flat[t.offset :], t.size, strides))
    if t.storage.type_name == "BFloat16Storage":
        out = _bf16_to_f32(out)
    return out


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _resolve(obj, flat_of):
    """`obj` with every _Tensor, at any depth of dicts/lists/tuples, replaced by a numpy array."""
    if isinstance(obj, _Tensor):
        return _materialise(obj, flat_of(obj.storage))
    if isinstance(obj, dict):  # dict and OrderedDict keep their type
        return type(obj)((k, _resolve(v, flat_of)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, flat_of) for v in obj)
    return obj


def _flat(raw: bytes, s: _Storage, byteorder: str = "<") -> np.ndarray:
    dtype = np.dtype(_DTYPES[s.type_name]).newbyteorder(byteorder)
    if len(raw) % dtype.itemsize:
        raise ValueError(f"storage {s.key}: {len(raw)} bytes, not whole {dtype} elements")
    return np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="), copy=False)


def _read_zip(zf: zipfile.ZipFile):
    names = zf.namelist()
    pkls = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if not pkls:
        raise ValueError("zip without data.pkl, not a torch file")
    pkl = min(pkls, key=lambda n: n.count("/"))
    root = pkl[: -len("data.pkl")]
    order = ">" if root + "byteorder" in names and zf.read(root + "byteorder") == b"big" else "<"
    with zf.open(pkl) as fh:
        obj = _Unpickler(fh).load()
    cache: dict[str, np.ndarray] = {}

    def flat_of(s: _Storage) -> np.ndarray:
        if s.key not in cache:
            cache[s.key] = _flat(zf.read(f"{root}data/{s.key}"), s, order)
        return cache[s.key]

    return _resolve(obj, flat_of)


def _read_legacy(fh):
    if _Unpickler(fh).load() != _LEGACY_MAGIC:
        raise ValueError("neither a torch zip archive nor a legacy torch file")
    _Unpickler(fh).load()  # protocol version
    _Unpickler(fh).load()  # sys info (storages are little-endian whatever it says)
    storages: dict[str, _Storage] = {}
    obj = _Unpickler(fh, storages).load()
    flats = {}
    for key in _Unpickler(fh).load():
        s = storages.get(key, _Storage(key, "ByteStorage", None))  # unreferenced: skip as bytes
        numel = int.from_bytes(fh.read(8), "little")
        nbytes = numel * np.dtype(_DTYPES[s.type_name]).itemsize
        raw = fh.read(nbytes)
        if len(raw) != nbytes:
            raise ValueError(f"storage {key} truncated: {len(raw)} of {nbytes} bytes")
        flats[key] = _flat(raw, s)
    return _resolve(obj, lambda s: flats[s.key])


def read_torch_file(path: str):
    """The object `torch.save` wrote to `path` (zip or legacy format), tensors as numpy arrays.

    Args:
      path: a torch file (`.pth`, `.pt`, `.bin`, `.model`, ...).
    Returns:
      The saved object: dicts, OrderedDicts, lists, tuples and Python scalars as themselves, each
      tensor an array of its shape and dtype (bfloat16 as float32).
    Raises:
      FileNotFoundError / ValueError naming the file: missing, not a torch file, a refused global,
      or malformed.
    """
    path = os.fspath(path)
    _require_file(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return _read_zip(zf)
        with open(path, "rb") as fh:
            return _read_legacy(fh)
    except _MALFORMED as e:
        raise ValueError(f"{path}: unreadable torch file ({e})") from None


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """{name: numpy array} of a safetensors file (bfloat16 as float32)."""
    path = os.fspath(path)
    _require_file(path)
    if not _is_safetensors(path):
        raise ValueError(f"{path}: not a safetensors file")
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        try:
            header = json.loads(fh.read(n))
        except ValueError as e:
            raise ValueError(f"{path}: unreadable safetensors header ({e})") from None
        data = fh.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _ST_DTYPES:
            raise ValueError(f"{path}: unsupported safetensors dtype {info['dtype']} of {name}")
        a, b = info["data_offsets"]
        if not 0 <= a <= b <= len(data):
            raise ValueError(f"{path}: {name} lies outside the file's data ({a}..{b})")
        try:
            arr = np.frombuffer(data[a:b], _ST_DTYPES[info["dtype"]]).reshape(info["shape"])
        except ValueError as e:
            raise ValueError(f"{path}: {name}: {e}") from None
        out[name] = _bf16_to_f32(arr) if info["dtype"] == "BF16" else arr.copy()
    return out


def read_checkpoint(path: str):
    """A weights file's object, tensors as numpy: safetensors, torch zip or legacy torch."""
    path = os.fspath(path)
    _require_file(path)
    if not zipfile.is_zipfile(path) and _is_safetensors(path):
        return read_safetensors(path)
    return read_torch_file(path)


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """{key: array} of a weights file: a bare state dict or the "state_dict" of a checkpoint."""
    obj = read_checkpoint(path)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: holds a {type(sd).__name__}, not a state dict")
    return sd


def _require_file(path: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")


def _is_safetensors(path: str) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= min(_ST_HEADER_MAX, os.path.getsize(path) - 8) and head[8:9] == b"{"
