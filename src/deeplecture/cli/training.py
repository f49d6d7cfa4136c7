"""What the two training stages (`train`, `together`) share: the backend's settings made before
it starts, and how a stop or a refusal of training ends them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from deeplecture.cli import Refused, Stopped
from deeplecture.params import Params


def prepare_backend(params: Params) -> None:
    """Before Keras' backend starts: XLA reads its flags once, and on JAX a rerun of the same
    shapes loads its compiled programs from the cache instead of compiling them again."""
    from deeplecture import compilation_cache
    from deeplecture.project import project_root
    from deeplecture.runtime import request_deterministic_kernels

    if params.engine.deterministic:
        request_deterministic_kernels()
    compilation_cache.enable(project_root())


@contextmanager
def stops_at_a_safe_point(resume_from: str) -> Iterator[None]:
    """Train inside: a stop asked for from here on (SIGTERM: 143, Ctrl-C: 130) ends the stage
    at a safe point, saying to rerun to resume from `resume_from`; training's own refusals (the
    MLflow store failed, another run holds the checkpoint, the loss diverged) are one line."""
    from deeplecture.checkpoints import CheckpointBusy
    from deeplecture.runtime import TrainingInterrupted, stop_requests_heard
    from deeplecture.tracking import TrackingUnavailable
    from deeplecture.training import TrainingDiverged

    resume = f"rerun to resume from {resume_from}"
    try:
        with stop_requests_heard():
            yield
    except TrainingInterrupted as error:
        raise Stopped(f"{error}; {resume}", 143) from None
    except KeyboardInterrupt:
        raise Stopped(f"Ctrl-C; {resume}", 130) from None
    except (TrackingUnavailable, CheckpointBusy, TrainingDiverged) as error:
        raise Refused(error) from None
