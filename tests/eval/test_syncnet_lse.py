"""SyncNet v2 port, MFCC and LSE-C/LSE-D scoring.

The port is checked against an independent float64 NumPy transcription of syncnet_python's layers
(torch NCDHW layout, read straight from the state_dict) on one random-weight state_dict that the
test writes in the legacy torch format; the MFCC port against python_speech_features itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.data.torch_writer import write_torch_file
from ua3dtalk_jax.eval import syncnet_lse as S

# float32 through 8 conv/linear layers (fan-in up to 36,864) vs float64: relative error ~1e-6;
# 1e-4 leaves margin for XLA's accumulation order and still catches any layout or padding slip.
F32_REL_TOL = 1e-4
CURVE_TOL = (
    1e-2  # of the spread of D(k) over k; see test_syncnet_v2_score_is_syncnet_pythons_evaluate
)


def _random_state(rng: np.random.Generator) -> dict[str, np.ndarray]:
    state = {}

    def conv_bn(prefix, idx, cin, cout, k):
        fan_in = cin * int(np.prod(k))
        state[f"{prefix}.{idx}.weight"] = rng.normal(0, np.sqrt(2 / fan_in), (cout, cin, *k))
        state[f"{prefix}.{idx}.bias"] = rng.normal(0, 0.1, cout)
        bn = f"{prefix}.{idx + 1}"
        state[f"{bn}.weight"] = rng.uniform(0.5, 1.5, cout)
        state[f"{bn}.bias"] = rng.normal(0, 0.1, cout)
        state[f"{bn}.running_mean"] = rng.normal(0, 0.1, cout)
        state[f"{bn}.running_var"] = rng.uniform(0.5, 2.0, cout)
        state[f"{bn}.num_batches_tracked"] = np.array(1000, np.int64)

    for name, cnn, cin in (("aud", S.AUDIO_CNN, 1), ("lip", S.LIP_CNN, 3)):
        for idx, cout, k, *_ in cnn:
            conv_bn(f"netcnn{name}", idx, cin, cout, k)
            cin = cout
        state[f"netfc{name}.0.weight"] = rng.normal(0, np.sqrt(2 / 512), (512, 512))
        state[f"netfc{name}.0.bias"] = rng.normal(0, 0.1, 512)
        for leaf, v in (
            ("weight", rng.uniform(0.5, 1.5, 512)),
            ("bias", rng.normal(0, 0.1, 512)),
            ("running_mean", rng.normal(0, 0.1, 512)),
            ("running_var", rng.uniform(0.5, 2.0, 512)),
        ):
            state[f"netfc{name}.1.{leaf}"] = v
        state[f"netfc{name}.3.weight"] = rng.normal(0, np.sqrt(1 / 512), (1024, 512))
        state[f"netfc{name}.3.bias"] = rng.normal(0, 0.1, 1024)
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in state.items()}


def _np_conv(x, w, b, stride, pad):
    nd = w.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
    win = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)]
    k = "xyz"[:nd]  # kernel axes
    out = np.einsum(f"ni...{k},oi{k}->no...", win, w, optimize=True)
    return out + b.reshape((1, -1) + (1,) * nd)


def _np_pool(x, k, stride, pad):
    nd = len(k)
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad], constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(x, k, axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)]
    return win.max(axis=tuple(range(-nd, 0)))


def _np_bn(x, st, key):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    g = lambda leaf: st[f"{key}.{leaf}"].astype(np.float64).reshape(shape)
    return (x - g("running_mean")) / np.sqrt(g("running_var") + 1e-5) * g("weight") + g("bias")


def _np_branch(x, st, name, cnn):
    """syncnet_python forward_lip / forward_aud in float64, torch layout."""
    f64 = lambda k: st[k].astype(np.float64)
    for idx, _, _, stride, pad, pool in cnn:
        x = _np_conv(
            x, f64(f"netcnn{name}.{idx}.weight"), f64(f"netcnn{name}.{idx}.bias"), stride, pad
        )
        x = np.maximum(_np_bn(x, st, f"netcnn{name}.{idx + 1}"), 0)
        if pool is not None:
            x = _np_pool(x, *pool)
    x = x.reshape(x.shape[0], -1)
    x = x @ f64(f"netfc{name}.0.weight").T + f64(f"netfc{name}.0.bias")
    x = np.maximum(_np_bn(x, st, f"netfc{name}.1"), 0)
    return x @ f64(f"netfc{name}.3.weight").T + f64(f"netfc{name}.3.bias")


@pytest.fixture(scope="module")
def random_syncnet(tmp_path_factory):
    state = _random_state(np.random.default_rng(0))
    path = str(tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model")
    write_torch_file(path, state, legacy=True)  # the pre-1.6 format of syncnet_python's file
    return state, path


def test_port_matches_float64_numpy_transcription(random_syncnet):
    state, path = random_syncnet
    rng = np.random.default_rng(1)
    model, variables = S.load_syncnet_v2(path)
    frames = rng.uniform(0, 255, (1, 5, 224, 224, 3)).astype(np.float32)  # BGR, 0–255
    mfcc = rng.normal(0, 5, (1, 20, 13)).astype(np.float32)
    v, a = model.apply(variables, frames, mfcc)
    v_ref = _np_branch(frames.transpose(0, 4, 1, 2, 3).astype(np.float64), state, "lip", S.LIP_CNN)
    a_ref = _np_branch(
        mfcc.transpose(0, 2, 1)[:, None].astype(np.float64), state, "aud", S.AUDIO_CNN
    )
    for got, ref in ((v, v_ref), (a, a_ref)):
        assert got.shape == (1, 1024)
        assert np.abs(np.asarray(got) - ref).max() <= F32_REL_TOL * np.abs(ref).max()


def test_missing_weights_are_not_available(tmp_path):
    assert S.load_syncnet_v2(None) is None
    assert S.load_syncnet_v2(str(tmp_path / "absent.model")) is None


def test_foreign_weights_error_names_the_file(tmp_path):
    path = str(tmp_path / "other.model")
    write_torch_file(path, {"encoder.conv.scale": np.ones(3, np.float32)})
    with pytest.raises(ValueError, match=r"other\.model: .*unexpected SyncNet state_dict key"):
        S.load_syncnet_v2(path)


def test_mfcc_equals_python_speech_features():
    psf = pytest.importorskip("python_speech_features")
    rng = np.random.default_rng(2)
    sr = 16000
    t = np.arange(int(2.37 * sr)) / sr
    audio = 8000 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 500 * rng.standard_normal(t.size)
    audio = audio.astype(np.int16)
    ref = psf.mfcc(audio, sr)
    got = S.mfcc(audio, sr)
    assert got.shape == ref.shape == (236, 13)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


def _calc_pdist_loop(v, a, vshift):
    """syncnet_python's calc_pdist written as its loop (slow twin of sync_distances)."""
    ap = np.concatenate([np.zeros((vshift, a.shape[1])), a, np.zeros((vshift, a.shape[1]))])
    return np.stack(
        [
            [np.linalg.norm(v[i] - ap[i + j] + 1e-6) for j in range(2 * vshift + 1)]
            for i in range(len(v))
        ]
    )


