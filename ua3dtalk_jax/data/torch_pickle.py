"""The restricted unpickler of `torch_file.py`, and turning the placeholders it leaves into arrays.

Like `torch.load(weights_only=True)`, `Unpickler` resolves only OrderedDict, torch's tensor- and
parameter-rebuild functions and the storage types, and refuses every other global, so a file can
never run code. A tensor becomes a `Tensor(storage, offset, size, stride)` placeholder whose
fields are checked at once (counts, matching ranks); a persistent id becomes a `Storage` (key,
type, element count as the pickle declares it, legacy view), one type and count per key. It is
pickle's pure-Python unpickler (26 ms for wav2vec2-large's 78 KB pickle, C's takes 8) because
that lets each opcode be bounded where C's cannot be:

  * `unpickle` reads from memory, where a read past the end is short, never allocated (C's
    unpickler allocates whatever BINBYTES8 declares before reading: a 14-byte pickle asking for
    2⁴⁰ bytes was a bare MemoryError; so was a file's read(2⁴⁰));
  * each tuple's nesting is known as it is built and is refused past `max_depth` (hashing a
    tuple nested 300,000 deep, as a dict key, overflows C's stack: a segfault);
  * BUILD may set an OrderedDict's attributes (a state dict's `_metadata`), nothing else's, so a
    checked placeholder cannot be rewritten afterwards; BYTEARRAY8 (allocated before it is read,
    and never in a torch file) is refused.

Then, format-independent: `tensors_in` walks the object once per container (a sub-list shared
at every level of a 40-deep nesting is 41 lists, not 2⁴⁰ paths), refusing a container that
contains itself or nests deeper than `max_depth`; `plan` groups the distinct views (storage,
legacy view, offset, size, stride) by storage, checks each against its storage's declared size
and the limits, and gives each storage's element range to read; `add_arrays` copies the views
out of a storage's bytes; `substitute` rebuilds the object with the arrays, each container once,
so a view met twice is one array and shared containers stay shared. Reasons are raised as
`Refused`; torch_file adds the file's name.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import pickle
import reprlib

import numpy as np

# torch storage type → numpy dtype of its little-endian bytes; bf16 is read as uint16 and widened.
DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "UntypedStorage": "u1",
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class Refused(ValueError):
    """A file outside the format or the limits; the message is the reason, without the file."""


@dataclasses.dataclass(frozen=True)
class Storage:
    key: str
    type_name: str  # a key of DTYPES
    numel: int  # elements of the (root) storage, as its persistent id declares
    view: tuple | None  # legacy storage view: (offset, size) in elements of the root storage


@dataclasses.dataclass(frozen=True)
class Tensor:
    storage: Storage
    offset: int
    size: tuple
    stride: tuple


def is_count(v) -> bool:
    """A non-negative Python int (not a bool, a float or a string)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def short(v) -> str:
    """A bounded repr for messages: pickled values may be huge or deeply nested."""
    return reprlib.repr(v)


def _rebuild_tensor(storage, offset, size, stride, *_requires_grad_hooks_metadata) -> Tensor:
    if not isinstance(storage, Storage):
        raise Refused(f"a tensor on a {type(storage).__name__}, not a storage")
    ok = isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))
    if not ok or len(size) != len(stride) or not all(map(is_count, (offset, *size, *stride))):
        raise Refused(
            f"a tensor of offset {short(offset)}, size {short(size)}, stride "
            f"{short(stride)}: not counts of one rank"
        )
    return Tensor(storage, offset, tuple(size), tuple(stride))


def _checked_tuple(load):
    """Pickle's `load` of a TUPLE* opcode, then the new tuple's nesting checked and recorded."""

    def checked(self):
        load(self)
        t = self.stack[-1]
        inner = (self.tuple_depth.get(id(x), (x, 1))[1] for x in t if type(x) is tuple)
        depth = 1 + max(inner, default=0)
        if depth > self.max_depth:
            raise Refused(f"containers nested deeper than max_depth={self.max_depth}")
        self.tuple_depth[id(t)] = (t, depth)  # (holds t, so that its id stays its own)

    return checked


