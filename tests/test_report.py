"""The report is generated from metrics files only: every number in it comes from them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from conftest import table_row, write_params
from deeplecture.params import load_params
from deeplecture.reporting.build import build_report
from deeplecture.reporting.results import describe_source, planned_variants

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# Standalone numbers: not part of a word, a path or a name such as cnn74, CIFAR-10 or L2.
NUMBER = re.compile(r"(?<![\w./-])[+-]?\d[\d,]*(?:\.\d+)?(?![\w.]\w|[\w/])")


def _metrics(accuracy: float, lecture: float, params: int, epochs: int, seconds: float) -> dict:
    return {
        "test_accuracy": accuracy, "test_loss": round(1.7 - accuracy, 6),
        "lecture_accuracy": lecture,
        "accuracy_gap": round(accuracy - lecture, 6), "param_count": params, "epochs": epochs,
        "train_seconds": seconds, "test_images": 10,
    }  # fmt: skip


RUN = {
    "data_source": "/data/cifar10-jpeg.tar.gz", "profile": "full", "backend": "jax",
    "device": "NVIDIA H100 80GB HBM3", "versions": {"jax": "0.10.2", "keras": "3.15.1"},
}  # fmt: skip


FIXED = {
    "cnn74": _metrics(0.7312, 0.74, 1_639_914, 25, 1523.4),
    "cnn79": _metrics(0.7874, 0.79, 1_640_182, 25, 1611.0),
    "cnn84": _metrics(0.8391, 0.84, 300_214, 25, 2410.7),
    "cnn88": _metrics(0.8807, 0.88, 300_214, 125, 14021.9),
}
FOUNDATIONS = {
    "least_squares.iterations_to_1e-6": 1771,
    "or_neuron.output_00": 0.27,
    "xor.lecture.y_01": 0.9050837,
}


def _plot_file(root: Path, kind: str, variant: str, dataset: str = "cifar10") -> Path:
    """Where the stages write (dvc.yaml): plots/<kind>/<dataset>/<variant>.csv|json."""
    suffix = ".json" if kind == "provenance" else ".csv"
    path = root / "plots" / kind / dataset / f"{variant}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_inputs(root: Path) -> None:
    for variant, metrics in FIXED.items():
        (root / "metrics" / "cifar10").mkdir(parents=True, exist_ok=True)
        (root / "metrics" / "cifar10" / f"{variant}.json").write_text(json.dumps(metrics))
        _plot_file(root, "provenance", variant).write_text(json.dumps(RUN))
        _plot_file(root, "per_class", variant).write_text(
            "class,accuracy\n" + "".join(f"{name},0.5\n" for name in CLASSES)
        )
        rows = ["epoch,loss,accuracy,val_loss,val_accuracy"]
        rows += [
            f"{e},{2 - e / 10},{0.3 + e / 20},{2.1 - e / 10},{0.28 + e / 20}" for e in range(3)
        ]
        _plot_file(root, "history", variant).write_text("\n".join(rows) + "\n")
        pairs = [(CLASSES[i], CLASSES[i if i % 2 else (i + 1) % 10]) for i in range(10)]
        _plot_file(root, "predictions", variant).write_text(
            "actual,predicted\n" + "\n".join(f"{a},{p}" for a, p in pairs) + "\n"
        )
    (root / "reports").mkdir()
    (root / "reports" / "foundations.json").write_text(json.dumps(FOUNDATIONS))


def _planned(root: Path) -> list:
    return planned_variants(load_params(write_params(root, {})))  # as the report stage reads it


def _cells(report: str, model: str) -> list[str]:
    return table_row(report, f"`{model}`")


def _generate(root: Path) -> str:
    build_report(
        root / "metrics", root / "plots", root / "reports" / "foundations.json", root / "reports",
        _planned(root),
    )  # fmt: skip
    return (root / "reports" / "results.md").read_text()


def _renderings(metrics: dict) -> set[str]:
    """Every way the report may print a number taken from one metrics file."""
    found = set()
    for value in metrics.values():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        found |= {
            str(value),
            f"{value:,}",
            f"{value:.4f}",
            f"{value:.6g}",
            f"{100 * value:.1f}",
            f"{100 * value:.2f}",
        }
        minutes, seconds = divmod(round(value), 60)
        hours, rest = divmod(minutes, 60)
        found |= {str(minutes), f"{seconds:02d}", str(hours), f"{rest:02d}"}
    if "test_accuracy" in metrics:
        found.add(f"{100 * (metrics['test_accuracy'] - metrics['lecture_accuracy']):+.2f}")
    return found


def test_every_number_in_the_report_comes_from_the_metrics_files(tmp_path: Path) -> None:
    _write_inputs(tmp_path)
    report = _generate(tmp_path)
    # The lecture's figures of the variants not yet run (Fashion here) come from params.yaml.
    lecture = {plan.variant: plan.lecture_accuracy for plan in _planned(tmp_path)}
    allowed = set().union(*(_renderings(m) for m in [*FIXED.values(), FOUNDATIONS, lecture]))
    numbers = NUMBER.findall(report)
    assert len(numbers) >= 35  # every table cell with a number is there
    typed_by_hand = [n for n in numbers if n not in allowed]
    assert typed_by_hand == []


def test_each_row_sets_the_reproduced_figure_beside_the_lectures(tmp_path: Path) -> None:
    _write_inputs(tmp_path)
    report = _generate(tmp_path)
    cells = _cells(report, "cnn88")
    assert cells[:8] == [
        "`cnn88` †", "88.0 %", "88.07 %", "+0.07 pt", "0.8193", "300,214", "125", "3 h 53 min",
    ]  # fmt: skip
    assert "JPEG" in cells[8] and "full profile" in cells[8]
    assert cells[9] == "NVIDIA H100 80GB HBM3, jax 0.10.2, Keras 3.15.1"
    assert "validation data is the test set" in report  # the quirk beside the row it affects
    assert _cells(report, "least_squares.iterations_to_1e-6") == [
        "`least_squares.iterations_to_1e-6`", "1771",
    ]  # fmt: skip


def test_a_variant_without_metrics_is_shown_as_not_yet_run_with_its_command(
    tmp_path: Path,
) -> None:
    """A fresh clone has no Fashion-MNIST metrics (and, on a CPU, no cnn88 at full settings)."""
    _write_inputs(tmp_path)
    (tmp_path / "metrics" / "cifar10" / "cnn88.json").unlink()
    report = _generate(tmp_path)

    assert _cells(report, "cnn88")[:3] == ["`cnn88`", "88.0 %", "not yet run"]
    assert "- `cnn88` has not run yet: `dvc repro`." in report
    assert _cells(report, "fashion")[:3] == ["`fashion`", "92.0 %", "not yet run"]
    assert "- `fashion` has not run yet: `dvc repro fashion_mnist/dvc.yaml`." in report
    assert not (tmp_path / "reports" / "figures" / "confusion" / "cnn88.png").exists()


def test_the_fashion_row_appears_from_its_metrics_files(tmp_path: Path) -> None:
    _write_inputs(tmp_path)
    fashion = tmp_path / "metrics" / "fashion_mnist"
    fashion.mkdir()
    (fashion / "fashion.json").write_text(json.dumps(_metrics(0.9187, 0.92, 412_778, 12, 811.0)))
    source = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
    _plot_file(tmp_path, "provenance", "fashion", "fashion_mnist").write_text(
        json.dumps({**RUN, "data_source": source})
    )
    report = _generate(tmp_path)

    assert "## Fashion-MNIST" in report
    cells = _cells(report, "fashion")
    assert cells[:7] == ["`fashion`", "92.0 %", "91.87 %", "-0.13 pt", "0.7813", "412,778", "12"]
    assert cells[8] == "canonical Fashion-MNIST (full profile)"
    assert "has not run yet" not in report


def test_a_changed_metrics_file_changes_the_report(tmp_path: Path) -> None:
    _write_inputs(tmp_path)
    before = _generate(tmp_path)
    changed = {**FIXED["cnn74"], "test_accuracy": 0.6543}
    (tmp_path / "metrics" / "cifar10" / "cnn74.json").write_text(json.dumps(changed))
    after = _generate(tmp_path)
    assert "73.12 %" in before and "73.12 %" not in after and "65.43 %" in after


def test_figures_are_written_and_readable(tmp_path: Path) -> None:
    _write_inputs(tmp_path)
    report = _generate(tmp_path)
    figures = tmp_path / "reports" / "figures"
    expected = ["progression.png"] + [
        f"{kind}/{v}.png" for kind in ("learning_curves", "confusion") for v in FIXED
    ]
    for name in expected:
        with Image.open(figures / name) as image:
            assert image.size[0] >= 700 and image.size[1] >= 450  # readable without zooming
    assert "](figures/progression.png)" in report
    assert "[learning curves](figures/learning_curves/cnn79.png)" in report


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "canonical CIFAR-10 (binary)"),
        ("../shared/data/cifar10-jpeg.tar.gz", "CIFAR-10 re-encoded as JPEG (lossy)"),
        ("data/sample/cifar10-sample.tar.gz", "bundled CIFAR-10 sample"),
        ("/mnt/mirror/my-cifar.tar.gz", "local copy: my-cifar.tar.gz"),
    ],
)
def test_the_data_source_is_named_for_what_it_is(source: str, kind: str) -> None:
    assert describe_source(source) == kind


H200 = {
    "data_source": "cifar10-jpeg.tar.gz", "profile": "full", "backend": "jax",
    "device": "NVIDIA H200", "versions": {"jax": "0.11.2", "keras": "3.15.1"},
}  # fmt: skip


def _write_platform(root: Path, provenance: dict = H200) -> Path:
    """A measured platform in reports/platforms/h200-jax/: cnn74 and cnn88 ran there, cnn88 with
    ten epochs whose per-epoch figures are the test split's (validation: test)."""
    folder = root / "reports" / "platforms" / "h200-jax"
    runs = {"cnn74": _metrics(0.7232, 0.74, 1_639_914, 25, 30.87),
            "cnn88": _metrics(0.8155, 0.88, 300_214, 125, 338.16)}  # fmt: skip
    for variant, metrics in runs.items():
        (folder / "metrics" / "cifar10").mkdir(parents=True, exist_ok=True)
        (folder / "metrics" / "cifar10" / f"{variant}.json").write_text(json.dumps(metrics))
        _plot_file(folder, "provenance", variant).write_text(json.dumps(provenance))
    late = [0.61, 0.64, 0.66, 0.67, 0.69, 0.70, 0.71, 0.72, 0.7973, 0.8296]
    _plot_file(folder, "history", "cnn88").write_text(
        "epoch,loss,accuracy,val_accuracy\n"
        + "".join(f"{e},1.0,0.5,{v}\n" for e, v in enumerate(late))
    )
    (folder / "README.md").write_text("# One H200\n")
    return folder


