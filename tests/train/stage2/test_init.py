"""The "image" initialisation: lifted points reproject onto their pixels with the pixels' colours."""

import numpy as np
import pytest

from ua3dtalk_jax.train.stage2.init import image_points, lift, region

H = W = 32


class FakeSubject:
    """Two training frames, a square head with a mouth hole; a rotated, translated camera."""

    path = "fake"

    def __init__(self, empty_mouth=False):
        c, s = np.cos(0.3), np.sin(0.3)
        self.vm = np.eye(4)
        self.vm[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        self.vm[:3, 3] = [0.05, -0.02, 1.2]
        self.k = np.array([[60.0, 0, 16], [0, 60.0, 16], [0, 0, 1]])
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8)
        self.empty_mouth = empty_mouth

    def split(self, name):
        return np.arange(2) if name == "train" else np.arange(0)

    def viewmat(self, i):
        return self.vm.astype(np.float32)

    def frame(self, i, keys):
        head = np.zeros((H, W), bool)
        head[4:28, 6:26] = True
        mouth = np.zeros((H, W), bool)
        if not self.empty_mouth:
            mouth[18:22, 12:20] = True
        f = {
            "image": self.images[i],
            "head_mask": head,
            "mouth_mask": mouth,
            "teeth_mask": np.zeros((H, W), bool),
            "K": self.k.astype(np.float32),
        }
        return {k: f[k] for k in keys}


def project(points, vm, k):
    cam = points @ vm[:3, :3].T + vm[:3, 3]
    uv = (cam @ k.T)[:, :2] / cam[:, 2:]
    return uv - 0.5, cam[:, 2]


def test_lift_inverts_the_projection():
    s = FakeSubject()
    px = np.array([[0.0, 0.0], [10.5, 20.25], [31.0, 31.0]])
    depth = np.array([1.0, 1.3, 0.9])
    back, z = project(lift(px, depth, s.vm, s.k), s.vm, s.k)
    np.testing.assert_allclose(back, px, atol=1e-9)
    np.testing.assert_allclose(z, depth, atol=1e-9)


@pytest.mark.parametrize("part", ["face", "mouth"])
def test_points_land_in_the_region_with_its_colours(part):
    s = FakeSubject()
    pts, cols, spacing = image_points(s, part, 200, seed=0, frames=2)
    assert pts.shape == (200, 3) and cols.shape == (200, 3) and spacing > 0
    uv, z = project(pts.astype(np.float64), s.vm, s.k)
    np.testing.assert_allclose(z, s.vm[2, 3], rtol=0.006)  # head-centre depth ± 0.5 %
    ij = np.clip(np.round(uv).astype(int), 0, W - 1)  # jitter stays inside the pixel
    mask = region(s.frame(0, ("head_mask", "mouth_mask", "teeth_mask")), part)
    assert mask[ij[:, 1], ij[:, 0]].all()
    # every colour is the colour of its pixel in one of the two frames
    ok = [
        (np.abs(s.images[:, y, x] / 255.0 - c).max(-1) < 1e-6).any() for (x, y), c in zip(ij, cols)
    ]
    assert all(ok)
    again = image_points(s, part, 200, seed=0, frames=2)
    np.testing.assert_array_equal(again[0], pts)  # a function of the seed (resumable)


def test_empty_region_is_named():
    with pytest.raises(ValueError, match="mouth region is empty"):
        image_points(FakeSubject(empty_mouth=True), "mouth", 10, seed=0)
