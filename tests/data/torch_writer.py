"""Writes torch and safetensors files without torch, for the tests of `data/torch_file.py` and its
users (UA-3DTalk extras, Wav2Lip / syncnet_python / wav2vec 2.0 weights).

`write_torch_file` takes any nesting of dicts, OrderedDicts, lists and tuples whose leaves are
Python values, NumPy arrays (a contiguous storage each), `BFloat16` arrays or `Strided` views
(several may share one storage), and writes it byte-compatibly with `torch.save` for CPU tensors:
- zip (torch ≥ 1.6): `<stem>/data.pkl` (protocol 2), `<stem>/data/<key>` raw little-endian
  storages, `<stem>/version` ("3"), `<stem>/byteorder` ("little");
- legacy (torch < 1.6): pickles of the magic number, protocol version 1001 and sys info, the
  object pickle, the sorted storage keys, then per storage an int64 element count and its bytes.
Tensors are pickled as `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False,
OrderedDict())` with the persistent id ('storage', torch.<Type>Storage, key, 'cpu', numel) (legacy:
and a 6th field, the storage view or None). The pure-Python pickler is used so that references to
torch globals can be written as GLOBAL opcodes without importing torch. As in torch.save, an object
met twice (the same array under two keys: tied weights; a shared sub-list) is pickled once and
referred to twice. `torch_pickle` and `write_zip_archive` expose the two halves of a zip file so
that tests/data/torch_crafted.py can assemble malformed ones.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import zipfile
from typing import ClassVar, NamedTuple

import numpy as np

_STORAGE = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage",
}
_SAFETENSORS = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<i8"): "I64"}


class Strided(NamedTuple):
    """A tensor viewing `storage` (a 1-D array, shared by identity) at offset/size/stride in
    elements; legacy only, `view` = (start, length) makes it view that slice of the storage
    (offset then counts from its start), as torch < 1.0 wrote storage views."""

    storage: np.ndarray
    offset: int
    size: tuple
    stride: tuple
    view: tuple | None = None


class BFloat16(NamedTuple):
    """A float32 array written as a bfloat16 tensor (BFloat16Storage of its high halves)."""

    array: np.ndarray


class _Global:
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # save_reduce only requires a callable
        raise NotImplementedError


class _StorageRef:
    def __init__(self, key: str, array: np.ndarray, view: tuple | None, type_name: str):
        self.key, self.array, self.view, self.type_name = key, array, view, type_name


class _TensorRef:
    def __init__(self, storage: _StorageRef, offset: int, size: tuple, stride: tuple):
        self.storage, self.args = storage, (offset, tuple(size), tuple(stride))

    def __reduce__(self):
        return (
            _Global("torch._utils", "_rebuild_tensor_v2"),
            (self.storage, *self.args, False, collections.OrderedDict()),
        )


class _Pickler(pickle._Pickler):  # the pure-Python pickler: its `dispatch` table is extensible
    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def __init__(self, f, legacy: bool):
        super().__init__(f, protocol=2)
        self.legacy = legacy

    def _save_global_ref(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[_Global] = _save_global_ref

    def persistent_id(self, obj):
        if not isinstance(obj, _StorageRef):
            return None
        pid = ("storage", _Global("torch", obj.type_name), obj.key, "cpu", obj.array.size)
        if not self.legacy:
            return pid
        view = None if obj.view is None else (f"{obj.key}_view", *obj.view)
        return (*pid, view)


def _refs(obj, storages: dict, memo: dict):
    """`obj` with arrays / Strided replaced by tensor references; storages: id(array) → key.

    Memoised by identity, as torch's pickler is: an array or container met twice becomes one
    pickled object referred to twice (tied weights; shared sub-lists stay shared and small)."""
    if id(obj) in memo:
        return memo[id(obj)][1]

    def storage(a: np.ndarray, view=None, type_name=None) -> _StorageRef:
        key = storages.setdefault(id(a), (str(len(storages)), a))[0]
        return _StorageRef(key, a, view, type_name or _STORAGE[a.dtype])

    if isinstance(obj, Strided):
        out = _TensorRef(storage(obj.storage, obj.view), obj.offset, obj.size, obj.stride)
    elif isinstance(obj, BFloat16):
        a = np.asarray(obj.array, np.float32)
        bits = (np.ascontiguousarray(a).view(np.uint32) >> 16).astype(np.uint16).reshape(-1)
        stride = tuple(int(np.prod(a.shape[i + 1 :])) for i in range(a.ndim))
        out = _TensorRef(storage(bits, None, "BFloat16Storage"), 0, a.shape, stride)
    elif isinstance(obj, np.ndarray):
        a = np.array(obj, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        stride = tuple(s // a.itemsize for s in a.strides)
        out = _TensorRef(storage(a.reshape(-1)), 0, a.shape, stride)
    elif isinstance(obj, dict):
        out = type(obj)((k, _refs(v, storages, memo)) for k, v in obj.items())
        if getattr(obj, "__dict__", None):  # state_dict()'s `_metadata`: pickled as a BUILD
            out.__dict__.update(obj.__dict__)
    elif isinstance(obj, (list, tuple)):
        out = type(obj)(_refs(v, storages, memo) for v in obj)
    else:
        return obj
    memo[id(obj)] = (obj, out)  # (keeps obj alive so that its id is not reused)
    return out


def torch_pickle(obj, *, legacy: bool = False) -> tuple[bytes, dict[str, np.ndarray]]:
    """(the object pickle torch.save would write for `obj`, {storage key: its 1-D array})."""
    storages: dict = {}
    buf = io.BytesIO()
    _Pickler(buf, legacy).dump(_refs(obj, storages, {}))
    return buf.getvalue(), dict(storages.values())


def write_zip_archive(
    path: str,
    pkl: bytes,
    storages: dict[str, bytes],
    compression: int = zipfile.ZIP_STORED,
    byteorder: str = "little",
) -> None:
    """A torch zip archive of `pkl` (data.pkl) and the raw bytes of each storage key."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", byteorder)
        for k, raw in storages.items():
            zf.writestr(f"archive/data/{k}", raw)
        zf.writestr("archive/version", "3\n")


