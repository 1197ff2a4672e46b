"""The limits of the torch / safetensors reader (`data/torch_file.py`, issue 27 §1) on the crafted
files of tests/data/torch_crafted.py: each fails at once with a ValueError naming the file and the
reason, in bounded time and memory (peaks measured with tracemalloc, which sees numpy's buffers);
the memoisation that bounds them keeps legitimate sharing (tied weights, views of one storage)
correct, and every limit can be raised by the caller."""

from __future__ import annotations

import collections
import pickle
import re
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from tests.data import torch_crafted as crafted
from tests.data.torch_writer import Strided, torch_pickle, write_torch_file, write_zip_archive
from ua3dtalk_jax.data import torch_file
from ua3dtalk_jax.data.torch_file import read_safetensors, read_state_dict, read_torch_file

FORMATS = pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
# Peak memory allowed while reading a small crafted file: the pickle, the unpickled objects and
# numpy's bookkeeping take well under this; the naive reads these tests guard against took 20 MB
# (the bombs) to 77 MB (300 copies).
SMALL_PEAK = 1 << 20


def _error(fn, *args, **kwargs) -> str:
    """The message of the ValueError that fn(*args, **kwargs) raises."""
    with pytest.raises(ValueError) as e:
        fn(*args, **kwargs)
    return str(e.value)


def _peak(fn):
    """(fn(), the peak of traced memory while it ran, in bytes)."""
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_zero_strides_cannot_expand_a_file(tmp_path):
    path = str(tmp_path / "zero.pt")
    crafted.zero_strides(path, 3000)  # 626 bytes → 9 M floats
    with pytest.raises(ValueError, match=r"zero\.pt: .*9000000 elements .*from 1 stored"):
        read_torch_file(path)


def test_declared_elements_beyond_max_elements(tmp_path):
    path = str(tmp_path / "huge.pt")
    write_torch_file(path, [Strided(np.zeros(1, np.float32), 0, (1 << 20, 1 << 20), (0, 0))])
    with pytest.raises(ValueError, match=r"huge\.pt: .*1099511627776 elements.*max_elements"):
        read_torch_file(path)
    write_torch_file(path, {"w": np.zeros((10, 10), np.float32)})
    with pytest.raises(ValueError, match=r"huge\.pt: .*100 elements.*max_elements=99"):
        read_state_dict(path, max_elements=99)
    assert read_state_dict(path, max_elements=100)["w"].shape == (10, 10)


@pytest.mark.parametrize("how", ["same_object", "equal_rebuilds"])
def test_a_tensor_referred_to_many_times_is_read_once(tmp_path, how):
    x = np.arange(1 << 16, dtype=np.float32)  # 256 KB
    if how == "same_object":  # one pickled tensor, referred to 300 times through the memo
        obj = [x] * 300
    else:  # 300 rebuild calls with the same storage, offset, size and stride
        obj = [Strided(x, 0, x.shape, (1,)) for _ in range(300)]
    path = str(tmp_path / "refs.pt")
    write_torch_file(path, obj)
    got, peak = _peak(lambda: read_torch_file(path))
    assert all(g is got[0] for g in got)
    np.testing.assert_array_equal(got[0], x)
    assert peak < 3 * x.nbytes, peak  # storage + one array (naively: 300 arrays, 77 MB)


def test_distinct_overlapping_views_are_bounded(tmp_path):
    n = 1 << 18  # 1 MB of floats, viewed 300 times at offsets 0..299: 315 MB of arrays
    flat = np.zeros(n + 300, np.float32)
    path = str(tmp_path / "views.pt")
    write_torch_file(path, [Strided(flat, k, (n,), (1,)) for k in range(300)])
    with pytest.raises(ValueError, match=r"views\.pt: .*78643200 elements .*overlap"):
        read_torch_file(path)


def test_shared_sub_lists_are_resolved_once(tmp_path):
    """A 40-deep nesting whose levels each hold their inner list twice: 2⁴⁰ paths, 41 lists."""
    x = np.arange(3, dtype=np.float32)
    path = str(tmp_path / "nest.pt")
    write_torch_file(path, crafted.shared_nesting(40, x))
    got = read_torch_file(path)
    for _ in range(40):
        assert len(got) == 2 and got[0] is got[1]
        got = got[0]
    np.testing.assert_array_equal(got[0], x)


