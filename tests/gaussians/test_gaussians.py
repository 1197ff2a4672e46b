"""Gaussian state: init, SH, fixed-capacity densify/prune, opacity reset, compositing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.configs import get_config
from ua3dtalk_jax.configs.model import model_config
from ua3dtalk_jax.gaussians import (
    CapacityError,
    DensifyConfig,
    accumulate_grad_stats,
    activated,
    apply_deformation,
    camera_center,
    check_capacity,
    composite,
    densify_and_prune,
    densify_config,
    empty_gaussians,
    grow_sh_degree,
    init_gaussians,
    init_grad_stats,
    reset_opacity,
)
from ua3dtalk_jax.gaussians.params import knn_mean_sq_dist
from ua3dtalk_jax.gaussians.sh import C0, eval_sh, sh_basis
from ua3dtalk_jax.models.motion import DeformOut
from ua3dtalk_jax.render import rasterize

F32_RTOL = 1e-5  # float32 vs float64 of the same formula
IMAGE_ATOL = 1e-6  # renders that must agree up to summation order
W = H = 24
VIEWMAT = jnp.eye(4).at[2, 3].set(0.5)  # camera 0.5 in front of the head, looking at +z
K = jnp.asarray([[60.0, 0.0, W / 2], [0.0, 60.0, H / 2], [0.0, 0.0, 1.0]])
CAMPOS = jnp.asarray([0.0, 0.0, -0.5])
CAP = 48


def _render(state):
    means, quats, scales, opac, colors = activated(state, CAMPOS)
    return rasterize(
        means, quats, scales, opac, colors, VIEWMAT, K, width=W, height=H, backend="reference"
    )


@pytest.fixture(scope="module")
def head():
    return init_gaussians(jax.random.PRNGKey(0), CAP, num_points=24, box=0.1)


def test_init_matches_the_authors_rules(head):
    assert head.means.shape == (CAP, 3) and head.sh.shape == (CAP, 9, 3)
    assert int(head.active.sum()) == 24 and not bool(head.active[24:].any())
    pts = np.asarray(head.means[:24], np.float64)
    d2 = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    want = np.sqrt(np.sort(d2, axis=1)[:, 1:4].mean(1))
    np.testing.assert_allclose(np.exp(head.scales_raw[:24, 0]), want, rtol=F32_RTOL)
    _, quats, _, opac, colors = activated(head, CAMPOS)
    np.testing.assert_allclose(opac[:24], 0.1, rtol=F32_RTOL)
    np.testing.assert_array_equal(opac[24:], 0.0)
    assert np.all(np.abs(colors[:24] - 0.502) < 0.003)  # grey + U(0, 1)/255
    np.testing.assert_array_equal(quats[:24], np.tile([1.0, 0, 0, 0], (24, 1)))
    with pytest.raises(CapacityError):
        init_gaussians(jax.random.PRNGKey(0), 8, num_points=24)


def test_init_from_a_point_set():
    pts = jax.random.uniform(jax.random.PRNGKey(10), (10, 3), minval=-0.1, maxval=0.1)
    cols = jax.random.uniform(jax.random.PRNGKey(11), (10, 3))
    state = init_gaussians(jax.random.PRNGKey(0), 16, points=pts, colors=cols, max_scale=0.01)
    assert state.means.shape == (16, 3) and int(state.active.sum()) == 10
    np.testing.assert_array_equal(state.means[:10], pts)
    colors = activated(state, CAMPOS)[4]  # degree 0: the DC colour
    np.testing.assert_allclose(colors[:10], cols, rtol=F32_RTOL, atol=1e-6)
    assert float(jnp.exp(state.scales_raw[:10]).max()) <= 0.01 * (1 + F32_RTOL)
    with pytest.raises(ValueError, match="exactly one"):
        init_gaussians(jax.random.PRNGKey(0), 16, points=pts, num_points=10)
    with pytest.raises(ValueError, match="colors"):
        init_gaussians(jax.random.PRNGKey(0), 16, points=pts, colors=cols[:3])


def test_sh_degree_grows_every_interval(head):
    assert head.max_sh_degree == 2 and int(head.sh_degree) == 0
    grow = jax.jit(grow_sh_degree, static_argnames="every")
    its = (0, 999, 1000, 2500, 9000)
    assert [int(grow(head, jnp.int32(it), every=1000).sh_degree) for it in its] == [0, 0, 1, 2, 2]
    # The higher bands only colour the Gaussians once their degree is active.
    bands = head.replace(sh=head.sh.at[:, 1:, :].set(0.3))
    flat = activated(bands, CAMPOS)[4]
    np.testing.assert_allclose(flat, activated(head, CAMPOS)[4], rtol=F32_RTOL)
    assert not np.allclose(activated(grow(bands, jnp.int32(2000), every=1000), CAMPOS)[4], flat)


def test_knn_chunks_match_dense():
    pts = jax.random.normal(jax.random.PRNGKey(1), (700, 3))  # > one 512-row chunk
    d2 = np.asarray(((pts[:, None] - pts[None]) ** 2).sum(-1), np.float64)
    want = np.sort(d2, axis=1)[:, 1:4].mean(1)
    np.testing.assert_allclose(knn_mean_sq_dist(pts), want, rtol=1e-4)


def test_sh_degree_masking_and_dc():
    sh = jax.random.normal(jax.random.PRNGKey(2), (5, 9, 3))
    dirs = jax.random.normal(jax.random.PRNGKey(3), (5, 3))
    unit = dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
    basis = np.asarray(sh_basis(unit, 2), np.float64)
    for degree, k in ((0, 1), (1, 4), (2, 9)):
        want = np.maximum(np.einsum("nk,nkc->nc", basis[:, :k], np.asarray(sh[:, :k])) + 0.5, 0)
        np.testing.assert_allclose(eval_sh(sh, dirs, degree), want, rtol=F32_RTOL, atol=1e-6)
    np.testing.assert_allclose(basis[:, 0], C0)
    # Band 1 for d = +z is (0, C1, 0).
    band1 = sh_basis(jnp.asarray([[0.0, 0.0, 1.0]]), 1)[0, 1:]
    np.testing.assert_allclose(band1, [0, 0.4886025, 0], atol=1e-6)


def _stats(state, grad):
    radii = jnp.where(state.active[:, None], 3, 0).astype(jnp.int32)
    grads = jnp.full((state.capacity, 2), grad)
    return accumulate_grad_stats(init_grad_stats(state.capacity), grads, radii, width=W, height=H)


def test_densify_keeps_shapes_and_clones_or_splits(head):
    cfg = DensifyConfig(grad_threshold=1e-3, percent_dense=0.01)
    stats = _stats(head, 1.0)  # every active Gaussian is a candidate
    new, info = densify_and_prune(
        cfg, head, stats, jax.random.PRNGKey(4), extent=4.0, iteration=600
    )
    jax.tree.map(
        lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype) or pytest.fail("shape"), head, new
    )
    check_capacity(info, CAP)
    small = np.max(jax.nn.softplus(head.scales_raw[:24]), -1) <= 0.01 * 4.0
    assert int(info.n_clone) == small.sum() and int(info.n_split) == (~small).sum()
    assert int(info.n_active) == 48 and int(info.n_overflow) == 0
    # Clones copy their parent; split children have scale / 1.6.
    child_of = np.asarray(jnp.nonzero(~head.active, size=CAP - 24)[0])
    for i in range(24):
        j = child_of[i]
        if small[i]:
            np.testing.assert_array_equal(new.means[j], head.means[i])
        else:
            child, parent = jax.nn.softplus(new.scales_raw[j]), jax.nn.softplus(head.scales_raw[i])
            np.testing.assert_allclose(child, parent / 1.6, rtol=F32_RTOL)
    # Below-threshold gradients change nothing.
    same, info = densify_and_prune(
        cfg, head, _stats(head, 1e-6), jax.random.PRNGKey(4), extent=4.0, iteration=600
    )
    assert int(info.n_clone + info.n_split + info.n_prune) == 0
    jax.tree.map(np.testing.assert_array_equal, head, same)


def test_capacity_exhaustion_is_a_clear_error(head):
    tight = head.replace(active=jnp.arange(CAP) < 42)  # 42 active candidates, 6 free slots
    _, info = densify_and_prune(
        DensifyConfig(grad_threshold=1e-3),
        tight,
        _stats(tight, 1.0),
        jax.random.PRNGKey(5),
        extent=1.0,
        iteration=600,
    )
    assert int(info.n_overflow) == 42 - 6
    with pytest.raises(CapacityError, match="capacity of 48 exhausted"):
        check_capacity(info, CAP)


def test_inactive_slots_never_change_the_image(head):
    ref = _render(head)
    # Scribble over every free slot: garbage parameters, still inactive.
    junk = jax.random.normal(jax.random.PRNGKey(6), (CAP, 3))
    mask = ~head.active
    scribbled = head.replace(
        means=jnp.where(mask[:, None], junk * 0.05, head.means),
        scales_raw=jnp.where(mask[:, None], 1.0, head.scales_raw),
        opacity_logits=jnp.where(mask, 5.0, head.opacity_logits),
        sh=jnp.where(mask[:, None, None], 3.0, head.sh),
    )
    np.testing.assert_array_equal(_render(scribbled).rgb, ref.rgb)


def test_pruning_zero_opacity_gaussians_keeps_the_image(head):
    ghosts = head.replace(opacity_logits=head.opacity_logits.at[:6].set(-1e4))  # opacity 0
    before = _render(ghosts)
    pruned, info = densify_and_prune(
        DensifyConfig(),
        ghosts,
        init_grad_stats(CAP),
        jax.random.PRNGKey(7),
        extent=1.0,
        iteration=600,
    )
    assert int(info.n_prune) == 6 and not bool(pruned.active[:6].any())
    np.testing.assert_array_equal(pruned.active[6:24], True)
    np.testing.assert_allclose(_render(pruned).rgb, before.rgb, atol=IMAGE_ATOL)


def test_size_prune_and_opacity_reset(head):
    stats = init_grad_stats(CAP).replace(max_radii=jnp.where(jnp.arange(CAP) < 3, 50.0, 1.0))
    _, info = densify_and_prune(
        DensifyConfig(), head, stats, jax.random.PRNGKey(8), extent=1.0, iteration=2000
    )
    assert int(info.n_prune) == 0
    late, info = densify_and_prune(
        DensifyConfig(), head, stats, jax.random.PRNGKey(8), extent=1.0, iteration=4000
    )
    assert int(info.n_prune) == 3 and not bool(late.active[:3].any())
    reset = reset_opacity(head.replace(opacity_logits=head.opacity_logits.at[0].set(3.0)))
    opac = activated(reset, CAMPOS)[3]
    np.testing.assert_allclose(opac[:24], 0.01, rtol=F32_RTOL)


def test_world_size_prune(head):
    # One Gaussian larger than max_world_scale · extent: pruned only after size_prune_from.
    big = head.replace(scales_raw=head.scales_raw.at[5].set(3.0))  # softplus(3) ≈ 3.05 > 0.1
    stats = init_grad_stats(CAP)
    for iteration, n_pruned in ((2000, 0), (4000, 1)):
        new, info = densify_and_prune(
            DensifyConfig(), big, stats, jax.random.PRNGKey(8), extent=1.0, iteration=iteration
        )
        assert int(info.n_prune) == n_pruned and bool(new.active[5]) == (n_pruned == 0)


def test_apply_deformation_moves_centres_scales_and_rotations(head):
    k = jax.random.split(jax.random.PRNGKey(12), 3)
    d = DeformOut(
        d_xyz=0.01 * jax.random.normal(k[0], (CAP, 3)),
        d_rot=0.1 * jax.random.normal(k[1], (CAP, 4)),
        d_scale=0.1 * jax.random.normal(k[2], (CAP, 3)),
    )
    moved = apply_deformation(head, d)
    jax.tree.map(lambda a, b: a.shape == b.shape or pytest.fail("shape"), head, moved)
    means, quats, scales, opac, _ = activated(moved, CAMPOS)
    np.testing.assert_allclose(means, head.means + d.d_xyz, rtol=F32_RTOL)  # μ' = μ + Δμ
    q = np.asarray(head.quats + d.d_rot, np.float64)  # q' = normalise(q + Δr)
    np.testing.assert_allclose(
        quats, q / np.linalg.norm(q, axis=-1, keepdims=True), rtol=1e-5, atol=1e-6
    )
    s = np.asarray(head.scales_raw + d.d_scale, np.float64)  # scale' = softplus(raw + Δs)
    np.testing.assert_allclose(scales, np.logaddexp(0.0, s), rtol=F32_RTOL)
    np.testing.assert_array_equal(opac, activated(head, CAMPOS)[3])  # opacity unchanged
    with pytest.raises(AssertionError):
        apply_deformation(head, d.replace(d_rot=d.d_rot[:, :3]))


def test_camera_center():
    np.testing.assert_allclose(camera_center(VIEWMAT), CAMPOS, atol=1e-7)


def test_config_thresholds():
    cfg = model_config("paper")
    sched = get_config("paper").train
    assert densify_config(cfg.gaussians.face, sched.face).grad_threshold == 5e-4
    assert densify_config(cfg.gaussians.mouth, sched.mouth).grad_threshold == 2e-4
    assert cfg.gaussians.face.init_num == 2000 and cfg.gaussians.face.sh_degree == 2
    assert int(empty_gaussians(4).active.sum()) == 0


def test_composite_matches_the_fuse_formula():
    k = jax.random.split(jax.random.PRNGKey(9), 5)
    g = np.array([0.0, 1.0, 0.0])
    face_a, mouth_a = jax.random.uniform(k[0], (4, 5)), jax.random.uniform(k[1], (4, 5))
    face_c, mouth_c, bg = (jax.random.uniform(kk, (4, 5, 3)) for kk in k[2:])
    # Renders over green: colour + T·g.
    face_rgb = face_c * face_a[..., None] + g * (1 - face_a[..., None])
    mouth_rgb = mouth_c * mouth_a[..., None] + g * (1 - mouth_a[..., None])
    out, aux = composite(face_rgb, face_a, mouth_rgb, mouth_a, bg)
    m = mouth_c * mouth_a[..., None] + bg * (1 - mouth_a[..., None])
    want = face_c * face_a[..., None] + m * (1 - face_a[..., None])
    np.testing.assert_allclose(out, want, rtol=F32_RTOL, atol=1e-6)
    np.testing.assert_allclose(aux["mouth_over_bg"], m, rtol=F32_RTOL, atol=1e-6)
