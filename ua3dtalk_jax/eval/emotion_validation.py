"""Validation of "Emo-acc (subject)" (`emotion_subject`) on held-out frames of known emotion.

A score of emotion must rank these cases (issue 29 §5):

  real            the subject's own held-out frames: high (the classifier's ceiling)
  --emotion=X     frames rendered with emotion X where the clip's label is not X: low — the
                  accuracy against the labels ("acc (label≠X)") falls and the frames read as X
                  ("reads X")
  neutral         X = neutral on the emotional clips: between
  own ×s          (generator) each clip's own emotion at strength s ∈ (0, 1): between neutral
                  (s = 0) and the frames as generated (s = 1), rising with s

Columns: Emo-acc (subject) and p(label) — the mean probability the classifier gives the frame's
label, a graded version of it — over all labelled frames; acc, p and reads X over the frames
whose label is not X (those X makes wrong).

Two sources of such frames:

  generator   synthetic subjects: the generator re-renders the held-out frames with the clips'
              emotions replaced (`data/synthetic/counterfactual.py`), so the shown emotion is
              known exactly; "own" re-renders them unchanged (a control for re-rendering).
  model       a trained workdir renders the held-out frames with the clip's audio (the paper's
              setting) and with f_emo-attn replaced by each label's class mean (the `--emotion`
              of experiments.infer), through `evaluation.render_split`.

Every row scores frames with the same classifier, fitted once on the subject's training frames.
"""

from __future__ import annotations

import numpy as np

from ua3dtalk_jax.eval import emotion_subject as es
from ua3dtalk_jax.eval.expression_coeffs import mesh_landmarks
from ua3dtalk_jax.types import EMOTIONS

STRENGTHS = (0.25, 0.5, 0.75)  # the generator's partial emotions: between neutral and own
COLUMNS = (
    "source",
    "shown",
    "frames",
    es.NAME,
    "p(label)",
    "acc (label≠X)",
    "p(label≠X)",
    "reads X",
    "no face",
)


