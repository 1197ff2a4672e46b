"""An emotional speech corpus from the synthetic voice, for pre-training the emotion encoder.

The paper pre-trains its speech-emotion encoder on IEMOCAP (§2.2); without that corpus the
project pre-trains on speech spoken by the same espeak-ng voice as the embedded subject
(`speech.synthesize`), every emotion at every intensity, over the *train* sentence list only, so
that the embedded subject's held-out clips (spoken from the disjoint test list) stay unseen.
Pre-training on the subject's own 60 s instead lets the encoder memorise its few labelled
sentences (held-out accuracy at chance on the default subject); a corpus of many sentences per
class is what makes the prosody, not the words, the cue.
"""

from __future__ import annotations

import numpy as np

from ua3dtalk_jax.data.synthetic import speech
from ua3dtalk_jax.types import EMOTIONS

LEVELS = (1, 2, 3)


def emotional_speech(
    clips_per_level: int, seed: int = 0, sentences: tuple[str, ...] = speech.TRAIN_SENTENCES
):
    """Clips of every emotion × intensity (neutral only at 1, with 3× the clips).

    Args:
      clips_per_level: sentences spoken per (emotion, intensity), drawn without replacement.
      seed: which sentences.
      sentences: the sentence list (default: the subject generator's train list).
    Returns:
      (wavs: list of (S_k,) float32 16 kHz, labels: list of EMOTIONS indices).
    """
    if clips_per_level < 1:
        raise ValueError(f"clips_per_level must be at least 1, got {clips_per_level}")
    rng = np.random.default_rng([seed, 23])
    engine = speech.Engine()
    wavs, labels = [], []
    for label, emotion in enumerate(EMOTIONS):
        levels = (1,) if emotion == "neutral" else LEVELS
        n = clips_per_level * (len(LEVELS) if emotion == "neutral" else 1)
        for level in levels:
            for k in _draw(rng, len(sentences), n):
                wavs.append(speech.synthesize(sentences[k], emotion, level, engine).wav)
                labels.append(label)
    return wavs, labels


def _draw(rng, population: int, n: int) -> np.ndarray:
    """n indices, without replacement as long as the population lasts."""
    reps = -(-n // population)
    return np.concatenate([rng.permutation(population) for _ in range(reps)])[:n]
