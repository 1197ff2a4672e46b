"""Evaluation of a trained workdir on a held-out split: the paper's Table 1 plus emotion accuracy.

`evaluate(workdir, subject_path, split="val")` renders the split's frames with their own audio (the
stage-1 features of the clip) through `eval.heldout.evaluate_heldout` — its render loop, its PSNR,
SSIM and LPIPS — collecting the frames with its `on_frame` callback (as uint8 by truncation, the
conversion of TalkingGaussian's LMDMeter), and measures against the real frames:

  LMD           dlib 68-point mouth points 48–67, each set centred on its mean, px (`landmarks.lmd`)
  E-FD (own)    Fréchet distance between expression coefficients of rendered and real frames from
                this project's extractor (`expression_coeffs`); NOT the paper's E-FID
  Sync-C/D      LSE-C/D of the standard SyncNet v2 when its weights are given, else
                "not available"; frames resampled to 25 fps (nearest), face boxes from the subject's
                68 landmarks of the real frame (S3FD is not available here), syncnet_python crops
  Sync-C/D (own) the same LSE scoring with this workdir's stage-1 SyncNet on its own crops and mel
                windows (vshift 15 frames); a different network, so NOT comparable to Sync-C
  Emo-acc       fer's mini-Xception on the face box of the real frame (dlib HOG, else the landmark
                box) in the rendered and the real frame, against the subject's emotion labels
  Emo-acc (subject) a classifier fitted on the subject's own labelled training frames (MediaPipe
                expression coefficients, `emotion_subject`), against the same labels; NOT the
                paper's Emo-acc

The table has a "rendered" row and a "ground truth" row (sync and emotion scores of the real
frames, the paper's GT row; "—" where a metric compares against itself). A metric that cannot be
computed is "not available" with the reason in `notes`. Files: workdir/eval_<split>.{json,csv,md}
and eval_<split>_emotion.{json,csv,md} (per emotion).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from ua3dtalk_jax.eval import landmarks as lm_lib
from ua3dtalk_jax.eval import metrics
from ua3dtalk_jax.eval.heldout import evaluate_heldout
from ua3dtalk_jax.eval.metrics import EFD_OWN, EMO_SUBJECT, EMO_SUBJECT_REAL
from ua3dtalk_jax.head.workdir import Workdir
from ua3dtalk_jax.types import EMOTIONS

NOT_APPLICABLE = "—"  # a ground-truth cell of a metric that compares against the ground truth
COLUMNS = (
    "source",
    "frames",
    "PSNR",
    "SSIM",
    "LPIPS",
    "LMD",
    EFD_OWN,
    "Sync-C",
    "Sync-D",
    "Sync-C (own)",
    "Sync-D (own)",
    "Emo-acc",
    EMO_SUBJECT,
)
SYNCNET_FPS = 25.0  # syncnet_python converts every video to 25 fps
AUDIO_RATE = 16000


@dataclasses.dataclass
class HeldoutFrames:
    """Rendered and real frames of a split with what the metrics need."""

    index: np.ndarray  # (N,) frame positions
    rendered: np.ndarray  # (N, H, W, 3) uint8
    real: np.ndarray  # (N, H, W, 3) uint8
    landmarks: np.ndarray  # (N, 68, 2) the subject's landmarks of the real frames
    emotions: list  # N emotion names ("" unlabelled)
    image_metrics: dict  # evaluate_heldout's result
    fps: float


def render_split(
    cfg, heads, subject, features, split: str = "val", max_frames: int | None = None
) -> HeldoutFrames:
    """Renders a split (its first `max_frames` frames) with `evaluate_heldout`; reads the real ones."""
    idx = np.asarray(subject.split(split))
    if max_frames is not None:
        if max_frames < 1:
            raise ValueError(f"--max_frames must be ≥ 1, got {max_frames}")
        idx = idx[:max_frames]
    rendered = {}
    res = evaluate_heldout(
        cfg,
        subject,
        features,
        heads,
        split=split,
        use_deform=cfg.train.deform,
        frames=idx,
        on_frame=lambda i, rgb: rendered.__setitem__(i, lm_lib.to_uint8(rgb)),
    )
    idx = np.asarray(sorted(rendered), np.int64)
    real = [subject.frame(int(i), keys=("image", "landmarks", "emotion")) for i in idx]
    return HeldoutFrames(
        index=idx,
        rendered=np.stack([rendered[int(i)] for i in idx]),
        real=np.stack([r["image"] for r in real]),
        landmarks=np.stack([r["landmarks"] for r in real]),
        emotions=[EMOTIONS[int(r["emotion"])] if r["emotion"] >= 0 else "" for r in real],
        image_metrics=res,
        fps=float(subject.fps),
    )


def landmark_boxes(landmarks: np.ndarray) -> np.ndarray | None:
    """(N, 68, 2) landmarks → (N, 4) boxes (x0, y0, x1, y1); None if any frame has none."""
    lm = np.asarray(landmarks, np.float64)
    if not np.any(lm != 0, axis=(1, 2)).all():
        return None
    return np.concatenate([lm.min(1), lm.max(1)], axis=1)


def _contiguous(index: np.ndarray) -> bool:
    return len(index) > 1 and bool(np.all(np.diff(index) == 1))


def lmd_metric(fr: HeldoutFrames, notes: list) -> dict:
    res = lm_lib.lmd(fr.rendered, fr.real)
    if res["n_missing"]:
        notes.append(
            f"LMD: no dlib face in {res['n_missing']}/{len(fr.index)} frame pairs "
            "(left out of the mean)"
        )
    return {
        "LMD": res["LMD"] if np.isfinite(res["LMD"]) else None,
        "lmd_per_frame": res["per_frame"],
    }


def efd_metric(fr: HeldoutFrames, notes: list) -> dict:
    from ua3dtalk_jax.eval.expression_coeffs import expression_sets

    try:
        s = expression_sets(fr.rendered, fr.real)
    except ValueError as e:  # fewer than 2 real faces
        notes.append(f"{EFD_OWN}: {e}")
        return {EFD_OWN: None}
    for k in ("rendered", "real"):
        if s[f"missing_{k}"]:
            notes.append(f"{EFD_OWN}: no MediaPipe face in {s[f'missing_{k}']} {k} frames")
    if len(s["rendered"]) < 2:
        notes.append(f"{EFD_OWN}: fewer than 2 rendered frames with a face")
        return {EFD_OWN: None}
    return {
        EFD_OWN: metrics.expression_frechet_distance(s["rendered"], s["real"]),
        "efd_faces": {"rendered": len(s["rendered"]), "real": len(s["real"])},
    }


def _audio_of(subject, index: np.ndarray) -> np.ndarray:
    start = int(round(index[0] / subject.fps * AUDIO_RATE))
    stop = int(round((index[-1] + 1) / subject.fps * AUDIO_RATE))
    return subject.wav()[start:stop]


def sync_standard(fr: HeldoutFrames, subject, weights: str | None, notes: list) -> dict:
    """Sync-C/D of rendered and real frames with the pretrained SyncNet v2 (None without it)."""
    from ua3dtalk_jax.eval import syncnet_lse as sl

    none = {"rendered": None, "real": None}
    if not weights:
        notes.append("Sync-C/D: no --syncnet_weights (syncnet_v2.model) given")
        return none
    boxes = landmark_boxes(fr.landmarks)
    if boxes is None or not _contiguous(fr.index):
        notes.append("Sync-C/D: needs 68-point landmarks and consecutive frames")
        return none
    model, variables = sl.load_syncnet_v2(weights)
    n25 = int(np.floor(len(fr.index) / fr.fps * SYNCNET_FPS))
    pick = np.minimum(
        np.round(np.arange(n25) * fr.fps / SYNCNET_FPS).astype(int), len(fr.index) - 1
    )
    audio = sl.int16_scale(_audio_of(subject, fr.index))
    out = {}
    for k in ("rendered", "real"):
        crops = sl.crop_faces(getattr(fr, k)[pick], boxes[pick])
        try:
            r = sl.syncnet_v2_score(model, variables, crops, audio, AUDIO_RATE)
            out[k] = {"Sync-C": r.lse_c, "Sync-D": r.lse_d, "offset": r.offset}
        except ValueError as e:  # too short for one window
            notes.append(f"Sync-C/D ({k}): {e}")
            out[k] = None
    return out


def sync_own(fr: HeldoutFrames, subject, workdir: str, notes: list) -> dict:
    """LSE-C/D of rendered and real frames scored with the workdir's stage-1 SyncNet."""
    import jax
    import jax.numpy as jnp

    from ua3dtalk_jax.eval.syncnet_lse import lse_score
    from ua3dtalk_jax.head.crops import face_crops
    from ua3dtalk_jax.models.prior.syncnet import SyncNet, stack_lower_halves

    if not np.any(fr.landmarks != 0) or not _contiguous(fr.index):
        notes.append("Sync (own): needs 68-point landmarks and consecutive frames")
        return {"rendered": None, "real": None}
    wd = Workdir(workdir)
    if not wd.has_stage1():
        notes.append(
            "Sync (own): no stage-1 SyncNet in the workdir (stage 2 was trained on the "
            "subject's precomputed features)"
        )
        return {"rendered": None, "real": None}
    s1 = wd.load_stage1()
    net, params = s1.models["syncnet"], s1.params["syncnet"]
    t = int(s1.cfg.data.sync_frames)
    face = jax.jit(
        lambda p, x: net.apply(
            {"params": p}, stack_lower_halves(x / 255.0), method=SyncNet.embed_face
        )
    )
    aud = jax.jit(lambda p, m: net.apply({"params": p}, m, method=SyncNet.embed_audio))
    mel = np.transpose(subject.mel_chunks()[subject.img_ids[fr.index]], (0, 2, 1))  # (N, 80, 16)
    out = {}
    for k in ("rendered", "real"):
        crops = face_crops(getattr(fr, k), fr.landmarks, s1.cfg.data).astype(np.float32)
        try:
            r = lse_score(
                lambda x: face(params, jnp.asarray(x)),
                lambda m: aud(params, jnp.asarray(m[:, 0])),
                crops,
                mel,
                n_frames=len(crops),
                frames_per_window=t,
                feats_per_frame=1,
                feats_per_window=1,
            )
            out[k] = {"Sync-C (own)": r.lse_c, "Sync-D (own)": r.lse_d, "offset": r.offset}
        except ValueError as e:
            notes.append(f"Sync (own, {k}): {e}")
            out[k] = None
    return out