def _generate_with_platforms(root: Path) -> str:
    build_report(
        root / "metrics", root / "plots", root / "reports" / "foundations.json", root / "reports",
        _planned(root), platforms_dir=root / "reports" / "platforms",
    )  # fmt: skip
    return (root / "reports" / "results.md").read_text()


def _rows(report: str, model: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in report.splitlines()
        if line.startswith(f"| `{model}`")
    ]


def test_a_measured_platform_adds_a_row_per_variant_beside_the_pipelines_own(
    tmp_path: Path,
) -> None:
    _write_inputs(tmp_path)
    (tmp_path / "metrics" / "cifar10" / "cnn88.json").unlink()  # cnn88: not run on the CPU
    _write_platform(tmp_path)
    report = _generate_with_platforms(tmp_path)

    own, h200 = _rows(report, "cnn74")
    assert own[:3] == ["`cnn74`", "74.0 %", "73.12 %"] and own[10] == "`metrics/`"
    assert h200[:4] == ["`cnn74`", "74.0 %", "72.32 %", "-1.68 pt"]
    assert h200[7] == "0 min 31 s"
    assert h200[9] == "NVIDIA H200, jax 0.11.2, Keras 3.15.1"
    assert h200[10] == "[`h200-jax`](platforms/h200-jax/README.md)"
    pending, measured = _rows(report, "cnn88")
    assert pending[2] == "not yet run" and measured[2] == "81.55 %"
    assert "validation data is the test set" in report  # its quirk, though only the H200 ran it
    figures = tmp_path / "reports" / "figures"
    assert (figures / "learning_curves" / "h200-jax" / "cnn88.png").is_file()
    assert (
        "- `cnn88` on `h200-jax`: [learning curves](figures/learning_curves/h200-jax/cnn88.png)"
        in report
    )


