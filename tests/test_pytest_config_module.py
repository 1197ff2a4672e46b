"""A module marked `optimized`: its module-scoped fixtures already compile with XLA's
optimisations (tests/conftest.py)."""

import jax
import pytest

pytestmark = pytest.mark.optimized


@pytest.fixture(scope="module")
def flag_at_setup():
    return jax.config.read("jax_disable_most_optimizations")


def test_module_fixtures_compile_with_the_optimisations(flag_at_setup):
    assert flag_at_setup is False and jax.config.read("jax_disable_most_optimizations") is False
