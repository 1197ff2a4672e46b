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
    data_offsets}, then the raw data (parsed and checked by `safetensors_file.py`).

Every pickle (the legacy header pickles too) goes through one restricted unpickler (`torch_pickle`)
that, like `torch.load(weights_only=True)`, resolves only OrderedDict, the tensor-rebuild functions
and the storage types, refuses every other global and runs no code. Unpickling leaves
`Tensor(storage, offset, size, stride)` placeholders; the object is then walked once (each shared
sub-object once), the distinct views are grouped by storage and bounded, each storage is read once
(only the element range its tensors use) and turned into arrays, and the placeholders are replaced.
A view met twice (a tensor referred to twice, tied weights under two keys, equal rebuild calls) is
one array object; shared sub-lists stay shared. Arrays own their memory (copies of the storage
bytes). bfloat16 comes back as float32 (bf16 is the high half of a float32).

Limits. Files come from the internet, so what a file can make the reader spend is bounded by the
file itself and by these limits, checked before anything that size is allocated or inflated. Each
breach, like every malformed file, raises ValueError naming the file and the reason:

  * `max_elements` (MAX_ELEMENTS = 2³¹ ≈ 2.1 G): elements of all arrays returned, together. The
    largest checkpoint used here, wav2vec2-large (1.26 GB), has 315 M; 2³¹ float32 are 8 GiB.
  * `max_inflated` (MAX_INFLATED = 8 GiB): bytes taken out of the file — the object pickle plus,
    per storage, its bytes up to the last element a tensor uses (a compressed zip member is
    inflated that far). A zip member's declared size must be its storage's, as the pickle states,
    and a legacy count must fit in the rest of the file, before either is read.
  * `max_depth` (MAX_DEPTH = 64): nesting of dicts, lists and tuples (state dicts nest 1-2 deep,
    training checkpoints about 6). Tuples are checked as they are unpickled (hashing a tuple
    nested 300,000 deep overflows C's stack); a container that contains itself is refused.
    Python's recursion limit caps max_depth at about 900.
  * MAX_HEADER_BYTES = 16 MiB: a torch file's object pickle or a safetensors JSON header; both only
    describe the tensors (78 KB for wav2vec2-large's 422 tensors; ~80 B per frame of an extras
    list, so 16 MiB is ~200,000 frames). The slowest pickle that fits, 8 M one-byte lists, takes
    ~20 s and ~0.6 GB: the worst a torch file can cost with default limits (a compressed data.pkl
    may come from a ~16 KB file; torch itself stores it uncompressed).
  * MAX_EXPANSION = 4 (+ EXPANSION_FLOOR = 2²⁰ elements): views may overlap (zero strides from
    expand(), a weight and its transpose), but the arrays returned may hold at most 4× the
    elements read from the storages, plus 1 M; otherwise 626 bytes could become 9 M floats.

The three keyword limits are arguments of `read_torch_file`, `read_safetensors` (no depth: flat),
`read_checkpoint` and `read_state_dict`; the others are module constants.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import struct
import zipfile

import numpy as np

from ua3dtalk_jax.data import safetensors_file
from ua3dtalk_jax.data.torch_pickle import (
    DTYPES,
    LEGACY_MAGIC,
    Refused,
    Storage,
    add_arrays,
    plan,
    short,
    substitute,
    tensors_in,
    unpickle,
)

MAX_ELEMENTS = 1 << 31
MAX_INFLATED = 8 << 30
MAX_DEPTH = 64
MAX_HEADER_BYTES = 16 << 20
MAX_EXPANSION = 4
EXPANSION_FLOOR = 1 << 20

_MALFORMED = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
    NotImplementedError,
    struct.error,
    zipfile.BadZipFile,
)


@dataclasses.dataclass(frozen=True)
class _Limits:
    max_elements: int
    max_inflated: int
    max_depth: int
    max_expansion: int = MAX_EXPANSION
    expansion_floor: int = EXPANSION_FLOOR


