"""Emotion Distillation models (paper §2.2): the co-attention speech-emotion encoder (its control at
inference is `head.emotion_control`)."""

from ua3dtalk_jax.models.emotion.alexnet import AlexNetFeatures, load_imagenet_alexnet
from ua3dtalk_jax.models.emotion.encoder import SpeechEmotionEncoder

__all__ = ["AlexNetFeatures", "SpeechEmotionEncoder", "load_imagenet_alexnet"]
