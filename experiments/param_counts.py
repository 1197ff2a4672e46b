"""Prints parameter counts of the stage-2 deformation networks per module, per preset.

    python -m experiments.param_counts [--preset=paper] [--ablation=PEU]

Shapes only (`jax.eval_shape`), so the paper sizes cost no memory. Reference (authors' code):
the paper xyz hexplane has 3·16·(64² + 128² + 256² + 512²) = 16,711,680 parameters per branch and
the emotion hexplane 3·64·(64² + 128² + 256²) = 16,515,072. `tests/models/test_param_counts.py`
derives every module's count from the layer sizes in DESIGN.md §3 and the reference §3 and checks
these numbers against it. One known difference from the authors' code: their mouth network also
holds an unused `aud_ch_att_net` (64·32 + 32·32 = 3,072 parameters), which ours omits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from experiments import cli
from ua3dtalk_jax.configs.model import PRESETS, model_config
from ua3dtalk_jax.models.motion import FrameInputs, MotionNetwork, motion_spec

_PRESET = flags.DEFINE_enum("preset", None, PRESETS, "One preset (default: all).")
_ABLATION = flags.DEFINE_string("ablation", "PEU", "Switches on: any of P, E, U.")


def count_params(cfg, part: str) -> dict[str, int]:
    """{top-level submodule: parameter count} of one branch, from shapes only."""
    spec = motion_spec(cfg, part)
    n = 4
    inputs = FrameInputs(
        aud=jnp.zeros((cfg.audio.window, cfg.audio.steps, cfg.audio.in_dim)),
        au_exp=jnp.zeros((6,)),
        f_exp=jnp.zeros((cfg.prior.exp_dim,)),
        f_tone=jnp.zeros((cfg.prior.tone_dim,)),
        f_emo=jnp.zeros((cfg.emotion.in_dim,)),
    )
    shapes = jax.eval_shape(
        lambda k: MotionNetwork(spec).init(k, jnp.zeros((n, 3)), inputs), jax.random.PRNGKey(0)
    )["params"]
    return {
        name: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(sub))
        for name, sub in sorted(shapes.items())
    }


def main(argv):
    del argv
    for preset in [_PRESET.value] if _PRESET.value else PRESETS:
        cfg = model_config(preset)
        cfg.ablation.prior = "P" in _ABLATION.value
        cfg.ablation.emotion = "E" in _ABLATION.value
        cfg.ablation.uncertainty = "U" in _ABLATION.value
        for part in ("face", "mouth"):
            counts = count_params(cfg, part)
            print(f"[{preset}] {part} ({_ABLATION.value}): {sum(counts.values()):,} parameters")
            for name, c in counts.items():
                print(f"    {name:<12} {c:>12,}")


if __name__ == "__main__":
    cli.run(main)
