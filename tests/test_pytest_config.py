"""The suite's own configuration (pytest.ini, tests/conftest.py): the `optimized` marker turns
XLA's optimisations on for one test, and warnings raised by our code are errors."""

import os
import warnings

import jax
import pytest

SUITE_FAST_COMPILE = os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS", "1") not in (
    "0",
    "false",
    "False",
)


@pytest.mark.optimized
def test_an_optimized_test_compiles_with_the_optimisations():
    assert jax.config.read("jax_disable_most_optimizations") is False
    assert os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] == "0"  # and so do its subprocesses


def test_the_other_tests_keep_the_suite_setting():
    assert jax.config.read("jax_disable_most_optimizations") is SUITE_FAST_COMPILE


@pytest.mark.parametrize("module", ["ua3dtalk_jax.data.writer", "experiments.train", __name__])
def test_warnings_from_our_code_are_errors(module):
    with pytest.raises(UserWarning, match="ours"):
        warnings.warn_explicit("ours", UserWarning, "x.py", 1, module=module)
    with pytest.warns(UserWarning, match="theirs"):  # not ours: stays a warning
        warnings.warn_explicit("theirs", UserWarning, "x.py", 1, module="numpy.core")
