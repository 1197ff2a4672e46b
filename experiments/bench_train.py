"""Training benchmark: a few real steps of every training phase at a preset's true sizes.

    python -m experiments.bench_train [--config=paper] [--phase=face,mouth,fuse,stage1]
        [--steps=3] [--size=512] [--subject=PATH] [--set=dotted.key=value ...] [--json=out.json]

Each phase runs in its own process (so its peak RSS is its own) and reports, per compiled program:
compile time, the median wall and process-CPU seconds of `--steps` timed steps (after one warm-up
step of the program), the peak RSS while compiling and while stepping (VmHWM, reset between the
two; the step figure includes what the process holds already), XLA's buffer sizes and cost
analysis (FLOPs and bytes of the compiled program; the rasterizer's FFI custom calls count 0, a
loop body counts once: see --fusion_chunk) and the parameter counts. The steps are the project's
own: `train.stage2.step.make_branch_step` (face, mouth: static warm-up, one random ensemble member
per view "train", the full ensemble "eval" from `ensemble_from`, and "eval" with the late LPIPS
terms), a densification round, `make_fuse_step`, and each stage-1 trainer's `make_*_step`
(SyncNet, lip expert, expression prior, StyleNet+FuseNet, emotion pre-training and fine-tuning).
At the end the table is printed with the wall time of the preset's whole schedule extrapolated
from the medians, and a GPU estimate (assumptions printed).

Inputs: `--subject` (a subject folder), else the tiny synthetic subject rendered at `--size`
(built once under --data_root, ~2 min) with a stand-in DeepSpeech `aud_ds.npy` of the shape the
authors' preprocessing writes ([N, 16, 29], random values: no DeepSpeech model ships here), so
model.audio follows it (in_dim 29). The stage-1 features stage 2 reads are random (N, 64/64/128)
arrays; their values do not change the cost. `--fill` (default) starts every Gaussian buffer full
(all `capacity` slots live: the cost at the end of densification, not the 2,000 initial points;
the network's cost is that of the whole buffer either way, the rasterizer's is not).

Timings on a shared machine are noisy: the CPU seconds are the steadier figure, and the printed
header records the load average so a later run on a quiet machine can be compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from experiments import bench_train_report as report
from experiments.peak_rss import available_gb, peak_gb, reset_peak

PHASES = ("face", "mouth", "fuse", "stage1")
_CONFIG = flags.DEFINE_enum("config", "paper", ["paper", "cpu", "tiny"], "Preset.")
_PHASE = flags.DEFINE_list("phase", list(PHASES), f"Phases, any of {PHASES}.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps per program (after one warm-up step).")
_SIZE = flags.DEFINE_integer("size", 512, "Frame size of the generated subject.")
_SUBJECT = flags.DEFINE_string("subject", "", "Subject folder (default: generated at --size).")
_DATA_ROOT = flags.DEFINE_string("data_root", "data", "Where the generated subject is kept.")
_SET = flags.DEFINE_multi_string("set", [], "Config override dotted.key=value (repeatable).")
_FILL = flags.DEFINE_bool("fill", True, "Start the Gaussian buffers full (capacity slots live).")
_JSON = flags.DEFINE_string("json", "", "Also write the results here.")
_INPROC = flags.DEFINE_bool("in_process", False, "Run the phases in this process (internal).")
_PROGRAMS = flags.DEFINE_list(
    "programs", [], "face/mouth: only these of static, train, eval, densify (default: all)."
)
_CHUNK = flags.DEFINE_integer(
    "fusion_chunk",
    None,
    "Gaussians per chunk of the low-rank ensemble fusion (default: the "
    "library's FUSION_CHUNK; 0: none). XLA's cost analysis counts a loop body once, so the "
    "FLOPs of a chunked program are those of one chunk: use 0 (with --compile_only) for totals.",
)
_COMPILE_ONLY = flags.DEFINE_bool("compile_only", False, "Compile and analyse; run no steps.")
_MEM_MARGIN = flags.DEFINE_float(
    "mem_margin",
    0.8,
    "Run no steps of a program whose XLA buffers exceed this fraction of the "
    "memory available now (MemAvailable); it is reported as not fitting instead.",
)

DEEPSPEECH = (16, 29)  # the authors' DeepSpeech window: 16 steps × 29 logits


# ----------------------------------------------------------------------------- measurement


def _cost(compiled) -> dict:
    """XLA's FLOPs and bytes accessed, and its buffer sizes (arguments + outputs + temporaries,
    an upper bound: donated or aliased buffers are counted twice)."""
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    ma = compiled.memory_analysis()
    xla_gb = 0.0
    if ma is not None:
        xla_gb = (ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes) / 1e9
    return {
        "gflops": float(ca.get("flops", 0.0)) / 1e9,
        "gbytes": float(ca.get("bytes accessed", 0.0)) / 1e9,
        "xla_gb": xla_gb,
    }


def measure(name: str, jitted, args: tuple, steps: int, advance, variants=None) -> list[dict]:
    """Compiles `jitted` for `args`, runs one warm-up and `steps` timed steps.

    Args:
      advance: advance(out, args, i) → the next call's args (threads the state, the next batch).
      variants: optional {suffix: args-transform} timed with the same executable (no recompile).
    Returns:
      one result dict per timed program (the compiled one first).
    """
    import jax

    reset_peak()
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    row = {
        "program": name,
        "compile_s": time.perf_counter() - t0,
        "peak_compile_gb": peak_gb(),
        **_cost(compiled),
    }
    avail = available_gb()
    if _COMPILE_ONLY.value or row["xla_gb"] > _MEM_MARGIN.value * avail:
        why = (
            f"needs {row['xla_gb']:.1f} GB of XLA buffers, {avail:.1f} GB available"
            if not _COMPILE_ONLY.value
            else "compile only"
        )
        row.update(
            step_s=float("nan"),
            step_cpu_s=float("nan"),
            peak_step_gb=float("nan"),
            steps=0,
            skipped=why,
        )
        print(report.line(row), flush=True)
        return [row]
    rows = []
    for suffix, transform in [("", None)] + list((variants or {}).items()):
        a = args if transform is None else transform(args)
        reset_peak()
        if not suffix:  # the variants run the same executable: warm already
            a = advance(jax.block_until_ready(compiled(*a)), a, 0)
        wall, cpu = [], []
        for i in range(steps):
            w0, c0 = time.perf_counter(), time.process_time()
            out = jax.block_until_ready(compiled(*a))
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
            a = advance(out, a, i + 1)
        r = dict(
            row,
            program=name + suffix,
            peak_step_gb=peak_gb(),
            step_s=float(np.median(wall)),
            step_cpu_s=float(np.median(cpu)),
            steps=steps,
        )
        if suffix:
            r["compile_s"] = 0.0  # same executable
        rows.append(r)
        print(report.line(r), flush=True)
    return rows


def n_params(tree) -> int:
    import jax

    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


# ----------------------------------------------------------------------------- set-up


def bench_subject(size: int, data_root: str) -> str:
    """The tiny synthetic subject at `size`², with a stand-in DeepSpeech aud_ds.npy."""
    from ua3dtalk_jax.data.synthetic.generate import ensure_synthetic

    path = ensure_synthetic(data_root, f"synthetic_bench{size}", "tiny", size=size)
    ds = os.path.join(path, "aud_ds.npy")
    if not os.path.exists(ds):
        with open(os.path.join(path, "subject.json")) as f:
            n = int(json.load(f)["num_frames"])
        rng = np.random.default_rng(0)
        np.save(ds, rng.normal(size=(n,) + DEEPSPEECH).astype(np.float32))
    return path


def build_config(preset: str, overrides, subject):
    """The preset with `overrides`, model.audio following the subject's windows."""
    from ua3dtalk_jax.configs import apply_overrides, get_config, pretrained

    cfg = get_config(preset)
    cfg.model.audio.steps, cfg.model.audio.in_dim = subject.audio_window, subject.audio_dim
    cfg = apply_overrides(cfg, overrides)
    # the networks' sizes are what is measured: a part the user did not give runs as its substitute
    applied = pretrained.substitute_required(cfg.stage1)
    pretrained.resolve(cfg.stage1)
    for line in pretrained.substitutes(cfg.stage1):
        print(f"substitute: {line}", flush=True)
    if applied:
        print(f"bench_train: --set {' '.join(applied)} (no files given)", flush=True)
    return cfg


