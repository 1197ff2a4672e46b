"""wav2vec 2.0 in Flax (`load_wav2vec2`) against transformers' `Wav2Vec2Model`, an independent
implementation run outside the project by tests/fixtures/wav2vec2/make_fixtures.py; and the
converter's checks. Every hidden state is compared and its max abs error printed (pytest -s)."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.data.torch_writer import write_safetensors, write_torch_file
from tests.fixtures.wav2vec2.random_weights import BASE_CONFIG, random_state_dict, weights_digest
from ua3dtalk_jax.data.torch_file import read_state_dict
from ua3dtalk_jax.models.emotion.encoder import wav_frames
from ua3dtalk_jax.models.emotion.wav2vec import load_wav2vec2, params_from_state_dict
from ua3dtalk_jax.models.emotion.wav2vec_model import Wav2Vec2Config, Wav2Vec2Model

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "wav2vec2"
# float32 here vs float32 in torch, summed in other orders: measured ≤ 3.6e-6 on activations of
# O(1) after 3 layers (small) and ≤ 7.2e-6 after 12 layers at 768 wide (base). Measured on the
# small models, the tanh GELU costs ≥ 5e-4, layer_norm_eps ÷ or × 10 ≥ 7e-4, pre- for post-LN > 3.
SMALL_ATOL = 2e-5
BASE_ATOL = 5e-5
JIT_ATOL = 1e-5  # XLA may fuse and reorder under jit


def layer_errors(out: dict, ref, stride: int = 1) -> dict:
    """{name: max abs error} for extract_features and every hidden state (channels ::stride)."""
    errs = {
        "extract_features": float(
            np.abs(out["extract_features"][..., ::stride] - ref["extract_features"]).max()
        )
    }
    for i, (a, b) in enumerate(zip(out["hidden_states"], ref["hidden_states"], strict=True)):
        errs[f"hidden_states[{i}]"] = float(np.abs(np.asarray(a)[..., ::stride] - b).max())
    return errs


def report(name: str, errs: dict) -> None:
    print(f"\n{name}: " + ", ".join(f"{k} {v:.2e}" for k, v in errs.items()))


@pytest.mark.parametrize("name", ["small_group", "small_layer"])
def test_small_models_match_transformers_layer_by_layer(name):
    """Base's kind (group norm, post-LN; safetensors, parametrizations names) and large's kind
    (layer norm, stable pre-LN, conv bias; pytorch_model.bin, wav2vec2. prefix, weight_g/v)."""
    ref = np.load(FIXTURES / name / "expected.npz")
    model, variables = load_wav2vec2(str(FIXTURES / name))
    wav = ref["wav"]
    last = model.apply(variables, wav)
    out = model.apply(variables, wav, output_hidden_states=True)
    cfg = model.config
    assert last.dtype == np.float32
    assert last.shape == (wav.shape[0], cfg.n_frames(wav.shape[1]), cfg.hidden_size)
    assert len(out["hidden_states"]) == cfg.num_hidden_layers + 1
    np.testing.assert_array_equal(last, out["last_hidden_state"])
    np.testing.assert_array_equal(last, out["hidden_states"][-1])
    errs = layer_errors(out, ref)
    report(name, errs)
    assert max(errs.values()) <= SMALL_ATOL, errs


@pytest.mark.slow  # ~95M random weights drawn, converted and run: ~30-50 s on 2 busy cores
def test_base_sizes_match_transformers_layer_by_layer():
    ref = np.load(FIXTURES / "base.npz")
    sd = random_state_dict(BASE_CONFIG, int(ref["seed"]))
    assert weights_digest(sd) == str(ref["digest"]), "numpy's RandomState stream changed"
    cfg = Wav2Vec2Config.from_dict(BASE_CONFIG)
    params = params_from_state_dict(sd, cfg)
    del sd
    out = Wav2Vec2Model(cfg).apply({"params": params}, ref["wav"], output_hidden_states=True)
    assert out["last_hidden_state"].shape == (1, 24, 768)
    errs = layer_errors(out, ref, int(ref["channel_stride"]))
    errs["last_hidden_state (all channels)"] = float(
        np.abs(out["last_hidden_state"] - ref["last_hidden_state"]).max()
    )
    report("wav2vec2-base sizes", errs)
    assert max(errs.values()) <= BASE_ATOL, errs


def test_a_weights_file_path_and_jit_give_the_same():
    folder = FIXTURES / "small_group"
    model, variables = load_wav2vec2(str(folder))
    model2, variables2 = load_wav2vec2(str(folder / "model.safetensors"))
    assert model2.config == model.config
    jax.tree.map(np.testing.assert_array_equal, variables, variables2)
    wav = np.load(folder / "expected.npz")["wav"]
    np.testing.assert_allclose(
        jax.jit(model.apply)(variables, wav), model.apply(variables, wav), atol=JIT_ATOL
    )


def _copy_with(tmp_path: Path, src: str, sd: dict, *, torch_zip=False, config=None) -> Path:
    """A folder with the fixture's config.json (or `config`) and `sd` as its weights."""
    folder = tmp_path / "w2v"
    folder.mkdir()
    if config is None:
        shutil.copy(FIXTURES / src / "config.json", folder / "config.json")
    else:
        (folder / "config.json").write_text(json.dumps(config))
    if torch_zip:
        write_torch_file(str(folder / "pytorch_model.bin"), sd)
    else:
        write_safetensors(str(folder / "model.safetensors"), sd)
    return folder


