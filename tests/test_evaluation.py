"""The evaluate stage scores a model from one forward pass: the numbers `model.evaluate`
reports, weight penalties included, without running the test set through the network twice."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from deeplecture import evaluation
from deeplecture.data import processed
from deeplecture.models import get_variant


def _count_passes(model: keras.Model, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each pass the model makes over the test set (`predict`, `evaluate`)."""
    passes: list[str] = []
    for method in ("predict", "evaluate"):
        original = getattr(model, method)

        def counted(*args, _method=method, _original=original, **kwargs):  # noqa: ANN002, ANN003
            passes.append(_method)
            return _original(*args, **kwargs)

        monkeypatch.setattr(model, method, counted)
    return passes


def test_one_pass_gives_what_model_evaluate_reports_weight_penalty_included(
    tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = processed.load(tiny_data)
    keras.utils.set_random_seed(3)
    model = get_variant("cnn84").build(data.scaling, "none")  # L2 on its kernels
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(data.train.images, data.train.onehot, batch_size=32, epochs=1, verbose=0)
    expected = model.evaluate(data.test.images, data.test.onehot, verbose=0, return_dict=True)
    passes = _count_passes(model, monkeypatch)

    result = evaluation.evaluate(model, data.test)

    assert passes == ["predict"]
    assert evaluation.weight_penalty(model) > 0.01  # a loss without it would differ by that
    assert result.test_loss == pytest.approx(expected["loss"], rel=1e-5)
    assert result.test_accuracy == pytest.approx(expected["accuracy"], abs=1e-6)
    assert result.confusion.sum() == len(data.test)
    assert np.mean(result.predictions == data.test.labels) == result.test_accuracy


def test_a_model_compiled_with_another_loss_is_scored_by_that_loss(
    tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = processed.load(tiny_data)
    model = get_variant("cnn74").build(data.scaling, "none")
    model.compile(loss="mean_squared_error", metrics=["accuracy"])
    expected = model.evaluate(data.test.images, data.test.onehot, verbose=0, return_dict=True)
    passes = _count_passes(model, monkeypatch)

    result = evaluation.evaluate(model, data.test)

    assert passes == ["predict", "evaluate"]
    assert result.test_loss == pytest.approx(expected["loss"], rel=1e-6)