def filled(g, key):
    """`g` with every free slot live: a copy of a live Gaussian moved by one of its own scales (a
    full buffer, as densification leaves it, without the O(N²) neighbour search of an init on
    N points)."""
    import jax
    import jax.numpy as jnp

    live = np.flatnonzero(np.asarray(g.active))
    src = jnp.asarray(
        np.where(
            np.asarray(g.active), np.arange(g.capacity), live[np.arange(g.capacity) % len(live)]
        )
    )
    fields = ("means", "scales_raw", "quats", "opacity_logits", "sh")
    copy = g.replace(**{f: getattr(g, f)[src] for f in fields})
    step = jax.nn.softplus(copy.scales_raw) * jax.random.normal(key, copy.means.shape)
    fresh = ~g.active
    return copy.replace(
        means=jnp.where(fresh[:, None], copy.means + step, copy.means),
        active=jnp.ones_like(g.active),
    )


def stand_in_features(n: int, cfg) -> dict:
    rng = np.random.default_rng(1)
    p = cfg.model.prior
    widths = {"f_exp": p.exp_dim, "f_tone": p.tone_dim, "f_emo": cfg.model.emotion.in_dim}
    return {k: rng.normal(0, 0.3, (n, w)).astype(np.float32) for k, w in widths.items()}