def _small_sd() -> dict:
    return read_state_dict(str(FIXTURES / "small_group" / "model.safetensors"))


def test_weight_norm_names_prefix_and_a_plain_weight_load_alike(tmp_path):
    want = load_wav2vec2(str(FIXTURES / "small_group"))[1]
    sd = _small_sd()
    pc = "encoder.pos_conv_embed.conv."
    g = sd.pop(pc + "parametrizations.weight.original0")
    v = sd.pop(pc + "parametrizations.weight.original1")
    old = {"wav2vec2." + k: a for k, a in sd.items()} | {
        "wav2vec2." + pc + "weight_g": g,
        "wav2vec2." + pc + "weight_v": v,
        "lm_head.weight": g,
    }
    got = load_wav2vec2(str(_copy_with(tmp_path, "small_group", old, torch_zip=True)))[1]
    jax.tree.map(np.testing.assert_array_equal, want, got)
    norm = np.sqrt((v.astype(np.float64) ** 2).sum((0, 1), keepdims=True))
    plain = dict(sd, **{pc + "weight": (g * v / norm).astype(np.float32)})
    shutil.rmtree(tmp_path / "w2v")
    got = load_wav2vec2(str(_copy_with(tmp_path, "small_group", plain)))[1]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-7), want, got)


def test_a_sharded_checkpoint_loads(tmp_path):
    sd = _small_sd()
    keys = sorted(sd)
    folder = tmp_path / "sharded"
    folder.mkdir()
    shutil.copy(FIXTURES / "small_group" / "config.json", folder / "config.json")
    halves = {
        "model-00001-of-00002.safetensors": keys[::2],
        "model-00002-of-00002.safetensors": keys[1::2],
    }
    for fname, ks in halves.items():
        write_safetensors(str(folder / fname), {k: sd[k] for k in ks})
    index = {"weight_map": {k: f for f, ks in halves.items() for k in ks}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    want = load_wav2vec2(str(FIXTURES / "small_group"))[1]
    jax.tree.map(np.testing.assert_array_equal, want, load_wav2vec2(str(folder))[1])


OUTPUT_DENSE = "encoder.layers.0.feed_forward.output_dense.weight"
EDITS = {  # a change to the fixture's state dict → the error it must give
    "missing": (
        lambda sd: sd.pop("encoder.layers.1.attention.q_proj.weight"),
        r"model\.safetensors: no tensor 'encoder\.layers\.1\.attention\.q_proj\.weight'",
    ),
    "shape": (
        lambda sd: sd.update({OUTPUT_DENSE: np.zeros((32, 47), np.float32)}),
        (
            r"model\.safetensors: tensor '.*output_dense\.weight' has shape \(32, 47\), but "
            r"config\.json gives \(32, 48\)"
        ),
    ),
    "conv_bias": (
        lambda sd: sd.update({"feature_extractor.conv_layers.0.conv.bias": np.zeros(16)}),
        (
            r"model\.safetensors: tensor 'feature_extractor\.conv_layers\.0\.conv\.bias' "
            r"has no place"
        ),
    ),
    "extra_layer": (
        lambda sd: sd.update({"encoder.layers.3.layer_norm.bias": np.zeros(32)}),
        r"tensor 'encoder\.layers\.3\.layer_norm\.bias' has no place.*layers",
    ),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_converter_errors_name_the_file_and_the_tensor(tmp_path, edit):
    sd = _small_sd()
    change, match = EDITS[edit]
    change(sd)
    sd = {k: np.asarray(v, np.float32) for k, v in sd.items()}
    with pytest.raises(ValueError, match=match):
        load_wav2vec2(str(_copy_with(tmp_path, "small_group", sd)))


def test_folder_and_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_wav2vec2(str(tmp_path))
    cfg = json.loads((FIXTURES / "small_group" / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors or pytorch_model\.bin"):
        load_wav2vec2(str(tmp_path))
    bad = {
        "model_type": ("hubert", "model_type 'hubert'"),
        "feat_extract_norm": ("batch", "feat_extract_norm 'batch'"),
        "add_adapter": (True, "adapters"),
        "hidden_act": ("mish", "hidden_act 'mish'"),
        "num_attention_heads": (5, "not a multiple of num_attention_heads 5"),
        "conv_stride": ([5, 2], "conv_dim, conv_kernel and conv_stride"),
    }
    for key, (value, match) in bad.items():
        (tmp_path / "config.json").write_text(json.dumps(dict(cfg, **{key: value})))
        with pytest.raises(ValueError, match=r"config\.json: .*" + match):
            load_wav2vec2(str(tmp_path))


def test_input_shape_errors_and_frame_counts():
    model, variables = load_wav2vec2(str(FIXTURES / "small_group"))
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        model.apply(variables, np.zeros(800, np.float32))
    n = model.config.min_samples()
    with pytest.raises(ValueError, match=f"fewer than the {n}"):
        model.apply(variables, np.zeros((1, n - 1), np.float32))
    assert model.apply(variables, np.ones((1, n), np.float32)).shape == (1, 1, 32)
    base = Wav2Vec2Config.from_dict(BASE_CONFIG)
    assert base == Wav2Vec2Config()  # the dataclass defaults are wav2vec2-base's
    assert base.min_samples() == 400 and base.n_frames(399) == 0
    for s in (400, 16000, 48000, 10240):
        assert base.n_frames(s) == wav_frames(s)  # the scratch encoder's count (48000 → 149)