def label_probs(clf, lm: np.ndarray, found: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) the classifier's probability of each frame's label (0 without a face; NaN for
    unlabelled frames and emotions the classifier does not know)."""
    out = np.full(len(labels), np.nan)
    known = np.isin(labels, [EMOTIONS.index(c) for c in clf.classes])
    out[known] = 0.0
    if np.any(found):
        probs = np.exp(clf.log_probs(lm[found]))
        col = {EMOTIONS.index(c): k for k, c in enumerate(clf.classes)}
        rows = np.flatnonzero(found)
        for r, p in zip(rows, probs):
            if known[r]:
                out[r] = p[col[int(labels[r])]]
    return out


def score_row(
    clf,
    frames: np.ndarray,
    labels: np.ndarray,
    source: str,
    shown: str | None,
    name: str | None = None,
) -> dict:
    """One validation row: frames (N, H, W, 3) uint8 with labels (N,) EMOTIONS index, rendered
    showing emotion `shown` (None: their own; `name` the row's "shown" cell). The label≠X columns
    are over the frames whose label is not X: the ones `shown` makes wrong."""
    lm, found = mesh_landmarks(frames)
    pred = clf.predict(lm, found)
    p = label_probs(clf, lm, found, labels)
    acc = es.accuracy(pred, labels, clf.classes)["all"]
    row = {
        "source": source,
        "shown": name or shown or "own",
        "frames": acc["n"],
        es.NAME: acc["accuracy"],
        "p(label)": float(np.nanmean(p)) if np.isfinite(p).any() else None,
        "acc (label≠X)": None,
        "p(label≠X)": None,
        "reads X": None,
        "no face": int((~found).sum()),
    }
    if shown is not None:
        x = EMOTIONS.index(shown)
        other = (labels >= 0) & (labels != x) & np.isfinite(p)
        if other.any():
            row["acc (label≠X)"] = float((pred[other] == labels[other]).mean())
            row["p(label≠X)"] = float(p[other].mean())
            row["reads X"] = float((pred[other] == x).mean())
    return row


def _labels(subject, index: np.ndarray) -> np.ndarray:
    return subject.emotion[subject.img_ids[index]].astype(np.int64)


def generator_rows(clf, subject, index: np.ndarray, shown, strengths=(), log=print) -> list[dict]:
    """Rows of the generator's re-rendered held-out frames: unchanged, with their own emotion at
    each of `strengths` (0.5: half-way to neutral), then showing each emotion of `shown`."""
    from ua3dtalk_jax.data.synthetic import counterfactual

    labels = _labels(subject, index)
    rows = []
    for x, s in [(None, 1.0), *((None, s) for s in strengths), *((x, 1.0) for x in shown)]:
        name = f"own ×{s:g}" if x is None and s != 1.0 else None
        log(f"generator: held-out frames showing {x or name or 'their own emotion'} ...")
        frames = counterfactual.rerender(subject, index, {} if x is None else x, s)
        rows.append(score_row(clf, frames, labels, "generator", x, name))
    return rows


def model_rows(
    clf, workdir: str, subject_path: str, index: np.ndarray, shown, log=print
) -> list[dict]:
    """Rows of a trained workdir's renders: audio-driven, then with each `--emotion` of `shown`."""
    from ua3dtalk_jax.eval.evaluation import render_split
    from ua3dtalk_jax.head.workdir import Workdir

    wd = Workdir(workdir)
    model = wd.load_trained(subject_path, drivable=False)
    cfg, heads, subject = model.cfg, model.heads, model.subject
    rows = []
    for x in [None, *shown]:
        log(f"model: held-out frames with {'their audio' if x is None else '--emotion=' + x} ...")
        feats = wd.stage1_features(subject, cfg, emotion=x)
        fr = render_split(cfg, heads, subject, feats, "val", len(index))
        rows.append(score_row(clf, fr.rendered, _labels(subject, fr.index), "model", x))
    return rows


def validate(
    subject_path: str,
    *,
    workdir: str | None = None,
    shown=EMOTIONS,
    strengths=STRENGTHS,
    max_frames: int | None = None,
    log=print,
) -> dict:
    """Scores the subject's held-out frames and the frames of known emotion (module docstring).

    Args:
      subject_path: the subject (labelled; synthetic for the generator rows).
      workdir: a trained workdir of this subject for the model rows (None: none).
      shown: the emotions X to render the held-out frames with.
      strengths: the generator also renders the frames' own emotion at these strengths.
      max_frames: only the first held-out frames.
      log: progress printer.

    Returns:
      {"rows": table rows (COLUMNS), "classifier": fit summary, "notes": held-out emotions left
       out (no training frame shows them)}.

    Raises:
      es.NotAvailable: the subject cannot be scored (no labels, one emotion).
      ValueError: an unknown emotion in `shown`.
    """
    from ua3dtalk_jax.data import Subject
    from ua3dtalk_jax.data.synthetic.counterfactual import generator_metadata

    bad = [x for x in shown if x not in EMOTIONS]
    if bad:
        raise ValueError(f"emotions {bad}: not in {EMOTIONS}")
    subject = Subject.open(subject_path)
    clf = es.fit_subject(subject, log)
    index = np.asarray(subject.split("val"))[:max_frames]
    real = np.stack([subject.frame(int(i), keys=("image",))["image"] for i in index])
    rows = [score_row(clf, real, _labels(subject, index), "real", None)]
    if generator_metadata(subject.path) is not None:
        rows += generator_rows(clf, subject, index, shown, strengths, log)
    if workdir is not None:
        rows += model_rows(clf, workdir, subject_path, index, shown, log)
    summary = {
        "classes": list(clf.classes),
        "fit_frames": clf.n_fit,
        "cv_accuracy": clf.cv_accuracy,
    }
    held = {EMOTIONS[c] for c in _labels(subject, index) if c >= 0}
    unknown = sorted(held - set(clf.classes))
    notes = []
    if unknown:
        notes.append(f"held-out frames of {unknown} left out: no training frame shows them")
    return {"rows": rows, "classifier": summary, "notes": notes}