def emotion_metric(fr: HeldoutFrames, subject, notes: list, log=print) -> dict:
    """Emotion accuracy of rendered and real frames: fer's and the subject classifier's."""
    from ua3dtalk_jax.eval import emotion_fer, emotion_subject

    fer = emotion_fer.heldout_accuracy(
        fr.rendered, fr.real, landmark_boxes(fr.landmarks), fr.emotions, notes
    )
    return {"fer": fer, "subject": emotion_subject.heldout_accuracy(fr, subject, notes, log)}


def _value(v):
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else v


def table_rows(fr: HeldoutFrames, m: dict) -> list[dict]:
    """The "rendered" and "ground truth" rows of the results table from the metric results."""
    im = fr.image_metrics
    rows = []
    for k in ("rendered", "real"):
        sync, own = m["sync"][k] or {}, m["sync_own"][k] or {}
        acc = m["emotion"]["fer"].get("all", {}).get(k)
        acc_subject = m["emotion"]["subject"].get("accuracy", {}).get("all", {}).get(k)
        row = {"source": "rendered" if k == "rendered" else "ground truth", "frames": len(fr.index)}
        if k == "rendered":
            row.update(PSNR=im["psnr"], SSIM=im["ssim"], LPIPS=im["lpips"], LMD=m["lmd"]["LMD"])
            row[EFD_OWN] = m["efd"][EFD_OWN]
        else:
            row.update({c: NOT_APPLICABLE for c in ("PSNR", "SSIM", "LPIPS", "LMD", EFD_OWN)})
        row.update({c: _value(sync.get(c)) for c in ("Sync-C", "Sync-D")})
        row.update({c: _value(own.get(c)) for c in ("Sync-C (own)", "Sync-D (own)")})
        row["Emo-acc"], row[EMO_SUBJECT] = _value(acc), _value(acc_subject)
        rows.append(row)
    return rows


