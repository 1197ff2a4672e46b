"""One command for the first GPU: build, test, sanitize, benchmark and train; one Markdown report.

  python -m experiments.gpu_check [--out=gpu_report.md] [--budget_s=570]

On a machine with an NVIDIA GPU (nvidia-smi lists it and JAX sees it), in this checkout:
  1. build     the CUDA extension for the local architecture (nvidia-smi's compute capability
               -> UA3D_CUDA_ARCHS): `python setup.py build_ext --inplace`;
  2. tests     `pytest -m gpu tests/render`: the CUDA kernels against the reference and the CPU
               kernel (C = 1..5, > 256 Gaussians per tile, batched N = 0, vmap, kept tile lists);
  3. sanitize  compute-sanitizer memcheck, racecheck and synccheck on a tiny two-view scene
               (forward + backward, the project's kernels only), when the tool exists;
  4. bench     forward and forward+backward at 256²/10k, 512²/100k and 1024²/500k Gaussians:
               median ms and Gaussian-pixel evaluations per second; tile lists kept vs binned
               again at 512²/100k;
  5. train     a few `paper`-preset face-branch steps (a 512² synthetic subject of 3 s,
               stand-in stage-1 features: the step is measured, not the model) on one GPU, then
               data-parallel on every visible GPU.
Every part runs in a subprocess with a time limit drawn from one budget (10 minutes on one H100
with margin); a part that fails or runs out of time is reported, not fatal. Where no NVIDIA GPU
is visible it refuses with one line on stderr and exit status 2.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from absl import flags

from experiments import cli

_OUT = flags.DEFINE_string("out", "gpu_report.md", "Where to write the Markdown report.")
_BUDGET = flags.DEFINE_float("budget_s", 570.0, "Wall-clock budget of all parts, seconds.")
_PART = flags.DEFINE_enum(
    "part",
    None,
    ["sanitize_scene", "bench", "train"],
    "Internal: one part's workload (run by the parent in a subprocess).",
)
_DEVICES = flags.DEFINE_string("devices", "1", "Internal (train): '1' or 'all'.")
_SUBJECT = flags.DEFINE_string("subject_dir", None, "Internal (train): synthetic subject folder.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JSON_TAG = "GPU_CHECK_JSON "
BENCH = [(256, 10_000), (512, 100_000), (1024, 500_000)]
# Seconds per part (estimated on one H100: build ~100 with the .cu files compiled in parallel,
# tests ~100, sanitize ~60, bench ~60, train ~200 mostly compilation); each part also gets no
# more than what is left of --budget_s.
CAPS = {"build": 200, "tests": 150, "sanitize": 90, "bench": 100, "train": 240}
TRAIN_STEPS = 6
TRAIN_SIZE = 512  # frame side of the synthetic subject the training part generates
TRAIN_PRESET = "paper"


class NoGpu(RuntimeError):
    """No NVIDIA GPU this check can use (the message says why)."""


def _run(cmd, timeout: float, env=None) -> dict:
    """Runs cmd in ROOT: {"ok", "code", "seconds", "out"}; a timeout kills its process group."""
    t0 = time.time()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=max(timeout, 1.0))
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        code = "timeout"
    return {"ok": code == 0, "code": code, "seconds": time.time() - t0, "out": out or ""}


def find_gpus() -> list[dict]:
    """The GPUs nvidia-smi lists: [{"index", "name", "cc", "memory", "driver"}].

    Raises:
      NoGpu: nvidia-smi is missing or lists none, or JAX sees no GPU (CPU-only jaxlib).
    """
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise NoGpu("no NVIDIA GPU visible (nvidia-smi not found); this check needs one")
    fields = "index,name,compute_cap,memory.total,driver_version"
    res = _run([smi, f"--query-gpu={fields}", "--format=csv,noheader"], 30)
    rows = [r.split(", ") for r in res["out"].strip().splitlines() if r.count(",") == 4]
    if not res["ok"] or not rows:
        raise NoGpu(f"nvidia-smi lists no usable GPU: {res['out'].strip()[:200]}")
    probe = "import jax; print('JAX_GPUS', sum(d.platform == 'gpu' for d in jax.devices()))"
    seen = _run([sys.executable, "-c", probe], 120, env=_env())
    counts = [line.split()[-1] for line in seen["out"].splitlines() if line.startswith("JAX_GPUS")]
    if not seen["ok"] or counts in ([], ["0"]):
        raise NoGpu(
            f"{len(rows)} GPU(s) listed by nvidia-smi, but JAX sees none: install the "
            "CUDA jaxlib plugin matching jax (the jax[cuda12] or jax[cuda13] extra)"
        )
    keys = ("index", "name", "cc", "memory", "driver")
    return [dict(zip(keys, (v.strip() for v in r))) for r in rows]


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # parts share the GPU in turn
    # A second run of the check reuses the compilations of the first.
    env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/ua3dtalk_jax/xla"))
    env.update(extra)
    return env


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _json(out: str) -> dict | None:
    found = [line[len(JSON_TAG) :] for line in out.splitlines() if line.startswith(JSON_TAG)]
    return json.loads(found[-1]) if found else None


class Budget:
    def __init__(self, seconds: float):
        self.end = time.time() + seconds

    def limit(self, cap: float) -> float:
        return min(cap, self.end - time.time())


def part_build(gpus, budget) -> dict:
    archs = sorted({g["cc"].replace(".", "") for g in gpus})
    env = _env(UA3D_CUDA_ARCHS=";".join(archs))
    res = _run(
        [sys.executable, "setup.py", "build_ext", "--inplace"], budget.limit(CAPS["build"]), env=env
    )
    probe = (
        "from ua3dtalk_jax.render import available_backends as a; import sys; "
        "sys.exit(0 if a()['cuda'] else 1)"
    )
    built = res["ok"] and _run([sys.executable, "-c", probe], 120, env=_env())["ok"]
    lines = [l for l in res["out"].splitlines() if l.startswith("ua3dtalk_jax:")]
    return {
        "ok": built,
        "seconds": res["seconds"],
        "archs": archs,
        "text": "\n".join(lines) or _tail(res["out"]),
        "log": _tail(res["out"], 40),
    }


def part_tests(budget) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "gpu",
        "-rs",
        "-p",
        "no:cacheprovider",
        "tests/render",
    ]
    res = _run(cmd, budget.limit(CAPS["tests"]), env=_env())
    return {"ok": res["ok"], "seconds": res["seconds"], "text": _tail(res["out"], 40)}


def _sanitizer() -> str | None:
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.path.isfile(os.path.join(home, "bin", "compute-sanitizer")):
            return os.path.join(home, "bin", "compute-sanitizer")
    return shutil.which("compute-sanitizer")


def part_sanitize(budget) -> dict:
    """The three compute-sanitizer tools at once (each on its own copy of the tiny scene)."""
    tool = _sanitizer()
    if tool is None:
        return {"ok": None, "seconds": 0.0, "text": "compute-sanitizer not found: skipped"}
    t0, procs = time.time(), {}
    deadline = t0 + budget.limit(CAPS["sanitize"])
    for check in ("memcheck", "racecheck", "synccheck"):
        cmd = [
            tool,
            f"--tool={check}",
            "--kernel-name",
            "kns=ua3d",
            "--error-exitcode=3",
            "--print-limit=20",
            sys.executable,
            "-m",
            "experiments.gpu_check",
            "--part=sanitize_scene",
        ]
        procs[check] = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    rows, ok = [], True
    for check, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=max(deadline - time.time(), 1.0))
            code = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out, code = proc.communicate()[0], "timeout"
        good = code == 0 and "SANITIZE_SCENE_OK" in out
        ok = ok and good
        summary = [line for line in out.splitlines() if "ERROR SUMMARY" in line]
        rows.append(
            f"{check}: {'clean' if good else f'FAILED ({code})'} "
            f"{summary[-1].strip() if summary else ''}"
        )
        if not good:
            rows.append(_tail(out, 30))
    return {"ok": ok, "seconds": time.time() - t0, "text": "\n".join(rows)}


def part_python(name: str, args: list[str], budget, cap: float) -> dict:
    cmd = [sys.executable, "-m", "experiments.gpu_check", f"--part={name}", *args]
    res = _run(cmd, budget.limit(cap), env=_env())
    data = _json(res["out"])
    return {
        "ok": res["ok"] and data is not None,
        "seconds": res["seconds"],
        "data": data,
        "text": "" if res["ok"] else _tail(res["out"], 30),
    }


def report(gpus, parts: dict, out: str) -> None:
    """Writes the Markdown report (see module docstring for the parts)."""
    status = {True: "passed", False: "FAILED", None: "skipped"}
    lines = [
        f"# GPU check, {datetime.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"Host {platform.node()}, Python {platform.python_version()}.",
        "",
        "| GPU | name | compute capability | memory | driver |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {g['index']} | {g['name']} | {g['cc']} | {g['memory']} | {g['driver']} |" for g in gpus
    ]
    lines += ["", "| part | status | seconds |", "|---|---|---|"]
    lines += [f"| {k} | {status[p['ok']]} | {p['seconds']:.0f} |" for k, p in parts.items()]
    for name, p in parts.items():
        lines += ["", f"## {name}", ""]
        data = p.get("data")
        if name == "bench" and data:
            lines += [
                (
                    "| size | Gaussians | pairs | fwd ms | fwd+bwd ms | evals/s fwd | evals/s "
                    "fwd+bwd |"
                )
            ]
            lines += ["|---|---|---|---|---|---|---|"]
            for r in data["rows"]:
                rate, rate_bwd = r["pairs"] / r["fwd"] * 1e3, r["pairs"] / r["fwd_bwd"] * 1e3
                lines.append(
                    f"| {r['size']}² | {r['n']} | {r['pairs'] / 1e6:.2f} M | "
                    f"{r['fwd']:.3f} | {r['fwd_bwd']:.3f} | {rate:.3g} | {rate_bwd:.3g} |"
                )
            ab = data["binning_ab"]
            lines += [
                "",
                (
                    f"512², 100k fwd+bwd: tile lists kept {ab['kept']:.3f} ms, binned "
                    f"again {ab['rebinned']:.3f} ms."
                ),
            ]
        elif name == "train" and data:
            lines += [
                ("| devices | frames/step | compile + first step s | step ms (median) | losses |")
            ]
            lines += ["|---|---|---|---|---|"]
            for r in data:
                losses = ", ".join(f"{v:.4f}" for v in r["losses"])
                lines.append(
                    f"| {r['devices']} | {r['frames']} | {r['first_s']:.1f} | "
                    f"{r['step_ms']:.1f} | {losses} |"
                )
        if p.get("text"):
            lines += ["```", p["text"], "```"]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


def run_check(out: str, budget_s: float) -> dict:
    gpus = find_gpus()
    budget = Budget(budget_s)
    parts = {"build": part_build(gpus, budget)}
    cuda = parts["build"]["ok"]
    skip = {"ok": None, "seconds": 0.0, "text": "skipped: the CUDA extension did not build"}
    parts["tests"] = part_tests(budget) if cuda else skip
    parts["sanitize"] = part_sanitize(budget) if cuda else skip
    parts["bench"] = part_python("bench", [], budget, CAPS["bench"]) if cuda else skip
    train_rows, train = [], {"ok": True, "seconds": 0.0, "text": ""}
    subject = os.path.join(tempfile.mkdtemp(prefix="gpu_check_"), "subject")
    for devices in ["1"] + (["all"] if len(gpus) > 1 else []):
        r = part_python(
            "train", [f"--devices={devices}", f"--subject_dir={subject}"], budget, CAPS["train"]
        )
        train["seconds"] += r["seconds"]
        train["ok"] = train["ok"] and r["ok"]
        train["text"] += r["text"]
        train_rows += [r["data"]] if r["data"] else []
    train["data"] = train_rows
    parts["train"] = train
    shutil.rmtree(os.path.dirname(subject), ignore_errors=True)
    report(gpus, parts, out)
    return parts


# ---- the parts' workloads, each run in its own process -------------------------------------


def sanitize_scene() -> None:
    """Forward + backward of two views (C = 4, then C = 5: the general path), lists kept."""
    import jax.numpy as jnp
    import numpy as np

    from ua3dtalk_jax.render import ffi

    rng = np.random.default_rng(0)
    for c in (4, 5):
        b, n, w, h = 2, 300, 40, 30
        conic = np.tile([0.05, 0.01, 0.04], (b, n, 1))
        args = [
            rng.uniform(0, 40, (b, n, 2)),
            conic,
            rng.uniform(0, 1, (b, n, c)),
            rng.uniform(0.05, 0.9, (b, n)),
            rng.uniform(1, 5, (b, n)),
        ]
        args = [jnp.asarray(a, jnp.float32) for a in args]
        radii = jnp.full((b, n, 2), 14, jnp.int32)
        bg = jnp.asarray(rng.uniform(0, 1, (b, c)), jnp.float32)
        render, trans, last, token = ffi.kernel_forward(
            *args, radii, bg, width=w, height=h, keep_bins=True
        )
        grads = ffi.kernel_backward(
            *args,
            radii,
            bg,
            trans,
            last,
            jnp.ones_like(render),
            jnp.ones_like(trans),
            width=w,
            height=h,
            bins_token=token,
        )
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
    print("SANITIZE_SCENE_OK")


def bench() -> None:
    import jax

    from experiments.bench_rasterizer import binning_ab, median_ms, scene_inputs, timers
    from ua3dtalk_jax.render import ffi

    gpu = jax.devices("gpu")[0]
    rows = []
    with jax.default_device(gpu):
        for size, n in BENCH:
            args, pairs = scene_inputs(size, n)
            args = jax.device_put(args, gpu)
            fwd, fwd_bwd = timers(ffi, size)
            rows.append(
                {
                    "size": size,
                    "n": n,
                    "pairs": pairs,
                    "fwd": median_ms(fwd, args, 20),
                    "fwd_bwd": median_ms(fwd_bwd, args, 20),
                }
            )
        ab = binning_ab(512, 100_000, ffi, 20, 3)
    print(
        JSON_TAG
        + json.dumps(
            {
                "rows": rows,
                "binning_ab": {"kept": ab["kept", "wall"], "rebinned": ab["rebinned", "wall"]},
            }
        )
    )


def train(devices: str, subject_dir: str) -> None:
    """TRAIN_STEPS paper-preset face steps (deformation on) on 1 or all GPUs; prints timings."""
    import jax
    import numpy as np

    from ua3dtalk_jax.configs import get_config
    from ua3dtalk_jax.data import Subject
    from ua3dtalk_jax.data.synthetic.generate import generate_subject
    from ua3dtalk_jax.head.features import WIDTHS
    from ua3dtalk_jax.train import parallel
    from ua3dtalk_jax.train.stage2 import loop
    from ua3dtalk_jax.train.stage2.sampler import FrameSampler
    from ua3dtalk_jax.train.stage2.state import init_branch, scene_extent
    from ua3dtalk_jax.train.stage2.step import make_branch_step

    if not os.path.isdir(subject_dir):
        generate_subject(
            subject_dir,
            size=TRAIN_SIZE,
            seconds_train=2.0,
            seconds_test=1.0,
            workers=min(8, os.cpu_count() or 1),
        )
    subject = Subject.open(subject_dir)
    cfg = get_config(TRAIN_PRESET)
    gpus = jax.devices("gpu")
    mesh = parallel.global_mesh(gpus[:1] if devices == "1" else gpus)
    rng = np.random.default_rng(0)
    features = {
        k: 0.1 * rng.standard_normal((len(subject), w)).astype(np.float32) for k, w in WIDTHS
    }
    b = cfg.train.face
    extent = scene_extent(np.stack([subject.viewmat(int(i)) for i in subject.split("train")]))
    state, net, g_tx, n_tx = init_branch(cfg, "face", jax.random.PRNGKey(0), extent, subject)
    sampler = FrameSampler(subject, features, "face", b, cfg.seed, loop.global_batch(cfg, mesh))
    h, w = subject.size
    it0 = max(int(b.warmup), 1)  # past the warm-up: the MotionNetwork deforms
    step = make_branch_step(
        cfg, "face", net, g_tx, n_tx, loop.variant(cfg, b, it0), width=w, height=h, mesh=mesh
    )
    state = jax.device_put(state, parallel.replicated(mesh))
    times, losses = [], []
    for it in range(it0, it0 + TRAIN_STEPS):
        batch = parallel.put_batch(sampler.load(it), mesh)
        t0 = time.perf_counter()
        state, metrics = step(state, batch, loop.flags(b, "face", it))
        losses.append(float(jax.block_until_ready(metrics["loss"])))
        times.append(time.perf_counter() - t0)
    print(
        JSON_TAG
        + json.dumps(
            {
                "devices": mesh.devices.size,
                "frames": sampler.batch,
                "first_s": times[0],
                "step_ms": 1e3 * float(np.median(times[1:])),
                "losses": losses,
            }
        )
    )


def main(argv):
    del argv
    if _PART.value == "sanitize_scene":
        return sanitize_scene()
    if _PART.value == "bench":
        return bench()
    if _PART.value == "train":
        return train(_DEVICES.value, _SUBJECT.value)
    try:
        parts = run_check(_OUT.value, _BUDGET.value)
    except NoGpu as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        sys.exit(2)
    failed = [k for k, p in parts.items() if p["ok"] is False]
    print(f"gpu_check: report written to {_OUT.value}" + (f"; FAILED: {failed}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    cli.run(main)
