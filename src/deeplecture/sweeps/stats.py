"""What n runs of one variant show, and whether one variant beats another beyond seed noise.

Intervals are Student-t intervals (95 %), the right ones for the few runs a sweep has (n of 3 to
a few dozen), where a normal approximation is too narrow. A gain between two variants is tested
with Welch's t-test: the variants' spreads differ (batch normalization narrows it), so the
equal-variance t-test does not apply, and with n = 5 a bootstrap has too few distinct resamples
to give a trustworthy interval. With one run there is no spread, and nothing here invents one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
TEST_NAME = "Welch's t-test"


@dataclass(frozen=True)
class Spread:
    """n values of one metric: their mean, and where n > 1 their sample std and 95 % interval."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float | None:
        """The sample standard deviation (n - 1); None with a single value: no spread known."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95 % confidence interval of the mean; None with a single value."""
        if self.std is None:
            return None
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, self.n - 1) * self.std / math.sqrt(self.n)
        return float(self.mean - half), float(self.mean + half)


@dataclass(frozen=True)
class Gain:
    """`after`'s mean minus `before`'s, with Welch's 95 % interval and p-value where both have
    a spread (n > 1 each); `beyond_noise` is None where that is not known."""

    difference: float
    interval: tuple[float, float] | None
    p_value: float | None

    @property
    def beyond_noise(self) -> bool | None:
        if self.interval is None:
            return None
        low, high = self.interval
        return low > 0 or high < 0  # the interval excludes no gain: p < 0.05, two-sided


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("a spread needs at least one value")
    return Spread(tuple(float(v) for v in values))


def gain(before: Spread, after: Spread) -> Gain:
    difference = after.mean - before.mean
    if before.std is None or after.std is None:
        return Gain(difference, None, None)
    if before.std == 0 and after.std == 0:
        # Identical runs (deterministic on one machine): no noise to test against.
        return Gain(difference, (difference, difference), 0.0 if difference else 1.0)
    result = stats.ttest_ind(after.values, before.values, equal_var=False)
    low, high = result.confidence_interval(CONFIDENCE)
    return Gain(difference, (float(low), float(high)), float(result.pvalue))
