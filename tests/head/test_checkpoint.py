"""Checkpointer: round trip, keep-last-k, atomicity after a kill, version check."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.head.checkpoint import Checkpointer


def _state(v):
    return {
        "params": {"w": jnp.full((3, 2), v, jnp.float32)},
        "step": jnp.int32(v),
        "rng": jax.random.key_data(jax.random.key(int(v))),
    }


def test_round_trip_and_keep_last_k(tmp_path):
    ck = Checkpointer(str(tmp_path), max_to_keep=2)
    for s in (1, 2, 3):
        ck.save(s, _state(s), {"epoch": s, "pos": 10 * s})
    assert ck.all_steps() == [2, 3]
    state, meta = ck.restore(_state(0))
    np.testing.assert_array_equal(state["params"]["w"], np.full((3, 2), 3.0))
    assert meta["epoch"] == 3 and meta["pos"] == 30 and meta["step"] == 3
    state2, _ = ck.restore(_state(0), step=2)
    assert int(state2["step"]) == 2


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Checkpointer(str(tmp_path)).restore(_state(0))


def test_format_version_mismatch(tmp_path):
    ck = Checkpointer(str(tmp_path))
    ck.save(1, _state(1))
    meta_file = next(p for p in (tmp_path / "1").rglob("*") if p.is_file() and "meta" in str(p))
    doc = json.loads(meta_file.read_text())
    doc["format_version"] = 999
    meta_file.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="format version"):
        Checkpointer(str(tmp_path)).restore(_state(0))


def test_sigkill_during_saves_leaves_only_complete_checkpoints(tmp_path):
    code = textwrap.dedent(f"""
        import jax.numpy as jnp, os, sys
        from ua3dtalk_jax.head.checkpoint import Checkpointer
        ck = Checkpointer({str(tmp_path)!r}, max_to_keep=100)
        big = jnp.ones((512, 1024), jnp.float32)
        for s in range(1, 10000):
            ck.save(s, {{"w": big * s}})
            print(s, flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=os.getcwd(), JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    for _ in range(3):
        proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ck = Checkpointer(str(tmp_path))
    step = ck.latest_step()
    assert step is not None and step >= 3
    state, _ = ck.restore({"w": np.zeros((512, 1024), np.float32)})
    np.testing.assert_array_equal(state["w"], np.full((512, 1024), float(step), np.float32))
