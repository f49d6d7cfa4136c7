#!/usr/bin/env bash
# Run here, where pip reaches the package index: put beside the checkout what the offline GPU
# machine needs, in two git-ignored folders that the device run carries.
#   .whl/  the wheels of scripts/gpu/wheels.txt (Python 3.12, x86-64 Linux)
#   .gpu/  the CIFAR-10 archive to train on
# Usage: bash scripts/gpu/prepare.sh ARCHIVE   (a CIFAR-10 archive: binary or image folders)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -ne 1 ]; then
    echo "usage: bash scripts/gpu/prepare.sh ARCHIVE   (the CIFAR-10 archive to train on)" >&2
    exit 2
fi
archive="$1"
if [ ! -f "$archive" ]; then
    echo "error: $archive: no such file (pass the CIFAR-10 archive to train on)" >&2
    exit 1
fi
rm -rf .whl && mkdir -p .whl .gpu
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl -r scripts/gpu/wheels.txt
cp "$archive" .gpu/cifar10-jpeg.tar.gz
du -sh .whl .gpu
