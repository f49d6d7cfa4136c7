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