class Unpickler(pickle._Unpickler):
    """torch.load(weights_only=True)'s globals, with each opcode bounded (module docstring).

    Args:
      source: an in-memory file (io.BytesIO: a read past its end is short, never allocated).
      max_depth: the deepest tuple allowed.
      storages: {key: (type name, numel)}, filled as storages are met; one meaning per key.
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # noqa: RUF012 (pickle's own extensible table)

    def __init__(self, source: io.BytesIO, max_depth: int, storages: dict):
        super().__init__(source)
        self.max_depth, self.storages, self.tuple_depth = max_depth, storages, {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name in (
            "_rebuild_parameter",
            "_rebuild_parameter_with_state",
        ):
            return lambda data, *_: data
        if module == "torch" and name in DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid) -> Storage:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {short(pid)}")
        type_name, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(type_name, str) or type_name not in DTYPES:
            raise pickle.UnpicklingError(f"unsupported storage type {short(type_name)}")
        if not isinstance(key, str) or not is_count(numel):
            raise Refused(f"a storage of key {short(key)} and {short(numel)} elements")
        view = pid[5] if len(pid) > 5 else None
        if view is not None:
            if not (isinstance(view, tuple) and len(view) == 3 and all(map(is_count, view[1:]))):
                raise Refused(f"storage {key}: view {short(view)}, not (key, offset, size)")
            view = view[1:]
            if view[0] + view[1] > numel:
                raise Refused(f"storage {key}: a view of {view[1]} at {view[0]} ends past {numel}")
        first = self.storages.setdefault(key, (type_name, numel))
        if first != (type_name, numel):
            raise Refused(f"storage {key} is {first[1]} {first[0]} and {numel} {type_name}")
        return Storage(key, type_name, numel, view)

    def _load_build(self):
        if type(self.stack[-2]) is not collections.OrderedDict:
            raise pickle.UnpicklingError(
                f"refusing to set the state of a {type(self.stack[-2]).__name__}"
            )
        pickle._Unpickler.load_build(self)

    def _refuse_bytearray(self):
        raise pickle.UnpicklingError("refusing a bytearray (never in a torch file)")

    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.BYTEARRAY8[0]] = _refuse_bytearray
    for _op in (pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3):
        dispatch[_op[0]] = _checked_tuple(pickle._Unpickler.dispatch[_op[0]])
    del _op


def unpickle(data: bytes, max_depth: int, storages: dict) -> tuple[object, int]:
    """(the object pickled at the start of `data`, the bytes its pickle takes).

    Raises:
      Refused: a pickle that ends early (an opcode that declared more bytes than remain read
        what there was, and the next opcode found none); see also Unpickler.
    """
    src = io.BytesIO(data)
    try:
        return Unpickler(src, max_depth, storages).load(), src.tell()
    except EOFError:
        raise Refused(f"its pickle ends early ({len(data)} bytes): truncated or corrupt") from None


def tensors_in(obj, max_depth: int) -> list[Tensor]:
    """The distinct placeholders in `obj`, visiting each dict, list and tuple once.

    Raises:
      Refused: a container that contains itself, or nesting deeper than max_depth.
    """
    found: dict[int, Tensor] = {}
    height: dict[int, int] = {}  # id → containers nested in it, itself included
    active: set[int] = set()

    def walk(o, depth: int) -> int:
        if isinstance(o, Tensor):
            found[id(o)] = o
        if not isinstance(o, (dict, list, tuple)):
            return 0
        if id(o) in active:
            raise Refused(f"a {type(o).__name__} contains itself")
        if id(o) not in height:
            if depth > max_depth:
                raise Refused(f"containers nested deeper than max_depth={max_depth}")
            active.add(id(o))
            items = o.values() if isinstance(o, dict) else o
            height[id(o)] = 1 + max((walk(v, depth + 1) for v in items), default=0)
            active.discard(id(o))
        if depth - 1 + height[id(o)] > max_depth:  # a shared container met deeper than before
            raise Refused(f"containers nested deeper than max_depth={max_depth}")
        return height[id(o)]

    walk(obj, 1)
    return list(found.values())


def _view_key(t: Tensor) -> tuple:
    return (t.storage.key, t.storage.view, t.offset, t.size, t.stride)


def plan(tensors: list[Tensor], limits, inflated: int) -> tuple[dict, dict]:
    """The distinct views grouped by storage, and each storage's element range [lo, hi) that its
    non-empty views use; refuses, before anything is read, whatever breaks a limit.

    Args:
      tensors: the placeholders found in the object (each object once).
      limits: max_elements, max_inflated, max_expansion, expansion_floor (torch_file's limits).
      inflated: bytes already taken out of the file (the pickles).
    Returns:
      ({storage key: {view key: Tensor}}, {storage key: (lo, hi)} in elements of the storage).
    """
    views: dict[str, dict[tuple, Tensor]] = {}
    for t in tensors:
        views.setdefault(t.storage.key, {}).setdefault(_view_key(t), t)
    total = sum(math.prod(t.size) for vs in views.values() for t in vs.values())
    if total > limits.max_elements:
        raise Refused(
            f"its tensors hold {total} elements, more than max_elements={limits.max_elements}"
        )
    ranges, need = {}, inflated
    for key, vs in views.items():
        lo, hi = math.inf, 0
        for t in vs.values():
            if not all(t.size):
                continue
            start, length = t.storage.view or (0, t.storage.numel)
            last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
            if last >= length:  # as_strided does not check: it would read past the end
                raise Refused(f"tensor of size {t.size} ends at {last}, its storage has {length}")
            lo, hi = min(lo, start + t.offset), max(hi, start + last + 1)
        if hi:  # (a storage's views share its type: Unpickler.persistent_load checks)
            ranges[key] = (lo, hi)
            need += hi * np.dtype(DTYPES[next(iter(vs.values())).storage.type_name]).itemsize
    stored = sum(hi - lo for lo, hi in ranges.values())
    if total > limits.max_expansion * stored + limits.expansion_floor:
        raise Refused(
            f"its tensors would hold {total} elements made from {stored} stored ones: "
            f"views that overlap (zero strides, repeated offsets) may expand a file "
            f"at most {limits.max_expansion}× (+{limits.expansion_floor})"
        )
    if need > limits.max_inflated:
        raise Refused(
            f"reading its tensors takes {need} bytes out of the file, more than "
            f"max_inflated={limits.max_inflated}"
        )
    return views, ranges


def add_arrays(raw: np.ndarray | None, lo: int, views: dict, out: dict) -> None:
    """Adds {view key: array} for the views of one storage; raw holds its elements [lo, hi) in
    the file's byte order (None when every view is empty)."""
    for vkey, t in views.items():
        dtype = np.dtype(DTYPES[t.storage.type_name])
        if not all(t.size):
            a = np.zeros(t.size, dtype)
        else:
            start = (t.storage.view or (0,))[0] + t.offset - lo
            strides = tuple(s * raw.itemsize for s in t.stride)
            a = np.array(np.lib.stride_tricks.as_strided(raw[start:], t.size, strides))
            a = a.astype(a.dtype.newbyteorder("="), copy=False)
        out[vkey] = bf16_to_f32(a) if t.storage.type_name == "BFloat16Storage" else a


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def substitute(obj, arrays: dict, memo: dict | None = None):
    """`obj` with each placeholder replaced by its array; a container met twice is rebuilt once."""
    if isinstance(obj, Tensor):
        return arrays[_view_key(obj)]
    if not isinstance(obj, (dict, list, tuple)):
        return obj
    memo = {} if memo is None else memo
    if id(obj) not in memo:
        if isinstance(obj, dict):  # dict and OrderedDict keep their type
            memo[id(obj)] = type(obj)((k, substitute(v, arrays, memo)) for k, v in obj.items())
        else:
            memo[id(obj)] = type(obj)(substitute(v, arrays, memo) for v in obj)
    return memo[id(obj)]
