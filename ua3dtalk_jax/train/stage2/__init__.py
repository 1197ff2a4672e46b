"""Stage 2 training (paper §2.3–§2.4): face and mouth branches, then the fuse step.

driver.py    `run_stage2`: face and mouth side by side, then fuse; the model file
             (`head.stage2_model`), the summary
sampler.py   `FrameSampler` (the frames of each iteration) and its `Prefetcher`
state.py     `BranchState`, the branch's optimisers and its initialisation
init.py      the Gaussians' initial points (lifted from the subject's images, or a box)
step.py      the jitted branch and fuse steps (their losses: `losses.branches`)
loop.py      the branch and fuse loops: densification, clean-up, validation, stop
phase.py     a phase's checkpoints, progress bar, NaN guard and metrics log
precompile.py  every step and validation program compiled ahead into the persistent cache,
             in the background while stage 1 trains
"""
