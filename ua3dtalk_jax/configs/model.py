"""Stage-2 model configuration: Gaussian heads and the uncertainty-based deformation (§2, §2.3).

`model_config(preset)` returns one ConfigDict; `models.motion.motion_spec(cfg, part)` turns it into
the FACE/MOUTH spec and `gaussians.densify.densify_config(cfg.gaussians.<part>, <train part>)` into
the densification thresholds (the schedule is the training config's). Presets:

  paper  the authors' sizes: xyz hexplane ±0.15, res 64, scales (1, 2, 4, 8), 16 channels
         (≈16.7M parameters per branch); emotion hexplane 64 channels, scales (1, 2, 4); T = 10
         members, latent 48, hidden 64; face from 2000 random points, mouth from 10,000; SH
         degree 2; densify thresholds 0.0005 (face), 0.0002 (mouth).
  cpu    trains on 2 CPU cores: planes res 16, scales (1, 2), 8/16 channels, T = 4, latent 16,
         face 1,500 → 2,048 and mouth 600 → 1,024 Gaussians lifted from the images; the face
         decoder's Δμ scaled ×30 from a zero last layer (1,000 instead of 50,000 iterations).
  tiny   seconds, for tests: planes res 8, T = 3, latent 8, capacity 128.

`audio.steps` × `audio.in_dim` is the shape of one frame's audio window. The presets hold our mel
windows' 16 × 32; training overwrites both with what the subject's features are
(`data.stage2_audio.resolve_audio`: DeepSpeech 16 × 29, HuBERT 2 × 1024, esperanto 16 × 44), so the
saved config records what the audio network was built for.
"""

from __future__ import annotations

import ml_collections

PRESETS = ("paper", "cpu", "tiny")

# Per preset: plane resolution and scales, xyz/emotion channels, uncertainty sizes, and
# (initial points, capacity) of the face and mouth Gaussians.
_SIZES = {
    "paper": {
        "res": 64,
        "multires": (1, 2, 4, 8),
        "ch": 16,
        "emo_dim": 64,
        "emo_multires": (1, 2, 4),
        "hidden": 64,
        "latent": 48,
        "members": 10,
        "face": (2000, 65536),
        "mouth": (10000, 65536),
    },
    "cpu": {
        "res": 16,
        "multires": (1, 2),
        "ch": 8,
        "emo_dim": 16,
        "emo_multires": (1, 2),
        "hidden": 32,
        "latent": 16,
        "members": 4,
        "face": (1500, 2048),
        "mouth": (600, 1024),
    },
    "tiny": {
        "res": 8,
        "multires": (1, 2),
        "ch": 4,
        "emo_dim": 8,
        "emo_multires": (1, 2),
        "hidden": 16,
        "latent": 8,
        "members": 3,
        "face": (48, 128),
        "mouth": (32, 128),
    },
}


def _gaussians(init_num: int, capacity: int, grad_threshold: float, *, face: bool):
    g = ml_collections.ConfigDict()
    g.init = "box"  # "box" (authors) or "image" (lifted from the frames; train.stage2.init)
    g.init_num = init_num  # initial points (authors: face 2000, mouth 10,000 in the box)
    g.init_frames = 8  # "image": training frames the points are drawn from
    g.capacity = capacity  # fixed buffer size; exceeding it is an error
    g.init_box = 0.1  # points uniform in [−0.1, 0.1]³
    g.init_opacity = 0.1
    # The schedule (densify_from/every/until, size_prune_from, sh_every) lives in train.<part>
    g.sh_degree = 2  # max SH degree; the active degree grows by one every train.<part>.sh_every
    g.grad_threshold = grad_threshold  # on the averaged NDC-space mean gradient (3DGS units)
    g.percent_dense = 0.005  # clone if max scale ≤ this · extent, else split
    g.split_factor = 1.6  # children's scale = parent / (0.8 · 2)
    g.min_opacity = 0.05  # prune threshold, ramped by +0.25 · it / densify_until
    g.min_opacity_ramp = 0.25
    g.max_screen_radius = 20.0  # px
    g.max_world_scale = 0.1  # · extent
    # Green-background clean-up at every densification interval (gaussians.densify): the face
    # prunes Gaussians whose colour from the training camera is R < 30, G > 225, B < 30 (/255),
    # to the end of training; the mouth fades those with R < 20, G > 235, B < 20 (gradient
    # accumulator halved, opacity 0.1, scale ÷ 10) until densify_until.
    g.bg_cleanup = "prune" if face else "fade"
    g.bg_red_max = (30 if face else 20) / 255
    g.bg_green_min = (225 if face else 235) / 255
    g.bg_blue_max = (30 if face else 20) / 255
    g.bg_cleanup_past_until = face
    g.bg_fade_opacity = 0.1
    g.bg_fade_scale = 10.0
    g.bg_fade_raw = False  # True: the authors' literal raw/10 (grows small Gaussians; densify.py)
    return g


