"""Fixtures shared by the test modules, and the suite's compile setting.

XLA compilations dominate this suite on a 2-core CPU, so every test (and every subprocess a test
starts: the CLI, notebook and two-device tests inherit the environment) compiles with
`jax_disable_most_optimizations`: the tiny-preset stage-2 steps compile in ~11 s instead of ~15 s.
The results are the same computations (tolerances in the tests are unchanged); the optimised
build is what the README's main job and the benchmarks run. Set
JAX_DISABLE_MOST_OPTIMIZATIONS=0 to run the suite with full optimisations.

Tests marked `optimized` (a module's `pytestmark` or one test's mark: the exact-equality checks,
a training step, a rasterizer gradient) compile with XLA's optimisations, as users run: the flag
is turned off and JAX's caches cleared before the module's (or the test's) fixtures compile
anything, and both are restored afterwards. The flag is not part of JAX's in-memory cache keys,
hence the clearing.
"""

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax
import pytest

jax.config.update(
    "jax_disable_most_optimizations",
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] not in ("0", "false", "False"),
)


# pytest-timeout's limit for a test that uses the shared tiny run: its first user trains it (359 s
# on 2 idle cores; 2,825 s measured on a 2-core machine shared with ~6 busy jobs, load 15) and,
# under -n 2, the other worker's user waits for it.
TINY_RUN_TIMEOUT_S = 3600


@contextlib.contextmanager
def _optimised():
    before = jax.config.read("jax_disable_most_optimizations")
    env = os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS")
    jax.config.update("jax_disable_most_optimizations", False)
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "0"  # and the subprocesses a test starts
    jax.clear_caches()
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
        if env is None:
            os.environ.pop("JAX_DISABLE_MOST_OPTIMIZATIONS", None)
        else:
            os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = env
        jax.clear_caches()


@pytest.fixture(scope="module", autouse=True)
def _optimized_module(request):
    """A module marked `optimized` (pytestmark) compiles everything, fixtures included, with
    XLA's optimisations (autouse: set up before the module's other fixtures)."""
    if request.node.get_closest_marker("optimized") is None:
        yield
        return
    with _optimised():
        yield


@pytest.fixture(autouse=True)
def _optimized_test(request):
    """One test marked `optimized` in a module that is not: its own compilations are optimised
    (the module's fixtures were compiled before)."""
    module = request.node.getparent(pytest.Module)
    if (
        request.node.get_closest_marker("optimized") is None
        or module.get_closest_marker("optimized") is not None
    ):
        yield
        return
    with _optimised():
        yield


def pytest_collection_modifyitems(config, items):
    """Orders the modules so that, under `pytest -n 2`, one worker starts the shared tiny run at
    once while the other runs the independent modules: the first module that needs `tiny_trained`
    goes first, the modules that do not need it next, the other users of it last (each module's
    own order unchanged; modules stay contiguous so their fixtures are set up once)."""
    modules: dict = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    users = [
        m
        for m, its in modules.items()
        if any("tiny_trained" in getattr(i, "fixturenames", ()) for i in its)
    ]
    order = users[:1] + [m for m in modules if m not in users] + users[1:]
    items[:] = [i for m in order for i in modules[m]]
    for item in items:
        if "tiny_trained" in getattr(item, "fixturenames", ()) and not item.get_closest_marker(
            "timeout"
        ):
            item.add_marker(pytest.mark.timeout(TINY_RUN_TIMEOUT_S))


def _shared_tmp(tmp_path_factory) -> Path:
    """A tmp folder shared by every pytest-xdist worker of this run (the run's own basetemp when
    not distributed; never a folder an earlier run left behind)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """One `--config=tiny --stage=all` run on the tiny synthetic subject, shared by every module
    that needs a trained workdir (training, inference, evaluation, notebook tests) and, under
    `pytest -n N`, by every worker: the first worker to need it trains it under a file lock, the
    others wait for it and read its summary. Compilations go to a persistent cache next to it.
    Treat the workdir as read-only; copy it first to change it."""
    from ua3dtalk_jax.configs import get_config
    from ua3dtalk_jax.configs.io import load_config
    from ua3dtalk_jax.data.synthetic.generate import generate_preset
    from ua3dtalk_jax.eval.heldout import evaluate_heldout
    from ua3dtalk_jax.train import run

    root = _shared_tmp(tmp_path_factory) / "tiny_trained"
    root.mkdir(exist_ok=True)
    cfg = get_config("tiny")
    done = root / "summary.json"
    with open(root.parent / "tiny_trained.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run.enable_compile_cache(str(root / "xla_cache"))
        if not done.exists():
            for name in ("subject", "work"):
                shutil.rmtree(root / name, ignore_errors=True)
            subject = generate_preset(str(root / "subject"), "tiny", seed=0)
            out = run.train(cfg, subject, str(root / "work"), "all", evaluate=evaluate_heldout)
            tmp = done.with_suffix(".tmp")
            tmp.write_text(json.dumps({"subject": subject, "out": out}))
            os.replace(tmp, done)
        saved = json.loads(done.read_text())
    cfg = load_config(str(root / "work"))  # as training resolved it (data.audio_feature)
    return {
        "cfg": cfg,
        "subject": saved["subject"],
        "workdir": str(root / "work"),
        "out": saved["out"],
        "root": root,
    }
