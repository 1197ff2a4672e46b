"""The trained stage 2 and its file (workdir/stage2/model, one orbax step).

The model is both branches' Gaussians and `MotionNetwork` parameters (no optimiser state), with
the run's config and the scene extent in its metadata and a format string (`FORMAT`) that
`load_stage2` checks.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.gaussians import init_gaussians
from ua3dtalk_jax.head.checkpoint import Checkpointer, finished_steps
from ua3dtalk_jax.models.init import init_params
from ua3dtalk_jax.models.motion import FrameInputs, MotionNetwork, motion_spec

FORMAT = "ua3dtalk_jax/stage2/v1"


def save_stage2(cfg, path: str, states: dict, extent: float) -> str:
    """Writes the trained heads (Gaussians + network parameters of both branches) to the folder
    `path` (`Workdir.model_dir`); returns its path."""
    path = os.path.abspath(path)
    tree = {p: {"gaussians": s.gaussians, "net": s.net} for p, s in states.items()}
    ck = Checkpointer(path, max_to_keep=1)
    ck.save(0, tree, {"format": FORMAT, "config": cfg.to_dict(), "extent": extent})
    ck.close()
    return path


def load_stage2(path: str, cfg):
    """Restores the trained heads from the folder `path` (`Workdir.model_dir`).

    Args:
      cfg: the run's config (`Workdir.load_config`): the shapes of the model.

    Returns:
      (cfg, heads) with heads = {"face": (net, params, gaussians), "mouth": (...)}.
    Raises:
      FileNotFoundError: stage 2 has not finished in this workdir.
      ValueError: the model was written by another version of this project.
    """
    path = os.path.abspath(path)
    if not finished_steps(path):  # a save killed before orbax finished it leaves a tmp folder
        workdir = os.path.dirname(os.path.dirname(path))
        raise FileNotFoundError(
            f"{path}: no trained stage-2 model; run `python -m experiments.train --stage=2` "
            f"(or --stage=all) with --workdir={workdir}"
        )
    like = {
        p: jax.eval_shape(functools.partial(branch_arrays, cfg, p), jax.random.PRNGKey(0))
        for p in ("face", "mouth")
    }
    nets = {p: build_network(cfg.model, p) for p in ("face", "mouth")}
    like = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), like)
    ck = Checkpointer(path, max_to_keep=1)
    try:
        tree, meta = ck.restore(like)
    finally:
        ck.close()
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path}: written as {meta.get('format')!r}, this version reads {FORMAT!r}"
        )
    tree = jax.tree.map(jnp.asarray, tree)
    heads = {p: (nets[p], tree[p]["net"], tree[p]["gaussians"]) for p in ("face", "mouth")}
    return cfg, heads


def dummy_inputs(model_cfg) -> FrameInputs:
    """Zero `FrameInputs` of the configured widths (for init and shape inference)."""
    a, p = model_cfg.audio, model_cfg.prior
    return FrameInputs(
        aud=jnp.zeros((a.window, a.steps, a.in_dim)),
        au_exp=jnp.zeros((6,)),
        f_exp=jnp.zeros((p.exp_dim,)),
        f_tone=jnp.zeros((p.tone_dim,)),
        f_emo=jnp.zeros((model_cfg.emotion.in_dim,)),
    )


def build_network(model_cfg, part: str) -> MotionNetwork:
    return MotionNetwork(motion_spec(model_cfg, part))


NET_INIT_POINTS = 8  # points the network is initialised on (its parameters do not depend on N)


def branch_arrays(cfg, part: str, key: jax.Array) -> dict:
    """{"gaussians": GaussianState, "net": params} of a fresh branch with random box points.

    The tree a saved model restores into: `load_stage2` reads only its shapes (training starts
    from `train.stage2.state.init_branch`, which may lift the points from the subject).
    """
    g = cfg.model.gaussians[part]
    k_g, k_n = jax.random.split(key)
    gaussians = init_gaussians(
        k_g,
        g.capacity,
        num_points=g.init_num,
        box=g.init_box,
        sh_degree=g.sh_degree,
        init_opacity=g.init_opacity,
    )
    net = build_network(cfg.model, part)
    xyz = gaussians.means[:NET_INIT_POINTS]
    return {
        "gaussians": gaussians,
        "net": init_params(net, k_n, xyz, dummy_inputs(cfg.model), mode="eval"),
    }
