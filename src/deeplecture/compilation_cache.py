"""JAX's persistent compilation cache, kept beside the project: a rerun of the same shapes
(another seed, a resumed run, the evaluate stage after training, `dvc exp run` of the same
variant) loads each compiled program from disk instead of compiling it again.

Only under the JAX backend: the folder is set before Keras starts, and a TensorFlow or PyTorch
run does not even import JAX. The folder, `.jax_cache/` at the repository root (ignored by git),
holds one file per compiled program; JAX keys each by the program, the compiler's options and
flags, the versions and the device, so a changed model, shape, flag or jaxlib makes new entries,
never a wrong hit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CACHE_DIR = ".jax_cache"
# JAX's own variable wins: a user who points the cache elsewhere keeps it there.
JAX_VARIABLE = "JAX_COMPILATION_CACHE_DIR"
# JAX keeps only programs that took at least 1 s to compile by default: on a CPU that keeps the
# training step but leaves out the eleven programs that building or loading cnn74 compiles
# (its weights' random initialisers, 0.005-0.8 s each, 3 s in all, against 0.4 s for the whole
# load once they are cached). Everything is kept: the smallest cost about as much to compile
# as to read, and a rerun of a variant reads the same few dozen entries.
MIN_COMPILE_SECONDS = 0.0
# Kept under this size, the least recently used entries evicted first. A cap also makes JAX
# hold a file lock around each read and write, so that parallel stages (dvc queue -j 2) never
# read an entry half written. Two CPU runs of cnn74 (train and evaluate) write about 0.6 MB.
MAX_BYTES = 2 * 1024**3


def keras_backend() -> str:
    """The backend Keras will start, found as Keras finds it (KERAS_BACKEND, else the
    `backend` of keras.json in KERAS_HOME or ~/.keras), without importing Keras."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        return json.loads((home / "keras.json").read_text()).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def enable(root: Path) -> Path | None:
    """Point JAX's persistent compilation cache at `<root>/.jax_cache` (JAX_COMPILATION_CACHE_DIR
    where set) when Keras will run on JAX; return the folder, or None on another backend.

    Call it before the first compilation (before Keras starts): JAX opens the cache once."""
    if keras_backend() != "jax":
        return None
    import jax

    folder = Path(os.environ.get(JAX_VARIABLE) or Path(root) / CACHE_DIR)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return folder
