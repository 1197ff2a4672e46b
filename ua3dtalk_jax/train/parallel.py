"""Data parallelism over a device mesh (one axis, "data") with `jax.shard_map`.

Each device renders a different slice of the global batch of frames; the step
function sees its local slice, and the wrapper's contract is that it reduces
gradients, metrics and densification statistics with `lax.pmean` / `lax.psum`
over `AXIS` before returning them (so every output is replicated). shard_map
(rather than automatic SPMD partitioning) is used because the rasterizer is an
FFI custom call, which the partitioner cannot split.

Multi-host: call `initialize_distributed(...)` first (it wraps
`jax.distributed.initialize`); `global_mesh()` then spans every process's
devices, and each process feeds its own frames (`process_slice`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"


def initialize_distributed(
    coordinator_address: str | None, num_processes: int, process_id: int
) -> None:
    """Joins a multi-host run; a no-op for a single process (num_processes <= 1)."""
    if num_processes <= 1:
        return
    if not coordinator_address:
        raise ValueError("multi-host training needs --coordinator_address=host:port")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id {process_id} outside [0, {num_processes})")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )


def global_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), (AXIS,))


def process_slice(global_batch: int) -> slice:
    """The rows of a global batch that this process loads and feeds."""
    per = global_batch // jax.process_count()
    return slice(jax.process_index() * per, (jax.process_index() + 1) * per)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(AXIS))


def put_batch(batch, mesh: Mesh):
    """Places a host batch (leading axis = global batch) sharded over the mesh."""
    sharding = batch_sharded(mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
    )


def data_parallel(fn: Callable, mesh: Mesh, *, batch_argnums: Sequence[int]) -> Callable:
    """shard_map `fn` so arguments in `batch_argnums` are split along their leading axis.

    Other arguments are replicated; all outputs must be replicated (reduce them
    inside `fn` with `jax.lax.pmean(x, AXIS)` or `psum`).
    """
    batch_argnums = tuple(batch_argnums)

    @functools.wraps(fn)  # keeps fn's name in compile logs and trace events
    def wrapped(*args):
        specs = tuple(
            PartitionSpec(AXIS) if i in batch_argnums else PartitionSpec() for i in range(len(args))
        )
        mapped = jax.shard_map(
            fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec(), check_vma=False
        )
        return mapped(*args)

    return wrapped
