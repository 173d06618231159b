"""Device mesh helpers: a ("data", "model") mesh over all devices, the shardings batches and params use, and
multi-process start-up.

Data parallelism shards the batch's leading axis over "data"; "model" (size 1 by default) leaves room for sharding
parameters later without changing call sites.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from trajsv_jax.errors import UserError

AXES = ("data", "model")


def make_mesh(data: int | None = None, model: int = 1) -> Mesh:
    """A (data, model) mesh over the first data * model devices; data defaults to all devices // model."""
    devices = jax.devices()
    data = len(devices) // model if data is None else data
    if data < 1 or model < 1 or data * model > len(devices):
        raise ValueError(f"mesh data={data} x model={model} does not fit {len(devices)} devices")
    return Mesh(np.asarray(devices[: data * model]).reshape(data, model), AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over "data", everything else replicated."""
    return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    """The same full array on every device (params, scalars)."""
    return NamedSharding(mesh, P())


def initialize_distributed(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Join a multi-process run (`jax.distributed.initialize`) before any other JAX call.

    With no arguments JAX detects the cluster itself (Cloud TPU, SLURM, Open MPI). Processes on CPU talk over gloo,
    which is how multi-host runs are tested on one machine. Call once per process, before creating arrays.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # only the CPU backend reads it
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except (RuntimeError, ValueError) as e:
        raise UserError(
            f"jax.distributed.initialize(coordinator={coordinator!r}, num_processes={num_processes}, "
            f"process_id={process_id}) failed: {str(e).splitlines()[0]}. Give --coordinator HOST:PORT, "
            "--num-processes and --process-id, or run where JAX detects the cluster (Cloud TPU, SLURM)."
        ) from None
