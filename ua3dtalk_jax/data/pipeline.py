"""Batching pipeline: seeded resumable frame order, prefetching from disk, device sharding.

`FrameLoader` yields dicts of numpy arrays with a leading batch axis B and the dtypes of
`Subject.frame` (uint8 images and background, bool masks, float32 features and cameras, int32
labels and indices), plus "valid" (B,) bool. Frames are read from disk by a background thread
(with a small pool of reader threads: cv2 and np.load release the GIL), `prefetch` batches ahead.

Order: epoch e visits the split in the permutation drawn from `np.random.default_rng([seed, e])`
(or in file order without shuffling). A training loader (`repeat=True`) runs forever and a batch
may straddle two epochs; an evaluation loader (`repeat=False`) makes one ordered pass and pads the
last batch by repeating its last frame with valid=False, so every batch has the same shape.
The state after a batch is {"epoch", "position"} (JSON-serialisable, for checkpoints); a loader
built with that state continues with exactly the batch that would have come next.

Multi-host: with process_count > 1 every host draws the same global order and reads only its
slice (batch_size frames) of each global batch of batch_size · process_count frames.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np

from ua3dtalk_jax.data.subject import Subject


def epoch_order(indices: np.ndarray, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The frame order of one epoch: (len(indices),) a permutation of `indices` (or them as-is)."""
    if not shuffle:
        return np.asarray(indices)
    return np.random.default_rng([seed, epoch]).permutation(np.asarray(indices))


def plan_batch(indices, batch_size, state, *, seed, shuffle, repeat):
    """Chooses the next global batch.

    Args:
      indices: (M,) frame indices of the split.
      batch_size: global batch size.
      state: (epoch, position) before the batch.
      seed, shuffle, repeat: as FrameLoader.

    Returns:
      (frames (batch_size,) int64, valid (batch_size,) bool, state after) or None when a
      non-repeating pass is over.
    """
    epoch, pos = state
    m = len(indices)
    if m == 0:
        raise ValueError("the split has no frames")
    if not repeat and pos >= m:
        return None
    frames = []
    while len(frames) < batch_size:
        order = epoch_order(indices, seed, epoch, shuffle)
        take = order[pos : pos + batch_size - len(frames)]
        frames.extend(take.tolist())
        pos += len(take)
        if pos >= m:
            if not repeat:
                break
            epoch, pos = epoch + 1, 0
    valid = np.zeros(batch_size, bool)
    valid[: len(frames)] = True
    frames += [frames[-1]] * (batch_size - len(frames))
    return np.asarray(frames, np.int64), valid, (epoch, pos)


class FrameLoader:
    """Iterator over fixed-shape batches of one split of a Subject.

    Args:
      subject: an open Subject.
      split: "train" or "val".
      batch_size: frames per batch on this host.
      seed: order seed.
      shuffle: permute each epoch (default: True for train, False for val).
      repeat: endless epochs (default: True for train, False for val).
      keys: frame keys to load (None: all of `Subject.frame`); fewer keys read fewer files.
      prefetch: batches prepared ahead by the background thread.
      num_workers: reader threads.
      state: {"epoch", "position"} to resume from (default: the start).
      process_index, process_count: this host's slice of each global batch.
    """

    def __init__(
        self,
        subject: Subject,
        split: str = "train",
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool | None = None,
        repeat: bool | None = None,
        keys=None,
        prefetch: int = 2,
        num_workers: int = 2,
        state: dict | None = None,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if batch_size < 1 or not 0 <= process_index < process_count:
            raise ValueError("need batch_size ≥ 1 and 0 ≤ process_index < process_count")
        self.subject, self.split_name = subject, split
        self.indices = subject.split(split)
        self.batch_size, self.seed, self.keys = batch_size, seed, keys
        self.shuffle = split == "train" if shuffle is None else shuffle
        self.repeat = split == "train" if repeat is None else repeat
        self._slice = slice(process_index * batch_size, (process_index + 1) * batch_size)
        self._global = batch_size * process_count
        st = state or {"epoch": 0, "position": 0}
        self._state = (int(st["epoch"]), int(st["position"]))
        self._queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._done = False
        self._pool = ThreadPoolExecutor(max(1, num_workers))
        self._thread = threading.Thread(target=self._produce, daemon=True)
        self._thread.start()

    @property
    def state(self) -> dict:
        """{"epoch", "position"} after the last batch returned by `next`."""
        return {"epoch": self._state[0], "position": self._state[1]}

    def __len__(self) -> int:
        """Batches in one pass over the split (the last one possibly padded)."""
        return (len(self.indices) + self._global - 1) // self._global

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, Exception):
            self.close()
            raise item
        if item is None:
            self._done = True
            raise StopIteration
        batch, self._state = item
        return batch

    def close(self) -> None:
        """Stops the background thread and the readers."""
        self._done = True
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _produce(self):
        state = self._state
        try:
            while not self._stop.is_set():
                plan = plan_batch(
                    self.indices,
                    self._global,
                    state,
                    seed=self.seed,
                    shuffle=self.shuffle,
                    repeat=self.repeat,
                )
                if plan is None:
                    self._put(None)
                    return
                frames, valid, state = plan
                frames, valid = frames[self._slice], valid[self._slice]
                loaded = list(self._pool.map(self._load, frames.tolist()))
                batch = {k: np.stack([f[k] for f in loaded]) for k in loaded[0]}
                batch["valid"] = valid
                self._put((batch, state))
        except Exception as e:  # noqa: BLE001 (any failure must reach the consumer)
            self._put(e)

    def _load(self, i: int) -> dict:
        return self.subject.frame(i, self.keys)

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                pass


def data_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D mesh named "data" over `devices` (default: all devices of all processes)."""
    return jax.sharding.Mesh(np.asarray(devices or jax.devices()), ("data",))


def shard_batch(batch: dict, mesh: jax.sharding.Mesh | None = None) -> dict:
    """Puts a host batch on the devices, its leading axis split over the mesh's "data" axis.

    Each process passes its own local batch; the result is one global jax.Array per key (for
    jit / shard_map). The local batch size must be a multiple of the local device count.

    Args:
      batch: dict of (B, ...) numpy arrays.
      mesh: default `data_mesh()`.

    Returns:
      dict of jax.Array with global shape (B · process_count, ...).
    """
    mesh = mesh or data_mesh()
    n_local = len([d for d in mesh.devices.flat if d.process_index == jax.process_index()])
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    out = {}
    for k, v in batch.items():
        if v.shape[0] % n_local:
            raise ValueError(
                f"batch key {k!r}: size {v.shape[0]} not divisible by {n_local} devices"
            )
        out[k] = jax.make_array_from_process_local_data(sharding, v)
    return out


def split_for_pmap(batch: dict, n_devices: int | None = None) -> dict:
    """Reshapes (B, ...) arrays to (D, B / D, ...) for pmap over the local devices."""
    d = n_devices or jax.local_device_count()
    out = {}
    for k, v in batch.items():
        if v.shape[0] % d:
            raise ValueError(f"batch key {k!r}: size {v.shape[0]} not divisible by {d} devices")
        out[k] = v.reshape(d, v.shape[0] // d, *v.shape[1:])
    return out
