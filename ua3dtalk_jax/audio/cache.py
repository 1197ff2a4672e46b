"""On-disk cache of derived audio features in a subject directory.

A cached feature is two files: `<name>.npy` (the array) and `<name>.json` (the parameters it was
computed with and a fingerprint of the source file: size and modification time). A cache whose
parameters or source fingerprint differ is recomputed; writes go through a temporary file and
`os.replace`, so a crash never leaves a half-written `.npy` behind. A read-only directory is not an
error: the feature is computed and returned uncached, with a warning.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable

import numpy as np


def _fingerprint(source: str | None) -> dict:
    if source is None:
        return {}
    st = os.stat(source)
    return {"source": os.path.basename(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def save_cached(directory: str, name: str, array: np.ndarray, params: dict, source: str | None):
    """Writes `<name>.npy` and `<name>.json` atomically (array first, then its description)."""
    npy = os.path.join(directory, f"{name}.npy")
    meta = os.path.join(directory, f"{name}.json")
    tmp = npy + ".tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, npy)
    desc = {"params": params, **_fingerprint(source), "shape": list(array.shape)}
    with open(meta + ".tmp", "w") as f:
        json.dump(desc, f, indent=1)
    os.replace(meta + ".tmp", meta)


def cached_array(
    directory: str,
    name: str,
    params: dict,
    compute: Callable[[], np.ndarray],
    *,
    source: str | None = None,
) -> np.ndarray:
    """Returns the cached array `<directory>/<name>.npy`, computing and saving it when stale.

    Args:
      directory: the subject directory.
      name: file stem, e.g. "aud_mel".
      params: JSON-serialisable parameters the array depends on (fps, frame count, bands...).
      compute: () -> array, called on a miss.
      source: path of the file the array derives from (e.g. aud.wav), fingerprinted.

    Returns:
      The array (loaded or freshly computed).
    """
    npy = os.path.join(directory, f"{name}.npy")
    meta = os.path.join(directory, f"{name}.json")
    want = {"params": json.loads(json.dumps(params)), **_fingerprint(source)}
    if os.path.exists(npy) and os.path.exists(meta):
        try:
            with open(meta) as f:
                have = json.load(f)
            if all(have.get(k) == v for k, v in want.items()):
                return np.load(npy)
        except (OSError, ValueError):
            pass  # unreadable cache: recompute below
    array = compute()
    try:
        save_cached(directory, name, array, params, source)
    except OSError as e:
        warnings.warn(f"{npy}: cannot write feature cache ({e}); using it uncached", stacklevel=2)
    return array
