"""The embedded synthetic subject: photo → face mesh → speech-driven emotional animation → frames.

face_model (photo, 3D lift, camera) · mediapipe_face (landmarks, person alpha) · blendshapes (the 16
expression coefficients) · speech (espeak-ng with a phoneme timeline) · animation (visemes,
emotions, blinks, head motion) · render (mesh over the photo, mouth cavity, masks) · generate (the
subject layout).
"""

from ua3dtalk_jax.data.synthetic.generate import (
    PRESETS,
    ensure_synthetic,
    generate_preset,
    generate_subject,
)

__all__ = ["PRESETS", "ensure_synthetic", "generate_preset", "generate_subject"]
