"""Evaluation of a trained workdir: the table, its cross-checks, E-FD (own) of frames, bad input."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from ua3dtalk_jax.eval import evaluation, metrics
from ua3dtalk_jax.eval import landmarks as L
from ua3dtalk_jax.eval.expression_coeffs import expression_sets
from ua3dtalk_jax.eval.metrics import EFD_OWN, NOT_AVAILABLE
from ua3dtalk_jax.head.workdir import Workdir

FRAMES = 8  # held-out frames evaluated (dlib and MediaPipe dominate the cost)
# evaluate_heldout measures the float render; the collected frames are truncated to uint8
# (LMDMeter's conversion): ≤ 1/255 per pixel, ~0.05 dB at the tiny model's ~16 dB.
PSNR_UINT8_TOL = 0.15
SSIM_UINT8_TOL = 0.01
# The tiny model must beat a blank render by this much: 7.4 dB measured (19.5 vs 12.1 dB); 3 dB
# is half the power of the error, far above the run-to-run spread of a deterministic CPU run.
BLANK_MARGIN_DB = 3.0


@pytest.fixture(scope="module")
def evaluated(tiny_trained, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("eval"))
    res = evaluation.evaluate(
        tiny_trained["workdir"],
        tiny_trained["subject"],
        max_frames=FRAMES,
        out_dir=out,
        log=lambda *_: None,
    )
    return res, out


@pytest.mark.slow
def test_evaluate_tiny_workdir_writes_the_table(tiny_trained, evaluated):
    res, out = evaluated
    rendered, gt = res["rows"]
    assert (rendered["source"], gt["source"]) == ("rendered", "ground truth")
    assert rendered["frames"] == gt["frames"] == FRAMES
    # Bands from the same held-out frames, independent of the model: it must beat a blank render
    # (every pixel the real frames' mean colour: 12.1 dB, SSIM 0.15, LPIPS 0.85 here; the tiny
    # model 19.5 dB, 0.54, 0.29) and must not beat the next real frame of the clip (40 ms away:
    # 41.4 dB, 0.99, 0.0008), which only a render leaking the ground truth would.
    blank, adjacent = _baselines(tiny_trained, res["frames"])
    assert blank["PSNR"] + BLANK_MARGIN_DB < rendered["PSNR"] < adjacent["PSNR"]
    assert blank["SSIM"] < rendered["SSIM"] < adjacent["SSIM"]
    assert adjacent["LPIPS"] < rendered["LPIPS"] < blank["LPIPS"]
    assert all(gt[c] == evaluation.NOT_APPLICABLE for c in ("PSNR", "LMD", EFD_OWN))
    # no SyncNet v2 weights: "not available" with the reason, never a number
    assert rendered["Sync-C"] is None and gt["Sync-D"] is None
    assert any("syncnet_weights" in n for n in res["notes"])
    for row in (rendered, gt):  # computed for both rows: the stage-1 SyncNet and fer exist
        assert 0.0 <= row["Sync-D (own)"] <= 2.0 and row["Sync-C (own)"] >= 0.0
        assert 0.0 <= row["Emo-acc"] <= 1.0  # the subject has emotion labels
    # Emo-acc (subject): the tiny subject trains on one emotion: "not available", with the reason
    assert rendered[metrics.EMO_SUBJECT] is None and gt[metrics.EMO_SUBJECT] is None
    assert any(n.startswith(metrics.EMO_SUBJECT) and "one emotion" in n for n in res["notes"])
    # LMD and E-FD need a face in the rendered frames; the 30-iteration tiny model renders none
    # that dlib or MediaPipe find (checked here with dlib directly), so both are "not available"
    # with the reason in the notes; with faces they are numbers (test_lmd_and_efd_of_faces).
    fr = res["frames"]
    assert all(L.largest_face(im) is not None for im in fr.real)
    if all(L.largest_face(im) is None for im in fr.rendered):
        assert rendered["LMD"] is None and rendered[EFD_OWN] is None
        assert f"LMD: no dlib face in {FRAMES}/{FRAMES} frame pairs" in " ".join(res["notes"])
        assert any(n.startswith(f"{EFD_OWN}: no MediaPipe face") for n in res["notes"])
    else:
        assert rendered["LMD"] > 0.0 and rendered[EFD_OWN] > 0.0
    with open(os.path.join(out, "eval_val.json")) as f:
        doc = json.load(f)
    assert doc["columns"] == list(evaluation.COLUMNS)
    assert doc["rows"][0]["Sync-C"] == NOT_AVAILABLE
    assert doc["extra"]["frames"] == list(
        range(doc["extra"]["frames"][0], doc["extra"]["frames"][0] + FRAMES)
    )
    with open(os.path.join(out, "eval_val.md")) as f:
        md = f.read()
    assert "E-FD (own)" in md and "NOT the paper's E-FID" in md and "Notes:" in md
    assert os.path.exists(os.path.join(out, "eval_val.csv"))


def _baselines(tiny_trained, fr) -> tuple[dict, dict]:
    """Mean PSNR, SSIM, LPIPS against the held-out real frames of a blank render (the real frames'
    mean colour) and of the clip's next real frames."""
    from ua3dtalk_jax.data import Subject

    s = Subject.open(tiny_trained["subject"])
    blank = np.broadcast_to(fr.real.reshape(-1, 3).mean(0).round().astype(np.uint8), fr.real.shape)
    nxt = np.stack([s.frame(int(i) + 1, keys=("image",))["image"] for i in fr.index])
    return tuple(
        {k: float(v.mean()) for k, v in metrics.image_metrics(x, fr.real).items()}
        for x in (np.ascontiguousarray(blank), nxt)
    )


