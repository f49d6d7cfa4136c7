"""The lecture's Foundations numbers, reproduced exactly (fast, deterministic)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplecture.foundations.convexity import run_convexity
from deeplecture.foundations.least_squares import closed_form, steepest_descent
from deeplecture.foundations.logistic import run_logistic
from deeplecture.foundations.or_neuron import LECTURE_ERRORS, LECTURE_OUTPUTS, run_or_neuron
from deeplecture.foundations.run import run_all, summary_metrics, summary_tables
from deeplecture.foundations.xor import xor_corrected, xor_lecture

STAGE = Path(__file__).resolve().parents[1] / "stages" / "foundations.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _load_stage():
    # stages/ is not a package; load the script by path (no conftest, no sys.path edits).
    spec = importlib.util.spec_from_file_location("stage_foundations", STAGE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- least squares -----------------------------------------------------------------------


def test_least_squares_closed_form_is_identity_line():
    alpha, beta = closed_form(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    assert alpha == pytest.approx(0.0, abs=1e-15)
    assert beta == pytest.approx(1.0, abs=1e-15)


def test_steepest_descent_reaches_closed_form_in_exact_step_count():
    res = steepest_descent()
    assert res.closed_form == pytest.approx((0.0, 1.0), abs=1e-15)
    assert res.iterations == 1771  # λ = 0.01 from (0, 0): stable, exact count
    assert abs(res.descent[0] - 0.0) <= 1e-6
    assert abs(res.descent[1] - 1.0) <= 1e-6
    assert res.costs.shape == (1772,)
    assert np.all(np.diff(res.costs) < 0)  # SSE falls at every step
    assert steepest_descent().iterations == res.iterations  # deterministic


def test_steepest_descent_step_count_is_the_first_within_tolerance():
    assert steepest_descent(max_iterations=1771).iterations == 1771
    with pytest.raises(RuntimeError):
        steepest_descent(max_iterations=1770)  # one step short is still outside 1e-6


# --- logistic regression -----------------------------------------------------------------


def test_logistic_gradient_descent_matches_sklearn():
    res = run_logistic()
    assert res.max_abs_diff < 1e-6
    np.testing.assert_allclose(res.descent, res.sklearn, atol=1e-6)
    assert res.descent == pytest.approx((0.676706, -3.721882), abs=1e-6)
    assert np.all(np.diff(res.costs) <= 1e-12)  # cross-entropy never rises


# --- convexity ---------------------------------------------------------------------------


def test_sse_is_not_convex_but_cross_entropy_is():
    res = run_convexity()
    assert not res.sse_is_convex
    assert res.sse_min_second_diff < -1e-3
    assert res.cross_entropy_is_convex
    assert res.cross_entropy_min_second_diff > 0.0


# --- OR neuron ---------------------------------------------------------------------------


def test_or_neuron_table():
    res = run_or_neuron()
    np.testing.assert_allclose(res.sums, [-0.99, -0.55, -1.15, -0.71], atol=1e-12)
    # Computed, rounded to 2 decimals. Row 01 is 0.36586 → 0.37 and error −0.634 → −0.63.
    assert res.rounded_outputs() == [0.27, 0.37, 0.24, 0.33]
    assert res.rounded_errors() == [0.27, -0.63, -0.76, -0.67]
    # The lecture's printed table: identical except row 01 (printed 0.36 / −0.64).
    assert LECTURE_OUTPUTS == (0.27, 0.36, 0.24, 0.33)
    assert LECTURE_ERRORS == (0.27, -0.64, -0.76, -0.67)
    for i in (0, 2, 3):
        assert res.rounded_outputs()[i] == LECTURE_OUTPUTS[i]
        assert res.rounded_errors()[i] == LECTURE_ERRORS[i]
    # The printed error is printed output − target, so the lecture's sign convention is Y − T.
    for out, err, target in zip(LECTURE_OUTPUTS, LECTURE_ERRORS, res.targets, strict=True):
        assert round(out - target, 2) == err
    np.testing.assert_allclose(res.outputs, LECTURE_OUTPUTS, atol=0.006)


# --- XOR ---------------------------------------------------------------------------------


def test_xor_lecture_script_as_written():
    res = xor_lecture()
    np.testing.assert_allclose(res.outputs, [0.083, 0.905, 0.903, 0.088], atol=5e-4)
    assert res.b1.shape == (4, 3)  # the per-sample bias quirk
    assert res.losses.shape == (100,)
    assert res.final_loss == pytest.approx(0.016521, abs=1e-6)
    # One more forward pass after the 100th update differs in the 3rd decimal.
    np.testing.assert_allclose(res.outputs_after_update, [0.082, 0.906, 0.904, 0.087], atol=5e-4)


def test_xor_corrected_shared_bias():
    res = xor_corrected()
    assert res.b1.shape == (3,)
    # A shared bias is a real gradient step, but 100 steps from this start barely move the
    # net: it has not learned XOR yet (all outputs near 0.5).
    np.testing.assert_allclose(res.outputs, [0.456, 0.523, 0.495, 0.543], atol=5e-4)
    assert res.final_loss == pytest.approx(0.492716, abs=1e-6)
    assert res.losses[-1] < res.losses[0]
    np.testing.assert_array_equal(xor_corrected().outputs, res.outputs)  # deterministic


# --- run / stage -------------------------------------------------------------------------


def test_summary_metrics_and_tables_are_flat_and_json_ready():
    results = run_all()
    metrics = summary_metrics(results)
    assert json.loads(json.dumps(metrics)) == metrics
    assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values())
    assert metrics["least_squares.iterations_to_1e-6"] == 1771
    assert metrics["least_squares.slope"] == 1.0
    assert metrics["or_neuron.output_01"] == 0.37
    assert round(metrics["xor.lecture.y_01"], 3) == 0.905
    tables = summary_tables(results)
    assert [row["input"] for row in tables["or_neuron"]] == ["00", "01", "10", "11"]
    assert [row["lecture_y"] for row in tables["xor"]] == [0.083, 0.905, 0.903, 0.088]


def test_stage_writes_results_and_pngs(tmp_path, capsys, mlflow_store):
    metrics_path = tmp_path / "reports" / "foundations.json"
    figures_dir = tmp_path / "figures"
    stage = _load_stage()
    assert stage.main(["--results", str(metrics_path), "--figures", str(figures_dir)]) == 0

    metrics = json.loads(metrics_path.read_text())
    assert metrics["least_squares.iterations_to_1e-6"] == 1771
    assert metrics["logistic.max_abs_diff_vs_sklearn"] < 1e-6
    assert round(metrics["xor.lecture.y_00"], 3) == 0.083

    pngs = sorted(figures_dir.iterdir())
    assert [p.name for p in pngs] == [
        "convexity.png",
        "least_squares.png",
        "logistic.png",
        "xor_loss.png",
    ]  # and no leftover temporary files
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(png) as img:
            img.verify()
        with Image.open(png) as img:
            width, height = img.size
        assert width >= 700 and 450 <= height <= 500  # 6×4 in (or 9.6×4) at 120 dpi
    assert "least squares" in capsys.readouterr().out

    import mlflow

    runs = mlflow.search_runs(experiment_names=["foundations"], output_format="list")
    by_name = {run.info.run_name: run for run in runs}
    assert sorted(by_name) == sorted(
        ["least_squares", "logistic", "convexity", "or_neuron", "xor_lecture", "xor_corrected"]
    )
    assert all(run.info.status == "FINISHED" for run in runs)
    assert by_name["least_squares"].data.metrics["iterations_to_1e-6"] == 1771
    assert by_name["or_neuron"].data.metrics["output_00"] == 0.27
    lecture_loss = mlflow.MlflowClient().get_metric_history(
        by_name["xor_lecture"].info.run_id, "loss"
    )
    assert len(lecture_loss) == 100  # the whole curve, one step per iteration
