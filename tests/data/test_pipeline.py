"""FrameLoader: fixed shapes and dtypes, seeded resumable order, eval padding, sharding."""

import json

import jax
import numpy as np
import pytest

from tests.data import tg_layout
from ua3dtalk_jax.configs.data import data_config
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.data.pipeline import FrameLoader, plan_batch, shard_batch, split_for_pmap

N = 12  # train 0..9, val 10..11


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tg"))
    tg_layout.write_tg_subject(root, N, wav=False)
    return Subject.open(root)


def test_batch_shapes_and_dtypes(subject):
    with FrameLoader(subject, "train", batch_size=3, num_workers=2) as loader:
        batch = next(loader)
    h, w = subject.size
    assert batch["image"].shape == (3, h, w, 3) and batch["image"].dtype == np.uint8
    assert batch["face_mask"].shape == (3, h, w) and batch["face_mask"].dtype == np.bool_
    assert batch["aud"].shape == (3, 8, 16, 29) and batch["aud"].dtype == np.float32
    assert batch["viewmat"].shape == (3, 4, 4) and batch["index"].dtype == np.int32
    assert batch["valid"].all()
    for k in range(3):  # each row is exactly that frame
        np.testing.assert_array_equal(batch["image"][k], subject.frame(batch["index"][k])["image"])


def _take(subject, n_batches, **kw):
    with FrameLoader(subject, keys=["index"], **kw) as loader:
        return [next(loader)["index"] for _ in range(n_batches)], loader.state


def test_order_is_seeded_and_covers_epochs(subject):
    a = np.concatenate(_take(subject, 5, batch_size=4, seed=3)[0])
    b = np.concatenate(_take(subject, 5, batch_size=4, seed=3)[0])
    c = np.concatenate(_take(subject, 5, batch_size=4, seed=4)[0])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sorted(a[:10]) == list(range(10)) and sorted(a[10:20]) == list(range(10))


def test_resume_continues_exactly(subject):
    seen, _ = _take(subject, 7, batch_size=3, seed=1)
    _, state = _take(subject, 4, batch_size=3, seed=1)
    state = json.loads(json.dumps(state))  # survives a checkpoint round trip
    assert state == {"epoch": 1, "position": 2}  # 12 frames drawn from epochs of 10
    again, _ = _take(subject, 3, batch_size=3, seed=1, state=state)
    np.testing.assert_array_equal(np.stack(again), np.stack(seen[4:]))


def test_eval_pass_is_ordered_and_padded(subject):
    with FrameLoader(subject, "val", batch_size=3, keys=["index", "image"]) as loader:
        batches = list(loader)
        assert next(loader, "end") == "end"
    assert len(batches) == 1 and len(loader) == 1
    np.testing.assert_array_equal(batches[0]["index"], [10, 11, 11])
    np.testing.assert_array_equal(batches[0]["valid"], [True, True, False])


def test_hosts_read_disjoint_slices_of_the_global_batch(subject):
    frames, valid, state = plan_batch(np.arange(10), 6, (0, 0), seed=0, shuffle=True, repeat=True)
    assert valid.all() and state == (0, 6)
    hosts = [
        _take(subject, 1, batch_size=3, seed=0, process_index=k, process_count=2)[0][0]
        for k in range(2)
    ]
    np.testing.assert_array_equal(np.concatenate(hosts), frames)


def test_errors_surface_in_consumer(subject):
    loader = FrameLoader(subject, batch_size=2, keys=["nonexistent"])
    with loader, pytest.raises(KeyError, match="nonexistent"):
        next(loader)


def test_shard_batch_over_local_devices():
    n = jax.local_device_count()
    batch = {"x": np.arange(2 * n * 3, dtype=np.float32).reshape(2 * n, 3)}
    sharded = shard_batch(batch)
    assert sharded["x"].shape == (2 * n, 3)
    assert len(sharded["x"].sharding.device_set) == n
    np.testing.assert_array_equal(np.asarray(sharded["x"]), batch["x"])
    assert split_for_pmap(batch)["x"].shape == (n, 2, 3)
    if n > 1:
        with pytest.raises(ValueError, match="not divisible"):
            shard_batch({"x": np.zeros((n + 1, 3))})


def test_data_config_presets():
    for preset in ("paper", "cpu", "tiny"):
        cfg = data_config(preset)
        assert cfg.batch_size >= 1 and cfg.audio_feature == "auto" and cfg.fps is None
    with pytest.raises(ValueError, match="unknown preset"):
        data_config("huge")
