"""The trained stage 1 and its checkpoint (workdir/stage1, one orbax step).

`Stage1Model` holds every stage-1 module and parameter tree, the lip-wav reference crops (so novel
audio needs no video), the f_gt-exp standardisation, the train-frame statistics of f_exp and f_tone
(the standardisation stage 2 sees, `Stage1Model.prior_out`), the per-class mean f_emo-attn (the
emotion override) and, on the Deep3DFaceRecon path, the aligned reference frames.
`save_stage1` / `load_stage1` write and rebuild it; `train/stage1/driver.py` trains it.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ua3dtalk_jax.configs.io import saved_stage1
from ua3dtalk_jax.configs.migrate import VERSION, VERSION_KEY
from ua3dtalk_jax.head import emotion as emo
from ua3dtalk_jax.head import face_prior, prior
from ua3dtalk_jax.head.checkpoint import Checkpointer, finished_steps
from ua3dtalk_jax.models.init import init_params
from ua3dtalk_jax.types import EMOTIONS


@dataclasses.dataclass
class Stage1Model:
    """A trained stage 1: config, modules, parameters and the stored side arrays."""

    cfg: ml_collections.ConfigDict
    models: dict  # Prior Extraction modules + "emotion"
    params: dict  # same keys
    refs: np.ndarray  # (K, S, S, 3) uint8 reference crops
    exp_mean: np.ndarray  # (E,)
    exp_std: np.ndarray  # (E,)
    class_means: np.ndarray  # (C, 128)
    # train-frame mean and s.d. of [f_exp, f_tone] (128,); checkpoints without them: 0 and 1
    prior_mean: np.ndarray | None = None
    prior_std: np.ndarray | None = None
    # Deep3DFaceRecon path: the network (reloaded from `prior.face_recon_weights`, not stored)
    # and the aligned references (stored)
    face: face_prior.FacePrior | None = None

    def prior_out(self, f_exp, f_tone) -> tuple:
        """f_exp, f_tone as stage 2 receives them (`cfg.features`: standardised × scale, or as is)."""
        if self.prior_mean is None:
            return f_exp, f_tone
        return standardise_prior(f_exp, f_tone, self.prior_mean, self.prior_std, self.cfg.features)


def standardise_prior(f_exp, f_tone, mean, std, features) -> tuple:
    """(f − mean)/s.d. × `features.scale` for f_exp and f_tone when `features.standardise` (the
    stage-1 config's `features` block; None or off: both as they are).

    Args:
      f_exp: (..., D); f_tone: (..., D'); mean, std: (D + D',) from `prior_stats`.
    """
    if features is None or not features.standardise:
        return f_exp, f_tone
    d = f_exp.shape[-1]
    z = [
        (f - mean[a:b]) / std[a:b] * features.scale
        for f, (a, b) in ((f_exp, (0, d)), (f_tone, (d, None)))
    ]
    return z[0], z[1]


def prior_stats(f_exp, f_tone, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-component mean and s.d. (floored at 1e-6) of [f_exp, f_tone] over the train frames."""
    f = np.concatenate([np.asarray(f_exp), np.asarray(f_tone)], axis=1)[:n_train]
    return f.mean(0).astype(np.float32), np.maximum(f.std(0), 1e-6).astype(np.float32)


def save_stage1(model: Stage1Model, path: str, metrics: dict | None = None) -> str:
    """Writes the checkpoint to the folder `path` (`Workdir.stage1_dir`); returns its path."""
    path = os.path.abspath(path)
    tree = {
        "params": model.params,
        "refs": model.refs,
        "exp_mean": model.exp_mean,
        "exp_std": model.exp_std,
        "class_means": model.class_means,
    }
    if model.prior_mean is not None:
        tree |= {"prior_mean": model.prior_mean, "prior_std": model.prior_std}
    if model.face is not None:
        tree |= {"face_frames": model.face.frames, "face_affine": model.face.affine}
    meta = {
        "config": model.cfg.to_dict(),
        VERSION_KEY: VERSION,
        "exp_dim": int(model.exp_mean.shape[0]),
        "n_refs": len(model.refs),
        "metrics": jax.tree.map(float, metrics or {}),
        "prior_stats": model.prior_mean is not None,
        "face_refs": 0 if model.face is None else len(model.face.frames),
    }
    ck = Checkpointer(path, max_to_keep=1)
    ck.save(0, tree, meta)
    ck.close()
    return path


def load_stage1(path: str) -> Stage1Model:
    """Restores a `save_stage1` checkpoint from the folder `path` (`Workdir.stage1_dir`)."""
    path = os.path.abspath(path)
    if not finished_steps(path):
        raise FileNotFoundError(
            f"{path}: no finished stage-1 checkpoint; run `python -m experiments.train "
            "--stage=1` (or --stage=all) with this --workdir"
        )
    ck = Checkpointer(path, max_to_keep=1)
    meta = ck._manager.restore(ck.latest_step(), args=_meta_args())["meta"]
    cfg = saved_stage1(meta["config"], meta.get(VERSION_KEY, 0))  # none: written before versions
    e_dim = int(meta["exp_dim"])
    models = prior.build_models(cfg, e_dim)
    models["emotion"] = emo.build_encoder(cfg.emotion, len(EMOTIONS), e_dim)
    shapes = jax.eval_shape(lambda k: _init_all(models, cfg, k, e_dim), jax.random.PRNGKey(0))
    s = cfg.data.face_size
    like = {
        "params": jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), shapes),
        "refs": np.zeros((int(meta["n_refs"]), s, s, 3), np.uint8),
        "exp_mean": np.zeros(e_dim, np.float32),
        "exp_std": np.zeros(e_dim, np.float32),
        "class_means": np.zeros((len(EMOTIONS), cfg.emotion.feature_dim), np.float32),
    }
    if meta.get("prior_stats", False):  # older checkpoints have none (features passed on as is)
        width = cfg.expr_prior.feature_dim + cfg.stylenet.out_dim
        like |= {k: np.zeros(width, np.float32) for k in ("prior_mean", "prior_std")}
    k_face = int(meta.get("face_refs", 0))
    if k_face:
        like |= {
            "face_frames": np.zeros((k_face, *face_prior.ALIGNED_SHAPE), np.uint8),
            "face_affine": np.zeros((k_face, 2, 3), np.float32),
        }
    tree, _ = ck.restore(like)
    ck.close()
    params = jax.tree.map(jnp.asarray, tree["params"])
    stats = [np.asarray(tree[k]) if k in tree else None for k in ("prior_mean", "prior_std")]
    face = None
    if k_face:  # the network is reloaded from the user's file (not copied into every workdir)
        net = face_prior.load_network(cfg)
        if net is None:
            raise ValueError(f"{path}: a Deep3DFaceRecon stage 1 whose config names no weights")
        face = face_prior.FacePrior(
            *net, np.asarray(tree["face_frames"]), np.asarray(tree["face_affine"])
        )
    return Stage1Model(
        cfg,
        models,
        params,
        np.asarray(tree["refs"]),
        np.asarray(tree["exp_mean"]),
        np.asarray(tree["exp_std"]),
        np.asarray(tree["class_means"]),
        *stats,
        face,
    )


def _meta_args():
    import orbax.checkpoint as ocp

    return ocp.args.Composite(meta=ocp.args.JsonRestore())


def _init_all(models, cfg, key, e_dim):
    p = prior.init_params({k: v for k, v in models.items() if k != "emotion"}, cfg, key, e_dim)
    p["emotion"] = init_params(models["emotion"], key, *emo.example_inputs(cfg.emotion))
    return p
