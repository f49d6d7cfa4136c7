"""JAX's persistent compilation cache beside the project: a second process compiling the same
program reads it from `.jax_cache/`, and a run on another backend never imports JAX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# In a fresh process, as a stage runs: enable the cache, compile one small program (a dense
# layer's forward pass), and report the cache's hits and misses as JAX counts them.
CHILD = """
import json, sys
from pathlib import Path
from deeplecture import compilation_cache

folder = compilation_cache.enable(Path(sys.argv[1]))
if folder is None:
    print(json.dumps({"folder": None, "jax_imported": "jax" in sys.modules}))
    raise SystemExit
import jax, jax.numpy as jnp

events = []
jax.monitoring.register_event_listener(lambda name, **kwargs: events.append(name))
layer = jax.jit(lambda x, w: jnp.tanh(x @ w).sum())
layer(jnp.ones((8, 16)), jnp.ones((16, 4))).block_until_ready()
print(json.dumps({
    "folder": str(folder),
    "hits": events.count("/jax/compilation_cache/cache_hits"),
    "misses": events.count("/jax/compilation_cache/cache_misses"),
}))
"""


def _run(root: Path, backend: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(root)],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.splitlines()[-1])


def test_a_second_process_reads_the_compiled_program_from_the_project_cache(
    tmp_path: Path,
) -> None:
    first = _run(tmp_path, "jax")
    cache = tmp_path / ".jax_cache"
    assert first["folder"] == str(cache)
    assert first["misses"] >= 1 and first["hits"] == 0
    entries = sorted(path.name for path in cache.iterdir())
    assert entries  # written as the program compiled

    second = _run(tmp_path, "jax")
    assert second["hits"] >= 1 and second["misses"] == 0  # nothing compiled again
    assert sorted(path.name for path in cache.iterdir()) == entries


def test_other_backends_neither_import_jax_nor_make_the_folder(tmp_path: Path) -> None:
    assert _run(tmp_path, "tensorflow") == {"folder": None, "jax_imported": False}
    assert not (tmp_path / ".jax_cache").exists()
