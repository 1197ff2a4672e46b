"""The embedded synthetic subject: an emotional talking head built from one portrait photo.

`generate_subject` speaks a script of sentences (each with one of the 8 MEAD emotions at
intensity 1-3), animates the photo's face mesh from the phoneme timeline and the emotions, renders
every frame and writes the subject layout through `SubjectWriter`: frames, aud.wav, camera poses
(static unless head_motion), parsing masks (face, mouth, teeth, hair, neck, torso), bc.jpg,
au.csv (AU01/04/05/06/07/25/45), emotion.csv, exp_coeffs.npy (N, 16) — the f_gt-exp target, named
in metadata "exp_names" —, ori_imgs/<i>.lms (68 points), landmarks.npy (N, 478, 2: MediaPipe
topology, continuous pixels), and the phoneme timeline (phoneme_times.npy (P, 2) seconds,
phoneme_ids.npy (P,) into metadata "phoneme_inventory"), and the face geometry: mesh_vertices.npy
(478, 3) rest-pose world points and mesh_basis.npy (16, 478, 3), so that frame i's landmarks are
K · viewmat_i · (mesh_vertices + exp_i · mesh_basis), projected. Train and test parts use different
sentences; the test part starts at `val_start`.

Everything is a function of the seed (and the photo), so the same call writes identical frames.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import shutil
import tempfile

import numpy as np

from ua3dtalk_jax.data import layout
from ua3dtalk_jax.data.synthetic import animation, face_model, mediapipe_face, render, speech
from ua3dtalk_jax.data.synthetic.blendshapes import EXP_NAMES
from ua3dtalk_jax.data.writer import SubjectWriter
from ua3dtalk_jax.types import EMOTIONS

# Bumped whenever the generator's output changes; `ensure_synthetic` refuses an older subject
# instead of silently training on it, and says what changed since (VERSION_CHANGES).
GENERATOR_VERSION = 4
VERSION_CHANGES = {
    2: "torso_imgs carry the soft person matte",
    3: "torso_imgs continue the neck under the chin, so no background seam shows under the jaw",
    4: "the neck continuation also covers the jaw line's lateral ends",
}
PRESETS = {
    "default": {"size": 256, "fps": 25, "seconds_train": 60.0, "seconds_test": 10.0},
    "tiny": {"size": 64, "fps": 25, "seconds_train": 2.0, "seconds_test": 1.0},  # 1 sentence each
}
LEAD_S = 0.25  # silence before each sentence
CHUNK = 25  # frames per worker task
AU_SCALE = 3.0  # OpenFace-like 0..5 intensities from 0..1 coefficients
AU45_SCALE = (
    2.0  # a full blink reads AU45 = 2, i.e. TalkingGaussian's blink = clip(AU45, 0, 2)/2 = 1
)


def build_script(seed: int, seconds_train: float, seconds_test: float, fps: float):
    """Speaks sentences until each part is long enough.

    Returns:
      wav (S,) float32 16 kHz, list of animation.Clip (absolute times), number of frames N, and
      val_start (first test frame; the train part is padded to a whole frame).
    """
    rng = np.random.default_rng([seed, 11])
    engine = speech.Engine()
    wav, clips, t = [], [], 0.0
    val_start = 0
    for part, sentences, seconds in (
        ("train", speech.TRAIN_SENTENCES, seconds_train),
        ("test", speech.TEST_SENTENCES, seconds_test),
    ):
        order = rng.permutation(len(sentences))
        emotions = np.concatenate([rng.permutation(len(EMOTIONS)) for _ in range(8)])
        part_start, k = t, 0
        while t - part_start < seconds or k == 0:
            emotion = EMOTIONS[emotions[k % len(emotions)]]
            level = 1 if emotion == "neutral" else int(rng.integers(1, 4))
            text = sentences[order[k % len(order)]]
            utt = speech.synthesize(text, emotion, level, engine)
            lead = np.zeros(int(LEAD_S * speech.SAMPLE_RATE), np.float32)
            start = t + LEAD_S
            phonemes = [(start + a, start + b, p) for a, b, p in utt.phonemes]
            end = start + len(utt.wav) / speech.SAMPLE_RATE
            clips.append(animation.Clip(t, end, emotion, level, text, phonemes, utt.energies, part))
            wav += [lead, utt.wav]
            t = clips[-1].end_s
            k += 1
        frames = int(np.ceil(t * fps - 1e-9))
        pad = round(frames / fps * speech.SAMPLE_RATE) - sum(len(w) for w in wav)
        wav.append(np.zeros(max(pad, 0), np.float32))
        t = frames / fps
        if part == "train":
            val_start = frames
    audio = np.concatenate(wav)
    return audio, clips, round(t * fps), val_start


def _render_chunk(args):
    model, exps, viewmats = args
    return [render.render_frame(model, e, v) for e, v in zip(exps, viewmats)]


def _aus(exp: np.ndarray) -> dict:
    ix = {n: i for i, n in enumerate(EXP_NAMES)}
    val = lambda name: float(np.clip(AU_SCALE * exp[ix[name]], 0, 5))
    return {
        "AU01_r": val("brow_inner_raise"),
        "AU02_r": val("brow_outer_raise"),
        "AU04_r": val("brow_lower"),
        "AU05_r": val("eye_wide"),
        "AU06_r": val("cheek_raise"),
        "AU07_r": val("eye_squint"),
        "AU09_r": val("nose_wrinkle"),
        "AU10_r": val("upper_lip_raise"),
        "AU12_r": float(
            np.clip(AU_SCALE * 0.5 * (exp[ix["smile_left"]] + exp[ix["smile_right"]]), 0, 5)
        ),
        "AU15_r": val("lip_corner_down"),
        "AU25_r": val("jaw_open"),
        "AU26_r": val("jaw_open"),
        "AU45_r": float(np.clip(AU45_SCALE * exp[ix["blink"]], 0, 5)),
    }


def generate_subject(
    out_dir: str,
    *,
    seed: int = 0,
    size: int = 256,
    fps: float = 25,
    seconds_train: float = 60.0,
    seconds_test: float = 10.0,
    photo=None,
    head_motion: bool = False,
    workers: int = 2,
    overwrite: bool = False,
) -> str:
    """Writes one synthetic subject directory.

    Args:
      out_dir: target directory (must be empty or absent unless overwrite).
      seed: makes everything (script, emotions, blinks, idle and head motion) reproducible.
      size: frame side S (frames are S×S; the face spans about S/2).
      fps: frame rate.
      seconds_train, seconds_test: minimum lengths of the two parts (whole sentences are spoken).
      photo: None (skimage astronaut), a path, or an (H, W, 3) uint8 array.
      head_motion: small smooth head rotations/translations, written as per-frame viewmats.
      workers: rendering processes (1 renders in this process). The pool uses the "spawn" start
        method (safe after jax started threads), so a script calling this with workers > 1 needs
        the usual `if __name__ == "__main__":` guard.
      overwrite: replace a non-empty out_dir.

    Returns:
      The directory path.
    """
    model = face_model.build_face_model(photo, size=size, seed=seed)
    wav, clips, n, val_start = build_script(seed, seconds_train, seconds_test, fps)
    rng = np.random.default_rng([seed, 23])
    exp = animation.expression_sequence(clips, n, fps, rng)
    viewmats = animation.head_viewmats(n, fps, model.t0, rng, head_motion)
    starts = np.array([c.start_s for c in clips])
    which = np.clip(
        np.searchsorted(starts, np.arange(n) / fps, side="right") - 1, 0, len(clips) - 1
    )

    writer = SubjectWriter(
        out_dir,
        fps=fps,
        height=size,
        width=size,
        focal=model.focal,
        source="synthetic",
        overwrite=overwrite,
    )
    writer.set_background(model.background)
    writer.set_audio(wav, speech.SAMPLE_RATE)
    tasks = [(model, exp[a : a + CHUNK], viewmats[a : a + CHUNK]) for a in range(0, n, CHUNK)]
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")  # safe after jax/mediapipe started threads
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            _write_frames(writer, pool.map(_render_chunk, tasks), exp, viewmats, clips, which)
    else:
        _write_frames(writer, map(_render_chunk, tasks), exp, viewmats, clips, which)

    _add_script_and_mesh(writer, model, clips, seed, head_motion)
    return writer.finish(val_start=val_start)


def _add_script_and_mesh(writer, model, clips, seed: int, head_motion: bool) -> None:
    """The generator's own files and metadata: phoneme timeline, neutral mesh and its basis (the
    478 landmarks' rows), the spoken script with its emotions and prosody."""
    inventory = sorted({p for c in clips for _, _, p in c.phonemes})
    times = np.array([(a, b) for c in clips for a, b, _ in c.phonemes], np.float32).reshape(-1, 2)
    ids = np.array([inventory.index(p) for c in clips for _, _, p in c.phonemes], np.int32)
    writer.add_array("phoneme_times", times)
    writer.add_array("phoneme_ids", ids)
    writer.add_array("mesh_vertices", model.verts[: mediapipe_face.N_FACE].astype(np.float32))
    writer.add_array("mesh_basis", model.basis[:, : mediapipe_face.N_FACE].astype(np.float32))
    writer.add_metadata(
        generator="ua3dtalk_jax.data.synthetic",
        generator_version=GENERATOR_VERSION,
        seed=int(seed),
        photo=model.source,
        head_motion=bool(head_motion),
        exp_names=list(EXP_NAMES),
        phoneme_inventory=inventory,
        landmark_topology="mediapipe_facemesh_478",
        clips=[
            {
                "text": c.text,
                "emotion": c.emotion,
                "intensity": c.intensity,
                "split": c.split,
                "start_s": round(c.start_s, 4),
                "end_s": round(c.end_s, 4),
                "prosody": speech.prosody(c.emotion, c.intensity),
            }
            for c in clips
        ],
    )


