"""Times inference in its steady state: audio features → rendered frames, and each part's share.

  python -m experiments.bench_infer --workdir=DIR [--frames=100] [--size=H] [--repeats=3]

The model is the one `experiments.infer` renders (`head.workdir.Workdir.load_trained`); the audio is
the subject's own held-out speech (a new clip of --frames frames), poses the held-out ping-pong.
Parts, each timed alone after a warm-up call that compiles it (median of --repeats):

  stage-1 features   the frozen stage 1 on the clip (lip expert → f_exp, StyleNet → f_tone,
                     emotion encoder → f_emo) plus the stage-2 audio windows
  deformation        both branches' MotionNetwork (all T members, Eq. 10–12) for every frame, as
                     `render` runs it (`trained_model.inference_net`: the mean-only fusion)
  deformation (config form)  the same with the config's Eq. 10–12 form (training, evaluation)
  render             deformation, activation, rasterization of both branches and compositing
  rasterization + compositing   render minus deformation
  end to end         what `infer.synthesize` runs per frame, features included, no video encoding

--size renders at another square size (K scaled; the subject's torso frames resized), to report
512² as well. Prints frames per second of each part and of the whole.
"""

from __future__ import annotations

import time

import numpy as np
from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Trained workdir (stage 2 finished).")
_SUBJECT, _DATA_ROOT = cli.define_subject()
_FRAMES = flags.DEFINE_integer("frames", 100, "Frames of the benchmark clip.")
_SIZE = flags.DEFINE_integer("size", None, "Render at this square size (default: the subject's).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repetitions of each part (median).")
_CACHE = cli.define_compile_cache()
_CONFIG_FORM = flags.DEFINE_bool(
    "config_form",
    True,
    "Also time the config's (training) form of the deformation, which inference does not run.",
)


RENDER = "render (deformation + rasterization + compositing)"
CONFIG_FORM = "deformation, config's Eq. 10-12 form (not in render)"


def _median_time(fn, repeats: int) -> float:
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _clip(model, frames: int) -> np.ndarray:
    """`frames` frames of the subject's held-out speech (looped if it is shorter)."""
    from ua3dtalk_jax.audio.features import SAMPLE_RATE

    s = model.subject
    val = s.split("val")
    wav = s.wav()[int(val[0] / s.fps * SAMPLE_RATE) :]
    need = int(round(frames / s.fps * SAMPLE_RATE))
    return np.resize(wav, need).astype(np.float32)


def _resized(model, conds: list, size: int):
    """The frame conditionings for size × size renders: intrinsics scaled, the torso/background
    frames resized (`trained_model.render` renders at the background's size; the deformation does
    not depend on it)."""
    import cv2

    h, w = model.size
    if h != w:
        raise ValueError(f"--size needs a square subject; this one is {w}x{h}")
    scale = size / h
    out = []
    for c in conds:
        k = np.array(c["K"], np.float32)
        k[:2] *= scale
        bg = cv2.resize(np.asarray(c["background"]), (size, size), interpolation=cv2.INTER_LINEAR)
        out.append({**c, "K": k, "background": bg})
    return out


def _parts(
    model, wav, frames: int, repeats: int, size: int | None = None, skip_config_form: bool = False
) -> dict:
    import jax

    from ua3dtalk_jax.infer import trained_model as tm
    from ua3dtalk_jax.infer.poses import pose_schedule

    schedule = pose_schedule(model.subject, "val")
    feats = tm.audio_features(model, wav)
    n = len(feats["aud"])
    conds = [tm.frame_conditioning(model, feats, t, schedule(model.subject, t)) for t in range(n)]
    if size is not None:
        conds = _resized(model, conds, size)

    def features():
        tm.audio_features(model, wav)

    def deformation(fast):
        outs = [tm.deform(model, p, c, fast=fast) for c in conds for p in tm.PARTS]
        jax.block_until_ready(outs)

    def render():
        jax.block_until_ready([tm.render(model, c) for c in conds])

    parts = (
        ("stage-1 features", features),
        ("deformation", lambda: deformation(True)),
        (RENDER, render),
        (CONFIG_FORM, lambda: deformation(False)),
    )
    if skip_config_form:
        parts = parts[:-1]
    t = {name: _median_time(fn, repeats) for name, fn in parts}
    t["rasterization + compositing"] = t[RENDER] - t["deformation"]
    t["end to end"] = t["stage-1 features"] + t[RENDER]
    return {
        "frames": n,
        "seconds": t,
        "size": np.shape(conds[0]["background"])[:2],
        "gaussians": {p: int(np.sum(np.asarray(model.heads[p][2].active))) for p in tm.PARTS},
    }


def report(res: dict) -> str:
    n, t = res["frames"], res["seconds"]
    total = t["end to end"]
    lines = [f"{n} frames at {res['size'][1]}x{res['size'][0]}, live Gaussians {res['gaussians']}"]
    for name, sec in t.items():
        share = 100 * sec / total
        lines.append(f"  {name:52s} {sec:8.3f} s  {n / sec:8.1f} frames/s  {share:5.1f} %")
    return "\n".join(lines)


def main(argv):
    del argv
    cli.quiet_orbax()
    from ua3dtalk_jax.head.workdir import Workdir
    from ua3dtalk_jax.train.run import enable_compile_cache

    try:
        cli.require(workdir=_WORKDIR.value)
        if _FRAMES.value < 1 or _REPEATS.value < 1:
            raise ValueError("--frames and --repeats must be at least 1")
        if _SIZE.value is not None and not 16 <= _SIZE.value <= 4096:
            raise ValueError(f"--size={_SIZE.value}: must be in [16, 4096]")
        enable_compile_cache(_CACHE.value)
        subject = cli.open_trained(_WORKDIR.value, _SUBJECT.value, _DATA_ROOT.value, "")
        model = Workdir(_WORKDIR.value).load_trained(subject)
        res = _parts(
            model,
            _clip(model, _FRAMES.value),
            _FRAMES.value,
            _REPEATS.value,
            _SIZE.value,
            skip_config_form=not _CONFIG_FORM.value,
        )
    except (OSError, ValueError) as e:
        cli.fail("bench_infer", e)
    print(report(res))


if __name__ == "__main__":
    cli.run(main)
