"""From image files to class probabilities: the lecture's image2pixel step and top-k prediction.

Saved models scale pixels themselves (their first layer), so everything here hands them raw
0..255 values and never divides by 255.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deeplecture.data import cifar10, fashion_mnist

if TYPE_CHECKING:  # keras is only needed by the caller that already loaded a model
    import keras

# Pillow's modes for the channel counts a model can take.
_MODES = {3: "RGB", 1: "L"}
# What Pillow raises for a file it cannot decode: unknown format, truncated or malformed data,
# or an image so large it looks like a decompression bomb.
_UNREADABLE = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)
# Softmax rows sum to 1 up to float32 rounding; anything further off is not a probability.
_SUM_TOLERANCE = 1e-3


def _read_image(path: Path, mode: str) -> Image.Image:
    """The decoded image, upright and in Pillow `mode`; a `ValueError` naming the file if it is
    not an image."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here and not later
            # A phone photo stores its rotation in EXIF: apply it so the pixels are what a
            # viewer shows (a no-op for files without that tag).
            return ImageOps.exif_transpose(image).convert(mode)
    except _UNREADABLE as error:
        raise ValueError(f"{path}: not an image file Pillow can read ({error})") from error


def image_to_pixels(path: Path) -> np.ndarray:
    """The lecture's image2pixel: an image file as an H×W×3 uint8 RGB matrix.

    Grayscale, palette, RGBA and CMYK images are converted to RGB (alpha is dropped).
    """
    return np.asarray(_read_image(path, "RGB"), dtype=np.uint8)


def image_to_model_input(path: Path, input_shape: tuple[int, int, int]) -> np.ndarray:
    """An image file as one model input: (H, W, C) float32 raw pixels in 0..255.

    Converted to the model's channels (3: RGB, 1: grayscale) and resized to its H×W with
    Pillow's bilinear filter, whatever the file's size.
    """
    height, width, channels = input_shape
    if channels not in _MODES:
        raise ValueError(f"models with {channels} channels are not supported (only 1 or 3)")
    image = _read_image(path, _MODES[channels])
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)
    return pixels.reshape(height, width, channels)  # "L" images come back without a channel axis


def load_batch(path: Path, input_shape: tuple[int, int, int]) -> np.ndarray:
    """A `.npy` file of raw pixels as a float32 batch (N, H, W, C); one image (H, W, C) is a batch
    of one. Any other shape raises a `ValueError` naming the file and both shapes."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"array file not found: {path}")
    try:
        # allow_pickle=False: a pickled array could run code when loaded.
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path}: not a .npy array file ({error})") from error
    if not isinstance(array, np.ndarray):  # an .npz archive renamed .npy
        array.close()
        raise ValueError(f"{path}: holds several arrays; expected one .npy array")
    shape, found = tuple(input_shape), array.shape
    if found == shape:
        array = array[np.newaxis]
    elif not (array.ndim == 4 and found[1:] == shape and found[0] > 0):
        raise ValueError(
            f"{path}: array of shape {found}, expected (N, {', '.join(map(str, shape))}) "
            f"or {shape} to match the model's input"
        )
    if array.dtype.kind not in "biuf":  # bool, integers, floats: anything else is not pixels
        raise ValueError(f"{path}: array of {array.dtype}, expected pixel numbers")
    return array.astype(np.float32)


def class_names_for(
    input_shape: tuple[int, int, int], names: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The class names of a model with this input: `names` if given, else CIFAR-10's for
    (32, 32, 3) and Fashion-MNIST's for (28, 28, 1)."""
    if names is not None:
        return tuple(names)
    known = {
        cifar10.IMAGE_SHAPE: cifar10.CLASS_NAMES,
        (28, 28, 1): fashion_mnist.CLASS_NAMES,
    }
    shape = tuple(input_shape)
    if shape not in known:
        raise ValueError(
            f"no known class names for a model taking {shape} images; pass them explicitly"
        )
    return known[shape]


def model_image_shape(model: keras.Model) -> tuple[int, int, int]:
    """The (H, W, C) one image must have for `model`; a `ValueError` if it takes anything else."""
    shape = model.input_shape
    if not (isinstance(shape, tuple) and len(shape) == 4 and all(shape[1:])):
        raise ValueError(f"model input {shape} is not one fixed-size image batch (N, H, W, C)")
    return tuple(int(size) for size in shape[1:])


def predict_top(
    model: keras.Model, batch: np.ndarray, class_names: Sequence[str], top: int
) -> list[list[tuple[str, float]]]:
    """For each image of `batch`, its `top` most probable classes, most probable first.

    `top` larger than the number of classes gives all of them.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    probabilities = np.asarray(model.predict(batch, batch_size=256, verbose=0), dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_names):
        raise ValueError(
            f"model gives outputs of shape {probabilities.shape[1:]}, "
            f"but {len(class_names)} class names were given"
        )
    # The percentages printed from these only mean something for a softmax output.
    if (
        probabilities.min() < 0
        or probabilities.max() > 1 + _SUM_TOLERANCE
        or not np.allclose(probabilities.sum(axis=1), 1, atol=_SUM_TOLERANCE)
    ):
        raise ValueError("model outputs are not probabilities (does it end with a softmax?)")
    # Stable sort on the negated row: ties keep the class order, so output is deterministic.
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    return [
        [(class_names[index], float(row[index])) for index in indices]
        for row, indices in zip(probabilities, order, strict=True)
    ]
