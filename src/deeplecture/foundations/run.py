"""Run every Foundations demo and flatten the results into metrics and tables."""

from __future__ import annotations

from dataclasses import dataclass

from deeplecture.foundations.convexity import ConvexityResult, run_convexity
from deeplecture.foundations.least_squares import LeastSquaresResult, steepest_descent
from deeplecture.foundations.logistic import LogisticResult, run_logistic
from deeplecture.foundations.or_neuron import ORNeuronResult, run_or_neuron
from deeplecture.foundations.xor import XORResult, xor_corrected, xor_lecture

INPUT_NAMES = ("00", "01", "10", "11")


@dataclass(frozen=True)
class FoundationsResults:
    """One result per demonstration."""

    least_squares: LeastSquaresResult
    logistic: LogisticResult
    convexity: ConvexityResult
    or_neuron: ORNeuronResult
    xor_lecture: XORResult
    xor_corrected: XORResult


def run_all() -> FoundationsResults:
    """Run all demos with the lecture's settings (deterministic, well under a second)."""
    return FoundationsResults(
        least_squares=steepest_descent(),
        logistic=run_logistic(),
        convexity=run_convexity(),
        or_neuron=run_or_neuron(),
        xor_lecture=xor_lecture(),
        xor_corrected=xor_corrected(),
    )


def summary_metrics(results: FoundationsResults) -> dict[str, float | int]:
    """Flat, JSON-ready scalar metrics named `<demo>.<quantity>`."""
    ls, lg, cv, orn = results.least_squares, results.logistic, results.convexity, results.or_neuron
    metrics: dict[str, float | int] = {
        "least_squares.intercept": ls.closed_form[0],
        "least_squares.slope": ls.closed_form[1],
        "least_squares.descent_intercept": ls.descent[0],
        "least_squares.descent_slope": ls.descent[1],
        "least_squares.iterations_to_1e-6": ls.iterations,
        "least_squares.learning_rate": ls.learning_rate,
        "least_squares.final_sse": float(ls.costs[-1]),
        "logistic.w": lg.descent[0],
        "logistic.b": lg.descent[1],
        "logistic.sklearn_w": lg.sklearn[0],
        "logistic.sklearn_b": lg.sklearn[1],
        "logistic.max_abs_diff_vs_sklearn": lg.max_abs_diff,
        "logistic.iterations": lg.iterations,
        "logistic.final_cross_entropy": float(lg.costs[-1]),
        "convexity.sse_min_second_diff": cv.sse_min_second_diff,
        "convexity.cross_entropy_min_second_diff": cv.cross_entropy_min_second_diff,
        "convexity.sse_is_convex": int(cv.sse_is_convex),
        "convexity.cross_entropy_is_convex": int(cv.cross_entropy_is_convex),
    }
    for name, out, err in zip(INPUT_NAMES, orn.outputs, orn.errors, strict=True):
        metrics[f"or_neuron.output_{name}"] = round(float(out), 2)
        metrics[f"or_neuron.error_{name}"] = round(float(err), 2)
    for res in (results.xor_lecture, results.xor_corrected):
        for name, y in zip(INPUT_NAMES, res.outputs, strict=True):
            metrics[f"xor.{res.variant}.y_{name}"] = float(y)
        metrics[f"xor.{res.variant}.final_loss"] = res.final_loss
    return metrics


def summary_tables(results: FoundationsResults) -> dict[str, list[dict]]:
    """The OR neuron table and the XOR outputs of both variants, one dict per input row."""
    lecture, corrected = results.xor_lecture, results.xor_corrected
    xor_rows = [
        {
            "input": name,
            "target": int(target),
            "lecture_y": round(float(lecture.outputs[i]), 3),
            "corrected_y": round(float(corrected.outputs[i]), 3),
        }
        for i, (name, target) in enumerate(zip(INPUT_NAMES, (0, 1, 1, 0), strict=True))
    ]
    return {"or_neuron": results.or_neuron.table(), "xor": xor_rows}


def format_summary(results: FoundationsResults) -> str:
    """A short human-readable report of every demo."""
    ls, lg, cv = results.least_squares, results.logistic, results.convexity
    lines = [
        f"least squares: closed form α={ls.closed_form[0]:.6g}, β={ls.closed_form[1]:.6g}; "
        f"descent α={ls.descent[0]:.3g}, β={ls.descent[1]:.7f} after {ls.iterations} steps "
        f"(λ={ls.learning_rate})",
        f"logistic: descent w={lg.descent[0]:.6f}, b={lg.descent[1]:.6f}; "
        f"scikit-learn w={lg.sklearn[0]:.6f}, b={lg.sklearn[1]:.6f}; "
        f"max |diff|={lg.max_abs_diff:.2e}",
        f"convexity: SSE convex={cv.sse_is_convex} (min Δ²={cv.sse_min_second_diff:.2e}), "
        f"cross-entropy convex={cv.cross_entropy_is_convex} "
        f"(min Δ²={cv.cross_entropy_min_second_diff:.2e})",
        "OR neuron (input: output / error; lecture's printed values in brackets):",
    ]
    for row in results.or_neuron.table():
        lines.append(
            f"  {row['input']}: {row['output']:.2f} / {row['error']:+.2f}"
            f"  [{row['lecture_output']:.2f} / {row['lecture_error']:+.2f}]"
        )
    for res in (results.xor_lecture, results.xor_corrected):
        ys = ", ".join(f"{v:.3f}" for v in res.outputs)
        lines.append(
            f"XOR {res.variant}: y=[{ys}], loss={res.final_loss:.4f}, b1 shape {res.b1.shape}"
        )
    return "\n".join(lines)