def _write_frames(writer, chunks, exp, viewmats, clips, which):
    i = 0
    for chunk in chunks:
        for out in chunk:
            clip = clips[which[i]]
            writer.add_frame(
                out["image"],
                viewmat=viewmats[i],
                masks=out["masks"],
                torso_rgba=out["torso_rgba"],
                landmarks68=out["landmarks68"],
                landmarks=out["landmarks"],
                aus=_aus(exp[i]),
                emotion=clip.emotion,
                intensity=clip.intensity,
                exp=exp[i],
            )
            i += 1


def generate_preset(out_dir: str, preset: str = "default", **overrides) -> str:
    """generate_subject with a named preset ("default": 256², 60 s + 10 s; "tiny": 64², ~6 s in all)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; known {sorted(PRESETS)}")
    return generate_subject(out_dir, **{**PRESETS[preset], **overrides})


def _stale_message(path: str, version) -> str:
    newer = [
        f"{v}: {VERSION_CHANGES[v]}"
        for v in sorted(VERSION_CHANGES)
        if isinstance(version, int) and version < v <= GENERATOR_VERSION
    ]
    what = f" ({'; '.join(newer)})" if newer else ""
    return (
        f"{path}: built by synthetic generator version {version}, this is version "
        f"{GENERATOR_VERSION}{what}; remove it (rm -r {path}) and run again to rebuild it "
        "(a workdir trained on the old one resumes from its checkpoints: use a new --workdir "
        "to train on the new one)"
    )


def ensure_synthetic(
    data_root: str, name: str = "synthetic", preset: str = "default", **overrides
) -> str:
    """Returns data_root/name, generating it first if absent (into a temp dir, renamed when done).

    Raises:
      FileExistsError: data_root/name exists but is not a finished subject (not touched).
    """
    path = os.path.join(os.fspath(data_root), name)
    meta = os.path.join(path, layout.SUBJECT_JSON)
    if os.path.isfile(meta) and not os.path.exists(os.path.join(path, layout.INCOMPLETE)):
        with open(meta) as f:
            version = json.load(f).get("metadata", {}).get("generator_version", 1)
        if version != GENERATOR_VERSION:
            raise FileExistsError(_stale_message(path, version))
        return path
    if os.path.exists(path):
        raise FileExistsError(
            f"{path}: exists but is not a finished subject; remove it to regenerate"
        )
    os.makedirs(data_root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=data_root)
    try:
        generate_preset(tmp, preset, **overrides)
        os.rename(tmp, path)
    except OSError:
        if not os.path.isfile(os.path.join(path, layout.SUBJECT_JSON)):
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
