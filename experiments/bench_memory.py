"""Peak memory of training against the subject's length and frame size (issue 30 §3).

    python -m experiments.bench_memory [--frames=1000,5000,10000] [--sizes=256,512]
        [--config=cpu] [--set=dotted.key=value ...] [--eval_frames=0] [--json=out.json]

For each size S the tiny synthetic subject is rendered at S² (once, under --data_root; or
--source), and for each length N a subject of N frames is tiled from it
(`data.synthetic.tiled.tile_subject`: hard-linked frame files, tiled per-frame records and audio).
Each (N, S) then trains in its own process (so the peak is its own) through the real path,
`train.run.prepare` + `train.run.train` with stage "all", at the preset's true sizes but a few
iterations per phase (`SHORT`, every step variant of the schedule: static, one member, the
ensemble, densification, the late LPIPS terms, the mouth's final phase; folded in before --set).

Per phase the process's peak RSS is read (VmHWM, reset when the phase starts, so each figure is
the peak while that phase ran, including what earlier phases left resident): "open" (config,
subject, audio resolution), "stage 1" (stage-1 data, every module, the per-frame features), the
branches "face" and "mouth", "fuse" and the held-out "eval" (all val frames; --eval_frames=K the
first K, whose peak is the same: frames are rendered one at a time). The breakdown of the largest
peak:
  runtime     RSS after importing JAX and starting its CPU client, before any training
  per-frame   bytes of the arrays held for every frame: the subject's (cameras, AUs, landmarks,
              audio windows), stage 1's (`Stage1Data`: crops, mel chunks, targets, emotion audio)
              and stage 2's features
  state       parameters + optimiser state (+ densification statistics) of the phase's result
  rest        the remainder: XLA's compilation, the programs' buffers (activations), the
              allocator's caches and the frames in flight (see bench_train for compile peaks)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from experiments import peak_rss

PHASES = ("open", "stage 1", "face", "mouth", "fuse", "eval")
_FRAMES = flags.DEFINE_list("frames", ["1000", "5000", "10000"], "Subject lengths N.")
_SIZES = flags.DEFINE_list("sizes", ["256", "512"], "Frame sizes S (S×S).")
_CONFIG = flags.DEFINE_enum("config", "cpu", ["paper", "cpu", "tiny"], "Preset.")
_SET = flags.DEFINE_multi_string("set", [], "Config override dotted.key=value (after SHORT).")
_SHORT = flags.DEFINE_bool("short", True, "Fold in SHORT (a few iterations per phase).")
_DATA_ROOT = flags.DEFINE_string("data_root", "data/bench_memory", "Where subjects are kept.")
_SOURCE = flags.DEFINE_string("source", "", "Subject to tile (default: tiny synthetic at S²).")
_EVAL = flags.DEFINE_integer("eval_frames", 0, "Held-out frames evaluated (0: all).")
_JSON = flags.DEFINE_string("json", "", "Also write the rows here.")
_KEEP = flags.DEFINE_bool("keep_subjects", True, "Keep the tiled subjects for the next run.")
_CACHE = flags.DEFINE_string(
    "compile_cache",
    "",
    "Persistent XLA cache (default none: a cached "
    "program's compilation is missing from the peaks).",
)
_RELEASE = flags.DEFINE_bool(
    "release",
    False,
    "After each phase, hand free heap back (malloc_trim) and then drop XLA's "
    "compiled programs (jax.clear_caches), recording the RSS after each: how much of what a "
    "phase leaves resident is free heap, compiled programs or live arrays. Changes later peaks.",
)
_CHILD = flags.DEFINE_string("child", "", "Internal: measure this subject in this process.")

SHORT = [
    f"stage1.{k}=2"
    for k in (
        "syncnet.steps",
        "lip_expert.steps",
        "expr_prior.steps",
        "stylenet.steps",
        "emotion.pretrain_steps",
        "emotion.finetune_steps",
    )
]
for _p in ("face", "mouth"):
    SHORT += [
        f"train.{_p}.{k}={v}"
        for k, v in (
            ("iterations", 6),
            ("warmup", 2),
            ("ensemble_from", 4),
            ("densify_from", 2),
            ("densify_every", 2),
            ("densify_until", 5),
            ("lpips_from", 5),
            ("sh_every", 3),
        )
    ]
SHORT += ["train.mouth.final_from=5", "train.fuse.iterations=2", "train.fuse.lpips_from=1"]


# ----------------------------------------------------------------------------- one measurement


def nbytes(tree) -> int:
    """Bytes of the array leaves of a pytree (numpy or JAX)."""
    import jax

    return int(sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(tree)))


def _array_attrs(obj) -> dict:
    import numpy as np

    return {k: v for k, v in vars(obj).items() if isinstance(v, np.ndarray)}


def measure(subject_path: str, workdir: str) -> dict:
    """Trains `subject_path` in `workdir` (this process); the peak per phase and the breakdown."""
    import jax

    from experiments import cli
    from ua3dtalk_jax.configs import apply_overrides, get_config
    from ua3dtalk_jax.eval.heldout import evaluate_heldout
    from ua3dtalk_jax.head.workdir import Workdir
    from ua3dtalk_jax.train import run
    from ua3dtalk_jax.train.stage1 import data as stage1_data
    from ua3dtalk_jax.train.stage2 import driver as stage2

    cli.quiet_orbax()
    run.enable_compile_cache(_CACHE.value)
    jax.numpy.zeros(1).block_until_ready()  # start the CPU client: part of the runtime
    row = {"runtime_gb": peak_rss.rss_gb(), "phases": {}, "bytes": {}}
    sizes = row["bytes"]

    def probe(name, fn, after=None):
        def wrapped(*a, **k):
            label = name(a, k) if callable(name) else name
            peak_rss.reset_peak()
            t = time.perf_counter()
            out = fn(*a, **k)
            row["phases"][label] = {
                "peak_gb": peak_rss.peak_gb(),
                "end_gb": peak_rss.rss_gb(),
                "seconds": time.perf_counter() - t,
            }
            if _RELEASE.value:
                row["phases"][label].update(release())
            if after is not None:
                after(label, out)
            return out

        return wrapped

    def state_bytes(label, out):
        state = out[0] if label in ("face", "mouth") else out
        sizes[f"state {label}"] = nbytes(state)

    def feature_bytes(out):
        sizes["stage-2 features"] = nbytes(out)
        return out

    from_subject = stage1_data.Stage1Data.from_subject.__func__
    stage1_features = Workdir.stage1_features

    def stage1_data_bytes(cls, subject, cfg):
        data = from_subject(cls, subject, cfg)
        sizes["stage-1 data"] = nbytes(
            [v for k, v in vars(data).items() if k not in ("exp_stats",)]
        )
        return data

    def eval_some(cfg, subject, features, heads, **k):
        if _EVAL.value and k.get("frames") is None:
            k["frames"] = subject.split("val")[: _EVAL.value]
        return evaluate_heldout(cfg, subject, features, heads, **k)

    stage1_data.Stage1Data.from_subject = classmethod(stage1_data_bytes)
    Workdir.stage1_features = lambda *a, **k: feature_bytes(stage1_features(*a, **k))
    run.run_stage1 = probe("stage 1", run.run_stage1)
    stage2.train_branch = probe(lambda a, k: a[1], stage2.train_branch, state_bytes)
    stage2.train_fuse = probe("fuse", stage2.train_fuse, state_bytes)

    sets = (SHORT if _SHORT.value else []) + list(_SET.value)
    cfg = apply_overrides(get_config(_CONFIG.value), sets)
    log = lambda line: print(line, flush=True)
    subject = probe("open", run.prepare)(cfg, subject_path, workdir, "all", log=log)
    sizes["subject"] = nbytes(_array_attrs(subject))
    out = run.train(
        cfg,
        subject_path,
        workdir,
        "all",
        log=log,
        subject=subject,
        evaluate=probe("eval", eval_some),
        side_by_side=False,  # one phase at a time: each peak is that phase's (side by side: +0.3 GB)
    )
    row.update(frames=len(subject), size=subject.size[0], heldout=out["stage2"]["heldout"])
    return row


def release() -> dict:
    """RSS (GB) after collecting garbage and trimming the heap, then after also dropping the
    compiled programs (see --release; `train.heap.release`)."""
    from ua3dtalk_jax.train import heap

    heap.release(programs=False)
    out = {"trimmed_gb": peak_rss.rss_gb()}
    heap.release()
    out["cleared_gb"] = peak_rss.rss_gb()
    return out


# ----------------------------------------------------------------------------- report


def breakdown(row: dict) -> dict:
    """The largest phase's peak split into runtime, per-frame arrays, state and the rest (GB)."""
    ph = row["phases"]
    top = max(ph, key=lambda p: ph[p]["peak_gb"])
    b = row["bytes"]
    per_frame = (
        b.get("subject", 0)
        + b.get("stage-2 features", 0)
        + (b.get("stage-1 data", 0) if top == "stage 1" else 0)
    ) / 1e9
    # the state of the phase (fuse holds both branches; eval the fused heads)
    key = {"eval": "state fuse"}.get(top, f"state {top}")
    state = b.get(key, 0) / 1e9
    if top == "mouth":
        state += b.get("state face", 0) / 1e9  # the face branch's result is held meanwhile
    parts = {"runtime": row["runtime_gb"], "per-frame": per_frame, "state": state}
    parts["rest"] = ph[top]["peak_gb"] - sum(parts.values())
    return {
        "phase": top,
        "peak_gb": ph[top]["peak_gb"],
        "parts": parts,
        "dominant": max(parts, key=parts.get),
    }


