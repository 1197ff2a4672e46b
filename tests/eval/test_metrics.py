"""Per-frame image metrics, the Fréchet distance and the results-table writer."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import scipy.linalg
import skimage.data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ua3dtalk_jax.eval import metrics as M

# float32 JAX vs float64 scikit-image: SSIM agrees to ~3e-6 (reference doc §2c), PSNR to ~1e-5 dB.
SSIM_TOL = 2e-5
PSNR_TOL_DB = 1e-3
# LPIPS of identical inputs: exact up to float32 rounding of the AlexNet features.
LPIPS_ZERO_TOL = 1e-6


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    gt = skimage.data.astronaut()[::4, ::4].astype(np.float32) / 255.0  # 128²
    noisy = [np.clip(gt + s * rng.standard_normal(gt.shape), 0, 1) for s in (0.02, 0.05, 0.1)]
    return gt, np.stack(noisy).astype(np.float32)


def test_psnr_ssim_match_scikit_image(frames):
    gt, noisy = frames
    out = M.image_metrics(noisy, np.repeat(gt[None], 3, 0), lpips=False)
    for i, img in enumerate(noisy):
        psnr = peak_signal_noise_ratio(gt.astype(np.float64), img.astype(np.float64), data_range=1)
        ssim = structural_similarity(
            gt,
            img,
            channel_axis=-1,
            data_range=1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert out["PSNR"][i] == pytest.approx(psnr, abs=PSNR_TOL_DB)
        assert out["SSIM"][i] == pytest.approx(ssim, abs=SSIM_TOL)


def test_lpips_zero_for_identical_and_monotone_in_noise(frames):
    gt, noisy = frames
    stack = np.concatenate([gt[None], noisy])
    out = M.image_metrics(stack, np.repeat(gt[None], 4, 0), batch=2)
    assert out["LPIPS"][0] < LPIPS_ZERO_TOL
    assert np.all(np.diff(out["LPIPS"]) > 0) and np.all(np.diff(out["PSNR"][1:]) < 0)


def test_uint8_input(frames):
    gt, _ = frames
    u8 = (gt * 255).round().astype(np.uint8)
    out = M.image_metrics(u8[None], u8[None], lpips=False)
    assert out["SSIM"][0] == pytest.approx(1.0, abs=1e-6)


def _fd_sqrtm(mu1, s1, mu2, s2):
    """pytorch-fid's formula with scipy.linalg.sqrtm (slow twin)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)


def test_frechet_distance_closed_forms_and_sqrtm():
    # 1-D: (μ1 − μ2)² + (σ1 − σ2)²; diagonal: the sum over dimensions.
    assert M.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 1.0])
    expect = 1.0 + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert M.frechet_distance(np.zeros(3), np.diag(v1), np.eye(3)[0], np.diag(v2)) == pytest.approx(
        expect
    )
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 16)), rng.normal(size=(150, 16)) @ rng.normal(size=(16, 16))
    mu1, s1 = M.gaussian_stats(a)
    mu2, s2 = M.gaussian_stats(b)
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        _fd_sqrtm(mu1, s1, mu2, s2), rel=1e-8
    )


def test_expression_fd_self_zero_and_grows_with_perturbation():
    rng = np.random.default_rng(2)
    coeffs = rng.normal(size=(300, 64)) @ rng.normal(scale=0.3, size=(64, 64))
    assert M.expression_frechet_distance(coeffs, coeffs) == pytest.approx(0.0, abs=1e-8)
    fds = [
        M.expression_frechet_distance(coeffs + s * rng.normal(size=coeffs.shape), coeffs)
        for s in (0.05, 0.2, 0.5)
    ]
    assert 0 < fds[0] < fds[1] < fds[2]
    assert M.expression_frechet_distance(coeffs + 0.3, coeffs) == pytest.approx(64 * 0.09, rel=1e-6)
    with pytest.raises(ValueError):
        M.expression_frechet_distance(coeffs, coeffs[:, :10])


def test_write_results_json_csv_markdown(tmp_path):
    rows = [
        {"method": "ours", "PSNR": 28.92346, "LPIPS": 0.032, "Sync-C": None, M.EFD_OWN: 0.5},
        {
            "method": "baseline",
            "PSNR": 25.5,
            "LPIPS": float("nan"),
            "Sync-C": None,
            M.EFD_OWN: 1.25,
        },
    ]
    paths = M.write_results(rows, str(tmp_path / "wd"), extra={"per_frame": np.arange(3.0)})
    with open(paths["json"]) as f:
        doc = json.load(f)
    assert doc["columns"] == ["method", "PSNR", "LPIPS", "Sync-C", M.EFD_OWN]
    assert doc["rows"][0]["PSNR"] == 28.92346 and doc["rows"][0]["Sync-C"] == M.NOT_AVAILABLE
    assert "NOT the paper's E-FID" in doc["definitions"][M.EFD_OWN]
    assert doc["extra"]["per_frame"] == [0.0, 1.0, 2.0]
    with open(paths["csv"]) as f:
        table = list(csv.reader(f))
    assert table[1] == ["ours", "28.9235", "0.0320", M.NOT_AVAILABLE, "0.5000"]
    assert table[2][2] == M.NOT_AVAILABLE  # NaN
    with open(paths["md"]) as f:
        md = f.read()
    assert md.startswith("| method ") and "PSNR↑" in md and "LPIPS↓" in md
    assert f"- {M.EFD_OWN}: " in md and md == M.format_table(rows)
