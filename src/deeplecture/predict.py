"""From image files to class probabilities: the lecture's image2pixel step and top-k prediction.

Saved models scale pixels themselves (their first layer), so everything here hands them raw
0..255 values and never divides by 255.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:  # keras is only needed by the caller that already loaded a model
    import keras

# Pillow's modes for the channel counts a model can take.
_MODES = {3: "RGB", 1: "L"}
# The only decoders an image file reaches, whatever its name: common raster formats. Others
# (EPS and PDF through Ghostscript, rarely used legacy formats) never see a user's file.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
# What Pillow raises for a file it cannot decode: unknown format, truncated or malformed data,
# or an image so large it looks like a decompression bomb.
_UNREADABLE = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)
# Raw pixels, as an image file holds them: the values every saved model takes (it scales them
# itself). Anything else would be scaled into nonsense, and answered with confident nonsense.
PIXEL_MIN, PIXEL_MAX = 0, 255
# Softmax rows sum to 1 up to float32 rounding; anything further off is not a probability.
_SUM_TOLERANCE = 1e-3


def _read_image(path: Path, mode: str) -> Image.Image:
    """The decoded image, upright and in Pillow `mode`; a `ValueError` naming the file if it is
    not an image of an allowed format, or has more pixels than Pillow's limit."""
    path = _existing_file(path, "image")
    return _decode_image(path, mode, path)


def _decode_image(source: Path | BinaryIO, mode: str, name: object) -> Image.Image:
    """`_read_image` for a file or bytes in memory; errors name the image `name`."""
    try:
        with warnings.catch_warnings():
            # Pillow warns past its pixel limit and decodes anyway; the check below refuses.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source, formats=IMAGE_FORMATS)
        with image:
            _check_pixel_count(image, name)  # from the header alone, before any decoding
            image.load()  # decode now, so a truncated file fails here and not later
            # A phone photo stores its rotation in EXIF: apply it so the pixels are what a
            # viewer shows (a no-op for files without that tag).
            return ImageOps.exif_transpose(image).convert(mode)
    except UnidentifiedImageError:
        raise ValueError(
            f"{name}: not an image in a supported format ({', '.join(IMAGE_FORMATS)})"
        ) from None
    except _UNREADABLE as error:
        raise ValueError(f"{name}: not an image file Pillow can read ({error})") from error


def _check_pixel_count(image: Image.Image, name: object) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise ValueError(
            f"{name}: {image.width}x{image.height} pixels, more than Pillow's limit of {limit} "
            "(a decompression bomb, or a photo to shrink first)"
        )


def _existing_file(path: Path, kind: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; expected an {kind} file")
    if not path.is_file():
        raise ValueError(f"{kind} file not found: {path}")
    return path


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
    return _to_model_input(_read_image(path, _mode(input_shape)), input_shape)


def image_bytes_to_model_input(
    data: bytes, input_shape: tuple[int, int, int], name: str
) -> np.ndarray:
    """`image_to_model_input` for an image file's bytes held in memory (an HTTP request's), with
    the same checks; errors call the image `name`."""
    image = _decode_image(io.BytesIO(data), _mode(input_shape), name)
    return _to_model_input(image, input_shape)


def _mode(input_shape: tuple[int, int, int]) -> str:
    channels = input_shape[2]
    if channels not in _MODES:
        raise ValueError(f"models with {channels} channels are not supported (only 1 or 3)")
    return _MODES[channels]


def _to_model_input(image: Image.Image, input_shape: tuple[int, int, int]) -> np.ndarray:
    height, width, channels = input_shape
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)
    return pixels.reshape(height, width, channels)  # "L" images come back without a channel axis


