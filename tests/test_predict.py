"""Prediction and forward-only evaluation from saved files: `deeplecture-predict`,
`deeplecture-evaluate` and the lecture's image2pixel step."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import run_main
from deeplecture import model_file, predict
from deeplecture.cli import evaluate as evaluate_cli
from deeplecture.cli import predict as predict_cli
from deeplecture.data import cifar10, fashion_mnist
from deeplecture.models import get_variant
from deeplecture.scaling import Scaling

REAL_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two saved models (CIFAR-10 cnn74, a tiny 28x28x1 one) and test images of several kinds."""
    folder = tmp_path_factory.mktemp("predict")
    keras.utils.set_random_seed(0)
    cifar = get_variant("cnn74").build(Scaling.divide255(3), "none")
    cifar.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model_file.save(cifar, folder / "cifar.keras", cifar10.CLASS_NAMES)

    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    fashion = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
    model_file.save(fashion, folder / "fashion.keras", fashion_mnist.CLASS_NAMES)

    rng = np.random.default_rng(0)
    paths = {"cifar": folder / "cifar.keras", "fashion": folder / "fashion.keras"}
    paths["rgba"] = folder / "rgba.png"  # 50 wide, 40 high
    Image.fromarray(rng.integers(0, 256, (40, 50, 4), dtype=np.uint8), "RGBA").save(paths["rgba"])
    paths["gray"] = folder / "gray.jpg"
    Image.fromarray(rng.integers(0, 256, (45, 60), dtype=np.uint8), "L").save(paths["gray"])
    paths["rgb"] = folder / "rgb.png"
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB").save(paths["rgb"])
    return paths


def assert_top(top: list[tuple[str, float]], class_names: tuple[str, ...], k: int) -> None:
    probabilities = [p for _, p in top]
    assert len(top) == k
    assert {name for name, _ in top} <= set(class_names)
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 <= p <= 1 for p in probabilities)
    assert sum(probabilities) <= 1 + 1e-5


def assert_error(status: int, err: str, expected_status: int = 1) -> None:
    assert status == expected_status
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err


# --- image2pixel and the conversions ----------------------------------------------------------


