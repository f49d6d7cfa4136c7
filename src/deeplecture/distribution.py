"""`engine.distribution`: one device, or Keras 3's DataParallel over every device there is.

`data_parallel` runs on JAX only (Keras' distribution API is JAX's): the weights are replicated
on every device, each batch is split along its first axis, and XLA all-reduces the gradients, so
the lecture's batch of 32 stays the global batch and one step computes what it computes on one
device, within float rounding.

Several processes (machines, or processes of one machine) join one run through
`jax.distributed`, configured by the environment, the same on every process but the id:

    DEEPLECTURE_COORDINATOR=10.0.0.1:4321   # host:port of process 0, reachable by every process
    DEEPLECTURE_NUM_PROCESSES=2
    DEEPLECTURE_PROCESS_ID=0                # 0 .. NUM_PROCESSES-1
    DEEPLECTURE_COORDINATOR_BIND=0.0.0.0:4321   # optional: where process 0 listens (default:
                                                # the coordinator address itself)

Every process reads the same processed data and draws the same batch indices from the seed;
each one's devices compute their shard of every batch. Process 0 is the chief: its MLflow run is
the run; the others log to a throwaway store of their own (their numbers are the chief's).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import keras

from deeplecture.params import EngineParams

COORDINATOR = "DEEPLECTURE_COORDINATOR"
NUM_PROCESSES = "DEEPLECTURE_NUM_PROCESSES"
PROCESS_ID = "DEEPLECTURE_PROCESS_ID"
COORDINATOR_BIND = "DEEPLECTURE_COORDINATOR_BIND"
BATCH_AXIS = "batch"


class DistributionError(ValueError):
    """`engine.distribution` cannot be used as configured; the message says why and what to do."""


@dataclass(frozen=True)
class Layout:
    """What one training run spans."""

    devices: int  # in all processes
    processes: int
    process_id: int

    @property
    def is_chief(self) -> bool:
        return self.process_id == 0

    def describe(self) -> str:
        if self.processes == 1:
            return f"{self.devices} device{'s' if self.devices > 1 else ''}"
        return f"{self.devices} devices in {self.processes} processes (this one: {self.process_id})"


SINGLE = Layout(devices=1, processes=1, process_id=0)


@dataclass(frozen=True)
class _Cluster:
    coordinator: str
    processes: int
    process_id: int
    bind: str | None


def check(engine: EngineParams) -> None:
    """Refuse, before any work, what cannot run: data_parallel off JAX, or a half-set cluster."""
    backend = keras.backend.backend()
    if engine.distribution == "data_parallel" and backend != "jax":
        raise DistributionError(
            f"engine.distribution: data_parallel needs KERAS_BACKEND=jax (Keras' distribution "
            f"API is JAX-only); this run uses {backend}: set KERAS_BACKEND=jax, or "
            "engine.distribution: none"
        )
    cluster = _cluster_from_environment()
    if cluster and engine.distribution != "data_parallel":
        raise DistributionError(
            f"{NUM_PROCESSES}={cluster.processes} is set but engine.distribution is "
            f"{engine.distribution}: a multi-process run needs engine.distribution: data_parallel"
        )
    if cluster and cluster.processes > 1 and engine.loop != "fast":
        raise DistributionError(
            "a multi-process run needs engine.loop: fast (Model.fit would feed each process "
            "the whole batch, doubling it)"
        )


def start(engine: EngineParams) -> Layout:
    """Join the cluster (if the environment names one) and set Keras' distribution; the layout.

    Call before the model is built: its variables are created on the distribution's devices."""
    check(engine)
    if engine.distribution == "none":
        return SINGLE
    import jax

    cluster = _cluster_from_environment()
    if cluster and not jax.distributed.is_initialized():
        jax.distributed.initialize(
            coordinator_address=cluster.coordinator,
            num_processes=cluster.processes,
            process_id=cluster.process_id,
            coordinator_bind_address=cluster.bind,
        )
    devices = keras.distribution.list_devices()
    mesh = keras.distribution.DeviceMesh((len(devices),), [BATCH_AXIS], devices)
    # Not auto-sharded: every process feeds its own part (Keras would want a tf.data pipeline).
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(device_mesh=mesh, auto_shard_dataset=False)
    )
    return Layout(len(devices), jax.process_count(), jax.process_index())


def stop() -> None:
    """Back to one device (tests and the benchmark train several ways in one process)."""
    keras.distribution.set_distribution(None)


def check_batches(layout: Layout, count: int, batch_size: int, split: str = "training") -> None:
    """Every batch of `split`, a pass's short last one included, must split evenly across the
    devices."""
    if layout.devices == 1:
        return
    sizes = {batch_size} | ({count % batch_size} - {0})
    uneven = sorted(size for size in sizes if size % layout.devices)
    if uneven:
        raise DistributionError(
            f"batches of {', '.join(map(str, uneven))} images ({count} {split} images, "
            f"batch_size {batch_size}) do not split across {layout.devices} devices: use a "
            f"batch size and an image count whose batches are multiples of {layout.devices}"
        )


def shardings() -> tuple[Any, Any] | None:
    """(replicated, split on the batch axis) JAX shardings of the current distribution; None
    without one. The fast loop places its resident data and constrains its batches with them."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return None
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = distribution.device_mesh.backend_mesh
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def _cluster_from_environment() -> _Cluster | None:
    names = (COORDINATOR, NUM_PROCESSES, PROCESS_ID)
    given = {name: os.environ.get(name, "") for name in names}
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise DistributionError(
            f"a multi-process run needs {', '.join(names)}; missing {', '.join(missing)}"
        )
    try:
        processes, process_id = int(given[NUM_PROCESSES]), int(given[PROCESS_ID])
    except ValueError:
        raise DistributionError(
            f"{NUM_PROCESSES} and {PROCESS_ID} must be integers (got "
            f"{given[NUM_PROCESSES]!r}, {given[PROCESS_ID]!r})"
        ) from None
    if processes < 1 or not 0 <= process_id < processes:
        raise DistributionError(
            f"{PROCESS_ID}={process_id} must be in 0..{processes - 1} ({NUM_PROCESSES}={processes})"
        )
    if ":" not in given[COORDINATOR]:
        raise DistributionError(f"{COORDINATOR}={given[COORDINATOR]!r}: expected host:port")
    return _Cluster(
        given[COORDINATOR], processes, process_id, os.environ.get(COORDINATOR_BIND) or None
    )
