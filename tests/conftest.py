"""Fixtures shared by the test modules."""

import jax
import pytest


@pytest.fixture(scope="module")
def fast_compile():
    """Disables most XLA optimisations for one test module (CPU compiles dominate these tests),
    restoring the previous setting afterwards so other modules are unaffected."""
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


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
