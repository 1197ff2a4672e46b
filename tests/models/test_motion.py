"""MotionNetwork(spec): FACE/MOUTH roles, train/eval semantics, ablations P/E/U, Eq. 6 influence."""

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ua3dtalk_jax.audio.features import F_AUDIO_DIM
from ua3dtalk_jax.configs.migrate import migrate
from ua3dtalk_jax.configs.model import model_config
from ua3dtalk_jax.models.heads import DeformHeads
from ua3dtalk_jax.models.motion import FrameInputs, MotionNetwork, motion_spec

F32_RTOL = 1e-5  # the same float32 computation reordered (vmap, member gather)
F32_ATOL = 1e-6
# the low-rank and dense fusions: the same matrices through other float32 roundings (random
# parameters give the views condition numbers ~1e3)
LOWRANK_RTOL = 1e-3
LOWRANK_ATOL = 1e-5
CFG = model_config("tiny")
N = 24


def _inputs(key, dtype=jnp.float32):
    k = jax.random.split(key, 5)
    return FrameInputs(
        aud=jax.random.normal(k[0], (8, 16, CFG.audio.in_dim), dtype),
        au_exp=jax.random.uniform(k[1], (6,), dtype),
        f_exp=jax.random.normal(k[2], (64,), dtype),
        f_tone=jax.random.normal(k[3], (64,), dtype),
        f_emo=jax.random.normal(k[4], (128,), dtype),
    )


XYZ = jax.random.uniform(jax.random.PRNGKey(0), (N, 3), minval=-0.1, maxval=0.1)
INPUTS = _inputs(jax.random.PRNGKey(1))


