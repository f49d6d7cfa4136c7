"""The edge path: models exported to ONNX, int8 ONNX and LiteRT by the export stage's code, run
by their runtimes alone, measured beside Keras, and refused in one line when broken."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import PROJECT_ROOT, run_main
from deeplecture import model_file
from deeplecture.cli import evaluate as evaluate_cli
from deeplecture.cli import predict as predict_cli
from deeplecture.data import cifar10, fashion_mnist
from deeplecture.data.splits import ImageSplit
from deeplecture.edge import export, files, measure, runners, runtime
from deeplecture.models import get_variant
from deeplecture.reporting import edge as edge_report
from deeplecture.scaling import Scaling

EXPORTED = ("onnx", "litert")  # the float formats, which must agree with Keras


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """cnn88 (its augmentation layers inside, as trained) exported in every format, plus a tiny
    28x28x1 model exported to both float formats, and test images."""
    folder = tmp_path_factory.mktemp("edge")
    keras.utils.set_random_seed(0)
    model = get_variant("cnn88").build(Scaling.divide255(3), "lecture")
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    images = _images(np.random.default_rng(0), 96)
    # A few steps, so that batch normalization's statistics and the outputs are not uniform.
    model.fit(images, keras.utils.to_categorical(np.arange(96) % 10, 10), epochs=2, verbose=0)
    model_file.save(model, folder / "cnn88.keras", cifar10.CLASS_NAMES)
    calibration = export.calibration_sample(images, 64, seed=0)
    written = export.export_models(model, folder / "cnn88", cifar10.CLASS_NAMES, calibration)

    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    gray = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
    model_file.save(gray, folder / "gray.keras", fashion_mnist.CLASS_NAMES)
    gray_written = export.export_models(gray, folder / "gray", fashion_mnist.CLASS_NAMES, None)

    paths = {"keras": folder / "cnn88.keras", **written, "gray-onnx": gray_written["onnx"]}
    paths["gray-litert"] = gray_written["litert"]
    paths["rgb"] = folder / "rgb.png"
    Image.fromarray(images[0].astype(np.uint8), "RGB").save(paths["rgb"])
    paths["batch"] = folder / "batch.npy"
    np.save(paths["batch"], images[:40].astype(np.uint8))
    return paths


def _images(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 256, (count, 32, 32, 3)).astype(np.float32)


def assert_one_line_error(status: int, err: str) -> None:
    assert status == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


# --- export -----------------------------------------------------------------------------------


def test_the_export_folder_holds_every_format_and_the_class_names(
    exported: dict[str, Path],
) -> None:
    folder = exported["onnx"].parent
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        [*files.FORMAT_FILES.values(), files.CLASS_NAMES_FILE]
    )  # and no temporary file left behind
    assert files.sidecar_class_names(exported["litert"]) == cifar10.CLASS_NAMES
    for name in ("onnx", "onnx-int8"):  # the ONNX files carry them, also when copied alone
        assert runtime.load(exported[name]).class_names() == cifar10.CLASS_NAMES


@pytest.mark.parametrize("name", EXPORTED)
def test_an_exported_model_takes_raw_pixels_and_predicts_what_keras_predicts(
    name: str, exported: dict[str, Path]
) -> None:
    """cnn88's augmentation is not in the exported graph: the file predicts as `predict` does."""
    model = keras.saving.load_model(exported["keras"])
    images = _images(np.random.default_rng(1), 300)  # more than one runtime chunk of 256
    expected = model.predict(images, verbose=0)
    edge_model = runtime.load(exported[name])
    assert edge_model.input_shape == (None, 32, 32, 3)
    found = edge_model.predict(images)
    assert found.shape == expected.shape
    assert np.abs(found - expected).max() < 1e-4
    assert (found.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert np.allclose(edge_model.run(images[:1]), expected[:1], atol=1e-4)  # batch of one


def test_the_int8_model_is_under_a_third_of_the_float_one_and_gives_probabilities(
    exported: dict[str, Path],
) -> None:
    assert exported["onnx-int8"].stat().st_size <= 0.30 * exported["onnx"].stat().st_size
    probabilities = runtime.load(exported["onnx-int8"]).predict(
        _images(np.random.default_rng(2), 8)
    )
    assert probabilities.shape == (8, 10)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-2) and probabilities.min() >= 0