def emotion_rows(fr: HeldoutFrames, acc: dict) -> list[dict]:
    """Per-emotion rows of both emotion scores (`emotion_metric`'s result); [] without labels."""
    fer, sub = acc["fer"], acc["subject"].get("accuracy", {})
    names = [n for n in sorted({e for e in fr.emotions if e}) if n in fer or n in sub]
    cols = (
        ("Emo-acc", fer, "rendered"),
        ("Emo-acc (real)", fer, "real"),
        ("agreement", fer, "agreement"),
        (EMO_SUBJECT, sub, "rendered"),
        (EMO_SUBJECT_REAL, sub, "real"),
    )
    count = {n: fr.emotions.count(n) for n in names} | {"all": sum(map(bool, fr.emotions))}
    return [
        {
            "emotion": name,
            "frames": count[name],
            **{c: _value(d.get(name, {}).get(k)) for c, d, k in cols},
        }
        for name in names + (["all"] if names else [])
    ]


def evaluate(
    workdir: str,
    subject_path: str,
    *,
    split: str = "val",
    syncnet_weights: str | None = None,
    max_frames: int | None = None,
    out_dir: str | None = None,
    log=print,
) -> dict:
    """Evaluates a finished workdir on `split` of its subject and writes the tables.

    Args:
      workdir: a training workdir with a finished stage 2.
      subject_path: the subject it was trained on.
      split: "val" (held out) or "train".
      syncnet_weights: path of syncnet_v2.model (torch state dict) or None.
      max_frames: evaluate only the split's first frames (None: all).
      out_dir: where the tables go (default the workdir).
      log: progress printer.

    Returns:
      {"rows": the two table rows, "emotion": per-emotion rows, "notes": reasons for
       "not available", "table": the printed text, "paths": written files, "extra": details,
       "frames": the `HeldoutFrames` (rendered and real uint8 frames)}.

    Raises:
      FileNotFoundError: no workdir, config, stage-1 or stage-2 model, or weights file.
      ValueError: a workdir from another version; a bad split.
    """
    if split not in ("val", "train"):
        raise ValueError(f"--split must be 'val' or 'train', got {split!r}")
    if syncnet_weights and not os.path.isfile(syncnet_weights):
        raise FileNotFoundError(f"--syncnet_weights={syncnet_weights}: no such file")
    wd = Workdir(workdir)
    model = wd.load_trained(subject_path, drivable=False)
    cfg, heads, subject = model.cfg, model.heads, model.subject
    log(f"rendering the {split} split of {subject.path} ...")
    fr = render_split(cfg, heads, subject, wd.stage1_features(subject, cfg), split, max_frames)
    notes: list[str] = []
    log("LMD (dlib), E-FD (own, MediaPipe), SyncNet scores, emotion accuracy (fer, subject) ...")
    m = {
        "lmd": lmd_metric(fr, notes),
        "efd": efd_metric(fr, notes),
        "sync": sync_standard(fr, subject, syncnet_weights, notes),
        "sync_own": sync_own(fr, subject, workdir, notes),
        "emotion": emotion_metric(fr, subject, notes, log),
    }
    rows, erows = table_rows(fr, m), emotion_rows(fr, m["emotion"])
    extra = {
        "workdir": os.path.abspath(workdir),
        "subject": os.path.abspath(subject.path),
        "split": split,
        "max_frames": max_frames,
        "frames": fr.index,
        "heldout": fr.image_metrics,
        "syncnet_weights": syncnet_weights,
        "notes": notes,
        "lmd_per_frame": m["lmd"]["lmd_per_frame"],
        "efd_faces": m["efd"].get("efd_faces"),
        "sync": m["sync"],
        "sync_own": m["sync_own"],
        "emotion_subject": m["emotion"]["subject"],
    }
    paths, text = _write_tables(rows, erows, notes, extra, out_dir or workdir, f"eval_{split}")
    return {
        "rows": rows,
        "emotion": erows,
        "notes": notes,
        "table": text,
        "paths": paths,
        "extra": extra,
        "frames": fr,
    }


def _write_tables(rows, erows, notes, extra, out_dir: str, stem: str) -> tuple[dict, str]:
    """Writes the tables as <stem>.* (and <stem>_emotion.*), the notes appended to the .md.

    Returns:
      (the paths `metrics.write_results` wrote, the printed text: the tables and the notes).
    """
    paths = metrics.write_results(rows, out_dir, stem=stem, columns=COLUMNS, extra=extra)
    if erows:
        metrics.write_results(erows, out_dir, stem=f"{stem}_emotion")
    text = metrics.format_table(rows, COLUMNS)
    if erows:
        text += "\nEmotion accuracy per emotion (fer: 7 FER2013 classes; subject: its own):\n"
        text += metrics.format_table(erows)
    if notes:
        text += "\nNotes:\n" + "".join(f"- {n}\n" for n in notes)
        with open(paths["md"], "a") as f:
            f.write("\nNotes:\n" + "".join(f"- {n}\n" for n in notes))
    return paths, text
