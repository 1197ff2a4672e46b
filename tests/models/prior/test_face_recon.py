"""Deep3DFaceRecon's regressor against torchvision (tests/fixtures/face_recon), and its loader.

The reference outputs come from torchvision's ResNet-50 + the seven 1×1 heads run in torch, eval
mode (tests/fixtures/face_recon/make_fixtures.py). The weights are not committed: the script draws
them with numpy from a seed, and the test draws the same ones (`seeded_state_dict`) and writes them
as a `{"net_recon": ...}` torch file with the project's test writer; `small.pth` is a reduced net
saved by torch itself, with the optimizer and scheduler state that real `epoch_20.pth` files hold.
"""

import os

import jax
import numpy as np
import pytest

from tests.data.torch_writer import write_safetensors, write_torch_file
from tests.fixtures.face_recon.make_fixtures import (
    FULL,
    SMALL,
    STAGES,
    sample_stage,
    seeded_state_dict,
)
from ua3dtalk_jax.models.prior.face_recon import N_COEFFS, coeff_slices, load_face_recon

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "face_recon")
# float32 XLA vs torch (oneDNN) on CPU, summation orders differ: measured max abs error 9e-8
# (stem) .. 6.6e-7 (coefficients) at values of O(1); 1e-5 leaves a 15× margin, far below any
# wrong layer (a transposed kernel, a missing ReLU or BN eps give errors of O(0.1)).
STAGE_ATOL = {
    "stem": 1e-5,
    "layer1": 1e-5,
    "layer2": 1e-5,
    "layer3": 1e-5,
    "layer4": 1e-5,
    "pooled": 1e-5,
    "coeffs": 1e-5,
}


def _fixture(name):
    return np.load(os.path.join(FIXTURES, f"{name}.npz"))


def _images():
    return _fixture("resnet50")["images"].astype(np.float32) / 255.0


def _stages(model, variables, x) -> dict:
    out, inter = jax.jit(lambda v, a: model.apply(v, a, mutable=["intermediates"]))(variables, x)
    got = {k: np.asarray(v[0]) for k, v in inter["intermediates"].items()}
    got = {k: sample_stage(v) if k in STAGES else v for k, v in got.items()}
    return got | {"coeffs": np.asarray(out)}


def _check_stages(got: dict, ref, label: str) -> None:
    errs = {k: float(np.abs(got[k] - ref[k]).max()) for k in STAGE_ATOL}
    print(f"{label}: max abs error per stage " + ", ".join(f"{k} {v:.2g}" for k, v in errs.items()))
    for k, tol in STAGE_ATOL.items():
        assert got[k].shape == ref[k].shape, k
        np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=tol, err_msg=k)


@pytest.fixture(scope="module")
def small_sd():
    return seeded_state_dict(SMALL)


def test_resnet50_matches_torchvision_at_every_stage(tmp_path):
    path = str(tmp_path / "epoch_20.pth")
    write_torch_file(path, {"net_recon": seeded_state_dict(FULL), "epoch": 20})
    model, variables = load_face_recon(path)
    assert (model.stem, model.widths, model.blocks, model.expansion) == (
        64,
        (64, 128, 256, 512),
        (3, 4, 6, 3),
        4,
    )
    n_params = sum(v.size for v in jax.tree.leaves(variables["params"]))
    assert n_params == 23_508_032 + 2048 * N_COEFFS + N_COEFFS  # torchvision's backbone + heads
    _check_stages(_stages(model, variables, _images()), _fixture("resnet50"), "resnet50")


def test_a_checkpoint_written_by_torch_with_optimizer_state_loads():
    """small.pth: torch.save of {"net_recon", "opt_00", "sched_00", "epoch"} (zip format)."""
    model, variables = load_face_recon(os.path.join(FIXTURES, "small.pth"))
    assert (model.stem, model.widths, model.blocks) == (8, (8, 8, 16, 16), (2, 1, 1, 1))
    _check_stages(_stages(model, variables, _images()), _fixture("small"), "small (torch.save)")