# ----------------------------------------------------------------------------- phases


def bench_branch(cfg, subject, part: str, steps: int) -> list[dict]:
    """Static, "train", "eval" and late-"eval" steps and one densification round of a branch."""
    import jax

    from ua3dtalk_jax.gaussians import densify_and_prune, densify_config
    from ua3dtalk_jax.gaussians.params import trainable
    from ua3dtalk_jax.train import parallel
    from ua3dtalk_jax.train.stage2 import state as stage2_state
    from ua3dtalk_jax.train.stage2.loop import flags as step_flags
    from ua3dtalk_jax.train.stage2.loop import global_batch, variant
    from ua3dtalk_jax.train.stage2.sampler import FrameSampler
    from ua3dtalk_jax.train.stage2.step import make_branch_step

    b, (h, w) = cfg.train[part], subject.size
    mesh = parallel.global_mesh()
    extent = stage2_state.scene_extent(
        np.stack([subject.viewmat(int(i)) for i in subject.split("train")])
    )
    state, net, g_tx, n_tx = stage2_state.init_branch(
        cfg, part, jax.random.PRNGKey(cfg.seed), extent, subject
    )
    if _FILL.value:
        state = state.replace(gaussians=filled(state.gaussians, jax.random.PRNGKey(7)))
    state = jax.device_put(state, parallel.replicated(mesh))
    sampler = FrameSampler(
        subject, stand_in_features(len(subject), cfg), part, b, cfg.seed, global_batch(cfg, mesh)
    )
    counts = {
        "net_params": n_params(state.net),
        "gaussian_params": n_params(trainable(state.gaussians)),
        "live_gaussians": int(np.sum(np.asarray(state.gaussians.active))),
    }
    rows = []
    # one iteration inside each part of the schedule (the variant and flags training would use)
    wanted = set(_PROGRAMS.value or ("static", "train", "eval", "densify"))
    for label, it in (("static", 0), ("train", b.warmup + 1), ("eval", b.ensemble_from + 1)):
        if label not in wanted:
            continue
        v = variant(cfg, b, it)
        batches = [parallel.put_batch(sampler.load(it + i), mesh) for i in range(steps + 1)]

        def advance(out, a, i, batches=batches):
            return (out[0], batches[min(i, steps)], a[2])

        late = {"+late": lambda a: (a[0], a[1], dict(a[2], late=np.bool_(True)))}
        step = make_branch_step(cfg, part, net, g_tx, n_tx, v, width=w, height=h, mesh=mesh)
        rows += measure(
            f"{part}/{label}",
            step,
            (state, batches[0], step_flags(b, part, it)),
            steps,
            advance,
            late if label == "eval" and v.deform else None,
        )
    if "densify" not in wanted:
        return [dict(r, **counts) for r in rows]
    dcfg = densify_config(cfg.model.gaussians[part], cfg.train[part])

    def densify(g, stats, key):
        return densify_and_prune(dcfg, g, stats, key, extent=extent, iteration=b.densify_from + 1)

    rows += measure(
        f"{part}/densify",
        jax.jit(densify),
        (state.gaussians, state.stats, jax.random.PRNGKey(1)),
        steps,
        lambda out, a, i: a,
    )
    return [dict(r, **counts) for r in rows]