def test_nesting_deeper_than_max_depth(tmp_path):
    path = str(tmp_path / "deep.pt")
    write_torch_file(path, crafted.plain_nesting(100, np.ones(2, np.float32)))
    with pytest.raises(ValueError, match=r"deep\.pt: .*nested deeper than max_depth=64"):
        read_torch_file(path)
    got = read_torch_file(path, max_depth=101)
    for _ in range(100):
        got = got[0]
    np.testing.assert_array_equal(got, [1.0, 1.0])


def test_a_deep_tuple_is_refused_while_unpickling(tmp_path):
    """A 400 KB pickle of a 400,000-deep tuple used as a dict key: hashing it overflows C's stack
    (a segfault in the C unpickler); tuples are checked against max_depth as they are built."""
    path = str(tmp_path / "tuple.pt")
    write_zip_archive(path, b"\x80\x02}" + b")" + b"\x85" * 400_000 + b"K\x01s.", {})
    with pytest.raises(ValueError, match=r"tuple\.pt: .*nested deeper than max_depth=64"):
        read_torch_file(path)


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_self_referential_containers(tmp_path, kind):
    path = str(tmp_path / "loop.pt")
    crafted.self_referential(path, kind)
    with pytest.raises(ValueError, match=rf"loop\.pt: a {kind} contains itself"):
        read_torch_file(path)


def test_a_deflate_bomb_is_refused_before_inflating(tmp_path):
    path = str(tmp_path / "bomb.pt")
    crafted.deflate_bomb(path, 20 << 20)  # 21 KB: 20 MB for a 1-element tensor
    msg, peak = _peak(lambda: _error(read_torch_file, path))
    assert re.fullmatch(r".*bomb\.pt: storage 0 is 20971520 bytes.*1 FloatStorage.*", msg), msg
    assert peak < SMALL_PEAK, peak


def test_only_the_bytes_the_tensors_use_are_inflated(tmp_path):
    """A 5 M-float storage (deflated: 20 KB) of which a tensor uses element 7: 32 bytes read."""
    flat = np.zeros(5_000_000, np.float32)
    flat[7] = 3.0
    path = str(tmp_path / "slice.pt")
    write_torch_file(path, {"x": Strided(flat, 7, (1,), (1,))}, compression=zipfile.ZIP_DEFLATED)
    got, peak = _peak(lambda: read_torch_file(path))
    np.testing.assert_array_equal(got["x"], [3.0])
    assert peak < SMALL_PEAK, peak
    with pytest.raises(ValueError, match=r"slice\.pt: .*more than max_inflated=100"):
        read_torch_file(path, max_inflated=100)


def test_an_object_pickle_bomb_is_refused_before_inflating(tmp_path):
    path = str(tmp_path / "pkl.pt")
    crafted.pickle_bomb(path, torch_file.MAX_HEADER_BYTES)  # 16 KB: a 16 MB data.pkl
    msg, peak = _peak(lambda: _error(read_torch_file, path))
    assert re.fullmatch(r".*pkl\.pt: data\.pkl is \d+ bytes, more than MAX_HEADER_BYTES.*", msg)
    assert peak < SMALL_PEAK, peak


def test_a_legacy_pickle_longer_than_max_header_bytes(tmp_path):
    path = str(tmp_path / "long.pt")
    n = torch_file.MAX_HEADER_BYTES  # a valid pickle of one bytes object, 12 bytes too long
    crafted.legacy_with_object_pickle(
        path, b"\x80\x04\x8e" + struct.pack("<Q", n) + bytes(n) + b"."
    )
    with pytest.raises(ValueError, match=r"long\.pt: a pickle longer than MAX_HEADER_BYTES"):
        read_torch_file(path)


@FORMATS
def test_counts_the_file_cannot_hold(tmp_path, legacy):
    """An opcode declaring 2⁴⁰ bytes (a bare MemoryError before), and a legacy element count
    beyond the end of the file: refused before anything that size is allocated."""
    path = str(tmp_path / "count.pt")
    if legacy:
        crafted.legacy_with_object_pickle(path, crafted.huge_bytes_opcode(40))
    else:
        write_zip_archive(path, crafted.huge_bytes_opcode(40), {})
    with pytest.raises(ValueError, match=r"count\.pt: its pickle ends early .*truncated"):
        read_torch_file(path)
    crafted.legacy_with_count(path, 1 << 60)
    with pytest.raises(ValueError, match=r"count\.pt: storage 0 .*1152921504606846976 elements"):
        read_torch_file(path)