def test_the_calibration_sample_is_fixed_by_its_seed() -> None:
    images = np.arange(50 * 2 * 2 * 3, dtype=np.uint8).reshape(50, 2, 2, 3)
    first = export.calibration_sample(images, 10, seed=3)
    assert first.dtype == np.float32 and first.shape == (10, 2, 2, 3)
    assert np.array_equal(first, export.calibration_sample(images, 10, seed=3))
    assert not np.array_equal(first, export.calibration_sample(images, 10, seed=4))
    assert len(export.calibration_sample(images, 500, seed=3)) == 50  # all, when fewer


def test_without_int8_no_int8_file_is_left(exported: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "cnn88"
    shutil.copytree(exported["onnx"].parent, folder)  # an earlier export, int8 included
    model = keras.saving.load_model(exported["keras"])
    written = export.export_models(model, folder, cifar10.CLASS_NAMES, calibration=None)
    assert set(written) == {"onnx", "litert"}
    assert not (folder / files.FORMAT_FILES["onnx-int8"]).exists()


# --- predict without Keras ----------------------------------------------------------------


def _run_without_keras(command: str, args: list[str]) -> subprocess.CompletedProcess:
    """`deeplecture.cli.<command>.main(args)` in a fresh interpreter, as the `edge` install runs
    it; asserts it succeeded with none of the heavy frameworks imported."""
    code = (
        "import json, sys\n"
        f"from deeplecture.cli import {command}\n"
        f"status = {command}.main({args!r})\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'keras', 'tensorflow', 'jax', "
        "'torch', 'tf_keras'})\n"
        "print(json.dumps({'status': status, 'heavy': heavy}), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"status": 0, "heavy": []}, done.stderr[-2000:]
    return done


@pytest.mark.parametrize("name", ["onnx", "onnx-int8", "litert"])
def test_predict_on_an_exported_file_imports_neither_keras_nor_tensorflow(
    name: str, exported: dict[str, Path]
) -> None:
    """In a fresh interpreter, as a user runs it; its classes are those of the .keras file."""
    done = _run_without_keras("predict", [str(exported[name]), str(exported["batch"]), "--json"])
    assert len(done.stderr.strip().splitlines()) == 1  # no runtime chatter on stderr
    found = json.loads(done.stdout)
    expected = _predicted(exported["keras"], exported["batch"])
    assert len(found) == 40
    if name in EXPORTED:  # the float files name the same top class as Keras, image by image
        assert [entry["top"][0]["class"] for entry in found] == expected


def _predicted(model: Path, batch: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "deeplecture.cli.predict", str(model), str(batch), "--json"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return [entry["top"][0]["class"] for entry in json.loads(done.stdout)]


def test_an_exported_file_copied_without_its_class_names_asks_for_them(
    exported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lone = tmp_path / "model.tflite"
    shutil.copy(exported["litert"], lone)  # class_names.json stays behind
    status, _, err = run_main(predict_cli.main, [lone, exported["rgb"]], capsys)
    assert_one_line_error(status, err)
    assert "pass them with --class-names" in err
    status, out, _ = run_main(
        predict_cli.main, [lone, exported["rgb"], "--class-names", ",".join("abcdefghij")], capsys
    )
    assert status == 0 and out.splitlines()[0] == str(exported["rgb"])


# --- bad input: the same one-line errors as for .keras files --------------------------------


@pytest.mark.parametrize("name", ["onnx", "litert"])
@pytest.mark.parametrize("damage", ["truncated", "random bytes", "empty"])
def test_a_damaged_exported_file_is_one_line(
    name: str,
    damage: str,
    exported: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = exported[name].read_bytes()
    broken = tmp_path / exported[name].name
    broken.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "random bytes": np.random.default_rng(5).bytes(4096),
            "empty": b"",
        }[damage]
    )
    status, _, err = run_main(predict_cli.main, [broken, exported["rgb"]], capsys)
    assert_one_line_error(status, err)
    assert f"{broken} is not a complete" in err


@pytest.mark.parametrize("suffix", [".onnx", ".tflite"])
def test_a_missing_or_folder_model_is_named(
    suffix: str, exported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / f"missing{suffix}"
    status, _, err = run_main(predict_cli.main, [missing, exported["rgb"]], capsys)
    assert_one_line_error(status, err)
    assert f"model file not found: {missing}" in err
    folder = tmp_path / f"folder{suffix}"
    folder.mkdir()
    status, _, err = run_main(predict_cli.main, [folder, exported["rgb"]], capsys)
    assert_one_line_error(status, err)
    assert f"{folder} is a folder; expected an exported" in err


@pytest.mark.parametrize("name", ["gray-onnx", "gray-litert"])
def test_a_batch_of_the_wrong_shape_names_both_shapes(
    name: str, exported: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_main(
        predict_cli.main, [exported[name], exported["batch"]], capsys
    )  # 32x32x3 images
    assert_one_line_error(status, err)
    assert str(exported["batch"]) in err and "(40, 32, 32, 3)" in err and "28, 28, 1" in err


@pytest.mark.parametrize("name", ["onnx", "litert"])
def test_a_model_that_takes_no_image_batch_is_refused_by_its_shape(
    name: str, exported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = keras.Input((12,))
    vectors = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(inputs))
    written = export.export_models(vectors, tmp_path / "vectors", cifar10.CLASS_NAMES, None)
    status, _, err = run_main(predict_cli.main, [written[name], exported["rgb"]], capsys)
    assert_one_line_error(status, err)
    assert f"{written[name]}: model input" in err and "12" in err
    assert "is not one fixed-size image batch (N, H, W, C)" in err


@pytest.mark.parametrize("name", ["onnx", "litert"])
def test_a_file_that_is_not_an_image_is_named(
    name: str, exported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    status, _, err = run_main(predict_cli.main, [exported[name], text], capsys)
    assert_one_line_error(status, err)
    assert f"{text}: not an image in a supported format" in err


def test_a_color_image_feeds_a_gray_exported_model(
    exported: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run_main(
        predict_cli.main, [exported["gray-onnx"], exported["rgb"], "--top", "2"], capsys
    )
    assert status == 0
    assert out.splitlines()[0] == str(exported["rgb"]) and len(out.splitlines()) == 3


# --- measurement and report ------------------------------------------------------------------


def test_measure_sets_every_format_beside_keras(exported: dict[str, Path]) -> None:
    rng = np.random.default_rng(3)
    test = ImageSplit(_images(rng, 60).astype(np.uint8), rng.integers(0, 10, 60).astype(np.uint8))
    figures, reference = {}, None
    for runner in runners.all_formats(exported["keras"], exported["onnx"].parent):
        figures[runner.name], probabilities = measure.measure(runner, test, reference, calls=8)
        reference = probabilities if reference is None else reference
    assert list(figures) == ["keras", "onnx", "onnx-int8", "litert"]
    for name in ("onnx", "litert"):
        assert figures[name]["top1_agreement"] == 1.0
        assert figures[name]["accuracy"] == figures["keras"]["accuracy"]
        assert figures[name]["max_probability_difference"] < 1e-4
    for name, row in figures.items():
        assert row["latency_ms_p95"] >= row["latency_ms_median"] > 0
        assert row["throughput_images_per_s"] > 0
        assert row["size_bytes"] == Path(exported[name]).stat().st_size


def test_a_folder_without_exports_is_named(exported: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no exported model"):
        list(runners.all_formats(exported["keras"], tmp_path))


def _measured_document() -> dict:
    """A measure_edge document, its numbers chosen to check the report's arithmetic."""

    def row(accuracy: float, size: int, latency: float) -> dict[str, float]:
        return {
            "accuracy": accuracy, "top1_agreement": 0.999, "max_probability_difference": 2e-6,
            "size_bytes": size, "latency_ms_median": latency, "latency_ms_p95": latency * 1.5,
            "throughput_images_per_s": 1000.0,
        }  # fmt: skip

    return {
        "variant": "cnn74", "test_images": 10000, "latency_calls": 500, "throughput_batch": 256,
        "machine": {
            "cpu": "Test CPU", "cores": 2,
            "versions": {"onnxruntime": "1.32.0", "ai-edge-litert": "2.3.0"},
        },
        "formats": {
            "keras": row(0.75, 19_000_000, 40.0), "onnx": row(0.75, 6_500_000, 0.5),
            "onnx-int8": row(0.74, 1_700_000, 0.4), "litert": row(0.748, 6_500_000, 0.6),
        },
    }  # fmt: skip


def test_the_report_sets_each_format_beside_keras_and_int8_beside_float() -> None:
    document = _measured_document()
    lines = "\n".join(edge_report.render([edge_report.EdgeResult("cnn74", document)]))
    assert "## Edge: forward only, without Keras" in lines
    assert (
        "Measured on Test CPU (2 cores), 10,000 test images, 500 timed calls at batch 1; "
        "onnxruntime 1.32.0, ai-edge-litert 2.3.0." in lines
    )
    (onnx_row,) = [line for line in lines.splitlines() if "ONNX Runtime (.onnx)" in line]
    cells = [cell.strip() for cell in onnx_row.strip("|").split("|")]
    assert cells[2:] == [
        "75.00%", "+0.00 pt", "99.90%", "2e-06", "6.50 MB", "0.50 ms", "0.75 ms", "0.013×",
        "1,000 images/s",
    ]  # fmt: skip
    int8_row = lines.splitlines()[-1]
    assert [cell.strip() for cell in int8_row.strip("|").split("|")] == [
        "`cnn74`", "-1.00 pt", "26%", "0.80×",
    ]  # fmt: skip
    assert edge_report.render([]) == []


def test_variants_measured_on_different_machines_each_name_theirs() -> None:
    here, there = _measured_document(), _measured_document()
    there["machine"] = {**there["machine"], "cpu": "Other CPU", "cores": 16}
    results = [
        edge_report.EdgeResult("cnn74", here),
        edge_report.EdgeResult("cnn79", there),
        edge_report.EdgeResult("cnn84", here),
    ]
    lines = edge_report.render(results)
    assert [line for line in lines if "measured on" in line.lower()] == [
        "- `cnn74`, `cnn84`: measured on Test CPU (2 cores), 10,000 test images, 500 timed calls "
        "at batch 1; onnxruntime 1.32.0, ai-edge-litert 2.3.0.",
        "- `cnn79`: measured on Other CPU (16 cores), 10,000 test images, 500 timed calls at "
        "batch 1; onnxruntime 1.32.0, ai-edge-litert 2.3.0.",
    ]


def test_the_targets_benchmark_prints_each_target_beside_its_figure(tmp_path: Path) -> None:
    measured = tmp_path / "cnn74.json"
    measured.write_text(json.dumps(_measured_document()))
    script = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "edge_targets.py"), str(measured)]
    done = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    table = [re.split(r"\s{2,}", line.strip()) for line in done.stdout.splitlines()[2:]]
    verdicts = {
        (format_name, target): (value, verdict) for _, format_name, target, value, verdict in table
    }
    assert len(table) == len(verdicts) == 2 + 2 + 3 + 3  # two float formats, int8, latencies
    assert verdicts["onnx", "top-1 agreement with Keras >= 99.9 %"] == ("99.90%", "met")
    assert verdicts["onnx-int8", "|accuracy - float ONNX| <= 1 pt"] == ("1.00 pt", "met")
    assert verdicts["litert", "|accuracy - Keras| <= 0.1 pt"] == ("0.20 pt", "MISSED")
    assert verdicts["onnx-int8", "file / float ONNX <= 30 %"] == ("26.2%", "met")
    assert verdicts["onnx-int8", "batch-1 latency / float ONNX (goal < 1)"] == ("0.80", "reported")
    strict = subprocess.run([*script, "--strict"], capture_output=True, text=True, timeout=60)
    assert strict.returncode == 1


@pytest.mark.slow
def test_the_edge_extra_alone_runs_predict_on_both_formats(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    """A fresh venv with `pip install ".[edge]"` only: no Keras, no TensorFlow in it at all."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    source = tmp_path / "source"  # what a wheel is built from; the build writes here
    shutil.copytree(
        PROJECT_ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    subprocess.run([*pip, f"{source}[edge]"], check=True, capture_output=True, timeout=600)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    names = {package["name"].lower() for package in json.loads(installed)}
    assert {"onnxruntime", "ai-edge-litert", "numpy", "pillow"} <= names
    assert not names & {"keras", "tensorflow", "jax", "torch", "dvc", "mlflow"}
    expected = _predicted(exported["keras"], exported["batch"])
    for name in EXPORTED:
        done = subprocess.run(
            [str(venv / "bin" / "deeplecture-predict"), str(exported[name]),
             str(exported["batch"]), "--json"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert [entry["top"][0]["class"] for entry in json.loads(done.stdout)] == expected


# --- deeplecture-evaluate on exported files, forward only -----------------------------------


def _evaluate_json(model: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    status = evaluate_cli.main([str(model), "--data", str(data), "--json", "--batch-size", "16"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out)


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_evaluate_scores_an_exported_file_as_keras_scores_its_model(
    exported: dict[str, Path], tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same document for every format; the exported loss is the crossentropy alone, as an
    exported graph has no weight penalty (cnn88's convolutions carry L2 in Keras)."""
    keras_document = _evaluate_json(exported["keras"], tiny_data, capsys)
    model = keras.saving.load_model(exported["keras"])
    penalty = float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses))
    assert penalty > 0
    assert keras_document["format"] == "keras"
    assert keras_document["param_count"] == model.count_params()
    for name, runtime_format in [("onnx", "onnx"), ("litert", "litert")]:
        document = _evaluate_json(exported[name], tiny_data, capsys)
        assert set(document) == set(keras_document)
        assert document["format"] == runtime_format and document["param_count"] is None
        assert document["images"] == keras_document["images"] == 60
        assert document["accuracy"] == pytest.approx(keras_document["accuracy"], abs=1e-6)
        assert document["loss"] == pytest.approx(keras_document["loss"] - penalty, rel=1e-4)
    int8 = _evaluate_json(exported["onnx-int8"], tiny_data, capsys)
    assert int8["format"] == "onnx" and 0 <= int8["accuracy"] <= 1 and int8["loss"] > 0


@pytest.mark.parametrize("name", ["onnx", "litert"])
def test_evaluate_on_an_exported_file_imports_neither_keras_nor_tensorflow(
    name: str, exported: dict[str, Path], tiny_data: Path
) -> None:
    """In a fresh interpreter, as the `edge` install runs it: the lecture's printout."""
    done = _run_without_keras("evaluate", [str(exported[name]), "--data", str(tiny_data)])
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == [
        "Test loss",
        "Test accuracy",
    ]


@pytest.mark.parametrize("name", ["gray-onnx", "gray-litert"])
def test_evaluate_refuses_an_exported_model_of_other_images_in_one_line(
    name: str, exported: dict[str, Path], tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = evaluate_cli.main([str(exported[name]), "--data", str(tiny_data)])
    err = capsys.readouterr().err
    assert_one_line_error(status, err)
    assert "(28, 28, 1)" in err and "(32, 32, 3)" in err


@pytest.mark.parametrize("where", ["sidecar", "onnx metadata"])
def test_exported_class_names_must_be_one_distinct_name_per_output(
    where: str, exported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    model = folder / ("model.tflite" if where == "sidecar" else "model.onnx")
    shutil.copy(exported["litert" if where == "sidecar" else "onnx"], model)
    three = ["cat", "dog", "ship"]  # the model has 10 outputs
    if where == "sidecar":
        (folder / files.CLASS_NAMES_FILE).write_text(json.dumps({"class_names": three}))
    else:
        export.carry_class_names(model, three)
    status, _, err = run_main(predict_cli.main, [model, exported["rgb"]], capsys)
    assert_one_line_error(status, err)
    assert str(model.parent) in err and "3 class names for a model of 10 outputs" in err