def _read_zip(zf: zipfile.ZipFile, limits: _Limits):
    names = zf.namelist()
    pkls = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if not pkls:
        raise Refused("zip without data.pkl, not a torch file")
    pkl = zf.getinfo(min(pkls, key=lambda n: n.count("/")))
    root = pkl.filename[: -len("data.pkl")]
    caps = {"MAX_HEADER_BYTES": MAX_HEADER_BYTES, "max_inflated": limits.max_inflated}
    for name, cap in caps.items():  # checked before inflating anything
        if pkl.file_size > cap:
            raise Refused(f"data.pkl is {pkl.file_size} bytes, more than {name}={cap}")
    with zf.open(pkl) as fh:
        data = fh.read(pkl.file_size)
    order = "<"
    if root + "byteorder" in names:
        with zf.open(root + "byteorder") as fh:
            order = ">" if fh.read(8) == b"big" else "<"
    storages: dict = {}
    obj, _ = unpickle(data, limits.max_depth, storages)
    views, ranges = plan(tensors_in(obj, limits.max_depth), limits, len(data))
    arrays: dict = {}
    for key, vs in views.items():
        if key not in ranges:  # only empty tensors: nothing to read
            add_arrays(None, 0, vs, arrays)
            continue
        storage = next(iter(vs.values())).storage
        raw = _zip_range(zf, f"{root}data/{key}", storage, ranges[key], order)
        add_arrays(raw, ranges[key][0], vs, arrays)
    return substitute(obj, arrays)