def test_a_tensor_state_cannot_be_rewritten(tmp_path):
    """BUILD may set a state dict's attributes (torch's `_metadata`), but not rewrite a checked
    tensor's size and stride after its rebuild."""
    od = collections.OrderedDict(w=np.arange(4, dtype=np.float32))
    od._metadata = {"": {"version": 1}}
    path = str(tmp_path / "build.pt")
    write_torch_file(path, od)
    np.testing.assert_array_equal(read_torch_file(path)["w"], od["w"])
    pkl, storages = torch_pickle([np.zeros(1, np.float32)])
    state = pickle.dumps({"size": (1 << 20, 1 << 20), "stride": (0, 0)}, protocol=2)[2:-1]
    pkl = pkl[:-2] + state + b"b" + pkl[-2:]  # BUILD on the tensor, before the list's APPEND
    write_zip_archive(path, pkl, {k: a.tobytes() for k, a in storages.items()})
    with pytest.raises(ValueError, match=r"build\.pt: .*refusing to set the state of"):
        read_torch_file(path)


_ST_BAD = {
    "a_list": [1, 2],
    "an_entry_that_is_a_string": {"a": "F32"},
    "an_entry_without_dtype": {"a": {"shape": [1], "data_offsets": [0, 4]}},
    "a_list_as_dtype": {"a": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}},
    "a_string_as_shape": {"a": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}},
    "three_offsets": {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}},
    "float_offsets": {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0.0, 4.0]}},
    "a_size_that_disagrees": {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}},
    "overlapping_tensors": {
        "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
    },
    "JSON_nested_100000_deep": b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("header", list(_ST_BAD.values()), ids=list(_ST_BAD))
def test_malformed_safetensors_headers(tmp_path, header):
    path = str(tmp_path / "bad.safetensors")
    crafted.safetensors_raw(path, header, b"\0" * 8)
    with pytest.raises(ValueError, match=r"bad\.safetensors: "):
        read_safetensors(path)
    with pytest.raises(ValueError, match=r"bad\.safetensors: "):
        read_state_dict(path)


def test_safetensors_limits(tmp_path):
    path = str(tmp_path / "ok.safetensors")
    crafted.safetensors_raw(
        path,
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
        struct.pack("<2f", 1.5, -2.0),
    )
    np.testing.assert_array_equal(read_safetensors(path)["a"], [1.5, -2.0])
    with pytest.raises(ValueError, match=r"ok\.safetensors: .*2 elements.*max_elements=1"):
        read_state_dict(path, max_elements=1)
    with pytest.raises(ValueError, match=r"ok\.safetensors: .*max_inflated=8"):
        read_safetensors(path, max_inflated=8)  # the header alone is longer


@FORMATS
def test_tied_weights_read_as_one_array(tmp_path, legacy):
    """A tensor under two state-dict keys (tied embeddings) is one array; its copy is not."""
    w = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    path = str(tmp_path / "tied.pt")
    write_torch_file(path, {"enc.weight": w, "dec.weight": w, "copy": w.copy()}, legacy=legacy)
    got = read_state_dict(path)
    assert got["enc.weight"] is got["dec.weight"] and got["copy"] is not got["enc.weight"]
    for k in got:
        np.testing.assert_array_equal(got[k], w)


@FORMATS
def test_views_of_one_storage_keep_their_values(tmp_path, legacy):
    flat = np.arange(30, dtype=np.float64)
    i, j = np.mgrid[:3, :4]
    views = {
        "full": Strided(flat, 0, (30,), (1,)),
        "t": Strided(flat, 2, (3, 4), (1, 3)),
        "rows": Strided(flat, 12, (2, 5), (5, 1)),
        "again": Strided(flat, 2, (3, 4), (1, 3)),
        "bcast": Strided(flat, 7, (2, 3), (0, 1)),
        "empty": Strided(flat, 0, (0, 4), (4, 1)),
    }
    path = str(tmp_path / "views.pt")
    write_torch_file(path, views, legacy=legacy)
    got = read_torch_file(path)
    np.testing.assert_array_equal(got["full"], flat)
    np.testing.assert_array_equal(got["t"], flat[2 + i + 3 * j])
    np.testing.assert_array_equal(got["rows"], flat[12:22].reshape(2, 5))
    np.testing.assert_array_equal(got["bcast"], np.broadcast_to(flat[7:10], (2, 3)))
    assert got["again"] is got["t"] and got["empty"].shape == (0, 4)
    got["t"][0, 0] = -1.0  # arrays are writable and own their memory: the others stay intact
    assert got["full"][2] == 2.0 and got["rows"][0, 0] == 12.0
