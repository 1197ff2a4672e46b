"""The torch / safetensors reader (`data/torch_file.py`) on files that tests/data/torch_writer.py
writes: both torch formats (zip and legacy) round-trip, containers at any depth, strided views of
shared storages, legacy storage views, bfloat16, the restricted unpickler (header pickles
included) and errors that name the file."""

from __future__ import annotations

import collections
import pickle
import zipfile

import numpy as np
import pytest

from tests.data.torch_writer import (
    BFloat16,
    Strided,
    torch_pickle,
    write_safetensors,
    write_torch_file,
    write_zip_archive,
)
from ua3dtalk_jax.data.torch_file import (
    read_checkpoint,
    read_safetensors,
    read_state_dict,
    read_torch_file,
)

FORMATS = pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@FORMATS
def test_state_dict_round_trip(tmp_path, legacy):
    rng = np.random.default_rng(1)
    state = collections.OrderedDict(
        [
            ("a.0.weight", rng.normal(size=(4, 3, 2, 5)).astype(np.float32)),
            ("a.1.num_batches_tracked", np.array(7, np.int64)),
            ("b.bias", rng.normal(size=(6,))),
            ("c.half", rng.normal(size=(2, 3)).astype(np.float16)),
            ("d.mask", rng.normal(size=(5,)) > 0),
            ("e.empty", np.zeros((0, 3), np.float32)),
        ]
    )
    path = str(tmp_path / "sd.pt")
    write_torch_file(path, state, legacy=legacy)
    got = read_torch_file(path)
    assert isinstance(got, collections.OrderedDict) and list(got) == list(state)
    for k, v in state.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)


@FORMATS
def test_containers_are_resolved_at_any_depth(tmp_path, legacy):
    """UA-3DTalk's extras are lists of [1, D] tensors; checkpoints nest dicts, tuples, scalars."""
    rng = np.random.default_rng(2)
    t = [rng.normal(size=(1, 4)).astype(np.float32) for _ in range(4)]
    obj = {"extras": [t[0], t[1]], "pair": (t[2], {"deep": [t[3]]}), "step": 7, "name": "ua"}
    path = str(tmp_path / "nested.pth")
    write_torch_file(path, obj, legacy=legacy)
    got = read_torch_file(path)
    assert type(got["extras"]) is list and type(got["pair"]) is tuple
    assert (got["step"], got["name"]) == (7, "ua")
    for g, w in zip([*got["extras"], got["pair"][0], got["pair"][1]["deep"][0]], t):
        np.testing.assert_array_equal(g, w)
    write_torch_file(path, [r[0] for r in t], legacy=legacy)  # a bare list of [D] tensors
    np.testing.assert_array_equal(np.stack(read_torch_file(path)), np.concatenate(t))


@FORMATS
def test_strided_tensors_share_one_storage(tmp_path, legacy):
    flat = np.arange(24, dtype=np.float32)
    obj = {
        "t": Strided(flat, 2, (3, 4), (1, 3)),  # transposed, offset
        "step": Strided(flat, 0, (2,), (5,)),
        "scalar": Strided(flat, 5, (), ()),
    }
    path = str(tmp_path / "strided.pt")
    write_torch_file(path, obj, legacy=legacy)
    got = read_torch_file(path)
    i, j = np.mgrid[:3, :4]
    np.testing.assert_array_equal(got["t"], flat[2 + i + 3 * j])
    np.testing.assert_array_equal(got["step"], [0.0, 5.0])
    assert got["scalar"].shape == () and got["scalar"] == 5.0


def test_legacy_storage_views(tmp_path):
    flat = np.arange(16, dtype=np.float64)
    obj = [
        Strided(flat, 1, (2, 2), (2, 1), view=(4, 8)),
        Strided(flat, 0, (3,), (1,), view=(10, 3)),
    ]
    path = str(tmp_path / "views.pt")
    write_torch_file(path, obj, legacy=True)
    a, b = read_torch_file(path)
    np.testing.assert_array_equal(a, [[5.0, 6.0], [7.0, 8.0]])  # view 4..11, offset 1
    np.testing.assert_array_equal(b, [10.0, 11.0, 12.0])


