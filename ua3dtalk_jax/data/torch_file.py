"""Reads torch-saved files (`torch.save`, torch ≥ 1.6 zip format) without torch, tensors as numpy.

The zip holds `<name>/data.pkl` (the pickled object) and `<name>/data/<key>` (each storage as raw
little-endian bytes). A restricted unpickler rebuilds `torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, ...)` as a numpy array and refuses every other global, so a file can never
run code. Containers (dict, list, tuple, OrderedDict) come back as themselves. The legacy non-zip
format (torch < 1.6) is refused with a message.

Used for UA-3DTalk's per-frame extras (`train_auds_exp.pth`, ...; see `layout.UA_EXTRAS`).
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile

import numpy as np

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
           "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}  # fmt: skip


def _rebuild_tensor(storage, offset, size, stride, *_args):
    flat = storage[offset:]
    if not size:
        return flat[:1].reshape(()).copy()
    strides = tuple(s * storage.itemsize for s in stride)
    return np.lib.stride_tricks.as_strided(flat, tuple(size), strides).copy()


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(fh)
        self.archive, self.prefix, self.path = archive, prefix, path

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, *_: data
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"{self.path}: refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage" or storage_type not in _DTYPES:
            raise pickle.UnpicklingError(f"{self.path}: unsupported storage {pid!r}")
        raw = self.archive.read(f"{self.prefix}/data/{key}")
        return np.frombuffer(raw, dtype=np.dtype(_DTYPES[storage_type]).newbyteorder("<"))


def read_torch_file(path: str):
    """The object `torch.save` wrote to `path`, with every tensor as a numpy array.

    Raises:
      FileNotFoundError / ValueError naming the file: missing, legacy format, or unreadable.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a torch ≥ 1.6 zip file (re-save it with a newer torch)")
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
            if pkl is None:
                raise ValueError(f"{path}: zip without data.pkl, not a torch file")
            with zf.open(pkl) as fh:
                return _Unpickler(fh, zf, os.path.dirname(pkl), path).load()
    except (pickle.UnpicklingError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: unreadable torch file ({e})") from None
