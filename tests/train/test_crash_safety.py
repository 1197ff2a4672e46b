"""Faults a training run must survive: a kill during a checkpoint save, a kill in the middle of a
stage-1 module, a resumed stage-2 phase's metrics log, a summary.json write that fails.

A kill during a save is made deterministic: a child process saves with orbax's rename of the
finished temporary folder replaced by SIGKILL to itself, so it leaves exactly what a kill at that
moment leaves (`<step>.orbax-checkpoint-tmp`).
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.configs.legacy import tiny_resolved, write_version0
from ua3dtalk_jax.configs import get_config
from ua3dtalk_jax.configs.io import save_config
from ua3dtalk_jax.head.checkpoint import Checkpointer
from ua3dtalk_jax.head.stage2_model import load_stage2
from ua3dtalk_jax.head.workdir import Workdir
from ua3dtalk_jax.train.stage1.loop import TrainState, apply_grads, init_state, run_steps
from ua3dtalk_jax.train.stage2.phase import Phase

ROOT = Path(__file__).resolve().parents[2]
RESUME_TOL = 1e-5  # float32 round-off; the CPU programs and every step's key are deterministic
SIGKILL_RC = -9  # subprocess's return code of a child killed by SIGKILL


def killed_save(directory: Path) -> None:
    """Leaves in `directory` what a process SIGKILLed while saving a checkpoint leaves."""
    code = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from orbax.checkpoint._src.path import atomicity
        from ua3dtalk_jax.head.checkpoint import Checkpointer

        async def die(*args, **kwargs):  # the step is written; the rename would finish it
            os.kill(os.getpid(), signal.SIGKILL)

        atomicity.AtomicRenameTemporaryPath.finalize = die
        Checkpointer({str(directory)!r}, max_to_keep=1).save(0, {{"w": np.ones(3)}}, {{}})
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    r = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == SIGKILL_RC, r.stderr[-2000:]
    assert [p.name for p in directory.iterdir()] == ["0.orbax-checkpoint-tmp"]


@pytest.fixture(scope="module")
def leftover(tmp_path_factory) -> Path:
    """A checkpoint folder holding only a killed save's temporary folder (copy before use)."""
    path = tmp_path_factory.mktemp("killed") / "ckpt"
    killed_save(path)
    return path


def test_a_killed_stage1_save_is_no_stage1(leftover, tmp_path):
    """Before: has_stage1 saw a non-empty folder ("not retrained") and load_stage1 failed with
    orbax's "No steps found" on every rerun."""
    shutil.copytree(leftover, tmp_path / "stage1")
    assert not Workdir(str(tmp_path)).has_stage1()
    with pytest.raises(FileNotFoundError, match="no finished stage-1 checkpoint.*--stage=1"):
        Workdir(str(tmp_path)).load_stage1()
    # the next save there (the rerun's) finishes, and the leftover is gone
    Checkpointer(str(tmp_path / "stage1"), max_to_keep=1).save(0, {"w": np.zeros(3)})
    assert Workdir(str(tmp_path)).has_stage1()
    assert sorted(os.listdir(tmp_path / "stage1")) == ["0"]


def test_a_killed_stage2_model_save_is_no_model(leftover, tmp_path):
    """Before: the non-empty folder passed the check and the restore failed inside orbax."""
    save_config(get_config("tiny"), str(tmp_path))
    shutil.copytree(leftover, tmp_path / "stage2" / "model")
    with pytest.raises(FileNotFoundError, match="no trained stage-2 model.*--stage=2"):
        load_stage2(Workdir(str(tmp_path)).model_dir, get_config("tiny"))


