"""Stage-2 schedule: `train_config(preset)` — face, mouth and fuse phases (paper §2.4, §3.1).

Paper preset = the authors' scripts (reference §2-§4): face and mouth branches 50,000 iterations
each (independent, may run side by side), then 10,000 fusing iterations; 3,000 static warm-up
iterations; one random ensemble member per view until 15,000, then the full ensemble; densify every
100 iterations from 500; D-SSIM weight λ = 0.2 and patch-LPIPS weight γ = 0.5 (the paper's sentence
"γ and λ set to 0.2 and 0.5" is ambiguous; the code's values are the default, both configurable).

Every iteration count below is given for the paper schedule; `cpu` and `tiny` scale all of them by
one factor (`scale`) so the curricula keep their shape, and shrink the image-level settings.
"""

from __future__ import annotations

import ml_collections

DENSIFY_EVERY_FLOOR = 10  # iterations between densification rounds, at least
# (face/mouth iterations, fuse iterations) per preset; everything else scales with face/50,000.
_LENGTHS = {"paper": (50_000, 10_000), "cpu": (1_000, 200), "tiny": (30, 10)}


def _short(b: ml_collections.ConfigDict, total: int) -> None:
    """Departures of the short presets (cpu, tiny) from the scaled paper schedule (measured in
    BUILD_NOTES, "Stage 2 on the short presets: what mattered"):

      * warm-up = a fifth of the run: the points lifted from the images (model.gaussians.*.init)
        need ~200 static iterations to settle, and 3,000 of 50,000 scales to 30 here: the
        deformation would absorb the unsettled static part.
      * no size prune: at 256² its 20-px screen and 0.1·extent world bounds remove the hair and
        cheek Gaussians faster than a short run re-grows them.
      * no hair iterations: the authors blank the hair on 6 of 7 iterations until 46,000; in a
        short run the hair then never converges and its Gaussians drift green.
    """
    b.warmup = total // 5
    b.ensemble_from = max(b.ensemble_from, b.warmup + total // 10)
    b.size_prune_from = total + 1
    b.hair_until = 0


def _branch(total: int, scale: float, *, face: bool) -> ml_collections.ConfigDict:
    s = lambda it: max(1, int(round(it * scale)))
    b = ml_collections.ConfigDict()
    b.iterations = total
    b.warmup = s(3_000)  # static Gaussians only (no deformation) before this
    b.ensemble_from = s(15_000)  # full T-member ensemble ("stage 2" of fusion_net) from here
    # Densification schedule (iterations, scaled); thresholds live in model.gaussians.<part>,
    # and `configs.get_config` copies these four fields there.
    b.densify_every = max(DENSIFY_EVERY_FLOOR, s(100))  # short presets: not every iteration
    # Opacities need some iterations to settle before the first prune: at least 100 (or a fifth of
    # a very short run), however short the preset.
    b.densify_from = max(b.densify_every, s(500), min(100, total // 5))
    b.densify_until = total - s(1_000) if face else s(45_000)
    b.size_prune_from = s(3_000)
    b.sh_every = s(1_000)
    # learning rates (Gaussians: Adam eps 1e-15; networks: AdamW 0.9/0.99)
    b.lr_xyz_init = 1.6e-4
    b.lr_xyz_final = 1.6e-6
    b.lr_xyz_steps = s(45_000)
    b.lr_f_dc = 2.5e-3
    b.lr_f_rest = 1.25e-4
    b.lr_opacity = 0.05
    b.lr_scaling = 3e-3
    b.lr_rotation = 1e-3
    b.lr_grid = 5e-3
    b.lr_net = 5e-4 if face else 5e-3  # mouth: hexplane, fusion and decoder at 5e-3
    b.lr_audio_net = 5e-4
    b.lr_audio_att = 2.5e-3
    b.lr_select_iter = s(40_000 if face else 39_000)
    b.lr_bg_iter = s(50_000 if face else 49_000)
    # curricula
    b.curriculum_every = 15 if face else 7
    b.curriculum_until = s(40_000 if face else 39_000)
    b.min_mouth_pixels = 0 if face else 20  # mouth: resample frames with a smaller mouth mask
    # loss weights
    b.reg_deform = 1e-5 if face else 0.0
    b.reg_alpha = 1e-3
    b.reg_attention = 1e-4 if face else 0.0
    b.lpips_from = s(47_000 if face else 49_000)
    if not face:
        # The mouth's final phase from the authors' bg_iter on: black background, the motion
        # network and the geometry frozen, the colours train (the face's bg_iter is its last
        # iteration: its phase never runs).
        b.final_from = s(49_000)
    b.lpips_lips = 0.01 if face else 0.0
    b.lpips_patch = 0.2 if face else 0.5
    b.mouth_erode_from = s(47_000)
    b.hair_until = s(46_000)
    return b


def train_config(preset: str = "paper") -> ml_collections.ConfigDict:
    """Returns the stage-2 schedule of a preset ("paper", "cpu" or "tiny")."""
    if preset not in _LENGTHS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(_LENGTHS)}")
    branch_iters, fuse_iters = _LENGTHS[preset]
    scale = branch_iters / 50_000
    cfg = ml_collections.ConfigDict()
    cfg.deform = True  # False: static Gaussians throughout (the no-deformation comparison)
    cfg.lambda_ssim = 0.2  # λ of Eq. 13-14 (authors' code)
    cfg.gamma_lpips = 0.5  # γ of Eq. 14 (authors' code: patch LPIPS in the fuse step)
    cfg.face = _branch(branch_iters, scale, face=True)
    cfg.mouth = _branch(branch_iters, scale, face=False)
    if preset != "paper":
        _short(cfg.face, branch_iters)
        _short(cfg.mouth, branch_iters)
    cfg.fuse = ml_collections.ConfigDict()
    cfg.fuse.iterations = fuse_iters
    cfg.fuse.lpips_from = max(1, int(round(5_000 * fuse_iters / 10_000)))
    cfg.fuse.lr_f_dc = 2.5e-3
    cfg.fuse.lr_f_rest = 1.25e-4
    cfg.fuse.lr_opacity = 1e-3  # the authors' --opacity_lr (see the note on their restore quirk)
    # Patch LPIPS: one size per step from (lo, hi), every `patch_size_step` px (the authors: even
    # sizes 64-96 for the face, 32-42 for the mouth and fuse, at 512²). The cpu preset's 256²
    # images halve the face's range; the mouth's cannot halve (AlexNet needs ≥ 32 px). Each size
    # is one more LPIPS compilation (~8 s each on this 2-core CPU, measured): the cpu preset
    # draws every 8 px (face 32/40/48, mouth 32/40) to keep its compile time; tiny (64²) one size.
    cfg.patch_sizes_face = {"paper": (64, 96), "cpu": (32, 48), "tiny": (32, 32)}[preset]
    cfg.patch_sizes_mouth = {"paper": (32, 42), "cpu": (32, 42), "tiny": (32, 32)}[preset]
    cfg.patch_size_step = {"paper": 2, "cpu": 8, "tiny": 2}[preset]
    cfg.lips_crop = 64 if preset == "paper" else 32
    cfg.background = (0.0, 1.0, 0.0)  # green training background
    cfg.checkpoint_every = {"paper": 5_000, "cpu": 250, "tiny": 10}[preset]
    cfg.keep_checkpoints = 3
    cfg.log_every = {"paper": 100, "cpu": 25, "tiny": 5}[preset]
    cfg.val_every = {"paper": 5_000, "cpu": 500, "tiny": 20}[preset]
    cfg.max_bad_steps = 5  # consecutive non-finite steps before rolling back to a checkpoint
    # A full Gaussian buffer: False logs the skipped densification candidates and trains on;
    # True stops with a CapacityError (the buffer size is model.gaussians.<part>.capacity).
    cfg.strict_capacity = False
    return cfg