def load_batch(path: Path, input_shape: tuple[int, int, int]) -> np.ndarray:
    """A `.npy` file of raw pixels as a float32 batch (N, H, W, C); one image (H, W, C) is a batch
    of one. Any other shape raises a `ValueError` naming the file and both shapes; a value that
    is not a raw pixel (NaN, infinite, outside 0..255) one naming the file and the image.

    The header is checked against the model and the file's size before any data is read, so a
    header that claims terabytes is refused, not allocated."""
    path = _existing_file(path, "array")
    shape, dtype = _npy_header(path)
    expected = tuple(input_shape)
    if not (shape == expected or (len(shape) == 4 and shape[1:] == expected and shape[0] > 0)):
        raise ValueError(
            f"{path}: array of shape {shape}, expected (N, {', '.join(map(str, expected))}) "
            f"or {expected} to match the model's input"
        )
    if dtype.kind not in "biuf":  # bool, integers, floats: anything else is not pixels
        raise ValueError(f"{path}: array of {dtype}, expected pixel numbers")
    try:
        # allow_pickle=False: a pickled array could run code when loaded.
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path}: not a .npy array file ({error})") from error
    single = array.shape == expected
    if single:
        array = array[np.newaxis]
    # Before the cast: a float64 beyond float32's range would become inf and hide its value.
    check_pixels(array, lambda index: f"{path}" if single else f"{path}[{index}]")
    return array.astype(np.float32)


def check_pixels(batch: np.ndarray, name: Callable[[int], str]) -> None:
    """A `ValueError` naming the first image of `batch` (N, H, W, C) that holds a value no image
    file holds: NaN, infinite, or outside 0..255 (`name(index)` names the image)."""
    values = batch.reshape(len(batch), -1)
    if values.dtype.kind == "f":
        nonfinite = ~np.isfinite(values).all(axis=1)
        if nonfinite.any():
            index = int(np.argmax(nonfinite))
            found = "NaN" if np.isnan(values[index]).any() else "an infinite value"
            raise ValueError(_pixel_error(name(index), found, int(nonfinite.sum())))
    low, high = values.min(axis=1), values.max(axis=1)
    outside = (low < PIXEL_MIN) | (high > PIXEL_MAX)
    if outside.any():
        index = int(np.argmax(outside))
        found = f"values from {low[index]:g} to {high[index]:g}"
        raise ValueError(_pixel_error(name(index), found, int(outside.sum())))


def _pixel_error(image: str, found: str, count: int) -> str:
    others = f" (and {count - 1} more image{'s' * (count > 2)})" if count > 1 else ""
    return (
        f"{image}: holds {found}{others}; expected raw pixels in {PIXEL_MIN}..{PIXEL_MAX}, "
        "as an image file holds them (the model scales them itself)"
    )


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a `.npy` header declares, checked against the bytes that follow."""
    with path.open("rb") as handle:
        if handle.read(2) == b"PK":  # a zip: an .npz archive renamed .npy
            raise ValueError(f"{path}: holds several arrays (.npz); expected one .npy array")
        handle.seek(0)
        try:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(handle)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"{path}: not a .npy array file ({error})") from error
        data_bytes = path.stat().st_size - handle.tell()
    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize  # float: no overflow
    if declared != data_bytes:
        raise ValueError(
            f"{path}: its header declares {dtype} data of shape {shape} ({declared:,} bytes), "
            f"but the file holds {data_bytes:,} bytes"
        )
    return tuple(int(size) for size in shape), dtype


class ImageModel(Protocol):
    """What `model_image_shape` reads: a Keras model, or an exported one (edge/runtime.py)."""

    input_shape: tuple


def model_image_shape(model: keras.Model | ImageModel) -> tuple[int, int, int]:
    """The (H, W, C) one image must have for `model` (a Keras model or an exported one); a
    `ValueError` if it takes anything else."""
    shape = model.input_shape
    if not (isinstance(shape, tuple) and len(shape) == 4 and all(shape[1:])):
        raise ValueError(f"model input {shape} is not one fixed-size image batch (N, H, W, C)")
    return tuple(int(size) for size in shape[1:])


def top_classes(
    probabilities: np.ndarray, class_names: Sequence[str], top: int
) -> list[list[tuple[str, float]]]:
    """For each row of a model's `probabilities` (N, classes), its `top` most probable classes,
    most probable first.

    `top` larger than the number of classes gives all of them.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    probabilities = np.asarray(probabilities, dtype=np.float64)
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
