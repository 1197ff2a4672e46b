"""Image losses against scikit-image and LPIPS sanity properties."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
import skimage.metrics
import skimage.transform

from ua3dtalk_jax.losses import image

# float32 filtering of 11x11 windows vs skimage's float64: agreement to ~1e-5.
SSIM_TOL = 2e-5
PSNR_TOL = 1e-3


@pytest.fixture(scope="module")
def astronaut():
    img = skimage.transform.resize(skimage.data.astronaut(), (96, 128), anti_aliasing=True)
    return img.astype(np.float32)


@pytest.mark.parametrize("kind", ["noise", "blur", "shift"])
def test_ssim_matches_skimage(astronaut, kind):
    rng = np.random.default_rng(0)
    if kind == "noise":
        other = np.clip(astronaut + rng.normal(0, 0.05, astronaut.shape), 0, 1)
    elif kind == "blur":
        import scipy.ndimage

        other = scipy.ndimage.gaussian_filter(astronaut, sigma=(2, 2, 0))
    else:
        other = np.roll(astronaut, 3, axis=1)
    other = other.astype(np.float32)
    ref = skimage.metrics.structural_similarity(
        astronaut,
        other,
        channel_axis=-1,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    got = float(image.ssim(jnp.asarray(astronaut), jnp.asarray(other)))
    assert abs(got - ref) < SSIM_TOL, (got, ref)
    assert float(image.ssim(jnp.asarray(astronaut), jnp.asarray(astronaut))) == pytest.approx(1.0)


def test_psnr_matches_skimage(astronaut):
    other = np.clip(astronaut + 0.03, 0, 1).astype(np.float32)
    ref = skimage.metrics.peak_signal_noise_ratio(astronaut, other, data_range=1.0)
    assert float(image.psnr(jnp.asarray(astronaut), jnp.asarray(other))) == pytest.approx(
        ref, abs=PSNR_TOL
    )


def test_l1_mask_averages_only_masked_pixels():
    a = jnp.zeros((4, 4, 3))
    b = jnp.ones((4, 4, 3)).at[:2].set(0.0)
    mask = jnp.zeros((4, 4), bool).at[2:].set(True)
    assert float(image.l1(a, b, mask)) == pytest.approx(1.0)
    assert float(image.l1(a, b)) == pytest.approx(0.5)


def test_ssim_rejects_small_or_mismatched():
    with pytest.raises(ValueError, match="at least 11"):
        image.ssim(jnp.zeros((8, 8, 3)), jnp.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="shapes differ"):
        image.ssim(jnp.zeros((16, 16, 3)), jnp.zeros((16, 17, 3)))


def test_lpips_zero_for_identical_and_monotone_in_noise(astronaut):
    rng = np.random.default_rng(1)
    x = jnp.asarray(astronaut)[None]
    vals = []
    for sigma in (0.0, 0.03, 0.1, 0.3):
        y = jnp.clip(x + sigma * rng.normal(size=x.shape).astype(np.float32), 0, 1)
        vals.append(float(image.lpips(x, y)[0]))
    assert vals[0] == pytest.approx(0.0, abs=1e-6)
    assert all(a < b for a, b in itertools.pairwise(vals)), vals


def test_lpips_rejects_images_too_small_for_alexnet():
    x = jnp.zeros((1, 16, 16, 3))
    with pytest.raises(ValueError, match="at least 32"):
        image.lpips(x, x)