@pytest.mark.slow
def test_lmd_and_efd_of_faces(tiny_trained, evaluated):
    """The table's LMD and E-FD (own) where the "rendered" frames have faces: the clip's next real
    frames (40 ms later: the mouth barely moves) against frames from the middle of the split
    (other mouth shapes). Both are numbers, the adjacent frames' the smaller (measured: LMD 0.44
    vs 0.86 px, E-FD 208 vs 2419)."""
    import dataclasses

    from ua3dtalk_jax.data import Subject

    fr = evaluated[0]["frames"]
    s = Subject.open(tiny_trained["subject"])
    val = s.split("val")
    far = val[len(val) // 2 : len(val) // 2 + FRAMES]
    out = {}
    for name, idx in (("next", fr.index + 1), ("far", far)):
        frames = dataclasses.replace(
            fr, rendered=np.stack([s.frame(int(i), keys=("image",))["image"] for i in idx])
        )
        notes = []
        out[name] = (
            evaluation.lmd_metric(frames, notes)["LMD"],
            evaluation.efd_metric(frames, notes)[EFD_OWN],
        )
        assert not notes, notes
    assert 0.0 < out["next"][0] < out["far"][0], out
    assert 0.0 < out["next"][1] < out["far"][1], out


@pytest.mark.slow
def test_collected_frames_are_the_measured_ones(tiny_trained, evaluated):
    """The frames the on_frame callback collected, re-measured on the host, give the PSNR/SSIM
    that evaluate_heldout measured on the device, and the real frames are the subject's."""
    from ua3dtalk_jax.data import Subject

    res, _ = evaluated
    fr = res["frames"]
    s = Subject.open(tiny_trained["subject"])
    np.testing.assert_array_equal(fr.index, s.split("val")[:FRAMES])
    np.testing.assert_array_equal(fr.real[-1], s.frame(int(fr.index[-1]), keys=("image",))["image"])
    assert fr.rendered.dtype == np.uint8 and fr.rendered.shape == fr.real.shape
    host = metrics.image_metrics(fr.rendered, fr.real, lpips=False)
    assert host["PSNR"].mean() == pytest.approx(res["rows"][0]["PSNR"], abs=PSNR_UINT8_TOL)
    assert host["SSIM"].mean() == pytest.approx(res["rows"][0]["SSIM"], abs=SSIM_UINT8_TOL)
    assert fr.image_metrics["frames"] == FRAMES


@pytest.mark.slow
def test_expression_fd_of_frames_self_zero_grows_with_warp(tiny_trained):
    """E-FD (own) through the extractor: a set against itself → 0; a stretched lower face moves
    the mesh, more stretch moves it more."""
    from ua3dtalk_jax.data import Subject

    s = Subject.open(tiny_trained["subject"])
    real = np.stack([s.frame(int(i), keys=("image",))["image"] for i in s.split("val")[:8]])

    def stretch(img, k):  # lower half stretched vertically by 1 + k around the image middle
        h, w = img.shape[:2]
        ys = np.arange(h, dtype=np.float32)
        src = np.where(ys > h / 2, h / 2 + (ys - h / 2) / (1 + k), ys)
        mx, my = np.meshgrid(np.arange(w, dtype=np.float32), src)
        return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    fd = {}
    for k in (0.0, 0.04, 0.12):
        sets = expression_sets(np.stack([stretch(f, k) for f in real]) if k else real, real)
        assert sets["missing_real"] == 0 and sets["missing_rendered"] == 0
        fd[k] = metrics.expression_frechet_distance(sets["rendered"], sets["real"])
    assert fd[0.0] < 1e-6
    assert fd[0.04] > 1e-3 and fd[0.12] > fd[0.04]


def test_bad_workdirs_are_refused(tiny_trained, tmp_path):
    wd, subj = tiny_trained["workdir"], tiny_trained["subject"]
    with pytest.raises(FileNotFoundError, match="no such directory"):
        Workdir(str(tmp_path / "nowhere")).load_trained(drivable=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        Workdir(str(empty)).load_trained(drivable=False)
    # stage 1 only: config.json, no stage-2 model
    s1 = tmp_path / "stage1_only"
    s1.mkdir()
    shutil.copy(os.path.join(wd, "config.json"), s1)
    with pytest.raises(FileNotFoundError, match="stage-2"):
        Workdir(str(s1)).load_trained(drivable=False)
    # another version: a config with a key this version does not have, and one it lacks
    with open(os.path.join(wd, "config.json")) as f:
        cfg = json.load(f)
    cfg["model"]["old_switch"] = 1
    del cfg["train"]["deform"]
    other = tmp_path / "other_version"
    other.mkdir()
    with open(other / "config.json", "w") as f:
        json.dump(cfg, f)
    with pytest.raises(ValueError, match="another version.*train.deform.*model.old_switch"):
        Workdir(str(other)).load_trained(drivable=False)
    # another model format in the stage-2 checkpoint's metadata
    fmt = tmp_path / "other_format"
    shutil.copytree(wd, fmt, ignore=shutil.ignore_patterns("tb", "val", "face", "mouth", "fuse"))
    meta = next(p for p in fmt.glob("stage2/model/*/meta/metadata"))
    meta.write_text(meta.read_text().replace("ua3dtalk_jax/stage2/v1", "ua3dtalk_jax/stage2/v0"))
    with pytest.raises(ValueError, match="stage2/v0"):
        Workdir(str(fmt)).load_trained(drivable=False)
    with pytest.raises(FileNotFoundError, match="--syncnet_weights"):
        evaluation.evaluate(wd, subj, syncnet_weights=str(tmp_path / "syncnet_v2.model"))
    with pytest.raises(ValueError, match="--split"):
        evaluation.evaluate(wd, subj, split="test")
    with pytest.raises(FileNotFoundError, match="--subject"):
        Workdir(wd).subject_dir("synthetic", str(tmp_path))


def test_workdir_records_its_subject(tiny_trained, tmp_path):
    """Training writes subject.json, so the tools find the subject without --subject; an older
    workdir without it (or whose subject moved) falls back to the preset's synthetic subject."""
    wd = tiny_trained["workdir"]
    want = os.path.abspath(tiny_trained["subject"])
    assert Workdir(wd).subject_dir(None, str(tmp_path)) == want
    assert Workdir(wd).subject_dir(want, str(tmp_path)) == want  # explicit still wins
    assert os.path.abspath(Workdir(wd).load_trained().subject.path) == want  # the notebook API
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(os.path.join(wd, "config.json"), old / "config.json")
    with pytest.raises(FileNotFoundError, match="--subject=synthetic"):
        Workdir(str(old)).subject_dir(None, str(tmp_path))
    (old / "subject.json").write_text(json.dumps({"subject": str(tmp_path / "moved")}))
    with pytest.raises(FileNotFoundError, match="--subject=synthetic"):
        Workdir(str(old)).subject_dir(None, str(tmp_path))