def model_config(preset: str) -> ml_collections.ConfigDict:
    """The stage-2 model config for `preset` ∈ PRESETS."""
    if preset not in _SIZES:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {PRESETS}")
    s = _SIZES[preset]
    cfg = ml_collections.ConfigDict()
    cfg.hexplane = {
        "bound": 0.15,
        "base_res": s["res"],
        "multires": s["multires"],
        "channels": s["ch"],
    }
    # window: AudioAttNet's frames of context; steps × in_dim: one frame's features (training sets
    # them from the subject's).
    cfg.audio = {"in_dim": 32, "dim": 32, "window": 8, "steps": 16}
    cfg.emotion = {
        "in_dim": 128,
        "dim": s["emo_dim"],
        "base_res": s["res"],
        "multires": s["emo_multires"],
    }
    cfg.prior = {"exp_dim": 64, "tone_dim": 64}
    # fusion: how the full ensemble's Eq. 10–12 is computed ("eval" mode, `models.uncertainty`).
    # "lowrank" never forms the (views × N × D × D) covariances: at the paper's N = 65,536, D = 48
    # the dense form needs tens of GB and minutes per step on a CPU. cpu/tiny keep "dense", whose
    # recorded results are bitwise those of earlier runs.
    cfg.uncertainty = {
        "hidden": s["hidden"],
        "latent": s["latent"],
        "members": s["members"],
        "fusion": "lowrank" if preset == "paper" else "dense",
    }
    cfg.ablation = {"prior": True, "emotion": True, "uncertainty": True}  # Table 2: P, E, U
    # Decoder (`models.motion.motion_spec`): the authors' Δμ scale (×1e-2), random last layers
    # and the face's audio channel attention.
    cfg.decoder = ml_collections.ConfigDict()
    for part in ("face", "mouth"):
        cfg.decoder[part] = {"xyz_gain": 1.0, "zero_init": (), "channel_attention": part == "face"}
    if preset == "cpu":
        # 1,000 iterations instead of 50,000: a network whose Δμ is scaled by 1e-2 and trained at
        # 5e-4 cannot grow the jaw drop in that time; the zero last layer keeps the larger gain
        # from adding initial jitter (BUILD_NOTES, "The decoder gain of the cpu preset").
        cfg.decoder.face.xyz_gain = 30.0
        cfg.decoder.face.zero_init = ("xyz",)
    cfg.gaussians = ml_collections.ConfigDict()
    cfg.gaussians.face = _gaussians(*s["face"], grad_threshold=5e-4, face=True)
    cfg.gaussians.mouth = _gaussians(*s["mouth"], grad_threshold=2e-4, face=False)
    if preset != "paper":
        # 1,500 iterations cannot carry random box points over the head; start from the images.
        # Lifted points start visible (0.5): at the authors' 0.1 the many that never receive
        # enough gradient fall under the ramped prune threshold (0.05 → 0.30) and leave holes.
        for part in ("face", "mouth"):
            cfg.gaussians[part].init = "image"
            cfg.gaussians[part].init_opacity = 0.5
    if preset == "tiny":
        # 30 iterations leave no time for opacities to grow past the ramped prune threshold
        # (0.05 → 0.30); keep it at 0.05 so the tiny heads are not pruned away.
        cfg.gaussians.face.min_opacity_ramp = cfg.gaussians.mouth.min_opacity_ramp = 0.0
    return cfg
