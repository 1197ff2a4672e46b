"""Hexplane (bilinear, border, product/concat), audio nets and the emotion encoder (Eq. 6)."""

import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.models.audio_net import AudioAttNet, AudioNet
from ua3dtalk_jax.models.emotion_encoder import EmotionEncoder
from ua3dtalk_jax.models.hexplane import PLANE_AXES, HexPlaneField, sample_plane

F32_RTOL = 1e-5  # float32 against a float64 loop of the same arithmetic
F32_ATOL = 1e-6


def _np_grid_sample(plane, u, v):
    """torch grid_sample(align_corners=True, padding_mode="border"), one point, float64."""
    rows, cols, _ = plane.shape
    x = min(max((u + 1) / 2 * (cols - 1), 0.0), cols - 1)
    y = min(max((v + 1) / 2 * (rows - 1), 0.0), rows - 1)
    x0, y0 = min(int(np.floor(x)), cols - 2), min(int(np.floor(y)), rows - 2)
    fx, fy = x - x0, y - y0
    p = plane.astype(np.float64)
    return (1 - fy) * ((1 - fx) * p[y0, x0] + fx * p[y0, x0 + 1]) + fy * (
        (1 - fx) * p[y0 + 1, x0] + fx * p[y0 + 1, x0 + 1]
    )


def test_sample_plane_matches_grid_sample_loop():
    plane = jax.random.normal(jax.random.PRNGKey(0), (5, 7, 3))
    # Inside, on the corners and far outside (border padding).
    uv = jnp.asarray([[0.1, -0.3], [-1.0, -1.0], [1.0, 1.0], [2.5, -4.0], [0.999, 0.5]])
    got = sample_plane(plane, uv)
    for i, (u, v) in enumerate(np.asarray(uv)):
        np.testing.assert_allclose(
            got[i], _np_grid_sample(np.asarray(plane), u, v), rtol=F32_RTOL, atol=F32_ATOL
        )


def test_hexplane_product_over_planes_concat_over_scales():
    field = HexPlaneField(bound=0.15, base_res=4, multires=(1, 2), channels=3)
    xyz = jax.random.uniform(jax.random.PRNGKey(1), (6, 3), minval=-0.2, maxval=0.2)
    (out, aux), params = jax.jit(field.init_with_output)(jax.random.PRNGKey(2), xyz)
    assert out.shape == (6, 6) and len(aux["per_scale"]) == 2
    p = jax.tree.map(np.asarray, params["params"])
    u = -np.asarray(xyz, np.float64) / 0.15  # the authors' flipped AABB
    for s in range(2):
        want = np.ones((6, 3))
        for j, (a, b) in enumerate(PLANE_AXES):
            plane = p[f"plane_{s}_{j}"]
            assert plane.shape == (4 * 2**s, 4 * 2**s, 3)
            assert plane.min() >= 0.1 and plane.max() <= 0.5
            want *= np.stack([_np_grid_sample(plane, *u[i, (a, b)]) for i in range(6)])
        np.testing.assert_allclose(out[:, 3 * s : 3 * s + 3], want, rtol=F32_RTOL, atol=F32_ATOL)


def test_paper_hexplane_parameter_count():
    shapes = jax.eval_shape(
        lambda k: HexPlaneField().init(k, jnp.zeros((2, 3))), jax.random.PRNGKey(0)
    )
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
    assert count == 3 * 16 * (64**2 + 128**2 + 256**2 + 512**2) == 16_711_680


def test_audio_nets_shapes_and_attention():
    aud = jax.random.normal(jax.random.PRNGKey(3), (8, 16, 29))  # DeepSpeech width works too
    net = AudioNet()
    codes, params = jax.jit(net.init_with_output)(jax.random.PRNGKey(4), aud)
    assert codes.shape == (8, 32)
    assert params["params"]["Conv_0"]["kernel"].shape == (3, 29, 32)
    att = AudioAttNet()
    (code, weights), _ = jax.jit(att.init_with_output)(jax.random.PRNGKey(5), codes)
    assert code.shape == (32,) and weights.shape == (8,)
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=F32_RTOL)
    np.testing.assert_allclose(code, weights @ codes, rtol=F32_RTOL, atol=F32_ATOL)


def test_emotion_encoder_shapes_and_codebooks():
    enc = EmotionEncoder(dim=8, base_res=4, multires=(1, 2, 4))
    xyz = jax.random.uniform(jax.random.PRNGKey(6), (5, 3), minval=-0.1, maxval=0.1)
    f_emo = jax.random.normal(jax.random.PRNGKey(7), (128,))
    (out, aux), params = jax.jit(enc.init_with_output)(jax.random.PRNGKey(8), f_emo, xyz)
    p = params["params"]
    assert [p[f"codebook_{i}"].shape for i in range(3)] == [(4, 8), (8, 8), (16, 8)]
    assert p["proj"]["kernel"].shape == (128, 8)
    assert out.shape == (5, 24)
    for a in aux["code_att"]:
        np.testing.assert_allclose(a.sum(), 1.0, rtol=F32_RTOL)
    # Eq. 6 by hand at scale 0: plane product ⊙ softmax(e Cᵀ/√d) C.
    e = f_emo @ p["proj"]["kernel"] + p["proj"]["bias"]
    att = jax.nn.softmax(p["codebook_0"] @ e / np.sqrt(8.0))
    grid = HexPlaneField(0.15, 4, (1, 2, 4), 8)
    planes, _ = grid.apply({"params": p["grid"]}, xyz)
    np.testing.assert_allclose(
        out[:, :8], planes[:, :8] * (att @ p["codebook_0"]), rtol=F32_RTOL, atol=F32_ATOL
    )
    other, _ = jax.jit(enc.apply)(params, -f_emo, xyz)
    assert not np.allclose(out, other)
