"""torso_imgs: the neck-and-torso layer, with the neck continued up under the chin.

The fused frame is face over mouth over this layer over bc.jpg (`gaussians.compose`). The face
branch learns its region against green everywhere outside the head, so its alpha falls off over
the last pixel or two of the jaw line, and a held-out frame's rendered chin never sits exactly on
that frame's own chin. A layer cut at the chin (alpha 0 wherever the head is) lets bc.jpg show
through every such gap: a thin background-coloured line under the chin whenever the jaw moves.

TalkingGaussian / ER-NeRF avoid it where the subject is written (`data_utils/process.py`,
`extract_torso_and_gt`): the neck is continued upward under the head, so whatever the face leaves
uncovered there shows neck, never background. Per image column whose top neck pixel (the neck
first dilated NECK_DILATE px up and down) has head directly above it, the colour NECK_PUSH_DOWN px
below that top is copied NECK_EXTEND + NECK_PUSH_DOWN + 1 px upward, darkened ×DARKEN per pixel,
and the copied strip is blurred (BLUR_KERNEL) against vertical streaks; the torso is continued
TORSO_EXTEND + 1 px up under the head the same way (unblurred; the neck strip wins where both
reach). The neck strip is then widened NECK_SIDE px sideways over the head pixels of the columns
it does not run up (each pixel the colour of its neighbour towards the strip): at the jaw line's
lateral ends the chin overhangs the neck's top, those columns have background or the neck's side
right below the head, and a jaw rendered a pixel lower there would uncover them. The strips are
opaque and cover head pixels only: outside the head the layer is the person as the frame shows
it, and the head is transparent elsewhere.

Lengths are the authors' pixels at their 512² crops (REF_SIZE), scaled with the frame height here
(at least 1 px), and the darkening per pixel is scaled so that a strip darkens as much over the
same fraction of the frame. Two departures, both keeping the layer equal to the frame outside the
head: the authors' strip also rewrites (darkens, blurs) the top rows of the neck itself, ours
starts above them; and they blur the whole torso image and copy the blurred strip back, which
mixes the background colour into the strip's edges, where here the blur is normalised over the
layer's own opaque pixels. The sideways widening is ours (their strip leaves the jaw's lateral ends
to the torso image's blur).
"""

from __future__ import annotations

import cv2
import numpy as np

REF_SIZE = 512  # the authors' crop side, for which the pixel lengths below were chosen
NECK_EXTEND = 48  # px the neck is continued above its top
NECK_PUSH_DOWN = 4  # px below the (dilated) top where the copied colour is read
NECK_DILATE = 3  # px the neck mask is first grown up and down (bridges parsing gaps)
TORSO_EXTEND = 8  # px the torso is continued above its top, where the head sits on it
DARKEN = 0.98  # colour factor per copied pixel, at REF_SIZE
BLUR_KERNEL = 5  # Gaussian kernel side over the neck strip, at REF_SIZE
NECK_SIDE = 16  # px the neck strip is widened sideways over the jaw line's lateral ends


def _scaled(px: float, height: int) -> int:
    return max(1, round(px * height / REF_SIZE))


def _strip(mask: np.ndarray, head: np.ndarray, length: int, push_down: int):
    """The strip above each column's top `mask` pixel that has `head` right above it.

    Returns:
      src (M,) source rows, cols (M,), rows (L, M) strip rows (src − k; negative = off the top),
      k (L, 1) the distance of each strip row from its source.
    """
    top = mask.argmax(0)
    cols = np.nonzero(mask.any(0) & (top > 0))[0]
    cols = cols[head[top[cols] - 1, cols]]
    push = np.minimum(mask[:, cols].sum(0) - 1, push_down)
    src = top[cols] + push
    k = np.arange(length)[:, None]
    return src, cols, src[None] - k, k


