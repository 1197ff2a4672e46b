"""Stage 1 driver: trains Prior Extraction (§2.1) and Emotion Distillation (§2.2) on one subject.

`train_stage1(data, cfg, workdir)` runs, in order (each module frozen once trained):
  1. SyncNet (BCE on in-sync vs shifted windows; or a user's Wav2Lip SyncNet, `syncnet.pretrained`,
     loaded instead)                                                   → AUC at a 5-frame shift
  2. lip expert (L1 + frozen-SyncNet sync loss)                        → lip-wav images
  3. 3D expression prior (regress f_gt-exp on real crops; or a user's Deep3DFaceRecon,
     `prior.face_recon_weights`, frozen: train/stage1/face.py)       → f_exp on lip-wav images,
                                                                        its held-out R²
  4. StyleNet + FuseNet (Eq. 4, L_recon on f_gen-exp)                  → f_tone
  5. emotion encoder: pre-training (CE on a corpus), fine-tuning (Eq. 5) → f_emo-attn, class means
and writes one orbax checkpoint (head/checkpoint.py) under `workdir/stage1`: every parameter tree,
the lip-wav reference crops (so novel audio needs no video), the f_gt-exp standardisation, the
train-frame statistics of f_exp and f_tone (`stage1.features`: the standardisation stage 2 sees)
and the per-class mean f_emo-attn (for the emotion override). `Workdir.load_stage1` rebuilds it
all (`head.stage1_model`).

Crash safety: every module checkpoints every `checkpoint_every` steps and at its end under
`workdir/stage1_progress/<module>` (`loop.Progress`); a rerun restores finished modules and
resumes a half-trained one where it stopped, with the parameters of a run without a stop. The
folder is deleted once the final checkpoint is written. Both are orbax checkpoints: a save killed
half-way leaves a temporary folder that counts as nothing (`Workdir.has_stage1`).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.data.images import to_float
from ua3dtalk_jax.head import emotion as head_emotion
from ua3dtalk_jax.head import emotion_control as control
from ua3dtalk_jax.head import face_prior
from ua3dtalk_jax.head import prior as head_prior
from ua3dtalk_jax.head.stage1_model import Stage1Model, prior_stats, save_stage1
from ua3dtalk_jax.head.workdir import Workdir
from ua3dtalk_jax.train.stage1 import emotion as emo
from ua3dtalk_jax.train.stage1 import face as stage1_face
from ua3dtalk_jax.train.stage1 import prior
from ua3dtalk_jax.train.stage1.data import Stage1Data, reference_indices
from ua3dtalk_jax.train.stage1.loop import Progress, init_state, run_steps
from ua3dtalk_jax.types import EMOTIONS

AUC_SHIFT = 5  # frames; the separation test
VAL_CHUNK = 512  # held-out crops per call of the regressor's validation (memory bounded in N)


def train_prior(
    data: Stage1Data,
    cfg,
    key,
    log=None,
    syncnet=None,
    face: face_prior.FacePrior | None = None,
    progress: Progress | None = None,
) -> tuple[dict, dict, dict]:
    """Steps 1–4; `syncnet`: frozen SyncNet params (`prior.pretrained_syncnet`), not trained then;
    `face`: Deep3DFaceRecon gives f_exp (`stage1_face`), the regressor is not trained then;
    `progress`: where the modules checkpoint and resume (`loop.Progress`).

    Returns (models, params, metrics).
    """
    models = head_prior.build_models(cfg, data.exp_dim)
    params = head_prior.init_params(models, cfg, jax.random.fold_in(key, 0), data.exp_dim)
    arrays = {"crops": data.crops, "mel": data.mel, "exp": data.exp}
    m = {}
    params["syncnet"], m["syncnet"] = _train_syncnet(
        data, cfg, models, params["syncnet"], arrays, key, log, syncnet, progress
    )

    step, tx = prior.make_lip_step(cfg, models["lip_expert"], models["syncnet"], data.n_train)
    st, h = run_steps(
        step,
        init_state(params["lip_expert"], tx),
        dict(arrays, syncnet=params["syncnet"]),
        jax.random.fold_in(key, 2),
        cfg.lip_expert.steps,
        log,
        "lip_expert",
        progress,
    )
    params["lip_expert"] = st.params
    m["lip_expert"] = _summary(h)

    if face is None:
        m["expr_prior"] = _train_regressor(data, cfg, models, params, arrays, key, log, progress)
    else:
        m["expr_prior"] = {"face_recon": 1.0}
    refs = to_float(data.crops[reference_indices(data.n_train, cfg.data.n_refs)])
    feats = head_prior.expression_features(models, params, refs, data.mel, face)
    m["f_exp"] = _f_exp_r2(data, feats["f_exp"], face is not None, log)
    step, tx = prior.make_style_step(cfg, models["stylenet"], models["fuse"], data.n_train)
    sp = {"stylenet": params["stylenet"], "fuse": params["fuse"]}
    st, h = run_steps(
        step,
        init_state(sp, tx),
        dict(arrays, f_exp=feats["f_exp"]),
        jax.random.fold_in(key, 4),
        cfg.stylenet.steps,
        log,
        "stylenet_fuse",
        progress,
    )
    params.update(st.params)
    m["stylenet_fuse"] = _summary(h)
    tone = head_prior.tone_features(models, params, data.mel, feats["f_exp"], cfg.stylenet.seq_len)
    if data.n > data.n_train:
        m["stylenet_fuse"]["val_loss"] = float(
            _recon(tone["f_gen_exp"][data.n_train :], data.exp[data.n_train :])
        )
    m["prior_stats"] = prior_stats(feats["f_exp"], tone["f_tone"], data.n_train)
    return models, params, m


def _train_syncnet(data: Stage1Data, cfg, models, init, arrays, key, log, syncnet, progress):
    """Step 1: SyncNet trained from `init`, or the user's frozen `syncnet`; returns (params,
    metrics with the AUC at an `AUC_SHIFT`-frame shift on each split long enough)."""
    if syncnet is None:
        step, tx = prior.make_syncnet_step(cfg, models["syncnet"], data.n_train)
        st, h = run_steps(
            step,
            init_state(init, tx),
            arrays,
            jax.random.fold_in(key, 1),
            cfg.syncnet.steps,
            log,
            "syncnet",
            progress,
        )
        params, m = st.params, _summary(h)
    else:
        params, m = jax.tree.map(jnp.asarray, syncnet), {"pretrained": 1.0}
    t = cfg.data.sync_frames
    for split, (lo, hi) in {"train": (0, data.n_train), "val": (data.n_train, data.n)}.items():
        if hi - lo > t + AUC_SHIFT:
            m[f"auc_{split}"] = prior.sync_auc(
                models["syncnet"], params, arrays, lo, hi, t, AUC_SHIFT, cfg.syncnet.mel_offset
            )
    return params, m


def _train_regressor(
    data: Stage1Data, cfg, models, params, arrays, key, log, progress: Progress | None = None
) -> dict:
    """Step 3 without Deep3DFaceRecon: the expression-prior regressor on real crops (sets
    params["expr_prior"]); returns its metrics."""
    step, tx = prior.make_prior_step(cfg, models["expr_prior"], data.n_train)
    st, h = run_steps(
        step,
        init_state(params["expr_prior"], tx),
        arrays,
        jax.random.fold_in(key, 3),
        cfg.expr_prior.steps,
        log,
        "expr_prior",
        progress,
    )
    params["expr_prior"] = st.params
    m = _summary(h)
    if data.n > data.n_train:
        pred = jnp.concatenate(
            [
                models["expr_prior"].apply(
                    {"params": st.params}, to_float(data.crops[a : a + VAL_CHUNK])
                )[0]
                for a in range(data.n_train, data.n, VAL_CHUNK)
            ]
        )
        m["val_loss"] = float(_recon(pred, data.exp[data.n_train :]))
    return m


def _f_exp_r2(data: Stage1Data, f_exp, face_recon: bool, log) -> dict:
    """{"r2_val": held-out R² of f_exp against the tracked expression} (`stage1_face.exp_r2`;
    empty without held-out frames), logged."""
    tracked = data.exp if data.tracked_exp is None else data.tracked_exp
    r2 = stage1_face.exp_r2(f_exp, tracked, data.n_train)
    if not np.isfinite(r2):
        return {}
    if log is not None:
        path = "Deep3DFaceRecon" if face_recon else "expression-prior regressor"
        log(f"f_exp: held-out R² {r2:.3f} against the tracked expression ({path}, linear readout)")
    return {"r2_val": r2}


def train_emotion(
    data: Stage1Data,
    cfg,
    key,
    corpus=None,
    corpus_classes=None,
    log=None,
    progress: Progress | None = None,
    seed: int = 0,
):
    """Step 5. `corpus` (with `corpus_classes`) defaults to the one `cfg.emotion.corpus` names
    (`seed`: the run seed, which picks the synthetic corpus's sentences); `progress` as in
    `train_prior`.

    Returns:
      (encoder module, params, class_means (C, 128), metrics).
    """
    e = cfg.emotion
    n_classes = len(EMOTIONS)
    if corpus is None:
        corpus, corpus_classes = emo.pretraining_corpus(e, data, log, seed)
    pre_classes = corpus_classes or n_classes
    pre_model = head_emotion.build_encoder(e, pre_classes, data.exp_dim)
    params, imagenet = emo.init_encoder(pre_model, e, jax.random.fold_in(key, 0))
    m = {"alexnet_imagenet": imagenet, "wav2vec_pretrained": bool(e.wav2vec_weights)}
    step, tx = emo.make_emotion_step(e, pre_model, finetune=False)
    st, h = run_steps(
        step,
        init_state(params, tx),
        corpus,
        jax.random.fold_in(key, 1),
        e.pretrain_steps,
        log,
        "emotion_pretrain",
        progress,
    )
    m["pretrain"] = _summary(h)
    model = head_emotion.build_encoder(e, n_classes, data.exp_dim)
    val = np.arange(data.n_train, data.n)
    labels = np.asarray(data.emotion)
    val_labelled = bool((labels[val] >= 0).any())  # accuracies only where there are labels
    if log is not None and not (labels[: data.n_train] >= 0).any():
        log(
            "emotion fine-tuning: no emotion labels (emotion.csv), so Eq. 5's f_gt-exp term only "
            "and one class mean for every emotion (an emotion override changes nothing)"
        )
    if pre_classes == n_classes and val_labelled:
        out = head_emotion.emotion_features(
            model, st.params, data.stream, np.asarray(data.centres)[val], e
        )
        m["pretrain"]["val_acc"] = emo.accuracy(out["logits"], labels[val])
    fresh, _ = emo.init_encoder(model, e, jax.random.fold_in(key, 2))
    params = emo.adapt_heads(st.params, fresh)
    ft = emo.corpus_from_frames(data, np.arange(data.n_train), with_exp=True)
    step, tx = emo.make_emotion_step(e, model, finetune=True)
    st, h = run_steps(
        step,
        init_state(params, tx),
        ft,
        jax.random.fold_in(key, 3),
        e.finetune_steps,
        log,
        "emotion_finetune",
        progress,
    )
    m["finetune"] = _summary(h)
    out = head_emotion.emotion_features(model, st.params, data.stream, np.asarray(data.centres), e)
    if val_labelled:
        m["finetune"]["val_acc"] = emo.accuracy(out["logits"][val], labels[val])
    if len(val):
        m["finetune"]["val_l2"] = float(_recon(out["exp"][val], data.exp[val]))
    tr = np.arange(data.n_train)
    means = control.class_means(np.asarray(out["f_emo"])[tr], labels[tr], n_classes)
    return model, st.params, means, m


def train_stage1(
    data: Stage1Data,
    cfg,
    workdir: str,
    *,
    seed: int = 0,
    corpus=None,
    corpus_classes=None,
    log=None,
) -> tuple[Stage1Model, dict]:
    """Trains every stage-1 module on `data` and saves the checkpoint under workdir/stage1,
    resuming from workdir/stage1_progress (module docstring) when a run was stopped.

    Args:
      data: the subject's `Stage1Data`.
      cfg: `configs.stage1.stage1_config(...)`.
      workdir: run directory.
      seed: the run seed (`config.seed`): every module's initialisation and batches, and the
        synthetic pre-training corpus's sentences.
      corpus, corpus_classes: optional pre-training corpus (`emotion` docstring) and its
        number of classes (default: the corpus `cfg.emotion.corpus` names).
      log: optional callable taking progress lines.
    Returns:
      (the trained `Stage1Model`, metrics dict).
    Raises:
      ValueError: `cfg.checkpoint_every` is not a positive integer, or workdir/stage1_progress
        holds another config's or subject's modules.
    """
    key = jax.random.PRNGKey(seed)
    cfg, syncnet = prior.pretrained_syncnet(cfg)  # before anything: the checkpoint stores this cfg
    face = _face_prior(cfg, data)
    progress = _progress(cfg, data, workdir, seed)
    # Emotion Distillation does not depend on Prior Extraction: it runs in a second thread beside
    # it (XLA releases the GIL; the small stage-1 programs leave part of a 2-core CPU idle). Each
    # keeps its own keys, so the results are the same as one after the other.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stage1-emotion") as pool:
        emotion = pool.submit(
            train_emotion,
            data,
            cfg,
            jax.random.fold_in(key, 20),
            corpus,
            corpus_classes,
            log,
            progress,
            seed,
        )
        models, params, m = train_prior(
            data, cfg, jax.random.fold_in(key, 10), log, syncnet, face, progress
        )
        enc, ep, means, m["emotion"] = emotion.result()
    stats = m.pop("prior_stats")
    models["emotion"], params["emotion"] = enc, ep
    refs = np.asarray(data.crops)[reference_indices(data.n_train, cfg.data.n_refs)]
    model = Stage1Model(
        cfg, models, params, refs, *map(np.asarray, data.exp_stats), means, *stats, face
    )
    save_stage1(model, Workdir(workdir).stage1_dir, m)
    shutil.rmtree(progress.root, ignore_errors=True)  # the final checkpoint supersedes it
    return model, m


def _face_prior(cfg, data: Stage1Data) -> face_prior.FacePrior | None:
    """The Deep3DFaceRecon network `cfg.prior.face_recon_weights` names, with the data's aligned
    references; None without weights."""
    net = face_prior.load_network(cfg)
    if net is None:
        return None
    if data.face_refs is None:
        raise ValueError(
            f"stage1.prior.face_recon_weights={face_prior.weights_path(cfg)}: the stage-1 data "
            "has no aligned frames (build it with Stage1Data.from_subject and this config)"
        )
    return face_prior.FacePrior(*net, data.face_refs["frames"], data.face_refs["affine"])


def _progress(cfg, data: Stage1Data, workdir: str, seed: int) -> Progress:
    """The module checkpoints of this stage-1 run, keyed by everything that shapes the modules
    (the config but its checkpoint interval, the seed; the subject's sizes and f_gt-exp)."""
    c = cfg.to_dict()
    every = c.pop("checkpoint_every")
    # the seed sits where the stage-1 config held it until version 1: a stage 1 stopped under
    # version 0 keeps its key and resumes
    c["seed"] = c["emotion"]["corpus_seed"] = seed
    subject = hashlib.sha256(np.ascontiguousarray(np.asarray(data.exp, np.float32))).hexdigest()
    shape = [int(data.n), int(data.n_train), int(data.exp_dim), subject]
    return Progress(Workdir(workdir).stage1_progress_dir, every, [c, shape])


def _recon(pred, target) -> jax.Array:
    return jnp.mean(jnp.sum((pred - target) ** 2, axis=-1))


def _summary(h: dict) -> dict:
    """First/last-10-step means of each metric plus timings."""
    out = {"seconds": float(h["seconds"]), "compile_s": float(h["compile_s"])}
    for k, v in h.items():
        if isinstance(v, np.ndarray) and v.size:
            out[f"{k}_first"] = float(np.mean(v[: min(10, len(v))]))
            out[f"{k}_last"] = float(np.mean(v[-min(10, len(v)) :]))
    return out
