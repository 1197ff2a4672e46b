"""experiments.gpu_check without a GPU: it refuses with one line and exit status 2, writes
nothing, and says why (no nvidia-smi; GPUs that JAX cannot see). The report writer is checked
on recorded part results, so that the first GPU run does not fail on formatting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.tools import import_tool


@pytest.fixture
def gpu_check():
    return import_tool("gpu_check")


def test_cli_refuses_without_a_gpu(gpu_check, tmp_path):
    out = tmp_path / "report.md"
    # A PATH without nvidia-smi: the refusal must not depend on this machine.
    env = dict(os.environ, PATH=os.path.dirname(sys.executable), PYTHONPATH=gpu_check.ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.gpu_check", f"--out={out}"],
        cwd=gpu_check.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        "gpu_check: no NVIDIA GPU visible (nvidia-smi not found); this check needs one"
    ]
    assert not out.exists()


def test_refuses_when_jax_sees_no_gpu(gpu_check, monkeypatch):
    monkeypatch.setattr(gpu_check.shutil, "which", lambda name: "/usr/bin/" + name)

    def fake_run(cmd, timeout, env=None):
        if cmd[0].endswith("nvidia-smi"):
            return {
                "ok": True,
                "code": 0,
                "seconds": 0.1,
                "out": "0, NVIDIA H100 80GB HBM3, 9.0, 81559 MiB, 580.65\n",
            }
        return {"ok": True, "code": 0, "seconds": 1.0, "out": "JAX_GPUS 0\nW0000 exit\n"}

    monkeypatch.setattr(gpu_check, "_run", fake_run)
    with pytest.raises(gpu_check.NoGpu, match="1 GPU.* listed by nvidia-smi, but JAX sees none"):
        gpu_check.find_gpus()


def test_report_lists_every_part(gpu_check, tmp_path):
    gpus = [
        {
            "index": "0",
            "name": "NVIDIA H100",
            "cc": "9.0",
            "memory": "81559 MiB",
            "driver": "580.65",
        }
    ]
    bench = {
        "rows": [{"size": 256, "n": 10000, "pairs": 1.1e6, "fwd": 0.2, "fwd_bwd": 0.6}],
        "binning_ab": {"kept": 1.0, "rebinned": 1.2},
    }
    train = [{"devices": 1, "frames": 1, "first_s": 80.0, "step_ms": 40.0, "losses": [0.3, 0.2]}]
    parts = {
        "build": {"ok": True, "seconds": 100.0, "text": "ua3dtalk_jax: CUDA kernels built"},
        "tests": {"ok": False, "seconds": 90.0, "text": "1 failed, 30 passed"},
        "sanitize": {"ok": None, "seconds": 0.0, "text": "compute-sanitizer not found: skipped"},
        "bench": {"ok": True, "seconds": 60.0, "data": bench, "text": ""},
        "train": {"ok": True, "seconds": 120.0, "data": train, "text": ""},
    }
    out = tmp_path / "report.md"
    gpu_check.report(gpus, parts, str(out))
    text = out.read_text()
    for row in (
        "| build | passed | 100 |",
        "| tests | FAILED | 90 |",
        "| sanitize | skipped | 0 |",
        "| 256² | 10000 | 1.10 M | 0.200 | 0.600 | 5.5e+09 | 1.83e+09 |",
        "tile lists kept 1.000 ms, binned again 1.200 ms",
        "| 1 | 1 | 80.0 | 40.0 | 0.3000, 0.2000 |",
        "| 0 | NVIDIA H100 | 9.0 |",
    ):
        assert row in text, row
