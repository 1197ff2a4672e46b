"""The pipeline's bookkeeping: the work folder of resumable steps and the finished-subject check.

Each step leaves one file in the work folder, written atomically (temporary file + rename);
`params.json` holds the digest of the inputs and options, and a work folder of other inputs is
cleared before use. A finished subject records the digest in subject.json's
metadata.preprocess.digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil

import numpy as np

from ua3dtalk_jax.data import layout


def params(clips, fps, size, crop) -> dict:
    """The inputs and options that decide the result, with their sha1 digest: the clips
    (dataclasses), each file's size and mtime, fps, size, crop."""
    files = []
    for c in clips:
        stamp = [
            (os.path.getsize(p), int(os.path.getmtime(p))) if os.path.isfile(p) else None
            for p in (c.video, c.audio)
            if p
        ]
        files.append([*dataclasses.astuple(c), stamp])
    doc = {"clips": files, "fps": float(fps), "size": int(size), "crop": crop and list(crop)}
    doc["digest"] = hashlib.sha1(json.dumps(doc).encode()).hexdigest()
    return doc


def finished(out_dir: str, params: dict, overwrite: bool) -> bool:
    """True when out_dir is a complete subject from these params (nothing to do).

    Raises:
      FileExistsError: out_dir holds something else (another subject: unless overwrite).
    """
    path = os.path.join(out_dir, layout.SUBJECT_JSON)
    if os.path.exists(os.path.join(out_dir, layout.INCOMPLETE)) or not os.path.isfile(path):
        if (
            os.path.isdir(out_dir)
            and os.listdir(out_dir)
            and not os.path.exists(os.path.join(out_dir, layout.INCOMPLETE))
        ):
            raise FileExistsError(f"{out_dir}: exists and is not a subject this tool started")
        return False
    with open(path) as f:
        digest = json.load(f).get("metadata", {}).get("preprocess", {}).get("digest")
    if digest == params["digest"]:
        return True
    if not overwrite:
        raise FileExistsError(f"{out_dir}: a subject built from other inputs (pass overwrite)")
    return False


def matches(work: str, params: dict) -> bool:
    """True when the work folder holds steps of these params."""
    path = os.path.join(work, "params.json")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        return json.load(f).get("digest") == params["digest"]


def cached_json(work: str, name: str, cached: bool):
    """work/name's content when `cached` and the file exists, else None."""
    path = os.path.join(work, name)
    if not cached or not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def open_work(work: str, params: dict) -> None:
    """Creates the work folder for params (stale steps of other inputs are removed)."""
    path = os.path.join(work, "params.json")
    if os.path.isfile(path):
        with open(path) as f:
            if json.load(f).get("digest") == params["digest"]:
                return
        shutil.rmtree(work)  # stale steps from other inputs
    os.makedirs(work, exist_ok=True)
    atomic_json(path, params)


def atomic_json(path: str, doc) -> None:
    """Writes doc as JSON through a temporary file and a rename."""
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(path + ".tmp", path)


def step(work: str, name: str, run):
    """Runs `run` unless work/name exists; json results are returned from disk either way."""
    path = os.path.join(work, name)
    if not os.path.exists(path):
        result = run()
        if name.endswith(".json"):
            atomic_json(path, result)
    if name.endswith(".json"):
        with open(path) as f:
            return json.load(f)
    return None


def save_npz(path: str, **arrays) -> None:
    """np.savez through a temporary file and a rename."""
    np.savez(path + ".tmp.npz", **arrays)
    os.replace(path + ".tmp.npz", path)
