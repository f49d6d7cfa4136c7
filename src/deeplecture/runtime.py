"""Process-level concerns of a training run: seeds, determinism, signals, the hardware.

Keras is imported inside the functions that need it: `request_deterministic_kernels` must run
before a backend starts, so importing this module starts none.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

# XLA (the JAX backend's compiler) reads this flag once, when the backend starts: it makes
# reductions and scatters (MaxPooling's gradient among them) run deterministically on a GPU.
XLA_DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


class TrainingInterrupted(BaseException):
    """The process was asked to stop (SIGTERM); the run is marked KILLED, its checkpoint kept.

    A BaseException, as KeyboardInterrupt is: it is raised from Keras callbacks and other code
    that runs inside libraries, and libraries catch `Exception` to wrap it (MLflow turns any
    error in a database session into an MlflowException), which would disguise a stop as a
    failing store."""


# SIGINT is Ctrl-C: it becomes KeyboardInterrupt, as with Python's own handler.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _StopRequest:
    """Process-wide, as signals are: the first stop signal received while `stop_requests_heard`
    is in force, or None."""

    signum: int | None = None


def _interruption(signum: int) -> BaseException:
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return TrainingInterrupted(f"received signal {signal.Signals(signum).name}")


def _record_stop(signum: int, frame: object) -> None:
    # Only a record: an exception raised here would surface wherever Python happens to be, and
    # where that is a garbage-collector callback, a `__del__` or a `finally` that raises its own
    # error, Python prints or replaces it and the stop is lost (SQLAlchemy runs GC callbacks
    # while MLflow opens a run). The code acts on the record at its safe points instead.
    if _StopRequest.signum is None:
        _StopRequest.signum = signum  # already stopping: the first signal says why


def stop_requested() -> bool:
    """Whether a stop signal has arrived and not been acted on yet."""
    return _StopRequest.signum is not None


def raise_if_stop_requested() -> None:
    """A safe point: raise `TrainingInterrupted` (SIGTERM) or KeyboardInterrupt (Ctrl-C) if a
    stop signal has arrived. Raises again at every later safe point, so a caller that swallows
    the exception cannot make the stop go away."""
    if _StopRequest.signum is not None:
        raise _interruption(_StopRequest.signum)


@contextlib.contextmanager
def stop_requests_heard() -> Iterator[None]:
    """Record SIGTERM and Ctrl-C inside the block instead of ending the process at once; the
    code acts on them at its safe points (`raise_if_stop_requested`: between training steps,
    between the stage's phases, before a run is closed FINISHED), and at the latest as the block
    ends, so a stop is never lost, wherever it lands.

    Without this, `kill` ends Python at once: the MLflow run would stay RUNNING forever. Not
    reentrant: one block for the process, in the main thread (the only one signals reach).
    """
    # A signal this process was started ignoring stays ignored: a shell script's background
    # jobs ignore SIGINT so that Ctrl-C on the script does not stop them too.
    _StopRequest.signum = None
    previous = {
        number: signal.signal(number, _record_stop)
        for number in STOP_SIGNALS
        if signal.getsignal(number) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)  # from here a stop takes its earlier way
        signum, _StopRequest.signum = _StopRequest.signum, None
    # The last safe point: a stop that arrived after the block's last one still ends it (when
    # the block ends on an error of its own, that error says why it ended).
    if signum is not None:
        raise _interruption(signum)


def request_deterministic_kernels() -> None:
    """Set what the backends read when they start: XLA's deterministic-ops flag (JAX) and
    cuBLAS' fixed workspace (PyTorch on a GPU). Call before Keras runs anything."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_gpu_deterministic_ops" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_DETERMINISTIC_FLAG}".strip()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and the backend; with `deterministic`, ask for deterministic kernels.

    Same seed, same data, same machine: the same weights (checked by the tests on CPU). JAX
    takes its flag from the environment (`request_deterministic_kernels`), the others here.
    """
    import keras

    keras.utils.set_random_seed(seed)
    backend = keras.backend.backend()
    if deterministic and backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        # warn_only: an op with no deterministic kernel warns instead of stopping the run.
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = not deterministic


def describe_versions() -> dict[str, str]:
    """The versions that produced a result: Python, Keras and the backend framework Keras runs
    on (each backend's package has the backend's name)."""
    from importlib.metadata import PackageNotFoundError, version

    import keras

    backend = keras.backend.backend()
    versions = {"python": platform.python_version(), "keras": keras.__version__}
    try:
        versions[backend] = version(backend)
    except PackageNotFoundError:
        versions[backend] = "unknown"
    return versions


def nvidia_gpus(proc_root: Path = Path("/proc/driver/nvidia/gpus")) -> list[str]:
    """The NVIDIA GPUs this machine has, whatever the installed frameworks can use: the names
    `nvidia-smi -L` lists (the driver's tool), else one entry per GPU the driver exposes."""
    tool = shutil.which("nvidia-smi")
    if tool:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            listed = subprocess.run(
                [tool, "-L"], capture_output=True, text=True, timeout=10, check=True
            ).stdout
            # "GPU 0: NVIDIA H200 (UUID: GPU-...)" -> "NVIDIA H200"
            names = [
                line.split(":", 1)[1].split("(UUID")[0].strip()
                for line in listed.splitlines()
                if line.startswith("GPU ")
            ]
            if names:
                return names
    if proc_root.is_dir():
        return [f"NVIDIA GPU {path.name}" for path in sorted(proc_root.iterdir())]
    return []


def gpu_unused_warning(device: str) -> str | None:
    """What to say when training falls back to the CPU on a machine that has an NVIDIA GPU:
    the framework was installed without its CUDA build. None when nothing is wrong."""
    if not device.startswith("CPU"):
        return None
    gpus = nvidia_gpus()
    if not gpus:
        return None
    import keras

    backend = keras.backend.backend()
    extra = {"tensorflow": "gpu-tensorflow", "jax": "gpu-jax"}.get(backend)
    fix = (
        f'pip install -e ".[{extra}]"'
        if extra
        else 'pip install -e ".[gpu-tensorflow]" (or ".[gpu-jax]" with KERAS_BACKEND=jax)'
    )
    return (
        f"WARNING: this machine has {len(gpus)} NVIDIA GPU(s) ({', '.join(gpus)}), but {backend} "
        f"trains on the CPU: hours instead of minutes. Install the CUDA build: {fix}, then rerun "
        '(README, "Your own GPU").'
    )


def describe_device() -> str:
    """A short description of what trains the model: the accelerator if any, else the CPU."""
    import keras

    backend = keras.backend.backend()
    with contextlib.suppress(Exception):
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                return device.device_kind
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_name(0)
        elif backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