def _toy_step():
    """A jitted least-squares step with Adam whose batch is drawn from its key (as stage 1's)."""
    tx = optax.adam(0.05)
    xs = jax.random.normal(jax.random.PRNGKey(0), (64, 4))
    ys = xs @ jnp.arange(1.0, 5.0)

    @jax.jit
    def step(state: TrainState, data: dict, key: jax.Array):
        i = jax.random.randint(key, (8,), 0, 64)
        loss, g = jax.value_and_grad(
            lambda p: jnp.mean((data["x"][i] @ p["w"] - data["y"][i]) ** 2)
        )(state.params)
        return apply_grads(state, g, tx), {"loss": loss}

    return step, init_state({"w": jnp.zeros(4)}, tx), {"x": xs, "y": ys}


class Killed(Exception):
    pass


@pytest.mark.optimized  # the resumed parameters as users compile the steps
def test_a_module_killed_mid_way_resumes_to_the_uninterrupted_parameters(tmp_path):
    from ua3dtalk_jax.train.stage1.loop import Progress

    step, state0, data = _toy_step()
    key, n = jax.random.PRNGKey(3), 10
    full, h_full = run_steps(step, state0, data, key, n)
    calls = []

    def dying(state, data, key):  # killed during step 8, after the checkpoint of step 6
        calls.append(1)
        if len(calls) == 8:
            raise Killed
        return step(state, data, key)

    progress = Progress(str(tmp_path), every=3, fingerprint={"run": 1})
    with pytest.raises(Killed):
        run_steps(dying, state0, data, key, n, name="toy", progress=progress)
    assert Checkpointer(str(tmp_path / "toy")).all_steps() == [6]
    calls.clear()
    logs = []
    resumed, h = run_steps(dying, state0, data, key, n, logs.append, "toy", progress)
    assert len(calls) == n - 6 and "toy: resumed at step 6/10" in logs
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(full)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RESUME_TOL, atol=RESUME_TOL)
    np.testing.assert_allclose(h["loss"], h_full["loss"], rtol=RESUME_TOL)  # whole history
    # finished: restored, not retrained
    calls.clear()
    again, _ = run_steps(dying, state0, data, key, n, logs.append, "toy", progress)
    assert not calls and "toy: finished before, restored" in logs
    np.testing.assert_array_equal(again.params["w"], resumed.params["w"])
    # another config's or subject's checkpoint is refused, and the interval must be ≥ 1 step
    with pytest.raises(ValueError, match="another config"):
        run_steps(step, state0, data, key, n, None, "toy", Progress(str(tmp_path), 3, {"run": 2}))
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="checkpoint_every"):
            Progress(str(tmp_path), bad)


def _history(path):
    with open(path) as f:
        return [json.loads(line)["iteration"] for line in f]


def test_a_resumed_phase_logs_each_iteration_once(tmp_path):
    """A stage-2 phase killed after iteration 8 (its checkpoint at 5) and resumed: the metrics
    .jsonl holds each logged iteration once (before: 6, 7, 8 twice), a line cut short by the
    kill included."""
    cfg = get_config("tiny")
    cfg.train.log_every = 1
    state = {"w": np.zeros(2, np.float32)}
    metrics = {"finite": 1.0, "loss": 0.5, "psnr": 20.0}
    ph = Phase("face", 10, cfg, str(tmp_path), log=lambda *_: None)
    ph.progress(0)
    for it in range(8):
        ph.after_step(it, metrics, state)
        if it + 1 == 5:
            ph.save(state, 5)
    ph.close()
    with open(ph.history, "a") as f:
        f.write('{"iteration": 9, "lo')  # killed mid-line
    ph = Phase("face", 10, cfg, str(tmp_path), log=lambda *_: None)
    _, start = ph.restore(state)
    assert start == 5
    ph.progress(start)
    for it in range(start, 10):
        ph.after_step(it, metrics, state)
    ph.close()
    assert _history(ph.history) == list(range(1, 11))