def test_the_gaps_to_the_lecture_are_listed_per_row_from_its_files(tmp_path: Path) -> None:
    _write_inputs(tmp_path)
    _write_platform(tmp_path)
    report = _generate_with_platforms(tmp_path)
    gaps = report.split("## What separates each result from the lecture's")[1].split("\n## ")[0]

    # Every row is on the JPEG copy: the range of their differences, from the metrics files.
    assert "- Data, CIFAR-10 re-encoded as JPEG (lossy): they differ, by +0.07 to -6.45 pt." in gaps
    (cnn88,) = [line for line in gaps.splitlines() if line.startswith("- `cnn88` in [`h200-jax`]")]
    # One seed: the last fifth of its ten epochs (2), test accuracy because validation is test.
    assert "over the last 2 epochs the test accuracy spans 79.73–82.96 %" in cnn88
    # The run predates train.<variant>.augmentation: it used the two-resampling Keras layers.
    assert "augmentation `keras_layers`" in cnn88 and "`ImageDataGenerator`" in cnn88
    (cnn74,) = [line for line in gaps.splitlines() if line.startswith("- `cnn74` in [`h200")]
    assert "augmentation" not in cnn74 and "one seed" in cnn74
    assert "No recipe is tuned to reach the lecture's numbers" in gaps


