"""Printing for `experiments.bench_train`: the header, one line per program, the table, and the
whole-schedule extrapolation (this CPU, and one GPU from XLA's cost analysis).

The GPU estimate of a program is max(FLOPs / (peak · FLOP_EFF), bytes / (bandwidth · BW_EFF)) plus
RENDER_MS per rasterizer call it makes (forward and backward): an H100 SXM's FP32 peak without
tensor cores, HBM3 bandwidth, fractions typical of small batched XLA kernels, and the rasterizer's
GPU target (BUILD_NOTES: 512², 100k Gaussians, fwd+bwd ≤ 2 ms; not measured, no GPU here).
"""

from __future__ import annotations

import os
import time

import numpy as np

GPU_NAME = "H100 SXM"
GPU_TFLOPS = 67.0  # FP32, no tensor cores
GPU_TBPS = 3.35  # HBM3
FLOP_EFF = 0.3  # fraction of peak reached by these kernels (assumed)
BW_EFF = 0.5  # fraction of bandwidth (assumed)
RENDER_MS = 2.0  # rasterizer target, fwd+bwd of one 512² frame
# rasterizer calls per step (the face's attention maps are a second render)
RENDERS = {
    "face/static": 1,
    "face/train": 2,
    "face/eval": 2,
    "mouth/static": 1,
    "mouth/train": 1,
    "mouth/eval": 1,
    "fuse/step": 2,
}


def header(preset, size, steps, fill, overrides) -> str:
    load = os.getloadavg()
    return (
        f"bench_train: config={preset} size={size} steps={steps} fill={fill} "
        f"set={list(overrides)}\n  {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)"
    )


def line(r: dict) -> str:
    text = (
        f"  {r['program']:<26} compile {r['compile_s']:7.1f} s  step {r['step_s']:8.3f} s "
        f"(cpu {r['step_cpu_s']:8.3f} s)  peak RSS {r['peak_compile_gb']:5.2f} / "
        f"{r['peak_step_gb']:5.2f} GB  XLA buffers {r['xla_gb']:5.2f} GB  "
        f"{r['gflops']:9.2f} GFLOP"
    )
    return text + (f"  [no steps: {r['skipped']}]" if "skipped" in r else "")


def table(rows: list[dict]) -> str:
    out = [
        "",
        (
            "| program | compile s | step s (wall) | step s (CPU) | peak RSS compile / step GB "
            "| XLA buffers GB | GFLOP | GB accessed | parameters |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "step_s" not in r:
            out.append(f"| {r['program']} | failed (exit {r.get('exit_code')}) ||||||||")
            continue
        params = r.get("net_params", 0) + r.get("gaussian_params", 0)
        out.append(
            f"| {r['program']} | {r['compile_s']:.1f} | {r['step_s']:.3f} | "
            f"{r['step_cpu_s']:.3f} | {r['peak_compile_gb']:.2f} / {r['peak_step_gb']:.2f} "
            f"| {r['xla_gb']:.2f} | {r['gflops']:.1f} | {r['gbytes']:.2f} | "
            f"{params:,} |"
        )
    return "\n".join(out)


def schedule(cfg) -> dict[str, int]:
    """Iterations of each program over the preset's whole schedule."""
    from ua3dtalk_jax.gaussians import densify_config, should_densify

    n = {}
    for part in ("face", "mouth"):
        b = cfg.train[part]
        late = min(b.lpips_from, b.iterations)
        n[f"{part}/static"] = min(b.warmup, b.iterations)
        n[f"{part}/train"] = max(0, min(b.ensemble_from, b.iterations) - b.warmup)
        n[f"{part}/eval"] = max(0, late - max(b.ensemble_from, b.warmup))
        n[f"{part}/eval+late"] = b.iterations - late
        d = densify_config(cfg.model.gaussians[part], cfg.train[part])
        n[f"{part}/densify"] = sum(should_densify(d, i) for i in range(1, b.iterations + 1))
    f = cfg.train.fuse
    n["fuse/step"] = min(f.lpips_from, f.iterations)
    n["fuse/step+late"] = f.iterations - n["fuse/step"]
    s = cfg.stage1
    n.update(
        {
            "stage1/syncnet": s.syncnet.steps,
            "stage1/lip_expert": s.lip_expert.steps,
            "stage1/expr_prior": s.expr_prior.steps,
            "stage1/stylenet_fuse": s.stylenet.steps,
            "stage1/emotion_pretrain": s.emotion.pretrain_steps,
            "stage1/emotion_finetune": s.emotion.finetune_steps,
        }
    )
    return n


def gpu_seconds(r: dict) -> float:
    base = r["program"].split("+")[0]
    compute = r["gflops"] * 1e9 / (GPU_TFLOPS * 1e12 * FLOP_EFF)
    memory = r["gbytes"] * 1e9 / (GPU_TBPS * 1e12 * BW_EFF)
    return max(compute, memory) + RENDERS.get(base, 0) * RENDER_MS / 1e3


def extrapolate(rows: list[dict], cfg) -> str:
    """The whole schedule's time per phase from the measured medians and the GPU estimate."""
    its = schedule(cfg)
    by = {r["program"]: r for r in rows if "step_s" in r}
    totals: dict[str, np.ndarray] = {}
    out = [
        "",
        "| program | iterations | this CPU (wall, h) | CPU-hours | GPU estimate (h) |",
        "|---|---|---|---|---|",
    ]
    for prog, n in its.items():
        r = by.get(prog)
        if r is None or n == 0:
            continue
        t = np.array([r["step_s"], r["step_cpu_s"], gpu_seconds(r)]) * n / 3600
        phase = prog.split("/")[0]
        totals[phase] = totals.get(phase, 0) + t
        out.append(f"| {prog} | {n:,} | {t[0]:.2f} | {t[1]:.2f} | {t[2]:.3f} |")
    for phase, t in totals.items():
        out.append(f"| **{phase}** | | **{t[0]:.1f}** | **{t[1]:.1f}** | **{t[2]:.2f}** |")
    if totals:
        t = sum(totals.values())
        out.append(
            f"| **all** | | **{t[0]:.1f}** ({t[0] / 24:.1f} days) | **{t[1]:.1f}** | "
            f"**{t[2]:.2f}** |"
        )
    out.append(
        f"\nGPU: {GPU_NAME} {GPU_TFLOPS:.0f} TFLOP/s FP32 at {FLOP_EFF:.0%}, "
        f"{GPU_TBPS} TB/s at {BW_EFF:.0%}, + {RENDER_MS} ms per rasterizer call "
        f"(target); FLOPs and bytes from XLA's CPU cost analysis. Phases missing from "
        f"the measured set are left out of the totals."
    )
    return "\n".join(out)
