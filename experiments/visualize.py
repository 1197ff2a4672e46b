"""Uncertainty maps of a trained workdir (beyond the paper), as PNGs and an mp4.

  python -m experiments.visualize --workdir=DIR --what=uncertainty [--frames=val|a:b|3,7,9]
      [--branch=fused|face|mouth] [--subject=synthetic|NAME|PATH] [--out=DIR]

Per frame: the rendered and real frames and |error|, then per view of the uncertainty fusion the
aleatoric and epistemic uncertainty of each Gaussian and the view's fusion weight, splatted to the
image with the rasterizer (opacity-weighted mean of the Gaussians a pixel sees), with colour bars
(log scale for the uncertainties, fixed over the sequence). Written to DIR/uncertainty (default)
as <branch>_<frame>.png and uncertainty_<branch>.mp4 (with the audio for consecutive frames).
"""

from __future__ import annotations

import json
import os

from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir with a finished stage 2.")
_WHAT = flags.DEFINE_enum("what", "uncertainty", ["uncertainty"], "What to visualise.")
_FRAMES = flags.DEFINE_string("frames", "val", "val, train, a:b (positions) or 3,7,9.")
_BRANCH = flags.DEFINE_enum("branch", "fused", ["fused", "face", "mouth"], "Which Gaussians.")
_SUBJECT, _DATA_ROOT = cli.define_subject()
_OUT = flags.DEFINE_string("out", None, "Output folder (default WORKDIR/uncertainty).")
_CACHE = cli.define_compile_cache()


def main(argv):
    del argv
    cli.quiet_orbax()
    from ua3dtalk_jax.eval import uncertainty_maps

    try:
        cli.require(workdir=_WORKDIR.value)
        subject = cli.open_trained(_WORKDIR.value, _SUBJECT.value, _DATA_ROOT.value, _CACHE.value)
        res = uncertainty_maps.render_uncertainty(
            _WORKDIR.value, subject, frames=_FRAMES.value, out_dir=_OUT.value, branch=_BRANCH.value
        )
    except (OSError, ValueError) as e:
        cli.fail("visualize", e)
    print(f"{len(res['pngs'])} frames → {os.path.dirname(res['mp4'])} (+ {res['mp4']})")
    print("mean over frames of each view's map:")
    print(
        json.dumps(
            {"views": res["views"], **res["stats"], "colour_ranges": res["ranges"]}, indent=1
        )
    )


if __name__ == "__main__":
    cli.run(main)