def table(rows: list[dict]) -> str:
    head = (
        f"{'frames':>7} {'size':>5} | "
        + " ".join(f"{p:>7}" for p in PHASES)
        + " | peak in  | runtime per-frame  state   rest | dominates"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if "phases" not in r:
            lines.append(
                f"{r['frames']:>7} {r['size']:>5} | FAILED (exit code {r.get('exit_code')}"
                f", log {r.get('log')})"
            )
            continue
        ph, b = r["phases"], breakdown(r)
        cells = " ".join(f"{ph[p]['peak_gb']:>7.2f}" if p in ph else f"{'-':>7}" for p in PHASES)
        p = b["parts"]
        lines.append(
            f"{r['frames']:>7} {r['size']:>5} | {cells} | {b['phase']:<8} | "
            f"{p['runtime']:>7.2f} {p['per-frame']:>9.3f} {p['state']:>6.3f} "
            f"{p['rest']:>6.2f} | {b['dominant']}"
        )
    lines.append(
        "peak RSS in GB per phase (VmHWM); breakdown of the largest: runtime (JAX loaded), "
        "per-frame arrays, parameters + optimiser state, rest (compile, activations, "
        "allocator)"
    )
    return "\n".join(lines)


def parse_table(text: str) -> list[dict]:
    """The rows of the last `table` printed in `text` back as {frames, size, phases: {name: GB},
    peak_in, dominates} (the row lines `main` prints as it goes, before the table, are skipped)."""
    rows = []
    lines = text.splitlines()
    heads = [i for i, line in enumerate(lines) if line.split()[:2] == ["frames", "size"]]
    for line in lines[heads[-1] if heads else 0 :]:
        cells = line.split("|")
        if len(cells) != 5 or not cells[0].split() or not cells[0].split()[0].isdigit():
            continue
        frames, size = map(int, cells[0].split())
        vals = cells[1].split()
        phases = {p: float(v) for p, v in zip(PHASES, vals) if v != "-"}
        rows.append(
            {
                "frames": frames,
                "size": size,
                "phases": phases,
                "peak_in": cells[2].strip(),
                "dominates": cells[4].strip(),
            }
        )
    return rows


# ----------------------------------------------------------------------------- driver


def subject_for(size: int, n: int, root: str) -> str:
    """The tiled subject of N frames at S² under `root` (built once)."""
    from ua3dtalk_jax.data.synthetic.generate import ensure_synthetic
    from ua3dtalk_jax.data.synthetic.tiled import tile_subject

    src = _SOURCE.value or ensure_synthetic(root, f"synthetic_tiny{size}", "tiny", size=size)
    tag = os.path.basename(os.path.normpath(src))
    path = os.path.join(root, f"{tag}_x{n}")
    done = os.path.join(path, "subject.json")
    if not (os.path.exists(done) and not os.path.exists(os.path.join(path, ".ua3d_incomplete"))):
        tile_subject(src, path, n, overwrite=True)
    return path


def _child(subject: str, size: int, n: int) -> dict:
    """Measures one subject in a fresh interpreter; its log goes next to the subject."""
    work = tempfile.mkdtemp(prefix="bench_memory_")
    out, log = os.path.join(work, "row.json"), os.path.join(work, "log.txt")
    argv = [a for a in sys.argv[1:] if not a.startswith(("--child", "--json"))]
    cmd = [
        sys.executable,
        "-m",
        "experiments.bench_memory",
        f"--child={subject}",
        f"--json={out}",
        *argv,
    ]
    with open(log, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    if code != 0 or not os.path.exists(out):
        keep = os.path.join(_DATA_ROOT.value, f"failed_{size}_{n}.log")
        shutil.copy(log, keep)
        shutil.rmtree(work, ignore_errors=True)
        return {"frames": n, "size": size, "exit_code": code, "log": keep}
    with open(out) as f:
        row = json.load(f)
    shutil.rmtree(work, ignore_errors=True)
    return row


def header() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    sets = " ".join(_SET.value) or "none"
    return (
        f"bench_memory: --config={_CONFIG.value}, {'SHORT + ' if _SHORT.value else ''}--set "
        f"{sets}; {os.cpu_count()} cores, load average {load}, "
        f"{peak_rss.available_gb():.1f} GB available"
    )


def main(argv):
    del argv
    if _CHILD.value:
        work = os.path.join(os.path.dirname(_JSON.value) or ".", "workdir")
        row = measure(_CHILD.value, work)
        with open(_JSON.value, "w") as f:
            json.dump(row, f)
        return
    print(header(), flush=True)
    rows = []
    for size in map(int, _SIZES.value):
        for n in map(int, _FRAMES.value):
            path = subject_for(size, n, _DATA_ROOT.value)
            t = time.perf_counter()
            rows.append(_child(path, size, n))
            print(f"{n} frames at {size}²: {time.perf_counter() - t:.0f} s", flush=True)
            print(table(rows[-1:]).splitlines()[-2], flush=True)
            if not _KEEP.value:
                shutil.rmtree(path, ignore_errors=True)
    print(table(rows))
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"rows": rows, "set": SHORT + list(_SET.value)}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
