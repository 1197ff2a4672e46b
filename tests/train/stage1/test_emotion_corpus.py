"""The emotion encoder's pre-training corpora: synthetic speech, IEMOCAP, the subject's frames."""

import dataclasses

import jax
import numpy as np
import pytest

from tests.data.test_iemocap import release  # noqa: F401  (fixture)
from ua3dtalk_jax.audio import emotion_inputs
from ua3dtalk_jax.configs.stage1 import stage1_config
from ua3dtalk_jax.data.synthetic import speech
from ua3dtalk_jax.data.synthetic.speech_corpus import emotional_speech
from ua3dtalk_jax.head import emotion as head_emotion
from ua3dtalk_jax.train.stage1 import emotion as emo
from ua3dtalk_jax.train.stage1.loop import init_state, run_steps
from ua3dtalk_jax.types import EMOTIONS

CHANCE = 1.0 / len(EMOTIONS)


def test_clips_corpus_windows_lie_inside_their_clips():
    e = stage1_config("tiny").emotion
    wavs = [
        np.full(8000, 0.1, np.float32),
        np.full(4000, -0.2, np.float32),
        np.ones(800, np.float32),
    ]
    c = emotion_inputs.clips_corpus(wavs, [3, 5, 1], e)
    gap = emotion_inputs.window_samples(e) // 2
    starts = np.cumsum([0] + [len(w) + gap for w in wavs])[:-1]
    assert c["labels"].tolist() == [3] * 5 + [5] * 2 + [1]  # 0.1 s hop; a short clip: its middle
    for centre, label in zip(c["centres"], c["labels"], strict=True):
        k = [3, 5, 1].index(label)
        assert starts[k] <= centre < starts[k] + len(wavs[k])
    wav = c["stream"]["wav"][emotion_inputs.window_samples(e) // 2 :]  # stream pads half a window
    np.testing.assert_allclose(wav[c["centres"][:5]], 0.1)
    np.testing.assert_allclose(wav[c["centres"][5:7]], -0.2)
    with pytest.raises(ValueError, match="at least one clip"):
        emotion_inputs.clips_corpus([], [], e)


def test_emotional_speech_covers_every_class_and_level_and_is_deterministic():
    wavs, labels = emotional_speech(1, seed=3, sentences=speech.TRAIN_SENTENCES[:4])
    counts = np.bincount(labels, minlength=len(EMOTIONS))
    assert counts.tolist() == [3] + [3] * (len(EMOTIONS) - 1)  # neutral 3 × level 1, others 1 × 3
    again, _ = emotional_speech(1, seed=3, sentences=speech.TRAIN_SENTENCES[:4])
    assert all(np.array_equal(a, b) for a, b in zip(wavs, again, strict=True))
    one, lab1 = emotional_speech(1, sentences=speech.TRAIN_SENTENCES[:1])  # one sentence
    lengths = np.array([len(w) for w in one])
    sad, angry = (lengths[np.asarray(lab1) == EMOTIONS.index(n)] for n in ("sad", "angry"))
    assert (sad > angry).all()  # sad speech is slower at every intensity
    with pytest.raises(ValueError, match="clips_per_level"):
        emotional_speech(0)


def test_pretraining_corpus_resolves_each_source(release):  # noqa: F811
    cfg = stage1_config("tiny")
    e = cfg.emotion
    corpus, classes = emo.pretraining_corpus(e, data=None)
    assert classes == len(EMOTIONS) and set(np.asarray(corpus["labels"]).tolist()) == set(range(8))
    e.corpus = f"iemocap:{release}"
    corpus, classes = emo.pretraining_corpus(e, data=None)
    assert classes == 4 and np.asarray(corpus["labels"]).tolist() == [0] * 5 + [1] * 10
    e.corpus = "iemocap"
    with pytest.raises(ValueError, match="stage1.emotion.corpus='iemocap'"):
        emo.pretraining_corpus(e, data=None)
    e.corpus = "subject"
    unlabelled = _FakeData(np.full(40, -1), 30)
    with pytest.raises(ValueError, match="no emotion labels"):
        emo.pretraining_corpus(e, unlabelled)


@dataclasses.dataclass
class _FakeData:
    emotion: np.ndarray
    n_train: int
    stream: dict = dataclasses.field(default_factory=dict)

    @property
    def centres(self):
        return np.arange(len(self.emotion)) * 640


@pytest.mark.long
@pytest.mark.slow
def test_pretraining_on_synthetic_speech_recognises_unseen_sentences():
    """Pre-trained on the train sentences, the encoder labels clips of the test sentences."""
    e = stage1_config("cpu").emotion
    e.corpus_clips, e.pretrain_steps = 6, 300
    corpus, _ = emo.pretraining_corpus(e, data=None)
    clips = emotional_speech(2, seed=1, sentences=speech.TEST_SENTENCES)
    test = emotion_inputs.clips_corpus(*clips, e)
    model = head_emotion.build_encoder(e, len(EMOTIONS), 16)
    params, _ = emo.init_encoder(model, e, jax.random.PRNGKey(0))
    step, tx = emo.make_emotion_step(e, model, finetune=False)
    st, h = run_steps(step, init_state(params, tx), corpus, jax.random.PRNGKey(1), e.pretrain_steps)
    out = head_emotion.emotion_features(model, st.params, test["stream"], test["centres"], e)
    acc = emo.accuracy(out["logits"], test["labels"])
    print(
        f"synthetic-speech pre-training {e.pretrain_steps} steps {h['seconds']:.1f}s "
        f"accuracy on unseen sentences {acc:.3f}"
    )
    assert acc >= 2 * CHANCE
