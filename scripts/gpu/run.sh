#!/usr/bin/env bash
# The whole GPU check in one command, on a machine with no internet (scripts/gpu/README.md):
#   bash scripts/gpu/run.sh [scripts/gpu/run_progression.py options]
# Installs what the machine lacks from .whl/ (made by scripts/gpu/prepare.sh), then runs the
# progression with KERAS_BACKEND (default jax) and leaves its results in $OUT (or gpu-results/).
set -euo pipefail
# The seeds phase's --budget counts from here: the install below is part of the call's time.
export DEEPLECTURE_GPU_STARTED="$(date +%s)"
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 KERAS_BACKEND="${KERAS_BACKEND:-jax}"
python=${PYTHON:-python3}
if ! "$python" -c "import keras, mlflow, pydantic, ruamel.yaml" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "error: packages missing and no wheels in .whl/: run scripts/gpu/prepare.sh first" >&2
        exit 1
    fi
    site=/tmp/deeplecture-site
    "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$site" .whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" scripts/gpu/run_progression.py "$@"
