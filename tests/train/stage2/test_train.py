"""Stage-2 training end to end on the tiny synthetic subject (`--config=tiny --stage=all`), resume,
the CLI-facing errors and config overrides.

The end-to-end run (stage 1 and stage 2 through `train.run.train`, as `experiments.train` does)
is shared by the tests of this module; compilations go to a persistent cache in the session's tmp
dir, so the resumed branch reuses the executables of the first run.
"""

import json
import os
import shutil
import threading

import jax
import numpy as np
import pytest

from tests.configs.legacy import tiny_resolved, write_version0
from ua3dtalk_jax.configs import apply_overrides, get_config
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.data.synthetic.generate import generate_preset
from ua3dtalk_jax.gaussians import densify_config
from ua3dtalk_jax.head.checkpoint import Checkpointer
from ua3dtalk_jax.head.workdir import Stage1Missing, Workdir
from ua3dtalk_jax.train import parallel
from ua3dtalk_jax.train.side_by_side import Stopped
from ua3dtalk_jax.train.stage2.driver import run_stage2
from ua3dtalk_jax.train.stage2.loop import train_branch
from ua3dtalk_jax.train.stage2.state import init_branch, scene_extent

TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"  # jax.monitoring: one per jit trace
RESUME_TOL = 1e-5  # float32 round-off; the CPU kernel and the frame order are deterministic


@pytest.fixture(scope="module")
def trained(tiny_trained):
    return tiny_trained


