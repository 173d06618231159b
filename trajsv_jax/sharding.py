"""Device mesh helpers: a ("data", "model") mesh over all devices, and the shardings batches and params use.

Data parallelism shards the batch's leading axis over "data"; "model" (size 1 by default) leaves room for sharding
parameters later without changing call sites.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

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
