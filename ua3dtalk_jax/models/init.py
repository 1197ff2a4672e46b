"""Flax parameter initialisation as one compiled program.

`module.init` run eagerly dispatches every op of the module's forward and of each parameter's
initialiser as its own small XLA program: on a 2-core CPU the stage-1 modules took ~27 s that way
(~900 programs, most of them compiled once), more than any of their training steps to compile.
`init_params` jits the whole `init` instead: XLA drops the forward (only the parameters are
returned) and compiles the initialisers at optimisation level 1, the level that keeps every value
bitwise equal to the eager init here (level 0 moved some by ~1e-6; tests/models/test_init.py).
The compiled programs are cached per module and input shapes, like any jitted function.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def init_params(module: nn.Module, key: jax.Array, *args, **static) -> dict:
    """`module.init(key, *args, **static)["params"]`, compiled as one program.

    Args:
      module: a Flax Linen module (hashable, as every dataclass module is).
      key: the PRNG key `init` receives.
      args: the example inputs (arrays; only their shapes and dtypes matter).
      static: keyword arguments of `__call__` that select code paths (e.g. mode="eval").
    """
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((key, args))):
        return module.init(key, *args, **static)["params"]  # inside a transformation (eval_shape)
    return _init(module, tuple(sorted(static.items())), key, *args)


@functools.partial(jax.jit, static_argnums=(0, 1), compiler_options=COMPILER_OPTIONS)
def _init(module, static, key, *args):
    return module.init(key, *args, **dict(static))["params"]
