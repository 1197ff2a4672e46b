"""The safetensors format, for `torch_file` (whose `read_safetensors` and `read_checkpoint` use it).

An 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}} (plus an
optional "__metadata__"), then the raw little-endian data. The header is checked whole before any
data is read: known dtypes, shapes and offsets that are lists of sizes, each tensor's bytes
matching its shape, inside the data and overlapping no other; then the element and byte totals
against torch_file's limits. Reasons are raised as `torch_pickle.Refused`; torch_file adds the
file's name. bfloat16 comes back as float32.
"""

from __future__ import annotations

import itertools
import json
import math
import os

import numpy as np

from ua3dtalk_jax.data.torch_pickle import Refused, bf16_to_f32, is_count, short

DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}
_DETECT_MAX = 100 << 20  # the safetensors format's own limit on the JSON header


def read(fh, size: int, max_elements: int, max_inflated: int, max_header_bytes: int) -> dict:
    """{name: array} of the open safetensors file `fh` of `size` bytes, within the limits.

    The limits are `torch_file`'s (max_header_bytes: MAX_HEADER_BYTES); each breach, like a
    malformed header, raises `Refused` with the reason.
    """
    n = int.from_bytes(fh.read(8), "little")
    if n > max_header_bytes:
        raise Refused(f"its header is {n} bytes, more than MAX_HEADER_BYTES={max_header_bytes}")
    entries = _entries(json.loads(fh.read(n)), size - 8 - n)
    total = sum(math.prod(shape) for _, _, shape, _, _ in entries)
    if total > max_elements:
        raise Refused(f"its tensors hold {total} elements, more than max_elements={max_elements}")
    need = 8 + n + sum(b - a for *_, a, b in entries)
    if need > max_inflated:
        raise Refused(f"reading it takes {need} bytes, more than max_inflated={max_inflated}")
    out = {}
    for name, code, shape, a, b in entries:
        fh.seek(8 + n + a)
        raw = bytearray(b - a)  # (writable: the array owns it, no copy)
        if fh.readinto(raw) != b - a:
            raise Refused(f"{name} truncated")
        arr = np.frombuffer(raw, DTYPES[code]).reshape(shape)
        out[name] = bf16_to_f32(arr) if code == "BF16" else arr
    return out


def _entries(header, data_size: int) -> list[tuple]:
    """[(name, dtype code, shape, start, end)] of a safetensors header, checked: the format's
    fields and types, each tensor's bytes matching its shape, inside the data, none overlapping."""
    if not isinstance(header, dict):
        raise Refused(f"its header is a JSON {type(header).__name__}, not an object")
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
            raise Refused(f"header entry {name}: {short(info)}, not {{dtype, shape, data_offsets}}")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in DTYPES:
            raise Refused(f"unsupported safetensors dtype {short(code)} of {name}")
        if not isinstance(shape, list) or not all(map(is_count, shape)):
            raise Refused(f"{name}: shape {short(shape)} is not a list of sizes")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(map(is_count, offsets))
            and offsets[0] <= offsets[1] <= data_size
        ):
            raise Refused(f"{name} lies outside the file's data ({short(offsets)}, {data_size} B)")
        nbytes = math.prod(shape) * np.dtype(DTYPES[code]).itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise Refused(
                f"{name}: {shape} {code} is {nbytes} bytes, its data_offsets span "
                f"{offsets[1] - offsets[0]}"
            )
        entries.append((name, code, tuple(shape), *offsets))
    spans = sorted((a, b, name) for name, _, _, a, b in entries)
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            raise Refused(f"{first} and {second} overlap in the file's data")
    return entries


def is_safetensors(path: str) -> bool:
    """Whether `path` starts as a safetensors file does (a plausible header length, then "{")."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= min(_DETECT_MAX, os.path.getsize(path) - 8) and head[8:9] == b"{"
