"""How much each augmentation blurs: the lecture's generator, its one-layer port, Keras' stack.

    python benchmarks/augmentation_sharpness.py [--archive data/sample/cifar10-sample.tar.gz]

Augments the archive's test images once each way (the lecture's `ImageDataGenerator`, the
pipeline's `LectureAugmentation`, and `keras_layers`: RandomRotation → RandomTranslation →
RandomFlip) and prints the mean absolute difference of horizontally neighbouring pixels, side by
side with the unaugmented images. Every resampling averages neighbours, so lower is blurrier:
the generator resamples once, the Keras stack twice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np
from keras.src.legacy.preprocessing.image import ImageDataGenerator

from deeplecture.augmentation import LectureAugmentation, keras_layers
from deeplecture.data.cifar10 import read_cifar10_archive

LECTURE = dict(
    rotation_range=15, width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True
)


def sharpness(images: np.ndarray) -> float:
    """Mean |difference| of horizontally neighbouring pixels, in grey levels."""
    return float(np.abs(np.diff(images, axis=2)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=Path("data/sample/cifar10-sample.tar.gz"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    _, test = read_cifar10_archive(args.archive, shuffle_seed=0, progress=False)
    images = test.images.astype("float32")

    keras.utils.set_random_seed(args.seed)
    np.random.seed(args.seed)
    generator = ImageDataGenerator(**LECTURE)
    augmented = {
        "unaugmented": images,
        "ImageDataGenerator (lecture)": np.stack([generator.random_transform(x) for x in images]),
        "LectureAugmentation (lecture)": LectureAugmentation(seed=args.seed)(images, training=True),
        "keras_layers": keras_layers(seed=args.seed)(images, training=True),
    }
    print(f"{len(images)} test images of {args.archive.name}: mean |neighbour difference|")
    for name, result in augmented.items():
        print(f"  {name:<32} {sharpness(keras.ops.convert_to_numpy(result)):6.2f}")


if __name__ == "__main__":
    main()