def test_a_run_with_the_lectures_augmentation_states_no_augmentation_gap(tmp_path: Path) -> None:
    _write_inputs(tmp_path)
    _write_platform(tmp_path, {**H200, "augmentation": "lecture"})
    report = _generate_with_platforms(tmp_path)
    (cnn88,) = [line for line in report.splitlines() if line.startswith("- `cnn88` in [`h200")]
    assert "one seed" in cnn88 and "augmentation" not in cnn88


def test_a_platforms_stage_times_come_from_its_run_summary(tmp_path: Path) -> None:
    _write_inputs(tmp_path)
    folder = _write_platform(tmp_path)
    summary = {"progression": {
        "stage_seconds": {"preprocess@cifar10": 11.0, "train@cnn74": 44.2},
        "variants": {"cnn74": {"train_seconds": 30.87}},
    }}  # fmt: skip
    (folder / "gpu-run-call2.json").write_text(json.dumps(summary))
    report = _generate_with_platforms(tmp_path)
    assert "## Stage times on [`h200-jax`](platforms/h200-jax/README.md)" in report
    assert table_row(report, "`train@cnn74`") == ["`train@cnn74`", "44.2 s", "30.9 s", "13.3 s"]
    assert table_row(report, "`preprocess@cifar10`") == ["`preprocess@cifar10`", "11.0 s", "—", "—"]


def test_the_readmes_h200_times_are_the_committed_files() -> None:
    """README "How long it takes" quotes the H200 run: each figure must be the files' own."""
    root = Path(__file__).resolve().parents[1]
    platform = root / "reports" / "platforms" / "h200-jax"
    section = (root / "README.md").read_text().split("## How long it takes")[1].split("\n## ")[0]
    seconds = {
        variant: json.loads((platform / "metrics" / "cifar10" / f"{variant}.json").read_text())[
            "train_seconds"
        ]
        for variant in ("cnn74", "cnn79", "cnn84", "cnn88")
    }
    for variant, value in seconds.items():
        assert table_row(section, f"`{variant}`")[3] == f"{value:.1f} s"
    total = sum(seconds.values())
    assert f"{total:.1f} s ({total / 60:.1f} min) in total" in section
    progression = json.loads((platform / "gpu-run-call2.json").read_text())["progression"]
    stages = progression["stage_seconds"]
    assert f"download {stages['download@cifar10']:.1f} s" in section
    assert f"preprocess {stages['preprocess@cifar10']:.1f} s" in section
    for variant in ("cnn84", "cnn79"):
        outside = stages[f"train@{variant}"] - progression["variants"][variant]["train_seconds"]
        assert f"{outside:.1f} s (`{variant}`)" in section
        assert f"{stages[f'evaluate@{variant}']:.1f} s" in section
