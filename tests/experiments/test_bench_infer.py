"""experiments.bench_infer on the shared tiny run: every part is timed, --size renders at that size
(intrinsics and background rescaled together) and the report names size and frames per second."""

from __future__ import annotations

import numpy as np
import pytest

from tests.tools import import_tool
from ua3dtalk_jax.head.workdir import Workdir
from ua3dtalk_jax.infer import trained_model as tm


@pytest.fixture(scope="module")
def model(tiny_trained):
    return Workdir(tiny_trained["workdir"]).load_trained(tiny_trained["subject"])


FRAMES = (
    25  # the tiny subject's held-out second: its first frames are silent, and silence is refused
)


def test_parts_at_the_subject_size_and_at_another(model):
    bench = import_tool("bench_infer")
    wav = bench._clip(model, FRAMES)
    h, w = model.size
    for size, want in ((None, (h, w)), (2 * h, (2 * h, 2 * h))):
        res = bench._parts(model, wav, FRAMES, 1, size, skip_config_form=size is not None)
        assert tuple(res["size"]) == want and res["frames"] == FRAMES
        timed = {"stage-1 features", "deformation", bench.RENDER}
        timed |= {bench.CONFIG_FORM} if size is None else set()
        assert set(res["seconds"]) == timed | {"rasterization + compositing", "end to end"}
        assert all(np.isfinite(s) for s in res["seconds"].values())
        assert all(res["seconds"][k] > 0 for k in timed | {"end to end"})
        text = bench.report(res)
        assert text.startswith(f"{FRAMES} frames at {want[1]}x{want[0]}") and "frames/s" in text


def test_resized_conditioning_scales_intrinsics_and_background(model):
    bench = import_tool("bench_infer")
    feats = tm.audio_features(model, bench._clip(model, FRAMES))
    from ua3dtalk_jax.infer.poses import pose_schedule

    c = tm.frame_conditioning(
        model, feats, 0, pose_schedule(model.subject, "val")(model.subject, 0)
    )
    h = model.size[0]
    (big,) = bench._resized(model, [c], 3 * h)
    np.testing.assert_allclose(np.asarray(big["K"])[:2], 3 * np.asarray(c["K"])[:2], rtol=1e-6)
    assert np.shape(big["background"]) == (3 * h, 3 * h, 3)
    rgb = np.asarray(tm.render(model, big))
    assert rgb.shape == (3 * h, 3 * h, 3) and rgb.std() > 0.02
