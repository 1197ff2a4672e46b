"""Fixtures shared by the test modules, and the suite's compile setting.

XLA compilations dominate this suite on a 2-core CPU, so every test (and every subprocess a test
starts: the CLI, notebook and two-device tests inherit the environment) compiles with
`jax_disable_most_optimizations`: the tiny-preset stage-2 steps compile in ~11 s instead of ~15 s.
The results are the same computations (tolerances in the tests are unchanged); the optimised
build is what the README's main job and the benchmarks run. Set
JAX_DISABLE_MOST_OPTIMIZATIONS=0 to run the suite with full optimisations.
"""

import os

os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax
import pytest

jax.config.update("jax_disable_most_optimizations",
                  os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] not in ("0", "false", "False"))


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """One `--config=tiny --stage=all` run on the tiny synthetic subject, shared by every module
    that needs a trained workdir (training, inference, evaluation, notebook tests). Compilations go
    to a persistent cache in the session's tmp dir. Treat the workdir as read-only; copy it first
    to change it."""
    from ua3dtalk_jax.configs import get_config  # noqa: PLC0415
    from ua3dtalk_jax.data.synthetic.generate import generate_preset  # noqa: PLC0415
    from ua3dtalk_jax.train import run  # noqa: PLC0415

    root = tmp_path_factory.mktemp("tiny_trained")
    run.enable_compile_cache(str(root / "xla_cache"))
    subject = generate_preset(str(root / "subject"), "tiny", seed=0)
    cfg = get_config("tiny")
    workdir = str(root / "work")
    out = run.train(cfg, subject, workdir, "all")
    return {"cfg": cfg, "subject": subject, "workdir": workdir, "out": out, "root": root}