def write_torch_file(
    path: str, obj, *, legacy: bool = False, compression: int = zipfile.ZIP_STORED
) -> None:
    """Writes `obj` (see the module docstring) where torch.load / `read_torch_file` can read it;
    `compression` (zip only; torch itself stores) deflates the members."""
    pkl, by_key = torch_pickle(obj, legacy=legacy)
    raw = {k: a.astype(a.dtype.newbyteorder("<")).tobytes() for k, a in by_key.items()}
    if not legacy:
        write_zip_archive(path, pkl, raw, compression)
        return
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        sys_info = {
            "protocol_version": 1001,
            "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4},
        }
        pickle.dump(sys_info, f, protocol=2)
        f.write(pkl)
        keys = sorted(by_key)
        pickle.dump(keys, f, protocol=2)
        for k in keys:
            f.write(np.int64(by_key[k].size).astype("<i8").tobytes())
            f.write(raw[k])


def write_safetensors(path: str, tensors: dict, dtypes: dict | None = None) -> None:
    """Writes {name: array} in the safetensors layout (u64 header length, JSON header, raw data);
    dtypes[name] = "BF16" stores that float32 array's high halves."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors.items():
        code = (dtypes or {}).get(name)
        if code == "BF16":
            raw = (np.asarray(a, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            a = np.ascontiguousarray(a)
            code, raw = _SAFETENSORS[a.dtype], a.tobytes()
        header[name] = {
            "dtype": code,
            "shape": list(np.shape(a)),
            "data_offsets": [off, off + len(raw)],
        }
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    with open(path, "wb") as fh:
        fh.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))
