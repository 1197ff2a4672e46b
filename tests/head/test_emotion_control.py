"""Emotion control at inference (`head/emotion_control.py`): class means, specs, the CLI's flags."""

import numpy as np
import pytest

from ua3dtalk_jax.head import emotion_control
from ua3dtalk_jax.types import EMOTIONS


def test_class_means_and_label_feature():
    feats = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [9.0, 9.0]], np.float32)
    labels = np.array([0, 0, 5, -1])
    means = emotion_control.class_means(feats, labels, len(EMOTIONS))
    np.testing.assert_allclose(means[0], [2.0, 0.0])
    np.testing.assert_allclose(means[5], [0.0, 2.0])
    np.testing.assert_allclose(means[1], feats[:3].mean(0))  # absent class: labelled mean
    np.testing.assert_allclose(emotion_control.label_feature(means, "happy", 1.0), means[5])
    np.testing.assert_allclose(emotion_control.label_feature(means, "happy", 0.0), means[0])
    np.testing.assert_allclose(emotion_control.label_feature(means, 5, 0.5), [1.0, 1.0])


def test_emotion_spec_parsing_and_blends():
    assert emotion_control.parse_spec("happy:0.7") == [("happy", 0.7, 1.0)]
    assert emotion_control.parse_spec("happy@0.8:1+sad:3") == [
        ("happy", 0.8, 0.25),
        ("sad", 1.0, 0.75),
    ]
    with pytest.raises(ValueError):
        emotion_control.parse_spec("bored")
    means = np.arange(16, dtype=np.float32).reshape(8, 2)
    f_audio = np.ones((3, 2), np.float32)
    np.testing.assert_array_equal(emotion_control.apply_spec(f_audio, means, None), f_audio)
    np.testing.assert_array_equal(emotion_control.apply_spec(f_audio, means, "audio"), f_audio)
    out = emotion_control.apply_spec(f_audio, means, "audio:0.5+angry:0.5")
    np.testing.assert_allclose(out, 0.5 * f_audio + 0.5 * means[1][None])
    np.testing.assert_allclose(
        emotion_control.blend(means[0], means[2], 0.25), 0.75 * means[0] + 0.25 * means[2]
    )


def test_label_blends_with_intensities():
    means = np.arange(16, dtype=np.float32).reshape(8, 2)
    f_audio = np.zeros((2, 2), np.float32)
    out = emotion_control.apply_spec(f_audio, means, "happy@0.5:1+sad@2:3")
    want = 0.25 * emotion_control.label_feature(means, "happy", 0.5)
    want = want + 0.75 * emotion_control.label_feature(means, "sad", 2.0)
    np.testing.assert_allclose(out, np.broadcast_to(want, (2, 2)), rtol=1e-6)
    neutral = emotion_control.apply_spec(
        f_audio, means, "neutral:3"
    )  # intensity scales away from neutral
    np.testing.assert_allclose(neutral, np.broadcast_to(means[0], (2, 2)))


def test_emotion_spec():
    levels = {"happy": 2.0, "sad": 1.5}
    assert emotion_control.emotion_spec() is None
    assert emotion_control.emotion_spec("happy") == "happy@1:1"
    assert emotion_control.emotion_spec("Happy", 3, levels=levels) == "happy@1.5:1"
    assert emotion_control.emotion_spec("audio") == "audio"
    with pytest.warns(UserWarning, match="training frames show no 'angry'"):
        assert emotion_control.emotion_spec("angry", levels=levels) == "angry@1:1"
    mix = emotion_control.emotion_spec(
        emotion_mix="happy:0.7, sad:0.3,audio:1", intensity=1, levels=levels
    )
    assert mix == "happy@0.5:0.7+sad@0.666667:0.3+audio:1"
    for bad, match in [
        ("happy:1,happy:2", "twice"),
        ("happy:x", "not a number"),
        ("happy:0,sad:0", "sum to 0"),
        ("joy:1", "unknown emotion"),
    ]:
        with pytest.raises(ValueError, match=match):
            emotion_control.emotion_spec(emotion_mix=bad)
    with pytest.raises(ValueError, match="--intensity needs"):
        emotion_control.emotion_spec(intensity=2)