def _zip_range(zf: zipfile.ZipFile, name: str, s: Storage, rng: tuple, order: str) -> np.ndarray:
    """Elements [lo, hi) of storage `s` from its member, inflating nothing past element hi."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise Refused(f"storage {s.key} is not in the archive") from None
    dtype = np.dtype(DTYPES[s.type_name]).newbyteorder(order)
    if info.file_size != s.numel * dtype.itemsize:  # checked before inflating anything
        raise Refused(
            f"storage {s.key} is {info.file_size} bytes in the archive, but its pickle "
            f"declares {s.numel} {s.type_name} elements "
            f"({s.numel * dtype.itemsize} bytes)"
        )
    lo, hi = rng
    with zf.open(info) as fh:
        fh.seek(lo * dtype.itemsize)  # (a compressed member inflates up to there, in chunks)
        raw = fh.read((hi - lo) * dtype.itemsize)
    if len(raw) != (hi - lo) * dtype.itemsize:
        raise Refused(f"storage {s.key} truncated: {len(raw)} of {(hi - lo) * dtype.itemsize} B")
    return np.frombuffer(raw, dtype)


def _read_legacy(fh, size: int, limits: _Limits):
    used = [0]

    def next_pickle(storages: dict | None = None):
        start = fh.tell()
        data = fh.read(min(size - start, MAX_HEADER_BYTES))
        try:
            obj, n = unpickle(data, limits.max_depth, {} if storages is None else storages)
        except Exception:
            if len(data) == MAX_HEADER_BYTES < size - start:  # it went on past the window
                raise Refused(f"a pickle longer than MAX_HEADER_BYTES={MAX_HEADER_BYTES}") from None
            raise
        fh.seek(start + n)
        used[0] += n
        return obj

    if next_pickle() != LEGACY_MAGIC:
        raise Refused("neither a torch zip archive nor a legacy torch file")
    next_pickle()  # protocol version
    next_pickle()  # sys info (storages are little-endian whatever it says)
    storages: dict = {}
    obj = next_pickle(storages)
    keys = next_pickle()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise Refused(f"its storage keys are {short(keys)}, not a list of strings")
    if len(set(keys)) != len(keys):
        raise Refused("its storage keys repeat")
    views, ranges = plan(tensors_in(obj, limits.max_depth), limits, used[0])
    arrays: dict = {}
    for key in keys:
        _legacy_storage(fh, size, key, storages, views.get(key, {}), ranges.get(key), arrays)
    for key in views.keys() - set(keys):
        if key in ranges:
            raise Refused(f"storage {key} is not in the file")
        add_arrays(None, 0, views[key], arrays)  # only empty tensors: nothing to read
    return substitute(obj, arrays)


def _legacy_storage(fh, size: int, key: str, storages, views, rng, arrays) -> None:
    """Reads the next storage of a legacy file: its count, then the element range its views use."""
    head = fh.read(8)
    if len(head) != 8:
        raise Refused(f"storage {key} truncated: no element count")
    count = int.from_bytes(head, "little", signed=True)
    type_name, numel = storages.get(key, ("ByteStorage", count))  # unreferenced: skip as bytes
    itemsize = np.dtype(DTYPES[type_name]).itemsize
    start, left = fh.tell(), size - fh.tell()
    if not 0 <= count * itemsize <= left:
        raise Refused(
            f"storage {key} declares {count} elements ({count * itemsize} bytes) but "
            f"{left} bytes remain: truncated or corrupt"
        )
    if count != numel:
        raise Refused(f"storage {key} holds {count} elements in the file, {numel} in its pickle")
    if rng is not None:
        lo, hi = rng
        fh.seek(start + lo * itemsize)
        raw = np.frombuffer(fh.read((hi - lo) * itemsize), np.dtype(DTYPES[type_name]))
        add_arrays(raw, lo, views, arrays)
    elif views:
        add_arrays(None, 0, views, arrays)
    fh.seek(start + count * itemsize)


def read_torch_file(
    path: str,
    *,
    max_elements: int = MAX_ELEMENTS,
    max_inflated: int = MAX_INFLATED,
    max_depth: int = MAX_DEPTH,
):
    """The object `torch.save` wrote to `path` (zip or legacy format), tensors as numpy arrays.

    Args:
      path: a torch file (`.pth`, `.pt`, `.bin`, `.model`, ...).
      max_elements, max_inflated, max_depth: the limits of the module docstring.
    Returns:
      The saved object: dicts, OrderedDicts, lists, tuples and Python scalars as themselves, each
      tensor an array of its shape and dtype (bfloat16 as float32); a tensor or container met
      twice is one object.
    Raises:
      FileNotFoundError / ValueError naming the file: missing, not a torch file, a refused global,
      malformed, or beyond a limit.
    """
    path = os.fspath(path)
    _require_file(path)
    limits = _Limits(max_elements, max_inflated, max_depth)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return _read_zip(zf, limits)
        with open(path, "rb") as fh:
            return _read_legacy(fh, os.path.getsize(path), limits)
    except Refused as e:
        raise ValueError(f"{path}: {e}") from None
    except _MALFORMED as e:
        raise ValueError(f"{path}: unreadable torch file ({e})") from None


def read_safetensors(
    path: str, *, max_elements: int = MAX_ELEMENTS, max_inflated: int = MAX_INFLATED
) -> dict[str, np.ndarray]:
    """{name: numpy array} of a safetensors file (bfloat16 as float32), in header order.

    Args:
      path: a `.safetensors` file.
      max_elements, max_inflated: the limits of the module docstring (bytes read, header included).
    Raises:
      FileNotFoundError / ValueError naming the file: missing, malformed, or beyond a limit.
    """
    path = os.fspath(path)
    _require_file(path)
    if not safetensors_file.is_safetensors(path):
        raise ValueError(f"{path}: not a safetensors file")
    try:
        with open(path, "rb") as fh:
            size = os.path.getsize(path)
            return safetensors_file.read(fh, size, max_elements, max_inflated, MAX_HEADER_BYTES)
    except Refused as e:
        raise ValueError(f"{path}: {e}") from None
    except (ValueError, RecursionError) as e:  # JSON syntax, nesting, encoding
        raise ValueError(f"{path}: unreadable safetensors header ({e})") from None


def read_checkpoint(
    path: str,
    *,
    max_elements: int = MAX_ELEMENTS,
    max_inflated: int = MAX_INFLATED,
    max_depth: int = MAX_DEPTH,
):
    """A weights file's object, tensors as numpy: safetensors, torch zip or legacy torch.

    Args:
      path: the file.
      max_elements, max_inflated, max_depth: the limits of the module docstring (a safetensors
        file is flat: no depth).
    """
    path = os.fspath(path)
    _require_file(path)
    if not zipfile.is_zipfile(path) and safetensors_file.is_safetensors(path):
        return read_safetensors(path, max_elements=max_elements, max_inflated=max_inflated)
    return read_torch_file(
        path, max_elements=max_elements, max_inflated=max_inflated, max_depth=max_depth
    )


def read_state_dict(
    path: str,
    *,
    max_elements: int = MAX_ELEMENTS,
    max_inflated: int = MAX_INFLATED,
    max_depth: int = MAX_DEPTH,
) -> dict[str, np.ndarray]:
    """{key: array} of a weights file: a bare state dict or the "state_dict" of a checkpoint.

    Args:
      path: a safetensors, torch zip or legacy torch file.
      max_elements, max_inflated, max_depth: the limits of the module docstring.
    Returns:
      {key: array}; a tensor under two keys (tied weights) is one array.
    """
    obj = read_checkpoint(
        path, max_elements=max_elements, max_inflated=max_inflated, max_depth=max_depth
    )
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: holds a {type(sd).__name__}, not a state dict")
    return sd


def _require_file(path: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")
