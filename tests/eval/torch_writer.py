"""Writes a dict of NumPy arrays as a torch `state_dict` file, without torch, for the tests.

Two layouts, byte-compatible with what `torch.save` writes for a dict of CPU tensors:
- zip (torch ≥ 1.6): `<stem>/data.pkl` (protocol 2), `<stem>/data/<key>` raw little-endian
  storages, `<stem>/version` ("3"), `<stem>/byteorder` ("little");
- legacy (torch < 1.6): pickles of the magic number, protocol version 1001 and sys info, the
  object pickle, the sorted storage keys, then per storage an int64 element count and its bytes.
Tensors are pickled as `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False,
OrderedDict())` with the persistent id ('storage', torch.<Type>Storage, key, 'cpu', numel).
The pure-Python pickler is used so that references to torch globals can be written as GLOBAL
opcodes without importing torch.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from typing import ClassVar

import numpy as np

_STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage",
            np.dtype(np.float64): "DoubleStorage"}  # fmt: skip


class _Global:
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # save_reduce only requires a callable
        raise NotImplementedError


class _TensorRef:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, np.array(array, order="C")

    def __reduce__(self):
        a = self.array
        stride = tuple(s // a.itemsize for s in a.strides)
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (_StorageRef(self), 0, a.shape, stride, False, collections.OrderedDict()))  # fmt: skip


class _StorageRef:
    def __init__(self, t: _TensorRef):
        self.t = t


class _Pickler(pickle._Pickler):  # the pure-Python pickler: its `dispatch` table is extensible
    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def _save_global_ref(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[_Global] = _save_global_ref

    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            a = obj.t.array
            return ("storage", _Global("torch", _STORAGE[a.dtype]), obj.t.key, "cpu", a.size)
        return None


def _dump(obj, f) -> None:
    _Pickler(f, protocol=2).dump(obj)


def save_state_dict(state: dict[str, np.ndarray], path: str, *, legacy: bool = False) -> None:
    """Writes `state` (key → array) where torch.load / the project's reader can read it."""
    refs = collections.OrderedDict(
        (k, _TensorRef(str(i), v)) for i, (k, v) in enumerate(state.items())
    )
    if legacy:
        with open(path, "wb") as f:
            pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
            pickle.dump(1001, f, protocol=2)
            pickle.dump({"protocol_version": 1001, "little_endian": True,
                         "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)  # fmt: skip
            _dump(refs, f)
            keys = sorted(r.key for r in refs.values())
            pickle.dump(keys, f, protocol=2)
            by_key = {r.key: r.array for r in refs.values()}
            for k in keys:
                f.write(np.int64(by_key[k].size).astype("<i8").tobytes())
                f.write(by_key[k].astype(by_key[k].dtype.newbyteorder("<")).tobytes())
        return
    buf = io.BytesIO()
    _dump(refs, buf)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for r in refs.values():
            zf.writestr(f"archive/data/{r.key}", r.array.tobytes())
        zf.writestr("archive/version", "3\n")
