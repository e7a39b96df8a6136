"""Summaries over seeds: mean, sample standard deviation and a Student-t confidence interval.

Seeds are few (3-5), so the normal-approximation interval would be too narrow; the t interval is
what the field reports for a handful of repetitions (scipy supplies the quantile).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class SeedSummary:
    """``mean``, ``sd`` and ``ci`` (the half-width of the ``level`` interval) over ``n`` finite
    values; ``sd`` and ``ci`` are NaN for one value (no spread can be estimated from one seed)."""

    mean: float
    sd: float
    ci: float
    n: int
    level: float

    @property
    def low(self) -> float:
        return self.mean - self.ci

    @property
    def high(self) -> float:
        return self.mean + self.ci

    def text(self, digits: int = 3) -> str:
        """``0.812 ± 0.031`` (mean ± CI half-width), ``0.812`` for one seed, ``n/a`` for none."""
        if self.n == 0:
            return "n/a"
        if math.isinf(self.mean):
            return "inf"
        if self.ci != self.ci:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.ci:.{digits}f}"


def summarize(values: Iterable[float | None], level: float = 0.95) -> SeedSummary:
    """Mean and Student-t interval of the finite values (None/NaN are runs that did not report
    the metric and are left out; +inf, e.g. a non-private epsilon, makes the mean inf)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    arr = arr[~np.isnan(arr)]
    n = int(arr.size)
    if n == 0:
        return SeedSummary(float("nan"), float("nan"), float("nan"), 0, level)
    mean = float(arr.mean())
    if n == 1 or not np.all(np.isfinite(arr)):
        return SeedSummary(mean, float("nan"), float("nan"), n, level)
    sd = float(arr.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2.0, df=n - 1) * sd / math.sqrt(n))
    return SeedSummary(mean, sd, half, n, level)
