"""Data parallel over 2 host devices equals one device with the same global batch."""

import os
import subprocess
import sys
import textwrap

import pytest

from ua3dtalk_jax.train import parallel

# float32 sums reduced in a different order across devices.
GRAD_TOL = 1e-5

SCRIPT = textwrap.dedent(f"""
    import jax, jax.numpy as jnp, numpy as np
    from ua3dtalk_jax.train import parallel
    assert jax.device_count() == 2, jax.devices()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(8,)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(5,)), jnp.float32)
    loss = lambda w, x, y: jnp.mean((x @ w - y) ** 2)
    ref_l, ref_g = jax.value_and_grad(loss)(w, x, y)
    def step(w, x, y):
        l, g = jax.value_and_grad(loss)(w, x, y)
        return jax.lax.pmean(l, parallel.AXIS), jax.lax.pmean(g, parallel.AXIS)
    mesh = parallel.global_mesh()
    f = jax.jit(parallel.data_parallel(step, mesh, batch_argnums=(1, 2)))
    xs, ys = parallel.put_batch((x, y), mesh)
    l, g = f(w, xs, ys)
    assert len(xs.sharding.device_set) == 2
    np.testing.assert_allclose(l, ref_l, rtol={GRAD_TOL:g})
    np.testing.assert_allclose(g, ref_g, rtol={GRAD_TOL:g}, atol={GRAD_TOL:g})
    print("OK")
""")


def test_two_devices_match_one_device():
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.getcwd(),
    )
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_distributed_arguments_are_checked():
    parallel.initialize_distributed(None, 1, 0)  # single process: no-op
    with pytest.raises(ValueError, match="coordinator_address"):
        parallel.initialize_distributed(None, 2, 0)
    with pytest.raises(ValueError, match="process_id"):
        parallel.initialize_distributed("localhost:1234", 2, 5)