def test_bare_prefixed_legacy_and_safetensors_files_give_the_same_net(tmp_path, small_sd):
    x = _images()
    ref = _fixture("small")["coeffs"]
    prefixed = {f"module.{k}": v for k, v in small_sd.items()}  # saved from DataParallel
    files = {"bare.pth": small_sd, "module.pth": {"net_recon": prefixed}}
    for name, obj in files.items():
        write_torch_file(str(tmp_path / name), obj)
    write_torch_file(str(tmp_path / "legacy.pth"), {"net_recon": small_sd}, legacy=True)
    # SadTalker's safetensors holds every network; the regressor's keys start face_3drecon.
    others = {"audio2exp.netG.weight": np.ones((4, 4), np.float32)}
    st = {f"face_3drecon.{k}": v for k, v in small_sd.items() if v.dtype == np.float32}
    write_safetensors(str(tmp_path / "sadtalker.safetensors"), st | others)
    for name in (*files, "legacy.pth", "sadtalker.safetensors"):
        model, variables = load_face_recon(str(tmp_path / name))
        np.testing.assert_allclose(
            np.asarray(model.apply(variables, x)),
            ref,
            rtol=0,
            atol=STAGE_ATOL["coeffs"],
            err_msg=name,
        )


@pytest.mark.parametrize("case", ["missing", "shape", "extra", "head", "fc", "not_recon"])
def test_bad_checkpoints_name_the_file_and_the_tensor(tmp_path, small_sd, case):
    sd = dict(small_sd)
    want = {
        "missing": "backbone.layer2.0.downsample.1.running_var",
        "shape": "backbone.layer1.1.conv2.weight",
        "extra": "backbone.layer1.0.se.weight",
        "head": "final_layers.1.weight",
        "fc": "backbone.fc.weight",
        "not_recon": "not a Deep3DFaceRecon",
    }[case]
    if case == "missing":
        del sd[want]
    elif case == "shape":
        sd[want] = sd[want][:, :, :2]
    elif case in ("extra", "fc"):
        sd[want] = np.zeros((4, 4), np.float32)
    elif case == "head":
        sd[want] = np.zeros((79, 64, 1, 1), np.float32)  # a 79-wide exp head (BFM's full basis)
    else:
        sd = {"state_dict": {"conv.weight": np.zeros(3, np.float32)}}
    path = str(tmp_path / "bad.pth")
    write_torch_file(path, {"net_recon": sd} if case != "not_recon" else sd)
    with pytest.raises(ValueError, match="bad.pth") as e:
        load_face_recon(path)
    assert want in str(e.value)


def test_missing_file_and_wrong_image_shape(tmp_path, small_sd):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_face_recon(str(tmp_path / "nope.pth"))
    path = str(tmp_path / "w.pth")
    write_torch_file(path, {"net_recon": small_sd})
    model, variables = load_face_recon(path)
    with pytest.raises(ValueError, match=r"\(B, 224, 224, 3\)"):
        model.apply(variables, np.zeros((1, 256, 256, 3), np.float32))


def test_coefficient_order_is_deep3dfacerecons(tmp_path, small_sd):
    s = coeff_slices()
    assert list(s) == ["id", "exp", "tex", "angle", "gamma", "trans"]
    assert (s["exp"].start, s["exp"].stop, s["trans"].stop) == (80, 144, 257) == (80, 144, N_COEFFS)
    # final_layers.1 (exp) lands at 80:144, the two translation heads (xy, z) at 254:257
    sd = {k: np.zeros_like(v) if k.startswith("final_layers") else v for k, v in small_sd.items()}
    sd["final_layers.1.bias"] = np.arange(64, dtype=np.float32) + 1
    sd["final_layers.5.bias"] = np.array([-1.0, -2.0], np.float32)
    sd["final_layers.6.bias"] = np.array([-3.0], np.float32)
    write_torch_file(str(tmp_path / "heads.pth"), {"net_recon": sd})
    model, variables = load_face_recon(str(tmp_path / "heads.pth"))
    out = np.asarray(model.apply(variables, _images()))
    np.testing.assert_array_equal(out[:, s["exp"]], np.tile(np.arange(64) + 1, (2, 1)))
    np.testing.assert_array_equal(out[:, s["trans"]], np.tile([-1.0, -2.0, -3.0], (2, 1)))
    assert not out[:, : s["exp"].start].any() and not out[:, s["exp"].stop : s["trans"].start].any()