def _paint(rgb, src_rgb, mask, head, length, push_down, per_px) -> np.ndarray:
    """Writes one continuation into rgb (in place) on the head pixels it crosses (the person
    outside the head stays as it is); returns its (H, W) bool footprint."""
    src, cols, rows, k = _strip(mask, head, length, push_down)
    colour = src_rgb[src, cols][None] * per_px ** k[..., None]  # (L, M, 3)
    cc = np.broadcast_to(cols[None], rows.shape)
    on = rows >= 0
    on[on] = head[rows[on], cc[on]]
    rgb[rows[on], cc[on]] = colour[on]
    painted = np.zeros(mask.shape, bool)
    painted[rows[on], cc[on]] = True
    return painted


def _widen(rgb, strip, head, side) -> np.ndarray:
    """Widens `strip` (in place in rgb) `side` px sideways over the head pixels of the columns it
    does not reach, one px a pass, each new pixel the colour of its covered neighbour (the left
    one where both are); returns the added (H, W) bool footprint."""
    cover = strip.copy()
    free = head & ~strip.any(0)[None]
    for _ in range(side):
        from_left = np.zeros_like(cover)
        from_left[:, 1:] = free[:, 1:] & ~cover[:, 1:] & cover[:, :-1]
        from_right = np.zeros_like(cover)
        from_right[:, :-1] = free[:, :-1] & ~cover[:, :-1] & cover[:, 1:] & ~from_left[:, :-1]
        ys, xs = np.nonzero(from_left)
        rgb[ys, xs] = rgb[ys, xs - 1]
        ys, xs = np.nonzero(from_right)
        rgb[ys, xs] = rgb[ys, xs + 1]
        cover |= from_left | from_right
    return cover & ~strip


def torso_rgba(
    rgb: np.ndarray, alpha: np.ndarray, head: np.ndarray, neck: np.ndarray, torso: np.ndarray
) -> np.ndarray:
    """The torso_imgs frame: the person outside the head, the neck continued under the chin.

    Args:
      rgb: (H, W, 3) uint8 or float colours of the person (the frame).
      alpha: (H, W) float in [0, 1], the person's coverage outside the head: 1 on neck and torso,
        soft along the silhouette where a matte has a fringe (a binary cut-out passes neck|torso).
      head: (H, W) bool, everything the Gaussians render (face, mouth, teeth, hair).
      neck, torso: (H, W) bool region masks.
    Returns:
      (H, W, 4) uint8 RGBA: alpha 0 on the head except the continuations (alpha 255 there), the
      colour 0 wherever alpha is.
    """
    h, w = head.shape
    for name, m in (("rgb", rgb), ("alpha", alpha), ("neck", neck), ("torso", torso)):
        if np.shape(m)[:2] != (h, w):
            raise ValueError(f"torso_rgba: {name} is {np.shape(m)}, head is {(h, w)}")
    src = np.asarray(rgb, np.float32)
    out = src.copy()
    a = np.where(head, 0.0, np.asarray(alpha, np.float32))
    per_px = DARKEN ** (REF_SIZE / h)
    strip = _paint(out, src, torso, head, _scaled(TORSO_EXTEND, h) + 1, 0, per_px)
    d = _scaled(NECK_DILATE, h)
    grown = cv2.dilate(neck.astype(np.uint8), np.ones((2 * d + 1, 1), np.uint8)).astype(bool)
    push = _scaled(NECK_PUSH_DOWN, h)
    neck_strip = _paint(out, src, grown, head, _scaled(NECK_EXTEND, h) + push + 1, push, per_px)
    neck_strip |= _widen(out, neck_strip, head & ~strip, _scaled(NECK_SIDE, h))
    a = np.where(strip | neck_strip, 1.0, a)
    ksize = 2 * round((BLUR_KERNEL // 2) * h / REF_SIZE) + 1
    if ksize > 1 and neck_strip.any():
        num = cv2.GaussianBlur(out * a[..., None], (ksize, ksize), 0)
        den = cv2.GaussianBlur(a, (ksize, ksize), 0)[..., None]
        out = np.where(neck_strip[..., None], num / np.maximum(den, 1e-6), out)
    layer = np.concatenate([out * (a[..., None] > 0), 255.0 * a[..., None]], -1)
    return np.clip(np.round(layer), 0, 255).astype(np.uint8)
