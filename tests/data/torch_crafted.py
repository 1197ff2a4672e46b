"""Malformed torch and safetensors files for the bounds of `data/torch_file.py` (issue 27 §1).

Each is a few hundred bytes to a few tens of KB and, read naively, costs gigabytes, hours or a
crash: zero strides that turn one stored float into a 3000×3000 array, a sub-list shared at every
level of a 40-deep nesting (2⁴⁰ paths through a 150-byte pickle), a storage that inflates to far
more than its tensors use, a container that contains itself, counts and pickle opcodes that
declare more bytes than the file holds, and safetensors headers of the wrong shape. Legitimate
files come from tests/data/torch_writer.py; these reuse its pickler where a tensor is needed.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile

import numpy as np

from tests.data.torch_writer import Strided, torch_pickle, write_torch_file, write_zip_archive

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def zero_strides(path: str, n: int) -> None:
    """One stored float viewed as an (n, n) tensor through strides (0, 0)."""
    write_torch_file(path, {"x": Strided(np.zeros(1, np.float32), 0, (n, n), (0, 0))})


def shared_nesting(depth: int, leaf) -> list:
    """[[…[leaf]…]] where each level holds its inner list twice: 2^depth paths, depth + 1 lists."""
    obj = [leaf]
    for _ in range(depth):
        obj = [obj, obj]
    return obj


def plain_nesting(depth: int, leaf) -> list:
    """`leaf` inside `depth` nested one-element lists."""
    obj = leaf
    for _ in range(depth):
        obj = [obj]
    return obj


def self_referential(path: str, kind: str) -> None:
    """A zip whose data.pkl is a list (kind "list") or dict ("dict") that contains itself."""
    obj: list | dict
    if kind == "list":
        obj = [1]
        obj.append(obj)
    else:
        obj = {"a": 1}
        obj["self"] = obj
    write_zip_archive(path, pickle.dumps(obj, protocol=2), {})


def deflate_bomb(path: str, nbytes: int) -> None:
    """A 1-element float tensor whose storage (declared 1 element in the pickle) is a deflated
    member of `nbytes` zero bytes: a zip of ~nbytes/1000 bytes."""
    pkl, _ = torch_pickle({"x": np.zeros(1, np.float32)})
    write_zip_archive(path, pkl, {"0": bytes(nbytes)}, zipfile.ZIP_DEFLATED)


def pickle_bomb(path: str, nbytes: int) -> None:
    """A zip whose data.pkl inflates to `nbytes` (a valid pickle: one long bytes object)."""
    pkl = b"\x80\x04\x8e" + struct.pack("<Q", nbytes) + bytes(nbytes) + b"."
    write_zip_archive(path, pkl, {}, zipfile.ZIP_DEFLATED)


def legacy_with_count(path: str, count: int) -> None:
    """A legacy file of one 4-float tensor whose storage's element count is patched to `count`."""
    write_torch_file(path, {"w": np.ones(4, np.float32)}, legacy=True)
    with open(path, "r+b") as fh:
        data = fh.read()
        at = len(data) - 16 - 8  # the count precedes the storage's 16 bytes
        assert struct.unpack("<q", data[at : at + 8])[0] == 4
        fh.seek(at)
        fh.write(struct.pack("<q", count))


def legacy_with_object_pickle(path: str, pkl: bytes) -> None:
    """A legacy file (valid header pickles) whose object pickle is `pkl`, nothing after it."""
    header = {"protocol_version": 1001, "little_endian": True}
    with open(path, "wb") as fh:
        for part in (LEGACY_MAGIC, 1001, header):
            pickle.dump(part, fh, protocol=2)
        fh.write(pkl)


def huge_bytes_opcode(log2: int) -> bytes:
    """A 14-byte pickle whose BINBYTES8 opcode declares 2^log2 bytes (and holds 3)."""
    return b"\x80\x04\x8e" + struct.pack("<Q", 1 << log2) + b"abc"


def safetensors_raw(path: str, header, data: bytes = b"") -> None:
    """A safetensors file of any JSON `header` (or raw header bytes) followed by `data`."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as fh:
        fh.write(len(h).to_bytes(8, "little") + h + data)
