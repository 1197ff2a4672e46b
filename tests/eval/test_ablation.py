"""Ablations: Table 2's configurations map onto model.ablation; a two-configuration tiny study."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ua3dtalk_jax.configs import get_config
from ua3dtalk_jax.eval import ablation
from ua3dtalk_jax.models.motion import motion_spec

# views the face / mouth MotionNetwork fuses (or concatenates) in each Table 2 row
EXPECTED = {
    "Baseline": (("audio",), ("audio",), False),
    "+P": (("audio", "exp", "tone"), ("audio", "exp", "tone"), False),
    "+E": (("audio", "emotion"), ("audio",), False),
    "+P+U": (("audio", "exp", "tone"), ("audio", "exp", "tone"), True),
    "+P+E+U": (("audio", "exp", "tone", "emotion"), ("audio", "exp", "tone"), True),
}


def test_configuration_mapping():
    base = get_config("tiny")
    assert list(ablation.CONFIGURATIONS) == list(EXPECTED)  # Table 2's order
    for name, (face, mouth, unc) in EXPECTED.items():
        cfg = ablation.ablation_config(base, name)
        f, m = motion_spec(cfg.model, "face"), motion_spec(cfg.model, "mouth")
        assert (f.view_names, m.view_names, f.uncertainty, m.uncertainty) == (face, mouth, unc, unc)
        assert cfg.stage1.to_dict() == base.stage1.to_dict()  # stage 1 can be shared
    assert dict(base.model.ablation) == {"prior": True, "emotion": True, "uncertainty": True}
    assert ablation.parse_configurations("all") == list(EXPECTED)
    assert ablation.parse_configurations("+P, Baseline") == ["+P", "Baseline"]
    with pytest.raises(ValueError, match="unknown"):
        ablation.parse_configurations("+U")
    with pytest.raises(ValueError, match="model.ablation"):
        ablation.check_overrides(["train.seed=1", "model.ablation.prior=False"])


def _baselines(subject_path: str, n: int) -> tuple[dict, dict]:
    """Mean PSNR and SSIM against the first `n` held-out frames of a blank render (their mean
    colour) and of the clip's next real frames."""
    from ua3dtalk_jax.data import Subject
    from ua3dtalk_jax.eval.metrics import image_metrics

    s = Subject.open(subject_path)
    idx = s.split("val")[:n]
    real = np.stack([s.frame(int(i), keys=("image",))["image"] for i in idx])
    blank = np.broadcast_to(real.reshape(-1, 3).mean(0).round().astype(np.uint8), real.shape)
    nxt = np.stack([s.frame(int(i) + 1, keys=("image",))["image"] for i in idx])
    return tuple(
        {k: float(v.mean()) for k, v in image_metrics(x, real, lpips=False).items()}
        for x in (np.ascontiguousarray(blank), nxt)
    )


def _ablate(args, cache):
    cmd = [sys.executable, "-m", "experiments.ablate", *args, f"--compile_cache={cache}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.long
@pytest.mark.slow
def test_ablation_tiny_and_cli_resume(tiny_trained, tmp_path):
    """One Table 2 row trained and evaluated on the tiny subject with a few iterations, stage 1
    copied from the shared tiny workdir. The row is +P+E+U: in this process the shared training
    already compiled its executables (iteration counts are not part of them); every other row's
    network would cold-compile for about two minutes here and is covered by the mapping test.
    The CLI then resumes the study (reads the row back); other overrides are refused."""
    from ua3dtalk_jax.configs import apply_overrides
    from ua3dtalk_jax.train.run import train

    subject = str(tmp_path / "subject")  # the study rewrites the subject's stage-1 feature cache
    shutil.copytree(tiny_trained["subject"], subject)
    root = str(tmp_path / "ablation")
    sets = ["train.face.iterations=2", "train.mouth.iterations=2", "train.fuse.iterations=1"]
    base = apply_overrides(get_config("tiny"), sets)
    logs = []
    res = ablation.run_ablation(
        train,
        base,
        subject,
        root,
        ["+P+E+U"],
        max_frames=8,
        stage1_from=tiny_trained["workdir"],
        log=logs.append,
    )
    assert any("checkpoint found" in str(x) for x in logs)  # stage 1 copied, not retrained
    with open(os.path.join(root, "ablation.json")) as f:
        doc = json.load(f)
    assert [row["configuration"] for row in doc["rows"]] == ["+P+E+U"]
    row = doc["rows"][0]
    assert (row["P"], row["E"], row["U"]) == ("✓", "✓", "✓")
    # Bands from the evaluated held-out frames themselves: above a blank render (their mean
    # colour; the image-initialised Gaussians after a few steps must beat a constant image),
    # below the clip's next real frames (40 ms away; only a render leaking them would beat it).
    blank, adjacent = _baselines(subject, 8)  # max_frames
    assert blank["PSNR"] < row["PSNR"] < adjacent["PSNR"]
    assert blank["SSIM"] < row["SSIM"] < adjacent["SSIM"]
    assert row["Sync-C"] == "not available" and row["Sync-C (own)"] >= 0.0
    assert row["PSNR"] == pytest.approx(res["rows"][0]["PSNR"])
    wd = os.path.join(root, "p_e_u")
    with open(os.path.join(wd, "stage2", "face_metrics.jsonl")) as f:
        assert f.read().strip()  # stage 2 was trained in the configuration's workdir
    with open(os.path.join(wd, "config.json")) as f:
        assert json.load(f)["train"]["face"]["iterations"] == 2

    args = [
        f"--subject={subject}",
        "--config=tiny",
        f"--workdir_root={root}",
        "--configurations=+P+E+U",
        f"--stage1_from={tiny_trained['workdir']}",
        *[f"--set={x}" for x in sets],
        "--max_frames=8",
    ]
    r = _ablate(args, str(tiny_trained["root"] / "xla_cache"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "not rerun" in r.stdout and "| +P+E+U" in r.stdout
    other = apply_overrides(get_config("tiny"), [*sets[:2], "train.fuse.iterations=2"])
    with pytest.raises(ValueError, match="another config"):
        ablation.run_ablation(
            train, other, subject, root, ["+P+E+U"], stage1_from=tiny_trained["workdir"]
        )
