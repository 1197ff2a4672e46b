"""Parameter counts of `experiments.param_counts` against the documented layer sizes.

`_expected` derives each top-level module's count from the sizes in DESIGN.md §3 "Models" and
reference §3 (authors' code) alone, without any Flax module: a wrong width, a missing bias or an
extra layer anywhere in the branch shows up as a mismatch. Shapes only (`jax.eval_shape`), so the
paper preset costs no memory and no compile.
"""

import itertools

import pytest

from experiments.param_counts import count_params
from ua3dtalk_jax.configs.model import PRESETS, model_config
from ua3dtalk_jax.models.motion import motion_spec

HEAD_WIDTHS = {"xyz": 3, "rot": 4, "scale": 3}  # Δμ, Δr, Δs


def _dense(i, o, bias=True):
    return i * o + (o if bias else 0)


def _conv3(i, o):
    return 3 * i * o + o  # 1-D convolution, kernel 3, with bias


def _planes(channels, res, multires):
    return 3 * channels * sum((res * m) ** 2 for m in multires)  # XY, XZ, YZ per scale


def _expected(cfg, part):
    """xyz hexplane; AudioNet (convs F→32→32→64→64, Linear 64→64, Linear 64→32) + AudioAttNet
    (convs 32→16→8→4→2→1, Linear W→W); face only, bias-free: aud_ch_att MLP(X→32, hidden 32),
    eye_att MLP(X→6, hidden 16), exp_encode MLP(5→5, hidden 16); emotion: Linear 128→64, planes of
    64 channels at (1, 2, 4), codebooks (64·s)×64; per view T × [Linear(in→64), 2 × Linear(64→48)]
    with inputs audio (32 [+6]) ⊕ X, f_exp 64 ⊕ X, f_tone 64 ⊕ X, f_emotion 192; decoder
    Linear(48 + X → 64) + per head Linear(64, 64), Linear(64, k). U off: the baseline's bias-free
    MLP(Σ views + X → Σ k, hidden 64, 3 layers)."""
    sp = motion_spec(cfg, part)
    x = sp.grid_channels * len(sp.grid_multires)  # X, the xyz encoding width
    a, h, lat = sp.audio_dim, sp.hidden, sp.latent
    out = {"xyz_grid": _planes(sp.grid_channels, sp.grid_res, sp.grid_multires)}
    convs, att = [cfg.audio.in_dim, 32, 32, 64, 64], [a, 16, 8, 4, 2, 1]
    audio = sum(_conv3(i, o) for i, o in itertools.pairwise(convs)) + _dense(64, 64) + _dense(64, a)
    audio += sum(_conv3(i, o) for i, o in itertools.pairwise(att))
    audio += _dense(cfg.audio.window, cfg.audio.window)
    if sp.channel_attention:
        audio += _dense(x, 32, False) + _dense(32, a, False)
    if sp.eye:
        audio += _dense(x, 16, False) + _dense(16, 6, False)
        audio += _dense(5, 16, False) + _dense(16, 5, False)
    out["audio"] = audio
    views = {"audio": (a + (6 if sp.eye else 0), True)}  # (width, xyz encoding appended)
    if sp.prior:
        views |= {"exp": (cfg.prior.exp_dim, True), "tone": (cfg.prior.tone_dim, True)}
    if sp.emotion:
        d = sp.emo_dim
        out["emotion"] = (
            _dense(cfg.emotion.in_dim, d)
            + _planes(d, sp.emo_res, sp.emo_multires)
            + sum(sp.emo_res * m * d for m in sp.emo_multires)
        )
        views["emotion"] = (d * len(sp.emo_multires), False)
    k = [HEAD_WIDTHS[n] for n in sp.outputs]
    if sp.uncertainty:
        for name, (w, with_x) in views.items():
            out[f"unc_{name}"] = sp.members * (_dense(w + x * with_x, h) + 2 * _dense(h, lat))
        out["decoder"] = _dense(lat + x, h) + sum(_dense(h, h) + _dense(h, kk) for kk in k)
    else:
        concat = sum(w for w, _ in views.values()) + x
        out["decoder"] = _dense(concat, h, False) + _dense(h, h, False) + _dense(h, sum(k), False)
    return out


def test_paper_counts_match_the_authors_sizes():
    cfg = model_config("paper")
    face, mouth = count_params(cfg, "face"), count_params(cfg, "mouth")
    # The reference's own figures: 16.7M per xyz hexplane, 38/102/128/192-wide view inputs.
    assert face["xyz_grid"] == mouth["xyz_grid"] == 16_711_680
    assert face["unc_audio"] == 10 * (102 * 64 + 64 + 2 * (64 * 48 + 48)) == 128_320
    assert sum(face.values()) == 33_925_711 and sum(mouth.values()) == 17_170_824


@pytest.mark.parametrize("preset", PRESETS)
def test_counts_match_the_documented_layer_sizes(preset):
    cfg = model_config(preset)
    for part in ("face", "mouth"):
        assert count_params(cfg, part) == _expected(cfg, part), part


@pytest.mark.parametrize("p,e,u", list(itertools.product([False, True], repeat=3)))
def test_ablation_counts_match_the_documented_layer_sizes(p, e, u):
    cfg = model_config("tiny")  # the sizes do not change which modules exist
    cfg.ablation.update(prior=p, emotion=e, uncertainty=u)
    assert count_params(cfg, "face") == _expected(cfg, "face")
