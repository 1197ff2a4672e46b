"""Stage-2 deformation models (paper §2.3); stage-1 models live in `prior/` and `emotion/`.

hexplane (xyz and emotion planes) · audio_net (AudioNet, AudioAttNet, audio+eye view) ·
emotion_encoder (Eq. 6) · uncertainty (Eq. 7–12) · heads (multi-head decoder) ·
motion (MotionNetwork(spec) with the FACE and MOUTH specs).
"""

from ua3dtalk_jax.models.motion import (
    FACE,
    MOUTH,
    DeformOut,
    FrameInputs,
    MotionNetwork,
    MotionSpec,
    motion_spec,
)
from ua3dtalk_jax.models.uncertainty import ensemble_moments, gaussian_fusion

__all__ = [
    "FACE",
    "MOUTH",
    "DeformOut",
    "FrameInputs",
    "MotionNetwork",
    "MotionSpec",
    "ensemble_moments",
    "gaussian_fusion",
    "motion_spec",
]