def bench_fuse(cfg, subject, steps: int) -> list[dict]:
    """The fuse step (colours and face opacity of both branches, networks frozen)."""
    import jax

    from ua3dtalk_jax.gaussians.params import trainable
    from ua3dtalk_jax.train import parallel
    from ua3dtalk_jax.train.stage2 import state as stage2_state
    from ua3dtalk_jax.train.stage2.loop import global_batch
    from ua3dtalk_jax.train.stage2.sampler import FrameSampler
    from ua3dtalk_jax.train.stage2.step import make_fuse_step

    (h, w), mesh = subject.size, parallel.global_mesh()
    extent = stage2_state.scene_extent(
        np.stack([subject.viewmat(int(i)) for i in subject.split("train")])
    )
    states, nets, txs = {}, {}, {}
    for i, p in enumerate(("face", "mouth")):
        st, nets[p], _, _ = stage2_state.init_branch(cfg, p, jax.random.PRNGKey(i), extent, subject)
        if _FILL.value:
            st = st.replace(gaussians=filled(st.gaussians, jax.random.PRNGKey(7 + i)))
        txs[p] = stage2_state.gaussian_optimizer(
            cfg.train[p], extent, st.gaussians.sh.shape[1], fuse=cfg.train.fuse, part=p
        )
        states[p] = st.replace(g_opt=txs[p].init(trainable(st.gaussians)))
    states = jax.device_put(states, parallel.replicated(mesh))
    sampler = FrameSampler(
        subject,
        stand_in_features(len(subject), cfg),
        "fuse",
        None,
        cfg.seed,
        global_batch(cfg, mesh),
    )
    batches = [parallel.put_batch(sampler.load(i), mesh) for i in range(steps + 1)]
    step = make_fuse_step(cfg, nets, txs, width=w, height=h, mesh=mesh)
    late = {"+late": lambda a: (a[0], a[1], np.bool_(True))}
    rows = measure(
        "fuse/step",
        step,
        (states, batches[0], np.bool_(False)),
        steps,
        lambda out, a, i: (out[0], batches[min(i, steps)], a[2]),
        late,
    )
    counts = {"gaussian_params": sum(n_params(trainable(s.gaussians)) for s in states.values())}
    return [dict(r, **counts) for r in rows]