def test_lse_scoring_recovers_known_offset():
    rng = np.random.default_rng(3)
    n_frames, dim, shift = 60, 8, 3
    per_frame = rng.normal(size=(n_frames + 10, dim))
    video = per_frame[:n_frames]
    # 4 MFCC-rate steps per frame; audio window t carries frame t + shift.
    audio_feats = np.repeat(per_frame[shift:], S.MFCC_PER_FRAME, axis=0)
    embed_v = lambda w: w.reshape(len(w), -1)  # (B, 5, D) → (B, 5D)
    embed_a = lambda w: w[:, :: S.MFCC_PER_FRAME].reshape(len(w), -1)  # (B, 20, D) → (B, 5D)
    res = S.lse_score(embed_v, embed_a, video, audio_feats, n_frames=n_frames, vshift=15)
    assert res.offset == shift  # video window t matches audio window t − shift
    assert res.lse_d < res.mean_dists[15]  # better than the zero shift
    assert res.lse_c == pytest.approx(np.median(res.mean_dists) - res.mean_dists.min())
    # Windowing and distances against the loop transcription.
    vw = np.stack([embed_v(video[t : t + 5][None])[0] for t in range(n_frames - 5)])
    aw = np.stack([embed_a(audio_feats[4 * t : 4 * t + 20][None])[0] for t in range(n_frames - 5)])
    ref = _calc_pdist_loop(vw, aw, 15)
    np.testing.assert_allclose(S.sync_distances(vw, aw, 15), ref, rtol=1e-12)
    np.testing.assert_allclose(res.mean_dists, ref.mean(0), rtol=1e-12)