def test_summary_json_is_replaced_whole(tmp_path):
    """A write that fails half-way (here a value JSON cannot encode) leaves the previous summary
    and no temporary file."""
    from ua3dtalk_jax.head.checkpoint import write_json_atomic

    path = tmp_path / "summary.json"
    write_json_atomic(str(path), {"heldout": {"psnr": 20.0}})
    with pytest.raises(TypeError):
        write_json_atomic(str(path), {"heldout": {"psnr": 21.0}, "bad": object()})
    assert json.loads(path.read_text()) == {"heldout": {"psnr": 20.0}}
    assert os.listdir(tmp_path) == ["summary.json"]


class Crash:
    """A stage-1 `log` that raises `Killed` at the given progress lines (one per thread)."""

    def __init__(self, *lines):
        self.lines, self.seen = lines, []

    def __call__(self, line):
        self.seen.append(line)
        if any(line.startswith(x) for x in self.lines):
            raise Killed(line)


@pytest.mark.long
@pytest.mark.slow
def test_stage1_killed_twice_resumes_to_the_uninterrupted_run(tiny_trained, leftover, tmp_path):
    """Stage 1 of the shared tiny run again, in a workdir where a kill at the final save left its
    temporary folder, checkpointing every 10 steps and killed in both threads half-way through a
    module (the lip expert after 25 of 40 steps, emotion fine-tuning after 13 of 20); the rerun
    restores the finished modules, resumes the two, and ends with the shared run's parameters."""
    from ua3dtalk_jax.data import Subject
    from ua3dtalk_jax.head.checkpoint import finished_steps
    from ua3dtalk_jax.train.stage1.data import Stage1Data
    from ua3dtalk_jax.train.stage1.driver import train_stage1

    cfg = tiny_trained["cfg"].stage1.copy_and_resolve_references()
    cfg.checkpoint_every = 10
    assert (cfg.lip_expert.steps, cfg.emotion.finetune_steps) == (40, 20)
    data = Stage1Data.from_subject(Subject.open(tiny_trained["subject"]), cfg)
    wd = tmp_path / "work"
    shutil.copytree(leftover, wd / "stage1")
    assert not Workdir(str(wd)).has_stage1()
    crash = Crash("lip_expert step 25/40", "emotion_finetune step 13/20")
    with pytest.raises(Killed):
        train_stage1(data, cfg, str(wd), log=crash)
    progress = wd / Workdir.STAGE1_PROGRESS
    steps = {m: finished_steps(str(progress / m)) for m in os.listdir(progress)}
    assert steps == {
        "syncnet": [40],
        "lip_expert": [20],
        "emotion_pretrain": [40],
        "emotion_finetune": [10],
    }, steps
    logs = []
    model, _ = train_stage1(data, cfg, str(wd), log=logs.append)
    for line in (
        "syncnet: finished before, restored",
        "lip_expert: resumed at step 20/40",
        "emotion_pretrain: finished before, restored",
        "emotion_finetune: resumed at step 10/20",
    ):
        assert line in logs, logs
    assert not any(x.startswith("syncnet step") for x in logs)
    ref = Workdir(tiny_trained["workdir"]).load_stage1()
    for name in ref.params:
        for a, b in zip(jax.tree.leaves(model.params[name]), jax.tree.leaves(ref.params[name])):
            np.testing.assert_allclose(
                np.asarray(a), np.asarray(b), rtol=RESUME_TOL, atol=RESUME_TOL, err_msg=name
            )
    np.testing.assert_allclose(model.class_means, ref.class_means, rtol=RESUME_TOL, atol=RESUME_TOL)
    assert not progress.exists() and Workdir(str(wd)).has_stage1()
    assert sorted(os.listdir(wd / "stage1")) == ["0"]


def test_workdirs_saved_before_checkpoint_every_resume(tmp_path):
    """stage1.checkpoint_every came later: a config.json without it resumes and loads (the
    interval changes no result)."""
    from ua3dtalk_jax.configs.io import load_config

    write_version0(str(tmp_path), lambda d: d["stage1"].pop("checkpoint_every"))
    Workdir(str(tmp_path)).check_config(tiny_resolved())  # resumes
    assert load_config(str(tmp_path)).stage1.checkpoint_every == 500
