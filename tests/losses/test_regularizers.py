"""Regularisers and the patch / crop LPIPS terms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.losses import image, regularizers


def test_deformation_l1_ignores_inactive_rows():
    d = jnp.array([[1.0, -1.0, 1.0], [100.0, 100.0, 100.0]])
    active = jnp.array([True, False])
    assert float(regularizers.deformation_l1(d, None, d, active)) == pytest.approx(2.0)


def test_alpha_mask_is_zero_only_for_a_perfect_silhouette():
    region = jnp.zeros((8, 8), bool).at[2:6, 2:6].set(True)
    assert float(regularizers.alpha_mask(region.astype(jnp.float32), region)) == 0.0
    assert float(regularizers.alpha_mask(jnp.full((8, 8), 0.5), region)) == pytest.approx(0.5)


def test_rect_mask_bounds():
    m = regularizers.rect_mask(jnp.array([1, 3, 2, 5]), 6, 6)
    assert m.sum() == 6 and bool(m[1, 2]) and not bool(m[3, 2]) and not bool(m[1, 5])


def test_patch_and_crop_lpips_zero_on_identical_and_positive_on_noise():
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.uniform(size=(96, 80, 3)).astype(np.float32))
    b = jnp.clip(a + 0.2 * jnp.asarray(rng.normal(size=a.shape).astype(np.float32)), 0, 1)
    key = jax.random.key(0)
    patch = lambda x, y: float(image.patch_lpips(x, y, sizes=(32, 32), size_key=key, rng=key))
    assert patch(a, a) == pytest.approx(0.0, abs=1e-6)
    assert patch(a, b) > 0.01
    rect = jnp.array([40, 60, 30, 50])
    assert float(image.crop_lpips(a, a, rect, size=32)) == pytest.approx(0.0, abs=1e-6)
    assert float(image.crop_lpips(a, b, rect, size=32)) > 0.01