def bench_stage1(cfg, subject, steps: int) -> list[dict]:
    """One training step of every stage-1 module (train.stage1.prior / train.stage1.emotion)."""
    import jax

    from ua3dtalk_jax.head import emotion as head_emotion
    from ua3dtalk_jax.head import prior as head_prior
    from ua3dtalk_jax.train.stage1 import emotion as emo
    from ua3dtalk_jax.train.stage1 import prior
    from ua3dtalk_jax.train.stage1.data import Stage1Data
    from ua3dtalk_jax.train.stage1.loop import init_state
    from ua3dtalk_jax.types import EMOTIONS

    s1 = cfg.stage1
    data = Stage1Data.from_subject(subject, s1)
    models = head_prior.build_models(s1, data.exp_dim)
    params = head_prior.init_params(models, s1, jax.random.PRNGKey(0), data.exp_dim)
    arrays = {"crops": data.crops, "mel": data.mel, "exp": data.exp}
    key = jax.random.PRNGKey(1)
    step_of = lambda out, a, i: (out[0], a[1], jax.random.fold_in(key, i))
    jobs = [
        (
            "syncnet",
            prior.make_syncnet_step(s1, models["syncnet"], data.n_train),
            params["syncnet"],
            arrays,
        ),
        (
            "lip_expert",
            prior.make_lip_step(s1, models["lip_expert"], models["syncnet"], data.n_train),
            params["lip_expert"],
            dict(arrays, syncnet=params["syncnet"]),
        ),
        (
            "expr_prior",
            prior.make_prior_step(s1, models["expr_prior"], data.n_train),
            params["expr_prior"],
            arrays,
        ),
        (
            "stylenet_fuse",
            prior.make_style_step(s1, models["stylenet"], models["fuse"], data.n_train),
            {"stylenet": params["stylenet"], "fuse": params["fuse"]},
            dict(arrays, f_exp=jax.numpy.zeros((data.n, 64))),
        ),
    ]
    enc = head_emotion.build_encoder(s1.emotion, len(EMOTIONS), data.exp_dim)
    enc_params, _ = emo.init_encoder(enc, s1.emotion, jax.random.PRNGKey(2))
    train = np.arange(data.n_train)
    for name, finetune in (("emotion_pretrain", False), ("emotion_finetune", True)):
        # the subject's own labelled frames as the corpus: the step's cost does not depend on it
        corpus = emo.corpus_from_frames(data, train, with_exp=finetune)
        jobs.append((name, emo.make_emotion_step(s1.emotion, enc, finetune), enc_params, corpus))
    rows = []
    for name, (step, tx), p, d in jobs:
        r = measure(f"stage1/{name}", step, (init_state(p, tx), d, key), steps, step_of)
        rows += [dict(x, net_params=n_params(p)) for x in r]
    return rows


# ----------------------------------------------------------------------------- driver


def run_phase(phase: str) -> list[dict]:
    from experiments import cli
    from ua3dtalk_jax.data import Subject

    cli.quiet_orbax()
    if _CHUNK.value is not None:
        from ua3dtalk_jax.models import uncertainty

        uncertainty.FUSION_CHUNK = _CHUNK.value
    path = _SUBJECT.value or bench_subject(_SIZE.value, _DATA_ROOT.value)
    subject = Subject.open(path)
    cfg = build_config(_CONFIG.value, _SET.value, subject)
    if phase in ("face", "mouth"):
        return bench_branch(cfg, subject, phase, _STEPS.value)
    if phase == "fuse":
        return bench_fuse(cfg, subject, _STEPS.value)
    return bench_stage1(cfg, subject, _STEPS.value)


def _child(phase: str, out: str) -> list[dict]:
    """Runs one phase in a fresh interpreter (its own peak RSS); returns its rows."""
    skip = ("--phase", "--json", "--in_process")
    argv = [a for a in sys.argv[1:] if not a.startswith(skip)]
    cmd = [
        sys.executable,
        "-m",
        "experiments.bench_train",
        f"--phase={phase}",
        f"--json={out}",
        "--in_process",
    ] + argv
    code = subprocess.call(cmd)
    if code != 0 or not os.path.exists(out):
        print(f"[{phase}] failed (exit code {code})", flush=True)
        return [{"program": f"{phase}/FAILED", "exit_code": code}]
    with open(out) as f:
        return json.load(f)["rows"]


def main(argv):
    del argv
    bad = [p for p in _PHASE.value if p not in PHASES]
    if bad:
        sys.exit(f"bench_train: --phase={','.join(bad)}: choose from {PHASES}")
    if _INPROC.value:
        rows = [r for p in _PHASE.value for r in run_phase(p)]
    else:
        print(
            report.header(_CONFIG.value, _SIZE.value, _STEPS.value, _FILL.value, _SET.value),
            flush=True,
        )
        path = _SUBJECT.value or bench_subject(_SIZE.value, _DATA_ROOT.value)  # built once
        print(f"subject: {path}", flush=True)
        rows = []
        for p in _PHASE.value:
            rows += _child(p, os.path.join("/tmp", f"bench_train_{os.getpid()}_{p}.json"))
        from ua3dtalk_jax.configs import apply_overrides, get_config

        cfg = apply_overrides(get_config(_CONFIG.value), _SET.value)
        print(report.table(rows))
        print(report.extrapolate(rows, cfg))
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"rows": rows, "load_avg": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