def _random_params(net, seed=0):
    """Parameters of `net` with init's structure and shapes (traced by `eval_shape`, so every
    module's init runs symbolically) and random values in the real inits' ranges (planes and
    codebooks uniform(0.1, 0.5), weights uniform(−0.3, 0.3)): no init compile, which dominates
    these CPU tests (real inits run in test_encoders and tests/gaussians)."""
    shapes = jax.eval_shape(lambda k: net.init(k, XYZ, INPUTS), jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)

    def draw(path, x):
        grid = str(path[-1].key).startswith(("plane_", "codebook_"))
        low, high = (0.1, 0.5) if grid else (-0.3, 0.3)
        return jnp.asarray(rng.uniform(low, high, x.shape), x.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture(scope="module")
def face():
    net = MotionNetwork(motion_spec(CFG, "face"))
    apply = jax.jit(net.apply, static_argnames=("mode",))
    return net, _random_params(net), apply


def test_config_matches_audio_features_and_roles():
    assert CFG.audio.in_dim == F_AUDIO_DIM
    face_spec, mouth_spec = motion_spec(CFG, "face"), motion_spec(CFG, "mouth")
    assert face_spec.view_names == ("audio", "exp", "tone", "emotion")
    assert mouth_spec.view_names == ("audio", "exp", "tone")
    assert mouth_spec.outputs == ("xyz",) and mouth_spec.xyz_scale == (2e-3, 1e-2, 2e-3)


def test_face_outputs_and_intermediates(face):
    _, params, apply = face
    out, aux = apply(params, XYZ, INPUTS, mode="eval")
    v, d = 4, CFG.uncertainty.latent
    assert (out.d_xyz.shape, out.d_rot.shape, out.d_scale.shape) == ((N, 3), (N, 4), (N, 3))
    assert aux["view_mu"].shape == (v, N, d) and aux["fused_mu"].shape == (N, d)
    for k in ("aleatoric", "epistemic", "view_weights"):
        assert aux[k].shape == (v, N)
    assert aux["aud_ch_att_norm"].shape == aux["eye_att_norm"].shape == (N,)
    np.testing.assert_allclose(aux["view_weights"].sum(0), 1.0, rtol=F32_RTOL)
    assert np.all(aux["epistemic"] > 0) and np.all(aux["aleatoric"] > 0)
    # Eval mode ignores the rng and is deterministic.
    again, _ = apply(params, XYZ, INPUTS, mode="eval", rng=jax.random.PRNGKey(9))
    np.testing.assert_array_equal(out.d_xyz, again.d_xyz)


def test_train_mode_draws_one_member_per_view(face):
    _, params, apply = face
    t = CFG.uncertainty.members
    _, eval_aux = apply(params, XYZ, INPUTS, mode="eval")
    per_member, draws = {}, []
    for i in range(40):
        out, aux = apply(params, XYZ, INPUTS, mode="train", rng=jax.random.PRNGKey(100 + i))
        members = np.asarray(aux["members"])
        draws.append(members)
        assert np.all(aux["epistemic"] == 0)  # one member: no epistemic part
        per_member[int(members[0])] = aux["view_mu"][0]
        if i == 0:
            same, _ = apply(params, XYZ, INPUTS, mode="train", rng=jax.random.PRNGKey(100))
            np.testing.assert_array_equal(out.d_xyz, same.d_xyz)
    draws = np.stack(draws)
    assert draws.min() >= 0 and draws.max() < t
    assert len({tuple(d) for d in draws}) > 1  # views draw independently / per step
    assert sorted(per_member) == list(range(t))
    # The ensemble mean (Eq. 10) is the mean of the members used one at a time in training.
    np.testing.assert_allclose(
        np.mean([per_member[k] for k in range(t)], axis=0),
        eval_aux["view_mu"][0],
        rtol=1e-4,
        atol=1e-5,
    )


def test_train_mode_needs_rng(face):
    net, params, _ = face
    with pytest.raises(ValueError, match="rng"):
        net.apply(params, XYZ, INPUTS, mode="train")


def test_emotion_code_changes_the_deformation(face):
    _, params, apply = face
    out, aux = apply(params, XYZ, INPUTS, mode="eval")
    other, other_aux = apply(params, XYZ, INPUTS.replace(f_emo=-INPUTS.f_emo), mode="eval")
    rel = lambda a, b: np.max(np.abs(a - b)) / np.max(np.abs(a))
    np.testing.assert_array_equal(aux["view_mu"][:3], other_aux["view_mu"][:3])
    # At init-like parameters the emotion view moves by ~1e-3 and Δμ by ~1e-5 (relative): well
    # above float32 rounding (1.2e-7), so the change is the emotion code's, not noise.
    assert rel(aux["view_mu"][3], other_aux["view_mu"][3]) > 1e-4
    assert rel(out.d_xyz, other.d_xyz) > 1e-6


def test_eye_au_path_feeds_only_the_face_audio_view(face):
    _, params, apply = face
    assert {"aud_ch_att", "eye_att", "exp_encode"} <= set(params["params"]["audio"])
    out, aux = apply(params, XYZ, INPUTS, mode="eval")
    other, other_aux = apply(params, XYZ, INPUTS.replace(au_exp=1.0 - INPUTS.au_exp), mode="eval")
    rel = lambda a, b: np.max(np.abs(a - b)) / np.max(np.abs(a))
    np.testing.assert_array_equal(aux["view_mu"][1:], other_aux["view_mu"][1:])
    # As for the emotion code: changes well above float32 rounding (1.2e-7) at init-like params.
    assert rel(aux["view_mu"][0], other_aux["view_mu"][0]) > 1e-4
    assert rel(out.d_xyz, other.d_xyz) > 1e-6
    assert np.all(aux["eye_att_norm"] >= 0) and np.any(aux["eye_att_norm"] > 0)
    # The mouth has neither the eye/AU path nor the channel attention (reference §3).
    mouth = _random_params(MotionNetwork(motion_spec(CFG, "mouth")))
    assert set(mouth["params"]["audio"]) == {"audio_net", "audio_att"}


def test_vmap_over_frames_equals_per_frame(face):
    _, params, apply = face
    frames = jax.tree.map(lambda a, b: jnp.stack([a, b]), INPUTS, _inputs(jax.random.PRNGKey(3)))
    batched = jax.vmap(lambda f: apply(params, XYZ, f, mode="eval")[0])(frames)
    for i in range(2):
        one, _ = apply(params, XYZ, jax.tree.map(lambda a, i=i: a[i], frames), mode="eval")
        np.testing.assert_allclose(batched.d_xyz[i], one.d_xyz, rtol=1e-4, atol=F32_ATOL)


def test_mouth_predicts_scaled_positions_only():
    net = MotionNetwork(motion_spec(CFG, "mouth"))
    params = _random_params(net, seed=4)
    out, aux = jax.jit(
        lambda p: net.apply(p, XYZ, INPUTS, mode="train", rng=jax.random.PRNGKey(5))
    )(params)
    np.testing.assert_array_equal(out.d_rot, 0.0)
    np.testing.assert_array_equal(out.d_scale, 0.0)
    assert set(params["params"]) == {
        "xyz_grid",
        "audio",
        "unc_audio",
        "unc_exp",
        "unc_tone",
        "decoder",
    }
    assert aux["view_mu"].shape[0] == 3
    # The mouth's Δμ is the head output ×1e-2 with x and z a further /5.
    heads = DeformHeads(("xyz",), (("xyz", (1.0, 1.0, 1.0)),), CFG.uncertainty.hidden)
    decoder = {"params": params["params"]["decoder"]}
    raw, _ = jax.jit(heads.apply)(decoder, aux["fused_mu"], _enc_x(params, XYZ))
    np.testing.assert_allclose(
        out.d_xyz, raw["xyz"] * np.array([2e-3, 1e-2, 2e-3]), rtol=F32_RTOL, atol=1e-9
    )


def _enc_x(params, xyz):
    from ua3dtalk_jax.models.hexplane import HexPlaneField

    h = CFG.hexplane
    field = HexPlaneField(h.bound, h.base_res, tuple(h.multires), h.channels)
    return jax.jit(field.apply)({"params": params["params"]["xyz_grid"]}, xyz)[0]


@pytest.mark.parametrize("p,e,u", list(itertools.product([False, True], repeat=3)))
def test_every_ablation_combination_runs(p, e, u):
    cfg = model_config("tiny")
    cfg.ablation.update(prior=p, emotion=e, uncertainty=u)
    spec = motion_spec(cfg, "face")
    net = MotionNetwork(spec)
    params = _random_params(net)
    names = set(params["params"])
    assert ("unc_exp" in names) == (p and u) and ("emotion" in names) == e
    assert any(n.startswith("unc_") for n in names) == u
    # Train mode (no Cholesky) keeps the eight compiles cheap; eval mode is tested above.
    out, aux = jax.jit(
        lambda prm: net.apply(prm, XYZ, INPUTS, mode="train", rng=jax.random.PRNGKey(1))
    )(params)
    assert np.all(np.isfinite(out.d_xyz)) and out.d_xyz.shape == (N, 3)
    if u:
        assert aux["view_weights"].shape == (len(spec.view_names), N)


def test_decoder_section_sets_gain_zero_init_and_channel_attention():
    cfg = model_config("tiny")
    cfg.decoder.face.update(xyz_gain=30.0, zero_init=("xyz",), channel_attention=False)
    spec = motion_spec(cfg, "face")
    assert spec.xyz_scale == (0.3, 0.3, 0.3) and spec.zero_init == ("xyz",)
    assert not spec.channel_attention
    assert motion_spec(cfg, "mouth").xyz_scale == (2e-3, 1e-2, 2e-3)  # the mouth keeps its own
    # the cpu preset scales the face's Δμ (short schedule); the paper preset is the authors'
    assert motion_spec(model_config("cpu"), "face").xyz_scale == (0.3, 0.3, 0.3)
    assert motion_spec(model_config("paper"), "face").xyz_scale == (1e-2,) * 3
    # configs saved before the section existed read as the authors' decoder (configs.migrate)
    saved = {"model": model_config("tiny").to_dict()}
    del saved["model"]["decoder"]
    old = ml_collections.ConfigDict(migrate(saved)["model"])
    assert motion_spec(old, "face") == motion_spec(model_config("tiny"), "face")
    assert motion_spec(old, "mouth") == motion_spec(model_config("tiny"), "mouth")


def test_xyz_gain_multiplies_the_position_offsets(face):
    _net, params, apply = face
    cfg = model_config("tiny")
    cfg.decoder.face.xyz_gain = 30.0
    big = MotionNetwork(motion_spec(cfg, "face"))
    a, _ = apply(params, XYZ, INPUTS, mode="eval")
    b, _ = jax.jit(lambda p: big.apply(p, XYZ, INPUTS, mode="eval"))(params)
    np.testing.assert_allclose(b.d_xyz, 30.0 * a.d_xyz, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(b.d_rot, a.d_rot, rtol=F32_RTOL, atol=F32_ATOL)


@pytest.mark.parametrize("concat", [False, True])
def test_zero_init_heads_start_at_the_identity(concat):
    from ua3dtalk_jax.models.heads import ConcatMLPHeads

    scales = tuple((k, (1.0,) * w) for k, w in (("xyz", 3), ("rot", 4), ("scale", 3)))
    x = jax.random.normal(jax.random.PRNGKey(2), (N, 12))
    if concat:
        heads = ConcatMLPHeads(("xyz", "rot", "scale"), scales, 16, zero_init=("xyz",))
        args = (x,)
    else:
        heads = DeformHeads(("xyz", "rot", "scale"), scales, 16, ("xyz",))
        args = (x[:, :8], x[:, 8:])
    params = heads.init(jax.random.PRNGKey(3), *args)
    out, _ = heads.apply(params, *args)
    np.testing.assert_array_equal(out["xyz"], 0.0)  # zero last layer: no initial jitter
    assert np.abs(np.asarray(out["rot"])).max() > 1e-3  # the other heads keep their random init
    grads = jax.grad(lambda p: jnp.sum(heads.apply(p, *args)[0]["xyz"]))(params)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) > 0  # and it trains


def test_lowrank_fusion_network_equals_dense(face, monkeypatch):
    """model.uncertainty.fusion="lowrank" (the paper preset's): the same parameter tree, and the
    same deformation and intermediates as "dense" to float32 rounding, chunked or not."""
    from ua3dtalk_jax.models import uncertainty

    _net, params, apply = face
    low = MotionNetwork(motion_spec(CFG, "face").replace(fusion="lowrank"))
    shapes = jax.eval_shape(lambda k: low.init(k, XYZ, INPUTS), jax.random.PRNGKey(0))
    assert jax.tree.structure(shapes) == jax.tree.structure(params)
    want, want_aux = apply(params, XYZ, INPUTS, mode="eval")
    for chunk in (0, 10):  # N = 24: one piece; three chunks, the last one padded
        monkeypatch.setattr(uncertainty, "FUSION_CHUNK", chunk)
        got, aux = jax.jit(lambda p: low.apply(p, XYZ, INPUTS, mode="eval"))(params)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=LOWRANK_RTOL, atol=LOWRANK_ATOL)
        assert set(aux) == set(want_aux)
        for k in aux:
            np.testing.assert_allclose(
                aux[k], want_aux[k], rtol=LOWRANK_RTOL, atol=LOWRANK_ATOL, err_msg=k
            )
