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
