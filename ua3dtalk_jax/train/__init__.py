"""Training: stage 1 (Prior Extraction, Emotion Distillation; `stage1.py`) and stage 2 (deformation)."""