def test_big_endian_storages(tmp_path):
    """A zip whose `byteorder` says "big" (torch.save on a big-endian machine): native arrays."""
    flat = np.arange(12, dtype=np.float64)
    obj = {"w": np.arange(6, dtype=np.int32).reshape(2, 3), "t": Strided(flat, 1, (2, 2), (1, 3))}
    pkl, storages = torch_pickle(obj)
    raw = {k: a.astype(a.dtype.newbyteorder(">")).tobytes() for k, a in storages.items()}
    path = str(tmp_path / "big.pt")
    write_zip_archive(path, pkl, raw, byteorder="big")
    got = read_torch_file(path)
    assert got["w"].dtype == np.int32 and got["w"].dtype.isnative and got["t"].dtype.isnative
    np.testing.assert_array_equal(got["w"], obj["w"])
    np.testing.assert_array_equal(got["t"], [[1.0, 4.0], [2.0, 5.0]])


@FORMATS
def test_bfloat16_comes_back_as_float32(tmp_path, legacy):
    x = np.array([[1.0, -0.5], [3.0, 0.15625]], np.float32)  # exactly representable in bfloat16
    path = str(tmp_path / "bf16.pt")
    write_torch_file(path, {"w": BFloat16(x)}, legacy=legacy)
    got = read_torch_file(path)["w"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x)


@pytest.mark.parametrize("where", ["zip", "legacy_object", "legacy_header"])
def test_foreign_globals_are_refused_everywhere(tmp_path, where):
    """Every pickle goes through the restricted unpickler, the legacy header pickles included."""
    path = tmp_path / "evil.pth"
    evil = pickle.dumps({"x": collections.Counter}, protocol=2)
    if where == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", evil)
    else:
        magic, proto = pickle.dumps(_LEGACY_MAGIC, 2), pickle.dumps(1001, 2)
        parts = (magic, proto, pickle.dumps({}, 2), evil) if where == "legacy_object" else (evil,)
        path.write_bytes(b"".join(parts))
    with pytest.raises(ValueError, match=r"evil\.pth: .*refusing to load collections\.Counter"):
        read_torch_file(str(path))


@FORMATS
def test_a_tensor_past_its_storage_is_refused(tmp_path, legacy):
    path = str(tmp_path / "oob.pt")
    write_torch_file(path, {"x": Strided(np.zeros(6, np.float32), 0, (4,), (2,))}, legacy=legacy)
    with pytest.raises(ValueError, match=r"oob\.pt: .*ends at 6, its storage has 6"):
        read_torch_file(path)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.pt: file not found"):
        read_checkpoint(str(tmp_path / "absent.pt"))
    (tmp_path / "text.pt").write_bytes(b"hello, not a torch file")
    with pytest.raises(ValueError, match=r"text\.pt: unreadable torch file"):
        read_checkpoint(str(tmp_path / "text.pt"))
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(ValueError, match=r"other\.zip: .*without data\.pkl"):
        read_torch_file(str(tmp_path / "other.zip"))
    path = tmp_path / "cut.pt"
    write_torch_file(str(path), {"w": np.ones(100, np.float32)}, legacy=True)
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match=r"cut\.pt: .*truncated"):
        read_torch_file(str(path))
    with pytest.raises(ValueError, match=r"cut\.pt: not a safetensors file"):
        read_safetensors(str(path))


def test_safetensors_reader(tmp_path):
    path = str(tmp_path / "model.safetensors")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1.5, -2.0], np.float16)
    c = np.array([1.0, -0.5, 3.0], np.float32)  # exactly representable in bfloat16
    write_safetensors(path, {"a": a, "b": b, "c": c}, {"c": "BF16"})
    out = read_safetensors(path)
    assert set(out) == {"a", "b", "c"}
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], b)
    assert out["c"].dtype == np.float32
    np.testing.assert_array_equal(out["c"], c)


@pytest.mark.parametrize("fmt", ["safetensors", "zip", "legacy"])
def test_read_state_dict_dispatches_on_the_format(tmp_path, fmt):
    sd = {"layer.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = str(tmp_path / "weights")
    if fmt == "safetensors":
        write_safetensors(path, sd)
    else:  # a training checkpoint: the weights under "state_dict", beside other entries
        write_torch_file(path, {"state_dict": sd, "global_step": 3}, legacy=fmt == "legacy")
    got = read_state_dict(path)
    assert list(got) == ["layer.weight"]
    np.testing.assert_array_equal(got["layer.weight"], sd["layer.weight"])
    write_torch_file(path, [sd["layer.weight"]])
    with pytest.raises(ValueError, match=r"weights: holds a list, not a state dict"):
        read_state_dict(path)