def test_image2pixel_gives_the_lectures_matrix(tmp_path: Path, files: dict[str, Path]) -> None:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (240, 312), (200, 30, 10)).save(path)  # Pillow sizes are (width, height)
    pixels = predict.image_to_pixels(path)
    assert pixels.shape == (312, 240, 3) and pixels.dtype == np.uint8

    # RGBA and grayscale become RGB; lossless pixels come back exactly.
    assert predict.image_to_pixels(files["rgba"]).shape == (40, 50, 3)
    gray = predict.image_to_pixels(files["gray"])
    assert gray.shape == (45, 60, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    assert np.array_equal(
        predict.image_to_pixels(files["rgb"]), np.asarray(Image.open(files["rgb"]))
    )


def test_model_input_is_raw_pixels_in_the_models_shape(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    rgba = predict.image_to_model_input(files["rgba"], (32, 32, 3))
    assert rgba.shape == (32, 32, 3) and rgba.dtype == np.float32
    assert rgba.max() > 1  # not divided by 255: the model scales
    assert predict.image_to_model_input(files["rgb"], (32, 32, 3)).max() <= 255
    assert predict.image_to_model_input(files["gray"], (28, 28, 1)).shape == (28, 28, 1)
    with pytest.raises(ValueError, match="4 channels"):
        predict.image_to_model_input(files["rgb"], (32, 32, 4))

    one = tmp_path / "one.npy"
    np.save(one, np.zeros((32, 32, 3), np.uint8))
    assert predict.load_batch(one, (32, 32, 3)).shape == (1, 32, 32, 3)


def test_the_model_file_names_its_classes(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert model_file.class_names(files["cifar"]) == cifar10.CLASS_NAMES
    assert model_file.class_names(files["fashion"]) == fashion_mnist.CLASS_NAMES

    plain = tmp_path / "plain.keras"  # saved by Keras alone: no names inside
    keras.saving.load_model(files["cifar"]).save(plain)
    assert model_file.class_names(plain) is None
    status, _, err = run_main(predict_cli.main, [plain, files["rgb"]], capsys)
    assert_error(status, err)
    assert "does not name its classes" in err and "--class-names" in err
    names = ",".join(f"c{i}" for i in range(10))
    status, out, _ = run_main(
        predict_cli.main, [plain, files["rgb"], "--class-names", names], capsys
    )
    assert status == 0 and out.splitlines()[1].split()[0].startswith("c")


# --- deeplecture-predict ----------------------------------------------------------------------


def test_predict_prints_top_classes_per_file(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run_main(
        predict_cli.main, [files["cifar"], files["rgba"], files["rgb"], "--top", "3"], capsys
    )
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == str(files["rgba"]) and lines[4] == str(files["rgb"])
    for block in (lines[1:4], lines[5:8]):
        top = [(line.split()[0], float(line.split()[1]) / 100) for line in block]
        assert_top(top, cifar10.CLASS_NAMES, 3)


def test_predict_json_names_every_file_and_batch_image(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "batch.npy"
    np.save(batch, np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    argv = [files["cifar"], files["rgba"], files["gray"], batch, "--json", "--top", "2"]
    status, out, _ = run_main(predict_cli.main, argv, capsys)
    assert status == 0
    document = json.loads(out)
    assert [entry["file"] for entry in document] == [str(files["rgba"]), str(files["gray"])] + [
        str(batch)
    ] * 2
    assert [entry.get("index") for entry in document] == [None, None, 0, 1]
    for entry in document:
        top = [(item["class"], item["probability"]) for item in entry["top"]]
        assert_top(top, cifar10.CLASS_NAMES, 2)


def test_predict_with_a_grayscale_model_and_own_class_names(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # More than the 10 classes asked: all of them, summing to 1.
    status, out, _ = run_main(
        predict_cli.main, [files["fashion"], files["gray"], "--json", "--top", "20"], capsys
    )
    assert status == 0
    top = [(item["class"], item["probability"]) for item in json.loads(out)[0]["top"]]
    assert_top(top, fashion_mnist.CLASS_NAMES, 10)
    assert sum(p for _, p in top) == pytest.approx(1, abs=1e-5)

    names = ",".join(f"c{i}" for i in range(10))
    status, out, _ = run_main(
        predict_cli.main, [files["fashion"], files["rgb"], "--class-names", names], capsys
    )
    assert status == 0 and out.splitlines()[1].split()[0].startswith("c")

    status, _, err = run_main(
        predict_cli.main, [files["fashion"], files["rgb"], "--class-names", "a,b"], capsys
    )
    assert_error(status, err)
    assert "2 class names" in err


def test_predict_refuses_a_file_that_is_not_an_image(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "notes.jpg"
    fake.write_text("these are lecture notes, not a picture\n")
    status, out, err = run_main(predict_cli.main, [files["cifar"], files["rgb"], fake], capsys)
    assert_error(status, err)
    assert "not an image" in err and str(fake) in err and out == ""


def test_an_eps_file_named_jpg_never_reaches_the_ghostscript_decoder(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    eps = tmp_path / "photo.jpg"
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nshowpage\n%%EOF\n")
    with Image.open(eps) as unrestricted:
        assert unrestricted.format == "EPS"  # what Pillow alone would hand it to
    status, out, err = run_main(predict_cli.main, [files["cifar"], eps], capsys)
    assert_error(status, err)
    assert f"{eps}: not an image in a supported format (JPEG, PNG" in err
    assert "Ghostscript" not in err and out == ""


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header announces width x height RGB pixels, with no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + checksum

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def test_an_image_over_pillows_pixel_limit_is_refused_before_decoding(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bomb = tmp_path / "bomb.png"
    # 10,000 x 10,000: over Pillow's limit (89 M pixels) but under twice it, where Pillow
    # itself would only warn and then decode 300 MB.
    _png_header_only(bomb, 10_000, 10_000)
    status, _, err = run_main(predict_cli.main, [files["cifar"], bomb], capsys)
    assert_error(status, err)
    assert "10000x10000 pixels, more than Pillow's limit" in err


def test_an_npy_header_claiming_terabytes_is_one_line(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "huge.npy"
    with batch.open("wb") as handle:
        header = {"descr": "|u1", "fortran_order": False, "shape": (10**9, 32, 32, 3)}
        np.lib.format.write_array_header_1_0(handle, header)
    status, _, err = run_main(predict_cli.main, [files["cifar"], batch], capsys)
    assert_error(status, err)
    assert "(3,072,000,000,000 bytes), but the file holds 0 bytes" in err


@pytest.mark.parametrize("kind", ["folder", "truncated"])
def test_a_folder_or_truncated_model_is_named_as_such(
    kind: str, tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.keras"
    if kind == "folder":
        model.mkdir()
        expected = "is a folder; expected a saved .keras model file"
    else:
        data = files["cifar"].read_bytes()
        model.write_bytes(data[: len(data) // 2])
        expected = "is not a complete .keras file (truncated"
    status, _, err = run_main(predict_cli.main, [model, files["rgb"]], capsys)
    assert_error(status, err)
    assert f"{model} {expected}" in err and "File not found" not in err


def test_a_folder_given_as_an_image_is_named_as_a_folder(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_main(predict_cli.main, [files["cifar"], tmp_path], capsys)
    assert_error(status, err)
    assert f"{tmp_path} is a folder; expected an image file" in err


@pytest.mark.parametrize("kind", ["missing", "corrupt"])
def test_predict_names_a_bad_model_file(
    kind: str, tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.keras"
    if kind == "corrupt":
        model.write_bytes(np.random.default_rng(2).bytes(4096))
    status, _, err = run_main(predict_cli.main, [model, files["rgb"]], capsys)
    assert_error(status, err)
    assert str(model) in err


def test_predict_names_both_shapes_of_a_wrong_batch(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "small.npy"
    np.save(batch, np.zeros((2, 30, 30, 3), np.uint8))
    status, _, err = run_main(predict_cli.main, [files["cifar"], batch], capsys)
    assert_error(status, err)
    assert str(batch) in err and "(2, 30, 30, 3)" in err and "32, 32, 3" in err


def test_predict_top_below_one_is_a_usage_error(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        predict_cli.main([str(files["cifar"]), str(files["rgb"]), "--top", "0"])
    assert exit_info.value.code == 2
    assert "--top" in capsys.readouterr().err


def test_console_script_runs(files: dict[str, Path]) -> None:
    script = Path(sys.executable).parent / "deeplecture-predict"
    result = subprocess.run(
        [script, "--json", files["cifar"], files["rgb"]],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [entry["file"] for entry in json.loads(result.stdout)] == [str(files["rgb"])]


@pytest.mark.skipif(not REAL_ARCHIVE.is_file(), reason="shared CIFAR-10 JPEG archive not here")
def test_predict_a_real_cifar10_jpeg(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with tarfile.open(REAL_ARCHIVE, "r:gz") as archive:
        member = next(m for m in archive if m.isfile() and m.name.endswith(".jpg"))
        data = archive.extractfile(member).read()  # in memory: nothing else is extracted
    path = tmp_path / Path(member.name).name
    path.write_bytes(data)
    assert Image.open(io.BytesIO(data)).size == (32, 32)
    assert predict.image_to_pixels(path).shape == (32, 32, 3)

    status, out, _ = run_main(predict_cli.main, [files["cifar"], path, "--json"], capsys)
    assert status == 0
    top = [(item["class"], item["probability"]) for item in json.loads(out)[0]["top"]]
    assert_top(top, cifar10.CLASS_NAMES, 3)


# --- deeplecture-evaluate ---------------------------------------------------------------------


def processed_folder(folder: Path, count: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A preprocessed CIFAR-shaped dataset as preprocessing writes it; the test split's arrays."""
    rng = np.random.default_rng(3)
    folder.mkdir()
    for split in ("train", "validation", "test"):
        images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, count).astype(np.uint8)
        onehot = np.eye(10, dtype=np.float32)[labels]
        np.savez(folder / f"{split}.npz", images=images, labels=labels, onehot=onehot)
    info = {"dataset": "cifar10", "class_names": list(cifar10.CLASS_NAMES)}
    (folder / "info.json").write_text(json.dumps(info))
    return images, onehot


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_evaluate_reports_what_model_evaluate_gives(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "cifar10"
    images, onehot = processed_folder(data)
    expected = keras.saving.load_model(files["cifar"]).evaluate(
        images, onehot, verbose=0, return_dict=True
    )

    status, out, _ = run_main(evaluate_cli.main, [files["cifar"], "--data", data], capsys)
    assert status == 0
    printed = dict(line.split(": ") for line in out.splitlines())
    assert float(printed["Test accuracy"]) == pytest.approx(expected["accuracy"], abs=1e-6)
    assert float(printed["Test loss"]) == pytest.approx(expected["loss"], rel=1e-4)

    status, out, _ = run_main(
        evaluate_cli.main, [files["cifar"], "--data", data, "--json", "--batch-size", "16"], capsys
    )
    document = json.loads(out)
    assert status == 0 and document["images"] == len(images) and document["split"] == "test"
    assert document["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)


def test_evaluate_errors_name_what_is_wrong(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "cifar10"
    processed_folder(data, count=4)

    status, _, err = run_main(evaluate_cli.main, [files["fashion"], "--data", data], capsys)
    assert_error(status, err)
    assert "(28, 28, 1)" in err and "(32, 32, 3)" in err

    missing = tmp_path / "nowhere"
    status, _, err = run_main(evaluate_cli.main, [files["cifar"], "--data", missing], capsys)
    assert_error(status, err)
    assert str(missing) in err

    (data / "validation.npz").unlink()
    argv = [files["cifar"], "--data", data, "--split", "validation"]
    status, _, err = run_main(evaluate_cli.main, argv, capsys)
    assert_error(status, err)
    assert str(data / "validation.npz") in err


# --- hostile inputs: values no image holds, a malformed class-names member -----------------------


@pytest.mark.parametrize(
    ("pixels", "named", "found"),
    [
        (np.full((32, 32, 3), np.nan, np.float32), "{path}:", "holds NaN"),
        (np.full((3, 32, 32, 3), 1e38, np.float32), "{path}[0]:", "values from 1e+38 to 1e+38"),
        (np.full((1, 32, 32, 3), np.inf), "{path}[0]:", "an infinite value"),
        (np.full((1, 32, 32, 3), 1e300), "{path}[0]:", "values from 1e+300"),  # float64
        (
            np.concatenate([np.zeros((2, 32, 32, 3)), np.full((2, 32, 32, 3), -1)]).astype(int),
            "{path}[2]:",
            "values from -1 to -1 (and 1 more image)",
        ),
        (np.full((2, 32, 32, 3), 256, np.uint16), "{path}[0]:", "values from 256 to 256"),
    ],
    ids=["nan image", "1e38 batch", "inf", "float64 beyond float32", "negative", "above 255"],
)
def test_npy_values_no_image_holds_are_refused_naming_the_image(
    pixels: np.ndarray,
    named: str,
    found: str,
    tmp_path: Path,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not blamed on the model ("not probabilities"), and never "airplane 100 %"."""
    path = tmp_path / "pixels.npy"
    np.save(path, pixels)
    status, out, err = run_main(predict_cli.main, [files["cifar"], path], capsys)
    assert_error(status, err)
    assert out == ""
    assert f"error: {named.format(path=path)} holds" in err and found in err
    assert "expected raw pixels in 0..255" in err and "probabilities" not in err


def test_npy_pixels_of_any_number_type_in_0_to_255_are_accepted(tmp_path: Path) -> None:
    for dtype in (np.uint8, np.int64, np.float32, np.float64, bool):
        path = tmp_path / f"{np.dtype(dtype).name}.npy"
        np.save(path, np.ones((2, 32, 32, 3)).astype(dtype) * (255 if dtype is not bool else 1))
        assert predict.load_batch(path, (32, 32, 3)).max() in (1.0, 255.0)


def _with_member(source: Path, target: Path, text: bytes) -> Path:
    """A copy of the `.keras` file `source` whose deeplecture.json holds `text`."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for member in original.infolist():
            if member.filename != model_file.MEMBER:
                copy.writestr(member, original.read(member))
        copy.writestr(model_file.MEMBER, text)
    return target


MALFORMED_CLASS_NAMES = {
    "a list": (b"[1, 2, 3]", 'expected {"class_names": [name, ...]}, got [1, 2, 3]'),
    "numbers": (json.dumps({"class_names": list(range(10))}), "class name 0 is 0, expected"),
    "not json": (b"class_names: cat, dog", "not a JSON document"),
    "truncated": (b'{"class_names": ["cat", "do', "not a JSON document"),
    "not utf-8": (b'{"class_names": ["\xff"]}', "not a JSON document"),
    "no names": (b"{}", "got {}"),
    "empty list": (b'{"class_names": []}', 'got {"class_names": []}'),
    "empty name": (json.dumps({"class_names": [*"abcdefghi", " "]}), 'class name 9 is " "'),
    "null name": (json.dumps({"class_names": [*"abcdefghi", None]}), "class name 9 is null"),
    "repeated": (json.dumps({"class_names": [*"abcdefgh", "a", "b"]}), "repeat ('a', 'b')"),
    "too few": (json.dumps({"class_names": list("abc")}), "3 class names for a model of 10"),
    "NaN": (b'{"class_names": NaN}', "got {"),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, "not a JSON document"),
}


@pytest.mark.parametrize("case", MALFORMED_CLASS_NAMES)
def test_a_malformed_class_names_member_is_one_line_naming_the_file(
    case: str, tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = MALFORMED_CLASS_NAMES[case]
    text = text.encode() if isinstance(text, str) else text
    model = _with_member(files["fashion"], tmp_path / "fashion.keras", text)
    status, out, err = run_main(predict_cli.main, [model, files["gray"]], capsys)
    assert_error(status, err)
    assert out == ""
    assert err.startswith(f"error: {model} (its deeplecture.json): ") and expected in err
    with pytest.raises(ValueError, match="deeplecture.json"):  # also without the width
        model_file.class_names(model, outputs=None if case != "too few" else 10)
