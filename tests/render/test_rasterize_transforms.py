"""The rasterizer under jax transformations and across devices, and kernel determinism.

vmap over views == a Python loop (forward and gradient) for both backends; shard_map and
pmap over 2 host devices (subprocess) == the loop; the CPU kernel is bitwise reproducible
across runs and thread counts; a 2048² image with 10⁶ Gaussians renders on the CPU.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.head_scene import head_camera, head_scene
from tests.render import scenes
from ua3dtalk_jax.render import available_backends, rasterize

BACKENDS = ["reference"] + (["ffi"] if available_backends()["cpu"] else [])
needs_cpu_kernel = pytest.mark.skipif(
    not available_backends()["cpu"], reason="CPU kernel not built"
)
# vmap and loop run the same kernels on the same inputs; XLA may fuse the JAX-side
# projection differently when batched, so allow float32 rounding.
VMAP_ATOL = 1e-5
VMAP_GRAD_RTOL = 1e-4
W, H, V = 29, 21, 3


def _views():
    cams = [scenes.camera(W, H, seed=s) for s in range(V)]
    return jnp.stack([c["viewmat"] for c in cams]), jnp.stack([c["K"] for c in cams])


def _render_one(g, viewmat, K, backend):
    out = rasterize(
        g["means"],
        g["quats"],
        g["scales"],
        g["opacities"],
        g["colors"],
        viewmat,
        K,
        width=W,
        height=H,
        background=jnp.array([0.2, 0.3, 0.4]),
        backend=backend,
    )
    return out.rgb, out.alpha, out.depth


def _loss(g, viewmat, K, backend):
    rgb, alpha, depth = _render_one(g, viewmat, K, backend)
    return jnp.sum(rgb * jnp.linspace(-1, 1, 3)) + jnp.sum(alpha**2) + 0.1 * jnp.sum(depth)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_over_views_equals_loop(backend):
    g = scenes.random_gaussians(60, seed=11)
    viewmats, Ks = _views()
    one = jax.jit(functools.partial(_render_one, backend=backend))
    batched = jax.jit(
        jax.vmap(functools.partial(_render_one, backend=backend), in_axes=(None, 0, 0))
    )
    outs = batched(g, viewmats, Ks)
    for v in range(V):
        for got, want in zip(outs, one(g, viewmats[v], Ks[v])):
            np.testing.assert_allclose(got[v], want, atol=VMAP_ATOL)

    grad_one = jax.jit(jax.grad(functools.partial(_loss, backend=backend)))
    grad_views = jax.jit(
        jax.vmap(jax.grad(functools.partial(_loss, backend=backend)), in_axes=(None, 0, 0))
    )
    batched_grads = grad_views(g, viewmats, Ks)
    for v in range(V):
        want = grad_one(g, viewmats[v], Ks[v])
        for name in g:
            err = float(jnp.linalg.norm(batched_grads[name][v] - want[name]))
            assert err <= VMAP_GRAD_RTOL * float(jnp.linalg.norm(want[name])) + 1e-7, name


MULTI_DEVICE_SCRIPT = textwrap.dedent(
    """
    import functools, jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, PartitionSpec as P
    from tests.render import scenes
    from tests.render.test_rasterize_transforms import _loss, _render_one, _views
    assert jax.device_count() == 2, jax.devices()
    g = scenes.random_gaussians(60, seed=11)
    viewmats, Ks = _views()
    viewmats, Ks = viewmats[:2], Ks[:2]
    render = functools.partial(_render_one, backend="ffi")
    grad = jax.grad(functools.partial(_loss, backend="ffi"))
    loop = [render(g, viewmats[v], Ks[v]) for v in range(2)]
    loop_grads = [grad(g, viewmats[v], Ks[v]) for v in range(2)]
    mesh = Mesh(np.array(jax.devices()), ("views",))

    # Each device gets its own copy of the Gaussians (a replicated input's gradient would
    # be psum-ed over the devices by shard_map's autodiff).
    g_views = {k: jnp.stack([x, x]) for k, x in g.items()}

    def per_shard(g, vm, K):
        return (jax.vmap(render, in_axes=(0, 0, 0))(g, vm, K),
                jax.vmap(grad, in_axes=(0, 0, 0))(g, vm, K))

    sharded = jax.jit(jax.shard_map(per_shard, mesh=mesh, in_specs=P("views"),
                                    out_specs=P("views")))
    outs, grads = sharded(g_views, viewmats, Ks)
    pm_outs = jax.pmap(render, in_axes=(None, 0, 0))(g, viewmats, Ks)
    pm_grads = jax.pmap(grad, in_axes=(None, 0, 0))(g, viewmats, Ks)
    for v in range(2):
        for got, pm, want in zip(outs, pm_outs, loop[v]):
            np.testing.assert_allclose(got[v], want, atol=1e-5)
            np.testing.assert_allclose(pm[v], want, atol=1e-5)
        for name in g:
            np.testing.assert_allclose(grads[name][v], loop_grads[v][name], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(pm_grads[name][v], loop_grads[v][name], rtol=1e-4, atol=1e-6)
    print("MULTI_DEVICE_OK")
    """
)


@needs_cpu_kernel
def test_shard_map_and_pmap_over_two_devices_equal_loop():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", MULTI_DEVICE_SCRIPT],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "MULTI_DEVICE_OK" in proc.stdout, proc.stdout + proc.stderr[-3000:]


@needs_cpu_kernel
def test_cpu_kernel_is_bitwise_deterministic_across_runs_and_threads(monkeypatch):
    g, cam = scenes.edge_case("random_37x23")
    viewmat, K = cam["viewmat"], cam["K"]
    fn = jax.jit(jax.value_and_grad(functools.partial(_loss, backend="ffi")))

    def run(threads):
        monkeypatch.setenv("UA3D_NUM_THREADS", str(threads))  # read by the kernel on every call
        value, grads = fn(g, viewmat, K)
        return [np.asarray(value)] + [np.asarray(grads[k]) for k in sorted(grads)]

    first = run(2)
    for other in (run(2), run(1), run(3)):
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)


@needs_cpu_kernel
def test_large_image_many_gaussians_fits_in_memory():
    """2048² with 10⁶ Gaussians, forward and colour gradient, on the CPU kernel."""
    size = 2048
    scene = head_scene(1_000_000, seed=3)
    viewmat, K = head_camera(size, size)

    def loss(colors, scene, viewmat, K):  # arguments, not closure constants XLA would fold
        out = rasterize(
            scene["means"],
            scene["quats"],
            scene["scales"],
            scene["opacities"],
            colors,
            viewmat,
            K,
            width=size,
            height=size,
            backend="ffi",
        )
        return jnp.mean(out.rgb), out.alpha

    fn = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (value, alpha), grad = fn(scene["colors"], scene, viewmat, K)
    assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
    coverage = float(jnp.mean(alpha > 0.5))
    assert 0.05 < coverage < 0.9  # the head covers part of the frame
