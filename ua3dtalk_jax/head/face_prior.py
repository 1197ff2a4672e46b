"""The 3D expression prior from a user's Deep3DFaceRecon weights at inference (paper §2.1).

    f_exp(i) = Recon(align(ref_k ⊕ G(masked ref_k, ref_k, mel i)))[80:144],   k = i mod K

`ref_k ⊕ G` is the aligned reference frame k with the lower half of the lip expert's crop pasted
back (a `PASTE_FEATHER`-row ramp hides the seam), as Wav2Lip pastes its output into the video. The
aligned references and their crop → aligned affines are stored in the stage-1 checkpoint
(`FacePrior`), so novel audio needs no video; building them and scoring f_exp is
`train/stage1/face.py`.
"""

from __future__ import annotations

import dataclasses

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.models.prior import face_align
from ua3dtalk_jax.models.prior.face_recon import EXP, FaceReconNet, load_face_recon

ALIGNED_SHAPE = (face_align.TARGET, face_align.TARGET, 3)
CHUNK = 16  # frames per jitted network call (fixed: one compile)
PASTE_FEATHER = 1 / 16  # of the crop side: rows over which the pasted lower half fades in


@dataclasses.dataclass
class FacePrior:
    """The loaded network and the aligned reference frames that lip-wav crops are pasted into."""

    model: FaceReconNet
    variables: dict
    frames: np.ndarray  # (K, 224, 224, 3) uint8 aligned reference frames
    affine: np.ndarray  # (K, 2, 3) float32: reference crop pixels → aligned pixels


def weights_path(cfg) -> str:
    """`stage1.prior.face_recon_weights` of a stage-1 config."""
    return str(cfg.prior.face_recon_weights)


def load_network(cfg) -> tuple[FaceReconNet, dict] | None:
    """The frozen network the config names, or None (the regressor path)."""
    path = weights_path(cfg)
    if not path:
        return None
    try:
        return load_face_recon(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"stage1.prior.face_recon_weights={path}: file not found") from None


def coefficients(net: tuple[FaceReconNet, dict], batches) -> np.ndarray:
    """(N, 257) coefficients of aligned faces.

    Args:
      net: (model, variables).
      batches: (N, 224, 224, 3) aligned faces (uint8, or float in [0, 1]), or an iterable of such
        arrays (made on the fly, so N × 224² need never be held at once).
    """
    model, variables = net
    fn = jax.jit(model.apply)  # one jitted function for every chunk: one compile
    out = []
    for x in [batches] if isinstance(batches, np.ndarray) else batches:
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        for a in range(0, len(x), CHUNK):
            idx = np.minimum(np.arange(a, a + CHUNK), len(x) - 1)  # padded to a fixed shape
            out.append(np.asarray(fn(variables, jnp.asarray(x[idx])))[: len(x) - a])
    return np.concatenate(out) if out else np.zeros((0, 257), np.float32)


def paste_mask(face_size: int) -> np.ndarray:
    """(S, S) float32 weight of the generated crop: 1 on its lower half (the rows the lip
    expert's input masks), 0 above, with a linear ramp of `PASTE_FEATHER`·S rows before it."""
    s = face_size
    f = max(1.0, PASTE_FEATHER * s)
    rows = np.clip((np.arange(s) - (s // 2 - f)) / f, 0.0, 1.0)
    return np.repeat(rows[:, None], s, axis=1).astype(np.float32)


def paste(lipwav: np.ndarray, refs: dict, ref_idx: np.ndarray) -> np.ndarray:
    """Aligned 224² faces: reference frame ref_idx[i] with lipwav[i]'s lower half pasted.

    Args:
      lipwav: (N, S, S, 3) float in [0, 1] lip-expert outputs.
      refs: `paste_refs` output; ref_idx: (N,) which reference each crop was generated from.
    Returns:
      (N, 224, 224, 3) float32 in [0, 1].
    """
    s, t = lipwav.shape[1], face_align.TARGET
    mask = paste_mask(s)
    out = np.empty((len(lipwav), t, t, 3), np.float32)
    for i, (crop, k) in enumerate(zip(np.asarray(lipwav, np.float32), ref_idx)):
        a = refs["affine"][k].astype(np.float64)
        gen = cv2.warpAffine(
            crop, a, (t, t), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        w = cv2.warpAffine(mask, a, (t, t), flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
        out[i] = w * gen + (1.0 - w) * (refs["frames"][k].astype(np.float32) / 255.0)
    return out


def lipwav_exp(face: FacePrior, lipwav: np.ndarray) -> np.ndarray:
    """f_exp (N, 64) of lip-wav crops generated from references i mod K (`lipwav_images`)."""
    lw = np.asarray(lipwav)
    refs = {"frames": face.frames, "affine": face.affine}
    k = len(face.frames)
    chunks = (
        paste(lw[a : a + CHUNK], refs, np.arange(a, min(a + CHUNK, len(lw))) % k)
        for a in range(0, len(lw), CHUNK)
    )
    return coefficients((face.model, face.variables), chunks)[:, EXP].astype(np.float32)
