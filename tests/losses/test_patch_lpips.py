"""Patch LPIPS as the authors draw it: random even sizes, non-overlapping patches inside the image.

The placement is checked on a coordinate image (each pixel holds its own row and column), where a
patch that wrapped around an edge would show a jump in its coordinates; the loss itself against
the mean LPIPS of exactly those tiles.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.losses import image

H, W = 80, 72  # not multiples of the sizes below: the grid has room to move
SIZES = (32, 36)  # three sizes (32, 34, 36): three LPIPS compilations in the loss test
KEYS = 40  # draws per property check
LPIPS_TOL = 1e-5  # float32: the same tiles through the same network, one switch branch


def coordinate_image(h: int, w: int) -> jax.Array:
    """(h, w, 3): channel 0 = row, channel 1 = column, channel 2 = 0."""
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return jnp.asarray(np.stack([rows, cols, np.zeros_like(rows)], -1), jnp.float32)


@pytest.mark.parametrize("patch", [32, 34, 36, 48])
def test_patches_lie_inside_the_image_without_wrapping_or_overlap(patch):
    img = coordinate_image(H, W)
    for i in range(KEYS):
        tiles = np.asarray(image.patch_grid(img, img, patch, jax.random.key(i)))
        assert tiles.shape == (2, (H // patch) * (W // patch), patch, patch, 3)
        rows, cols = tiles[0, ..., 0], tiles[0, ..., 1]
        # contiguous coordinates: a wrapped patch jumps from the last row/column to the first
        np.testing.assert_array_equal(np.diff(rows, axis=1), 1)
        np.testing.assert_array_equal(np.diff(cols, axis=2), 1)
        assert rows.min() >= 0 and rows.max() < H and cols.min() >= 0 and cols.max() < W
        covered = np.zeros((H, W), int)
        for r, c in zip(rows.reshape(len(rows), -1), cols.reshape(len(cols), -1)):
            covered[r.astype(int), c.astype(int)] += 1
        assert covered.max() == 1  # non-overlapping
        np.testing.assert_array_equal(tiles[1], tiles[0])  # target tiles at the same places


def test_grid_origin_moves_over_every_in_image_position():
    img = coordinate_image(H, W)
    origins = {
        tuple(np.asarray(image.patch_grid(img, img, 32, jax.random.key(i)))[0, 0, 0, 0, :2])
        for i in range(200)
    }
    # H − 2·32 = 16 rows and W − 2·32 = 8 columns of slack: 17 × 9 origins
    assert {o[0] for o in origins} == set(range(H - 64 + 1))
    assert {o[1] for o in origins} == set(range(W - 64 + 1))


def test_sizes_are_even_within_range_and_deterministic_in_the_key():
    assert image.even_sizes(64, 96) == tuple(range(64, 97, 2))  # the authors' face draw
    assert image.even_sizes(32, 42) == (32, 34, 36, 38, 40, 42)  # mouth and fuse
    assert image.even_sizes(33, 42, step=8) == (34, 42)
    drawn = [int(image.draw_patch_size((64, 96), jax.random.key(i))) for i in range(KEYS)]
    assert all(s % 2 == 0 and 64 <= s <= 96 for s in drawn)
    assert len(set(drawn)) > 8  # uniform over 17 sizes: 40 draws hit far more than 8
    again = [int(image.draw_patch_size((64, 96), jax.random.key(i))) for i in range(KEYS)]
    assert again == drawn


def test_bad_ranges_name_the_problem():
    with pytest.raises(ValueError, match="at least 32"):
        image.even_sizes(16, 24)
    with pytest.raises(ValueError, match="no even size"):
        image.even_sizes(35, 35)
    with pytest.raises(ValueError, match="positive even"):
        image.even_sizes(32, 42, step=3)
    a = jnp.zeros((40, 40, 3))
    with pytest.raises(ValueError, match="exceed the image"):
        image.patch_lpips(a, a, sizes=(32, 42), size_key=jax.random.key(0), rng=jax.random.key(0))


def test_loss_is_the_mean_lpips_of_the_drawn_tiles_and_one_program_serves_every_size():
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.uniform(size=(H, W, 3)).astype(np.float32))
    b = jnp.clip(a + 0.2 * jnp.asarray(rng.normal(size=a.shape).astype(np.float32)), 0, 1)
    loss = jax.jit(lambda sk, k: image.patch_lpips(a, b, sizes=SIZES, size_key=sk, rng=k))
    seen = set()
    for i in range(12):
        sk, k = jax.random.key(100 + i), jax.random.key(i)
        p = int(image.draw_patch_size(SIZES, sk))
        seen.add(p)
        tiles = image.patch_grid(a, b, p, k)
        want = float(jnp.mean(image.lpips(tiles[0], tiles[1])))
        assert float(loss(sk, k)) == pytest.approx(want, rel=LPIPS_TOL, abs=LPIPS_TOL)
    assert seen == {32, 34, 36}
    assert loss._cache_size() == 1  # a new size is a switch branch, not a recompilation
    assert float(loss(sk, k)) == float(loss(sk, k))  # deterministic in the keys


def test_vmapped_loss_keeps_one_size_per_step():
    """With an unbatched size key vmap keeps the `lax.switch` a `cond` (one branch runs); a
    per-frame size key would turn it into running every size."""
    x = jnp.zeros((2, H, W, 3))
    keys = jax.random.split(jax.random.key(0), 2)
    f = jax.vmap(
        lambda a, k: image.patch_lpips(a, a, sizes=SIZES, size_key=jax.random.key(1), rng=k)
    )
    jaxpr = str(jax.make_jaxpr(f)(x, keys))
    assert "cond[" in jaxpr
