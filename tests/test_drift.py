"""Pinned metrics: a run within tolerance passes, a drift fails with a table of what moved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deeplecture.reporting.drift import main, platform_key


def _metrics(
    root: Path, variant: str, accuracy: float, loss: float, profile: str = "smoke"
) -> None:
    """A metrics file as evaluate writes it, with its provenance beside the plots."""
    path = root / "cifar10" / f"{variant}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"test_accuracy": accuracy, "test_loss": loss, "epochs": 2}))
    provenance = root.parent / "plots" / "provenance" / "cifar10" / f"{variant}.json"
    provenance.parent.mkdir(parents=True, exist_ok=True)
    provenance.write_text(json.dumps({"profile": profile, "backend": "tensorflow"}))


def test_pin_then_check_within_and_beyond_tolerance(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    metrics, pinned = tmp_path / "metrics", tmp_path / "pinned.json"
    _metrics(metrics, "cnn74", 0.30, 1.90)
    _metrics(metrics, "cnn79", 0.20, 2.30)
    assert main(["pin", "--pinned", str(pinned), "--metrics", str(metrics)]) == 0
    models = json.loads(pinned.read_text())["platforms"][platform_key()]["models"]
    assert models["cifar10/cnn74"]["test_accuracy"] == 0.30

    _metrics(metrics, "cnn74", 0.31, 1.88)  # inside ±0.02 / ±0.05
    assert main(["check", "--pinned", str(pinned), "--metrics", str(metrics)]) == 0
    assert "MOVED" not in capsys.readouterr().out

    _metrics(metrics, "cnn79", 0.15, 2.30)  # accuracy moved by 0.05
    assert main(["check", "--pinned", str(pinned), "--metrics", str(metrics)]) == 1
    table = capsys.readouterr().out
    moved = [line for line in table.splitlines() if "MOVED" in line]
    assert moved == [
        "| cifar10/cnn79 | test_accuracy | 0.2000 | 0.1500 | -0.0500 | ±0.02 | fixed | MOVED |"
    ]


def test_a_model_missing_from_the_run_counts_as_moved(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    metrics, pinned = tmp_path / "metrics", tmp_path / "pinned.json"
    _metrics(metrics, "cnn74", 0.30, 1.90)
    _metrics(metrics, "cnn88", 0.10, 2.30)
    main(["pin", "--pinned", str(pinned), "--metrics", str(metrics)])
    (metrics / "cifar10" / "cnn88.json").unlink()
    assert main(["check", "--pinned", str(pinned), "--metrics", str(metrics)]) == 1
    assert "| cifar10/cnn88 | test_accuracy | 0.1000 | missing | n/a |" in capsys.readouterr().out


def test_a_run_is_compared_with_its_own_platforms_pin_only(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Another instruction set rounds otherwise: its pin is kept, never compared with."""
    metrics, pinned = tmp_path / "metrics", tmp_path / "pinned.json"
    _metrics(metrics, "cnn74", 0.30, 1.90)
    other = {"models": {"cifar10/cnn74": {"test_accuracy": 0.90, "test_loss": 0.10}}}
    document = {"tolerance": {"test_accuracy": 0.02, "test_loss": 0.05}}
    pinned.write_text(json.dumps({**document, "platforms": {"riscv64 baseline": other}}))

    assert main(["check", "--pinned", str(pinned), "--metrics", str(metrics)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert f"no pinned metrics for this platform ({platform_key()}; pinned: riscv64" in line
    assert "deeplecture-drift pin" in line

    assert main(["pin", "--pinned", str(pinned), "--metrics", str(metrics)]) == 0
    platforms = json.loads(pinned.read_text())["platforms"]
    assert platforms["riscv64 baseline"] == other  # kept
    assert main(["check", "--pinned", str(pinned), "--metrics", str(metrics)]) == 0


def test_metrics_of_another_profile_are_refused_not_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    metrics, pinned = tmp_path / "metrics", tmp_path / "pinned.json"
    _metrics(metrics, "cnn74", 0.30, 1.90)
    assert main(["pin", "--pinned", str(pinned), "--metrics", str(metrics)]) == 0
    assert json.loads(pinned.read_text())["profile"] == "smoke"
    capsys.readouterr()

    _metrics(metrics, "cnn74", 0.7163, 1.33, profile="full")  # the committed full-profile run
    for action in ("check", "summary"):
        assert main([action, "--pinned", str(pinned), "--metrics", str(metrics)]) == 1
        (line,) = capsys.readouterr().err.splitlines()
        assert line == (
            f"error: metrics of cifar10/cnn74 were measured in the full profile, {pinned} pins "
            "the smoke profile: compare a run of the same profile"
        )


def test_the_summary_is_markdown_beside_the_pin_or_the_values_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    metrics, pinned = tmp_path / "metrics", tmp_path / "pinned.json"
    _metrics(metrics, "cnn74", 0.30, 1.90)
    document = {"profile": "smoke", "tolerance": {"test_accuracy": 0.02, "test_loss": 0.05}}
    pinned.write_text(json.dumps({**document, "platforms": {}}))
    assert main(["summary", "--pinned", str(pinned), "--metrics", str(metrics)]) == 0
    alone = capsys.readouterr().out
    assert alone.startswith(f"## Smoke metrics on {platform_key()}\n")
    assert "has no pin for this platform" in alone
    assert "| cifar10/cnn74 | 0.3000 | 1.9000 |" in alone

    main(["pin", "--pinned", str(pinned), "--metrics", str(metrics)])
    _metrics(metrics, "cnn74", 0.20, 1.90)
    capsys.readouterr()
    # Moved, and still exit 0: the summary informs, the check step fails the job.
    assert main(["summary", "--pinned", str(pinned), "--metrics", str(metrics)]) == 0
    beside = capsys.readouterr().out
    assert "(1 of 2 moved)" in beside
    assert (
        "| cifar10/cnn74 | test_accuracy | 0.3000 | 0.2000 | -0.1000 | ±0.02 | fixed | MOVED |"
        in beside
    )


def test_the_platform_is_the_most_capable_float_instruction_set(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse2 avx avx2 avx512f avx512_bf16\n")
    assert platform_key(cpuinfo).endswith(" avx512_bf16")
    cpuinfo.write_text("processor : 0\nflags : fpu sse2 avx avx2 fma\n")
    assert platform_key(cpuinfo).endswith(" avx2")


def _gpu_metrics(root: Path, variant: str, accuracy: float, device: str = "NVIDIA H200") -> None:
    """A full-profile run as evaluate writes it on a GPU: its provenance names the device."""
    _metrics(root, variant, accuracy, 1.0, profile="full")
    provenance = root.parent / "plots" / "provenance" / "cifar10" / f"{variant}.json"
    stated = {"profile": "full", "backend": "jax", "device": device, "versions": {"jax": "0.11.2"}}
    provenance.write_text(json.dumps(stated))


def test_a_gpu_run_is_pinned_under_its_device_and_backend_wherever_it_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The CPU that checks committed GPU metrics is not where they were measured."""
    metrics, pinned = tmp_path / "metrics", tmp_path / "pinned.json"
    _gpu_metrics(metrics, "cnn74", 0.7232)
    _gpu_metrics(metrics, "cnn88", 0.8155)
    pin = ["pin", "--pinned", str(pinned), "--metrics", str(metrics), "--commit", "e521a54"]
    assert main(pin) == 0
    platforms = json.loads(pinned.read_text())["platforms"]
    assert list(platforms) == ["NVIDIA H200 jax"]  # not this machine's platform_key()
    assert platforms["NVIDIA H200 jax"]["measured_on"] == {
        "device": "NVIDIA H200", "backend": "jax", "versions": {"jax": "0.11.2"},
        "commit": "e521a54",
    }  # fmt: skip
    capsys.readouterr()
    assert main(["check", "--pinned", str(pinned), "--metrics", str(metrics)]) == 0
    assert capsys.readouterr().out.startswith("pinned metrics of NVIDIA H200 jax:")

    _gpu_metrics(metrics, "cnn88", 0.7900)  # a GPU rerun that lost 2.55 points
    assert main(["check", "--pinned", str(pinned), "--metrics", str(metrics)]) == 1


def test_metrics_measured_on_several_devices_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    metrics, pinned = tmp_path / "metrics", tmp_path / "pinned.json"
    _gpu_metrics(metrics, "cnn74", 0.72)
    _gpu_metrics(metrics, "cnn79", 0.74, device="NVIDIA H100 80GB HBM3")
    assert main(["pin", "--pinned", str(pinned), "--metrics", str(metrics)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: the metrics mix devices (NVIDIA H100 80GB HBM3 (jax), NVIDIA")
    assert not pinned.exists()


def test_the_committed_h200_metrics_pass_their_pin(capsys: pytest.CaptureFixture) -> None:
    root = Path(__file__).resolve().parents[1]
    platform = root / "reports" / "platforms" / "h200-jax"
    pinned = root / "reports" / "pinned" / "full-h200-jax.json"
    assert main(["check", "--pinned", str(pinned), "--metrics", str(platform / "metrics")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pinned metrics of NVIDIA H200 jax:")
    assert "| cifar10/cnn88 | test_accuracy | 0.8155 | 0.8155 | +0.0000 |" in out
    document = json.loads(pinned.read_text())
    assert document["profile"] == "full"
    assert document["platforms"]["NVIDIA H200 jax"]["measured_on"]["commit"].startswith("e521a54")


_VALID_PIN = {
    "profile": "smoke",
    "tolerance": {"test_accuracy": 0.02, "test_loss": 0.05},
    "platforms": {"x86_64 avx2": {"models": {"cifar10/cnn74": {"test_accuracy": 0.3}}}},
}


def _pin_with(**changes: object) -> str:
    return json.dumps({**_VALID_PIN, **changes})


MALFORMED_PINS = {
    "empty": ("", "not valid JSON (Expecting value at line 1 column 1"),
    "truncated": (json.dumps(_VALID_PIN)[:70], "not valid JSON"),
    "a list": ("[]", "the document should be an object with tolerance and platforms, got []"),
    "NaN": (_pin_with(tolerance={"test_accuracy": float("nan")}), "the number NaN, which JSON"),
    "Infinity": ('{"tolerance": {"test_loss": -Infinity}}', "the number -Infinity"),
    "beyond float": ('{"tolerance": {"test_loss": 1e999}}', "the number 1e999"),
    "not utf-8": (b'{"profile": "\xff"}', "not UTF-8 JSON text"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "no tolerance": (json.dumps({"platforms": {}}), "tolerance should be an object of metric"),
    "tolerance a string": (_pin_with(tolerance="0.02"), "tolerance should be an object"),
    "negative tolerance": (_pin_with(tolerance={"test_loss": -1}), "tolerance.test_loss should"),
    "boolean tolerance": (_pin_with(tolerance={"test_loss": True}), "got true"),
    "profile a number": (_pin_with(profile=3), "profile should be a profile name, got 3"),
    "platforms a list": (_pin_with(platforms=[]), "platforms should be an object"),
    "no models": (_pin_with(platforms={"x": {}}), "platforms['x'].models should be an object"),
    "metrics a list": (
        _pin_with(platforms={"x": {"models": {"cifar10/cnn74": [0.3]}}}),
        "platforms['x'].models['cifar10/cnn74'] should be an object of metric: number, got [0.3]",
    ),
    "metric a string": (
        _pin_with(platforms={"x": {"models": {"m": {"test_loss": "1.9"}}}}),
        """platforms['x'].models['m'].test_loss should be a number, got "1.9\"""",
    ),
}


@pytest.mark.parametrize("action", ["check", "summary", "pin"])
@pytest.mark.parametrize("case", MALFORMED_PINS)
def test_a_malformed_pinned_file_is_one_line_naming_it(
    case: str, action: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Refused before anything is compared or written: a pin over a broken file loses nothing."""
    metrics, pinned = tmp_path / "metrics", tmp_path / "pinned.json"
    _metrics(metrics, "cnn74", 0.30, 1.90)
    text, expected = MALFORMED_PINS[case]
    pinned.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = pinned.read_bytes()
    assert main([action, "--pinned", str(pinned), "--metrics", str(metrics)]) == 1
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith(f"error: {pinned}: ") and expected in line
    assert captured.out == "" and pinned.read_bytes() == before


@pytest.mark.parametrize("action", ["check", "summary"])
def test_a_missing_pinned_file_is_named_and_pin_creates_it(
    action: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    metrics, pinned = tmp_path / "metrics", tmp_path / "nowhere" / "pinned.json"
    _metrics(metrics, "cnn74", 0.30, 1.90)
    _metrics(metrics, "cnn79", 0.20, 2.30, profile="full")  # what a missing pin hid before
    assert main([action, "--pinned", str(pinned), "--metrics", str(metrics)]) == 1
    assert capsys.readouterr().err == (
        f"error: no pinned file at {pinned}: pin a run first "
        f"(deeplecture-drift pin --pinned {pinned})\n"
    )
    (metrics / "cifar10" / "cnn79.json").unlink()
    pinned.parent.mkdir()
    assert main(["pin", "--pinned", str(pinned), "--metrics", str(metrics)]) == 0
    assert main([action, "--pinned", str(pinned), "--metrics", str(metrics)]) == 0


def test_a_metric_the_pin_compares_missing_from_a_metrics_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    metrics, pinned = tmp_path / "metrics", tmp_path / "pinned.json"
    _metrics(metrics, "cnn74", 0.30, 1.90)
    pinned.write_text(_pin_with(tolerance={"top5_accuracy": 0.01}))
    assert main(["check", "--pinned", str(pinned), "--metrics", str(metrics)]) == 1
    path = metrics / "cifar10" / "cnn74.json"
    assert capsys.readouterr().err == f"error: {path}: no top5_accuracy in this metrics file\n"