def _history(workdir, phase):
    with open(os.path.join(workdir, "stage2", f"{phase}_metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_tiny_run_trains_checkpoints_and_summarises(trained):
    workdir, cfg = trained["workdir"], trained["cfg"]
    for phase, total in (("face", 30), ("mouth", 30), ("fuse", 10)):
        steps = Checkpointer(os.path.join(workdir, "stage2", phase)).all_steps()
        assert steps and steps[-1] == total, (phase, steps)
    for phase in ("face", "mouth"):
        h = _history(workdir, phase)  # means over 5-iteration windows
        assert all(np.isfinite(r["loss"]) for r in h)
        # The image term (the total gains regularisers after the warm-up and LPIPS late) improves
        # on the first window; the face's frames and hair masks vary, so its best later window.
        assert min(r["l1"] for r in h[1:]) < h[0]["l1"], (phase, h)
    mouth = _history(workdir, "mouth")
    assert np.mean([r["l1"] for r in mouth[-2:]]) < np.mean([r["l1"] for r in mouth[:2]])
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    held = summary["heldout"]
    assert held["frames"] == len(Subject.open(trained["subject"]).split("val"))
    assert np.isfinite(held["psnr"]) and 0 < held["ssim"] <= 1 and held["lpips"] >= 0
    assert set(summary["seconds"]) >= {"face", "mouth", "fuse", "eval", "stage1"}
    model = Workdir(workdir).load_trained(trained["subject"], drivable=False)
    cfg2, heads = model.cfg, model.heads
    as_json = lambda c: json.loads(json.dumps(c.to_dict()))
    assert as_json(cfg2) == as_json(cfg)
    assert heads["face"][2].capacity == cfg.model.gaussians.face.capacity
    assert os.path.isfile(os.path.join(workdir, "val", "fuse_000010.png"))


@pytest.mark.slow
def test_resumed_branch_ends_where_an_uninterrupted_one_does(trained, tmp_path):
    """A run stopped after its iteration-20 checkpoint and restarted ends like the full run."""
    cfg, workdir = trained["cfg"], trained["workdir"]
    subject = Subject.open(trained["subject"])
    resumed = str(tmp_path / "resumed")
    src = os.path.join(workdir, "stage2", "face")
    os.makedirs(os.path.join(resumed, "stage2", "face"))
    shutil.copytree(os.path.join(src, "20"), os.path.join(resumed, "stage2", "face", "20"))
    features = Workdir(workdir).stage1_features(subject)
    extent = scene_extent(np.stack([subject.viewmat(int(i)) for i in subject.split("train")]))
    traces = []

    def listen(event, seconds, **kw):
        if event == TRACE_EVENT and kw.get("fun_name") == "branch_step":
            traces.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        state, _ = train_branch(
            cfg, "face", subject, features, resumed, extent=extent, mesh=parallel.global_mesh()
        )
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    # Iterations 20-30 are all full-ensemble steps (ensemble_from < 20): one variant, traced once
    # (the loop places the restored state like the step's own outputs) and never again over the
    # following iterations, densifications and checkpoints: no recompilation per iteration.
    assert cfg.train.face.ensemble_from < 20
    assert len(traces) == 1, traces
    like = init_branch(cfg, "face", jax.random.PRNGKey(0), extent)[0]
    full, meta = Checkpointer(src).restore(like, 30)
    assert meta["iteration"] == 30
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(full)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=RESUME_TOL, rtol=RESUME_TOL)


def test_stage2_without_stage1_names_the_fix(tmp_path):
    subject = generate_preset(str(tmp_path / "s"), "tiny", seed=1)
    with pytest.raises(Stage1Missing, match="--stage=1"):
        run_stage2(get_config("tiny"), Subject.open(subject), str(tmp_path / "w"))


def test_overrides_parse_values_and_reject_unknown_keys():
    cfg = apply_overrides(
        get_config("tiny"),
        [
            "train.face.iterations=40",
            "seed=3",
            "model.ablation.uncertainty=False",
            "train.lambda_ssim=1",
        ],
    )
    assert cfg.train.face.iterations == 40 and cfg.seed == 3
    assert cfg.model.ablation.uncertainty is False and cfg.train.lambda_ssim == 1.0
    with pytest.raises(ValueError, match="train.face.nope"):
        apply_overrides(get_config("tiny"), ["train.face.nope=1"])
    cfg = apply_overrides(get_config("tiny"), ["train.face.densify_every=7"])
    assert densify_config(cfg.model.gaussians.face, cfg.train.face).densify_every == 7
    # the schedule has one home: the old copy under model.gaussians is not a key any more
    with pytest.raises(ValueError, match="unknown config key 'model.gaussians.face.densify_every'"):
        apply_overrides(get_config("tiny"), ["model.gaussians.face.densify_every=5"])


def test_workdir_with_another_config_is_refused(tmp_path):
    Workdir(str(tmp_path)).check_config(get_config("tiny"))
    Workdir(str(tmp_path)).check_config(get_config("tiny"))  # same config: resumes
    other = apply_overrides(get_config("tiny"), ["seed=5"])
    with pytest.raises(ValueError, match="seed"):
        Workdir(str(tmp_path)).check_config(other)


def test_workdirs_saved_before_a_field_existed_resume_with_its_legacy_value(tmp_path):
    """stage1.features.source came later: a config.json without it reads as "stage1" (what such
    a workdir did) when resuming and loading, and differs from an explicit "subject"."""
    from ua3dtalk_jax.configs.io import load_config

    write_version0(str(tmp_path), lambda d: d["stage1"]["features"].pop("source"))
    Workdir(str(tmp_path)).check_config(tiny_resolved())  # resumes
    assert load_config(str(tmp_path)).stage1.features.source == "stage1"
    other = tiny_resolved(["stage1.features.source=subject"])
    with pytest.raises(ValueError, match=r"differs in stage1\.features\.source"):
        Workdir(str(tmp_path)).check_config(other)


_DP_SCRIPT = r"""
import json, sys
import jax, numpy as np
from jax.sharding import Mesh
from ua3dtalk_jax.configs import apply_overrides, get_config
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.train import parallel
from ua3dtalk_jax.train.stage2.sampler import FrameSampler
from ua3dtalk_jax.train.stage2.loop import flags
from ua3dtalk_jax.train.stage2.state import init_branch
from ua3dtalk_jax.losses.branches import Variant
from ua3dtalk_jax.train.stage2.step import make_branch_step

cfg = get_config("tiny")
subject = Subject.open(sys.argv[1])
feats = {k: np.zeros((len(subject), d), np.float32) for k, d in
         (("f_exp", 64), ("f_tone", 64), ("f_emo", 128))}
state, net, g_tx, n_tx = init_branch(cfg, "face", jax.random.PRNGKey(0), 0.2)
batch = FrameSampler(subject, feats, "face", cfg.train.face, 0, 2).load(0)
h, w = subject.size
out = {}
for n in (1, 2):
    mesh = Mesh(np.array(jax.devices()[:n]), (parallel.AXIS,))
    step = make_branch_step(cfg, "face", net, g_tx, n_tx, Variant(False, "train"),
                            width=w, height=h, mesh=mesh)
    new, m = step(state, parallel.put_batch(batch, mesh), flags(cfg.train.face, "face", 0))
    out[n] = {"loss": float(m["loss"]), "means": np.asarray(new.gaussians.means).tolist(),
              "grad_accum": np.asarray(new.stats.grad_accum).tolist(),
              "count": np.asarray(new.stats.count).tolist()}
print("RESULT" + json.dumps(out))
"""


_MH_SCRIPT = r"""
import json, sys
import jax, numpy as np
jax.config.update("jax_cpu_collectives_implementation", "gloo")  # one CPU device per process
from ua3dtalk_jax.train import parallel
parallel.initialize_distributed(f"127.0.0.1:{sys.argv[4]}", 2, int(sys.argv[3]))
from ua3dtalk_jax.configs import apply_overrides, get_config
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.train import parallel
from ua3dtalk_jax.train.stage2.sampler import FrameSampler
from ua3dtalk_jax.train.stage2.loop import flags
from ua3dtalk_jax.train.stage2.state import init_branch
from ua3dtalk_jax.losses.branches import Variant
from ua3dtalk_jax.train.stage2.step import make_branch_step

cfg = get_config("tiny")
subject = Subject.open(sys.argv[1])
feats = {k: np.zeros((len(subject), d), np.float32) for k, d in
         (("f_exp", 64), ("f_tone", 64), ("f_emo", 128))}
state, net, g_tx, n_tx = init_branch(cfg, "face", jax.random.PRNGKey(0), 0.2)
mesh = parallel.global_mesh()
batch = FrameSampler(subject, feats, "face", cfg.train.face, 0, 2).load(0)
rows = parallel.process_slice(2)  # as the training loop feeds each host
local = {k: v[rows] for k, v in batch.items()}
h, w = subject.size
step = make_branch_step(cfg, "face", net, g_tx, n_tx, Variant(False, "train"), width=w, height=h,
                        mesh=mesh)
new, m = step(state, parallel.put_batch(local, mesh), flags(cfg.train.face, "face", 0))
out = {"devices": mesh.devices.size, "processes": jax.process_count(), "loss": float(m["loss"]),
       "means": np.asarray(new.gaussians.means).tolist(),
       "grad_accum": np.asarray(new.stats.grad_accum).tolist(),
       "count": np.asarray(new.stats.count).tolist()}
print("RESULT" + json.dumps(out))
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _result(stdout: str) -> dict:
    line = [x for x in stdout.splitlines() if x.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT") :])


def _assert_same_step(two: dict, one: dict) -> None:
    assert abs(one["loss"] - two["loss"]) < 1e-5
    np.testing.assert_allclose(two["means"], one["means"], atol=1e-6)
    np.testing.assert_allclose(two["grad_accum"], one["grad_accum"], rtol=1e-4, atol=1e-9)
    np.testing.assert_array_equal(two["count"], one["count"])


@pytest.mark.slow
def test_two_devices_and_two_processes_take_the_step_of_one(trained):
    """Data parallelism: one step on a global batch of 2 frames is the same on one device, on two
    devices of one process, and on two processes with one CPU device each (multi-host through
    `jax.distributed` with gloo collectives, each process feeding its own row of the batch)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    port = str(_free_port())
    multi = [sys.executable, "-c", _MH_SCRIPT, trained["subject"], "multi"]
    procs = [
        subprocess.Popen(
            multi + [str(i), port],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    env2 = dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run(
        [sys.executable, "-c", _DP_SCRIPT, trained["subject"]],
        env=env2,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    outs = [p.communicate(timeout=600) for p in procs]
    assert proc.returncode == 0, proc.stderr[-3000:]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    res = _result(proc.stdout)
    one = res["1"]
    _assert_same_step(res["2"], one)
    for stdout, _ in outs:
        two = _result(stdout)
        assert (two["devices"], two["processes"]) == (2, 2)
        _assert_same_step(two, one)


class _SetAfter(threading.Event):
    """A stop event that reads as set from its `n`-th check on (the loop checks once per
    iteration, so the branch stops before iteration n − 1 + its start)."""

    def __init__(self, n):
        super().__init__()
        self.checks, self.n = 0, n

    def is_set(self):
        self.checks += 1
        return self.checks >= self.n


@pytest.mark.slow
def test_a_stopped_branch_checkpoints_and_side_by_side_equals_alone(trained, tmp_path):
    """The shared tiny run trained face and mouth side by side (`run.train`'s default). Its mouth
    branch trained alone here ends with the same parameters; stopped at iteration 7 (as when the
    face branch fails beside it), the branch checkpoints there and resumes to the same end."""
    cfg, workdir = trained["cfg"], trained["workdir"]
    assert trained["out"]["stage2"]["seconds"]["branches"] > 0  # the side-by-side path ran
    assert 7 % cfg.train.checkpoint_every and cfg.train.mouth.iterations == 30
    subject = Subject.open(trained["subject"])
    features = Workdir(workdir).stage1_features(subject)
    extent = scene_extent(np.stack([subject.viewmat(int(i)) for i in subject.split("train")]))
    alone = str(tmp_path / "alone")
    kw = {"extent": extent, "mesh": parallel.global_mesh(), "log": lambda *_: None}
    with pytest.raises(Stopped, match="iteration 7"):
        train_branch(cfg, "mouth", subject, features, alone, stop=_SetAfter(8), **kw)
    assert Checkpointer(os.path.join(alone, "stage2", "mouth")).all_steps() == [7]
    state, _ = train_branch(cfg, "mouth", subject, features, alone, **kw)
    like = init_branch(cfg, "mouth", jax.random.PRNGKey(0), extent)[0]
    side, meta = Checkpointer(os.path.join(workdir, "stage2", "mouth")).restore(like, 30)
    assert meta["iteration"] == 30
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(side)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=RESUME_TOL, rtol=RESUME_TOL)
