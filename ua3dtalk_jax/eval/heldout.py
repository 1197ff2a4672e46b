"""Held-out evaluation: a split rendered through the fused head and scored against gt_imgs.

`evaluate_heldout(cfg, subject, features, heads)` renders every frame of the split with the full
ensemble and returns mean PSNR, SSIM and LPIPS plus the mouth-region and lips PSNR, pooled over the
pixels of every frame. Training passes it to `train.run.train` (train/ does not import eval/), so
summary.json holds these numbers; `eval.evaluation` renders its tables through it too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.data.images import to_float
from ua3dtalk_jax.head.features import frame_with_features
from ua3dtalk_jax.head.render import render_fused
from ua3dtalk_jax.losses import image as image_losses
from ua3dtalk_jax.losses.regularizers import rect_mask


def evaluate_heldout(
    cfg,
    subject,
    features,
    heads,
    *,
    split: str = "val",
    use_deform=True,
    frames=None,
    on_frame=None,
) -> dict:
    """Renders the held-out frames (full ensemble) and measures them against gt_imgs.

    Returns:
      {"psnr", "ssim", "lpips"} means over frames, "psnr_mouth" (pooled over the mouth-interior
      and teeth pixels of every frame), "psnr_lips" (pooled over the lips rectangles), "frames".
    """
    h, w = subject.size
    idx = subject.split(split) if frames is None else np.asarray(frames)

    @jax.jit
    def one(f):
        pred = render_fused(
            heads["face"],
            heads["mouth"],
            f,
            width=w,
            height=h,
            backend=cfg.backend,
            use_deform=use_deform,
        )["rgb"]
        gt = to_float(f["image"])
        mouth = (f["mouth_mask"] | f["teeth_mask"])[..., None]
        lips = rect_mask(f["lips_rect"], h, w)[..., None]
        se = (pred - gt) ** 2
        return pred, {
            "psnr": image_losses.psnr(pred, gt),
            "ssim": image_losses.ssim(pred, gt),
            "lpips": image_losses.lpips(pred[None], gt[None])[0],
            "se_mouth": jnp.sum(se * mouth),
            "n_mouth": 3.0 * jnp.sum(mouth),
            "se_lips": jnp.sum(se * lips),
            "n_lips": 3.0 * jnp.sum(lips),
        }

    acc = []
    for i in idx:
        pred, m = one(
            {k: jnp.asarray(v) for k, v in frame_with_features(subject, features, int(i)).items()}
        )
        acc.append({k: float(v) for k, v in m.items()})
        if on_frame is not None:
            on_frame(int(i), np.asarray(pred))
    if not acc:
        raise ValueError(f"{subject.path}: the {split!r} split has no frames")

    def pooled(se, n):
        s, c = sum(a[se] for a in acc), sum(a[n] for a in acc)
        return float(10 * np.log10(c / s)) if c > 0 and s > 0 else float("nan")

    return {
        "psnr": float(np.mean([a["psnr"] for a in acc])),
        "ssim": float(np.mean([a["ssim"] for a in acc])),
        "lpips": float(np.mean([a["lpips"] for a in acc])),
        "psnr_mouth": pooled("se_mouth", "n_mouth"),
        "psnr_lips": pooled("se_lips", "n_lips"),
        "frames": len(acc),
    }
