"""Gaussian head state, SH colour, deformation, fixed-capacity densification and compositing."""

from ua3dtalk_jax.gaussians.compose import composite
from ua3dtalk_jax.gaussians.deform import apply_deformation
from ua3dtalk_jax.gaussians.densify import (
    DensifyConfig,
    DensifyInfo,
    GradStats,
    accumulate_grad_stats,
    check_capacity,
    densify_and_prune,
    densify_config,
    init_grad_stats,
    reset_opacity,
    should_densify,
)
from ua3dtalk_jax.gaussians.params import (
    CapacityError,
    GaussianState,
    activated,
    camera_center,
    empty_gaussians,
    grow_sh_degree,
    init_gaussians,
    trainable,
)

__all__ = [
    "CapacityError",
    "DensifyConfig",
    "DensifyInfo",
    "GaussianState",
    "GradStats",
    "accumulate_grad_stats",
    "activated",
    "apply_deformation",
    "camera_center",
    "check_capacity",
    "composite",
    "densify_and_prune",
    "densify_config",
    "empty_gaussians",
    "grow_sh_degree",
    "init_gaussians",
    "init_grad_stats",
    "reset_opacity",
    "should_densify",
    "trainable",
]