def test_lse_from_distances_by_hand():
    d = np.array([[3.0, 1.0, 2.0], [5.0, 1.0, 4.0]])  # D = (4, 1, 3), vshift 1
    res = S.lse_from_distances(d)
    assert (res.lse_d, res.lse_c, res.offset) == (1.0, 2.0, 0)


def test_crop_faces_centres_the_box():
    frames = np.zeros((15, 200, 200, 3), np.uint8)
    frames[:, 80:120, 90:130] = 255  # a white "face" 40 px square
    boxes = np.tile([90, 80, 130, 120], (15, 1))
    crops = S.crop_faces(frames, boxes)
    assert crops.shape == (15, 224, 224, 3)
    # bs = 20 → the crop spans [y−20, y+36) × [x−28, x+28): the face fills rows 0..~160 centrally.
    c = crops[7, :, :, 0].astype(float)
    assert c[80, 112] == 255 and c[200, 112] == 0 and c[80, 5] == 0


def test_syncnet_v2_score_is_syncnet_pythons_evaluate(random_syncnet):
    """syncnet_v2_score against syncnet_python's `evaluate` written out as its loop: frames read
    as BGR, MFCC from python_speech_features on the int16-scale samples, min(frames, samples/640)
    usable frames, window t = frames t..t+4 with MFCC rows 4t..4t+19 embedded one at a time,
    calc_pdist, then offset = vshift − argmin and conf = median − min of the mean distances."""
    import cv2
    import jax

    psf = pytest.importorskip("python_speech_features")
    _, path = random_syncnet
    model, variables = S.load_syncnet_v2(path)
    rng = np.random.default_rng(4)
    crops = rng.integers(0, 256, (12, 224, 224, 3), dtype=np.uint8)  # RGB
    audio = S.int16_scale(rng.uniform(-0.3, 0.3, int(10.5 * 640)))  # 10.5 frames of audio
    vshift = 2
    res = S.syncnet_v2_score(model, variables, crops, audio, vshift=vshift)

    bgr = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2BGR) for c in crops]).astype(np.float32)
    cc = psf.mfcc(audio, 16000).astype(np.float32)  # (A, 13)
    last = min(len(crops), len(audio) // 640) - 5  # 10 usable frames → 5 windows
    ev = jax.jit(lambda w, x: model.apply(w, x, method=S.SyncNetV2.embed_video))
    ea = jax.jit(lambda w, x: model.apply(w, x, method=S.SyncNetV2.embed_audio))
    v = np.stack([np.asarray(ev(variables, bgr[None, t : t + 5]))[0] for t in range(last)])
    a = np.stack([np.asarray(ea(variables, cc[None, 4 * t : 4 * t + 20]))[0] for t in range(last)])
    mdist = _calc_pdist_loop(v, a, vshift).mean(0)
    assert last == 5 and res.mean_dists.shape == mdist.shape == (2 * vshift + 1,)
    # The random weights' distances share a large offset (~1.02e4) and differ by a few units
    # across k; a window one MFCC frame off or RGB for BGR moves them by ≥ 4 % of that spread,
    # batched vs one-window float32 embeddings by ~1e-4 of it.
    tol = CURVE_TOL * np.ptp(mdist)
    np.testing.assert_allclose(res.mean_dists, mdist, rtol=0, atol=tol)
    assert res.offset == vshift - int(np.argmin(mdist))
    assert res.lse_d == pytest.approx(mdist.min(), abs=tol)
    assert res.lse_c == pytest.approx(np.median(mdist) - mdist.min(), abs=tol)
