"""Reversible encoding of a mixed-type table into the float matrix a GAN generator produces.

:class:`TabularTransformer` turns the released columns of a dataset (without the target label) into
a ``float32`` matrix, and turns generator output of the same shape back into a
:class:`pandas.DataFrame` with the original columns, column order and dtypes.

Encodings (all vectorized, no per-row Python loops):

* **continuous** (int / float columns): optional outlier clipping to the fitted
  ``clip_quantiles``, then either standardisation ``(x - mean) / std`` (``"standard"``) or a
  :class:`~sklearn.preprocessing.QuantileTransformer` to a standard normal (``"quantile"``): one
  continuous span of width 1, in units of (approximately) standard deviations. Missing values are
  imputed with the median of the clipped fit values; columns that had any NaN during fit also get
  a width-2 categorical span ``<col>__missing`` (slot 0 = present, slot 1 = missing).
* **categorical** (bool, category, object, str, and any column declared categorical): one-hot over
  the categories seen during fit (sorted; a ``CategoricalDtype`` keeps its own category order and
  all its declared categories). A missing value is its own category (the last slot).
* **datetime** (tz-naive ``datetime64``): five continuous spans ``<col>__ordinal`` (seconds since
  the fitted minimum, standardised), ``<col>__hour_sin`` / ``<col>__hour_cos`` (time of day as an
  angle) and ``<col>__dow_sin`` / ``<col>__dow_cos`` (day of week as an angle), plus a
  ``<col>__missing`` span when the fit data had NaT.

Privacy
-------
**Fitting reads real records.** The statistics computed in :meth:`TabularTransformer.fit`
(quantiles / clip bounds, minimum and maximum, means, standard deviations, medians, the
quantile-transformer's quantiles, category sets, missing rates, datetime ranges) are exact
statistics of the real data and are **not differentially private**: a run that uses
:meth:`~TabularTransformer.fit` must record a non-private access.
:attr:`TabularTransformer.accesses` lists every statistic read from the real data, so nothing is
hidden; the entries name the statistic but never carry its value.

Differentially private fit
--------------------------
:meth:`TabularTransformer.fit_dp` fits the encoding from **one Gaussian mechanism** (Dwork &
Roth 2014, Thm A.1; accounted with RDP / PLD like one DP-SGD step with sample rate 1):

1. **Public domain.** The caller declares each column's domain in a :class:`PublicDomain`, from
   public knowledge, never from the data: ``bounds=(lo, hi)`` (continuous), ``categories``
   (categorical) or a ``(start, end)`` time range (datetime). The declaration fixes the column's
   encoding; a column without one, empty categories or ``lo >= hi`` raise
   :class:`~dpshare.errors.UserInputError` naming the column and the fix.
2. **One query** (:class:`StatisticsQuery`). Values are clipped to the declared bounds / range
   and centred and scaled to ``v = 2 (x - lo) / (hi - lo) - 1`` in ``[-1, 1]`` (centring halves
   the noise on the mean and quarters it on the variance, against scaling to ``[0, 1]``). Per
   continuous or datetime column: count of present values, ``sum v``, ``sum v**2``, count of
   missing values; per categorical column: the count of each declared category and the count of
   missing-or-undeclared values (**a value outside the declared categories counts, and is
   encoded, as missing**; too lenient to be an error for synthetic data, and it never raises on
   data). Every coordinate changes by at most 1 when one record is added or removed.
3. **Sensitivity** (add/remove-one-record adjacency). One record adds ``(1, v, v**2, 0)`` or
   ``(0, 0, 0, 1)`` to a numeric column's block (squared norm at most ``1 + 1 + 1 = 3``, reached
   at a bound) and a single 1 to a categorical column's block; blocks are disjoint, so
   ``l2_sensitivity = sqrt(3 * (n_continuous + n_datetime) + n_categorical)``, exactly (the
   supremum over the declared domain). Missing counts cost nothing: a record is either present or
   missing.
4. **Noise.** ``N(0, (noise_multiplier * l2_sensitivity)^2)`` is added to every coordinate, from
   ``np.random.default_rng(seed)``. The guarantee assumes the seed is secret (pass ``None`` for
   fresh OS entropy) and ignores floating-point attacks on textbook samplers (Mironov 2012);
   the seed is not stored in the release.
5. **Post-processing** (free under DP). Counts are clamped at 0 (at 1 as denominators); the mean
   of ``v`` is clamped to ``[-1, 1]``, its second moment to ``[mean**2, 1]``; the standard
   deviation is floored at ``1e-3`` of the declared range (a variance that does not stand 2
   of its noise stds above 0 is flagged ``std_resolved=False``,
   :meth:`DPRelease.unresolved_std_columns`: the column is narrow for its declared range; use
   the log scale or a tighter bound); a column whose noisy present count is below
   ``3 * noise std`` falls back to the public default (the midpoint of the range and the
   standard deviation of a uniform distribution on it). Continuous columns are standardised
   with the noisy mean / std (``continuous_mode="quantile"`` is refused: it needs many quantiles,
   which this fit does not release); the imputation value is the noisy mean (the median is not
   released); clipping and decoding use the declared bounds, never data quantiles. Datetimes
   use the declared range and the noisy mean / std of the timestamp. With
   ``continuous_scale="auto"`` (or ``"log"``) a column declared ``[0, upper >= 1000]`` (every
   bounded column) is modelled on the public scale ``s = log1p(x - lo)``: the query reads
   ``v = 2 s / log1p(hi - lo) - 1`` (same sensitivity), the encoder standardises ``s`` and
   decoding inverts it, so heavy-tailed amounts are not squeezed into a sliver of the
   standardised range (a rule on declared bounds: no cost). Categorical columns one-hot
   over the declared categories. A missing-value span is added when the column's dtype can hold
   a missing value and its noisy missing count exceeds ``0.5 + 3 * noise std`` (a column without
   missing values gets a spurious span with probability 0.13 %). The noisy record count is the
   inverse-variance weighted mean of the columns' noisy count totals.

:attr:`TabularTransformer.release` (a :class:`DPRelease`) holds the mechanism's parameters, the
noisy vector and the post-processed statistics (the noisy class counts when the target is one of
the fitted columns, :meth:`DPRelease.category_counts`); the true record count is not released.
The caller writes the ledger entry (:meth:`DPRelease.ledger_parameters`). After ``fit_dp``,
:attr:`~TabularTransformer.accesses` entries and :meth:`~TabularTransformer.describe` rows say
``differentially_private=True``. ``fit_dp`` only raises because of the schema, the domain or its
arguments, never because of the values in the records (an error that depends on them would
itself leak): infinite values are clipped, all-missing columns are accepted.

Decoding rules the caller must know
-----------------------------------
* A categorical value never seen during fit encodes as an all-zeros one-hot block; since decoding
  takes the argmax, an all-zeros block decodes to the *first* category. A missing categorical
  value in a column that had no missing values during fit is treated the same way.
* Missing values decode as NaN (float columns), the first kind of null seen in fit (object
  columns: ``None``, NaN, ...), ``pd.NA`` (nullable extension dtypes such as ``Int64``), the
  dtype's own missing marker (``str`` / ``CategoricalDtype``) or ``NaT`` (datetimes).
* A NaN in a continuous / datetime column whose fit data had none is imputed with the median at
  transform time (there is no indicator span for it), so it decodes as an ordinary value.
* Decoded continuous values are clipped to the fitted ``[low, high]`` range (the clip quantiles,
  or the observed min/max when ``clip_quantiles=None``; the declared bounds after ``fit_dp``,
  rounded inwards to whole numbers for integer dtypes); integer columns are rounded then cast.
  Decoded datetimes are clipped to the observed (``fit``) or declared (``fit_dp``) range.
* Datetimes decode to whole seconds; the date comes from the ordinal and the time of day from the
  angle, so encoded real data round-trips to within one second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api.types import (
    is_bool_dtype,
    is_datetime64_any_dtype,
    is_integer_dtype,
    is_numeric_dtype,
    is_object_dtype,
    is_string_dtype,
)
from sklearn.preprocessing import QuantileTransformer

from dpshare.errors import UserInputError

__all__ = [
    "CONTINUOUS_SCALES",
    "LOG_AUTO_MIN_UPPER",
    "ColumnKind",
    "DPRelease",
    "OutputSpan",
    "PublicDomain",
    "StatisticAccess",
    "StatisticsQuery",
    "TabularTransformer",
    "check_continuous_scale",
    "dtype_from_json",
    "dtype_to_json",
    "infer_column_kinds",
    "log_scaled",
    "value_from_json",
    "value_to_json",
]

ColumnKind = Literal["continuous", "categorical", "datetime"]

# Public scale of a bounded continuous column in a DP fit (and in the peers' encodings):
# ``log`` puts every bounded column on ``log1p(x - lower)``; ``auto`` does so for columns declared
# ``[0, upper]`` with ``upper >= LOG_AUTO_MIN_UPPER`` (amounts, balances, durations, whose
# declared caps lie orders of magnitude above typical values); ``linear`` keeps ``x``. A rule on
# the declared bounds only, never on the records, so it costs no privacy.
CONTINUOUS_SCALES = ("auto", "linear", "log")
LOG_AUTO_MIN_UPPER = 1000.0


def check_continuous_scale(continuous_scale: str, key: str = "continuous_scale") -> str:
    """``continuous_scale`` if it names one of :data:`CONTINUOUS_SCALES`, else a clear error
    naming the setting ``key`` (e.g. ``method.continuous_scale``)."""
    if continuous_scale not in CONTINUOUS_SCALES:
        raise UserInputError(f"{key}={continuous_scale!r}; choose one of {list(CONTINUOUS_SCALES)}")
    return continuous_scale


def log_scaled(lower: float, upper: float, continuous_scale: str) -> bool:
    """Whether a column declared ``[lower, upper]`` is modelled on the ``log1p(x - lower)`` scale
    under ``continuous_scale`` (:data:`CONTINUOUS_SCALES`)."""
    check_continuous_scale(continuous_scale)
    return continuous_scale == "log" or (
        continuous_scale == "auto" and float(lower) == 0.0 and float(upper) >= LOG_AUTO_MIN_UPPER
    )


_KINDS: tuple[str, ...] = ("continuous", "categorical", "datetime")

_SECONDS_PER_DAY = 86_400
_UNITS_PER_SECOND: dict[str, int] = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
# 1970-01-01 (day 0 of the epoch) was a Thursday; Monday = 0.
_EPOCH_DAY_OF_WEEK = 3


@dataclass(frozen=True)
class OutputSpan:
    """A contiguous block of encoded columns ``[start, end)``, for one generator output head.

    Attributes:
        column: name of the encoded feature: the source column for a value span of a continuous or
            categorical column, ``<col>__missing`` for a missing-value indicator, and
            ``<col>__ordinal`` / ``<col>__hour_sin`` / ``<col>__hour_cos`` / ``<col>__dow_sin`` /
            ``<col>__dow_cos`` for the parts of a datetime column.
        kind: ``"continuous"`` (a linear / tanh head, width 1) or ``"categorical"`` (a softmax
            head over ``width`` classes).
        start: first encoded column (inclusive).
        end: one past the last encoded column (exclusive).
        source_column: the original DataFrame column this span belongs to (defaults to
            ``column``).
    """

    column: str
    kind: Literal["continuous", "categorical"]
    start: int
    end: int
    source_column: str = ""

    def __post_init__(self) -> None:
        if not self.source_column:
            object.__setattr__(self, "source_column", self.column)

    @property
    def width(self) -> int:
        """Number of encoded columns in the span."""
        return self.end - self.start


@dataclass(frozen=True)
class StatisticAccess:
    """One statistic of the real data read during :meth:`TabularTransformer.fit` or
    :meth:`TabularTransformer.fit_dp`.

    A privacy-relevant access: the privacy layer must account for it. ``detail`` says what was
    read, never the value. ``differentially_private`` is true when the statistic was released
    through the Gaussian mechanism of :meth:`TabularTransformer.fit_dp` (see
    :attr:`TabularTransformer.release`), false for an exact read by :meth:`TabularTransformer.fit`.
    """

    column: str
    statistic: str
    detail: str
    differentially_private: bool = False


def _kind_for_dtype(column: str, dtype: Any) -> ColumnKind:
    if is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if is_datetime64_any_dtype(dtype):
        return "datetime"
    if is_numeric_dtype(dtype):
        if np.issubdtype(np.dtype(getattr(dtype, "numpy_dtype", dtype)), np.complexfloating):
            raise UserInputError(f"column {column!r}: complex dtype {dtype} is not supported")
        return "continuous"
    if is_object_dtype(dtype) or is_string_dtype(dtype):
        return "categorical"
    raise UserInputError(
        f"column {column!r}: dtype {dtype} is not supported by the transformer; convert it to a "
        "number, string, category or tz-naive datetime64 first (or drop it)"
    )


def infer_column_kinds(frame: pd.DataFrame) -> dict[str, ColumnKind]:
    """Guess the encoding of each column from its dtype.

    numeric (int / float) -> ``"continuous"``; bool / category / object / str -> ``"categorical"``;
    datetime64 -> ``"datetime"``. Other dtypes (timedelta, period, interval, complex) raise
    :class:`ValueError`.
    """
    return {col: _kind_for_dtype(str(col), frame[col].dtype) for col in frame.columns}


# --------------------------------------------------------------------------------------------
# Per-column encoders
# --------------------------------------------------------------------------------------------


def _missing_block(missing: np.ndarray) -> np.ndarray:
    """Width-2 one-hot block: slot 0 = present, slot 1 = missing."""
    block = np.zeros((missing.shape[0], 2), dtype=np.float64)
    block[:, 1] = missing
    block[:, 0] = 1.0 - block[:, 1]
    return block


@dataclass
class _Encoder:
    """Base class: a fitted encoding of one source column."""

    name: Any
    dtype: Any
    has_missing: bool = False
    spans_rel: list[tuple[str, Literal["continuous", "categorical"], int]] = field(
        default_factory=list
    )

    @property
    def label(self) -> str:
        return str(self.name)

    @property
    def width(self) -> int:
        return sum(w for _, _, w in self.spans_rel)

    kind: ColumnKind = "continuous"

    def encoding(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def transform(self, series: pd.Series) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def inverse(self, block: np.ndarray) -> pd.Series:  # pragma: no cover - overridden
        raise NotImplementedError


def _check_all_missing(column: str, missing: np.ndarray) -> None:
    if missing.all():
        raise UserInputError(
            f"column {column!r} is entirely missing (NaN/None/NaT) in the fit data; it carries no "
            "information: drop it before fitting"
        )


@dataclass
class _ContinuousEncoder(_Encoder):
    """Clipping + imputation + standard or quantile scaling (+ missing indicator).

    After :meth:`fit` the imputation value is the median of the clipped values; after a DP fit
    it is the noisy mean, and ``low`` / ``high`` are the declared public bounds.
    """

    kind: ColumnKind = "continuous"
    mode: str = "standard"
    low: float = 0.0
    high: float = 0.0
    clipped_by_quantiles: bool = False
    clipped_by_bounds: bool = False
    public_scaling: bool = False  # fit_public: scaled by the declared bounds, nothing read
    # DP fit on the public log scale: ``mean`` / ``std`` are of ``log1p(x - low)``
    log_scale: bool = False
    impute_value: float = 0.0
    mean: float = 0.0
    std: float = 1.0
    quantile_transformer: QuantileTransformer | None = None

    @staticmethod
    def values(column: str, series: pd.Series, *, allow_infinite: bool = False) -> np.ndarray:
        """The column as float64 with NaN for missing.

        Infinite values raise unless ``allow_infinite`` (the DP fit clips them to the declared
        bounds instead: an error that depends on the records would itself leak)."""
        dtype = series.dtype
        if not (is_numeric_dtype(dtype) or is_bool_dtype(dtype)):
            raise UserInputError(
                f"column {column!r} is declared continuous but has non-numeric dtype {dtype}; "
                "declare it categorical or convert it to numbers"
            )
        if is_bool_dtype(dtype) or isinstance(dtype, pd.api.extensions.ExtensionDtype):
            values = series.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = series.to_numpy(dtype=np.float64)
        if not allow_infinite and np.isinf(values).any():
            raise UserInputError(
                f"column {column!r} contains infinite values; replace them (e.g. with NaN) first"
            )
        return values

    def fit(
        self,
        series: pd.Series,
        *,
        mode: str,
        clip_quantiles: tuple[float, float] | None,
        n_quantiles: int,
        seed: int,
        accesses: list[StatisticAccess],
    ) -> None:
        col = self.label
        values = self.values(col, series)
        missing = np.isnan(values)
        _check_all_missing(col, missing)
        self.has_missing = bool(missing.any())
        accesses.append(
            StatisticAccess(col, "missing_rate", "whether / how often the column is missing")
        )
        observed = values[~missing]
        if clip_quantiles is not None:
            low, high = np.quantile(observed, clip_quantiles)
            self.clipped_by_quantiles = True
            accesses.append(
                StatisticAccess(
                    col,
                    "quantiles",
                    f"{clip_quantiles[0]:g} and {clip_quantiles[1]:g} quantiles "
                    "(outlier clip bounds, also the decoding range)",
                )
            )
        else:
            low, high = observed.min(), observed.max()
            accesses.append(StatisticAccess(col, "min_max", "minimum and maximum (decoding range)"))
        self.low, self.high = float(low), float(high)
        clipped = np.clip(observed, self.low, self.high)
        self.impute_value = float(np.median(clipped))
        accesses.append(
            StatisticAccess(col, "median", "median of the clipped values (imputation value)")
        )
        self.mode = mode
        if mode == "standard":
            self.mean = float(clipped.mean())
            std = float(clipped.std())
            self.std = std if std > 0 and math.isfinite(std) else 1.0
            accesses.append(StatisticAccess(col, "mean", "mean of the clipped values"))
            accesses.append(StatisticAccess(col, "std", "standard deviation of the clipped values"))
        else:
            qt = QuantileTransformer(
                output_distribution="normal",
                n_quantiles=max(1, min(n_quantiles, clipped.shape[0])),
                subsample=None,
                random_state=seed,
            )
            qt.fit(clipped.reshape(-1, 1))
            self.quantile_transformer = qt
            accesses.append(
                StatisticAccess(
                    col,
                    "quantiles",
                    f"{qt.n_quantiles_} quantiles of the clipped values (quantile transformer)",
                )
            )
        self.spans_rel = [(col, "continuous", 1)]
        if self.has_missing:
            self.spans_rel.append((f"{col}__missing", "categorical", 2))

    def encoding(self) -> str:
        if self.public_scaling:
            parts = [
                "clip to declared bounds",
                "scale to [-1, 1] by the declared bounds (no statistic read)",
                "midpoint imputation",
            ]
        elif self.clipped_by_bounds and self.log_scale:
            parts = [
                "clip to declared bounds",
                "DP-mean imputation",
                "s = log1p(x - lower), standardize (s - mean) / std with DP mean and std of s",
            ]
        elif self.clipped_by_bounds:
            parts = [
                "clip to declared bounds",
                "DP-mean imputation",
                "standardize (x - mean) / std with DP mean and std",
            ]
        else:
            clip = "clip to quantiles" if self.clipped_by_quantiles else "no clipping"
            scale = (
                "standardize (x - mean) / std"
                if self.mode == "standard"
                else "quantile transform to N(0, 1)"
            )
            parts = [clip, "median imputation", scale]
        if self.has_missing:
            parts.append("missing indicator")
        return ", ".join(parts)

    def transform(self, series: pd.Series) -> np.ndarray:
        values = self.values(self.label, series, allow_infinite=self.clipped_by_bounds)
        missing = np.isnan(values)
        filled = np.where(missing, self.impute_value, np.clip(values, self.low, self.high))
        if self.log_scale:
            scaled = (np.log1p(filled - self.low) - self.mean) / self.std
        elif self.quantile_transformer is None:
            scaled = (filled - self.mean) / self.std
        else:
            scaled = self.quantile_transformer.transform(filled.reshape(-1, 1))[:, 0]
        out = scaled.reshape(-1, 1)
        if self.has_missing:
            out = np.concatenate([out, _missing_block(missing)], axis=1)
        return out

    def inverse(self, block: np.ndarray) -> pd.Series:
        if self.log_scale:
            top = math.log1p(self.high - self.low)
            logs = np.clip(block[:, 0].astype(np.float64) * self.std + self.mean, 0.0, top)
            values = np.expm1(logs) + self.low
        elif self.quantile_transformer is None:
            values = block[:, 0] * self.std + self.mean
        else:
            values = self.quantile_transformer.inverse_transform(block[:, :1])[:, 0]
        values = np.clip(values, self.low, self.high)
        missing = (
            np.argmax(block[:, 1:3], axis=1) == 1
            if self.has_missing
            else np.zeros(values.shape[0], dtype=bool)
        )
        return _numeric_series(values, missing, self.dtype, self.name)


def _numeric_series(values: np.ndarray, missing: np.ndarray, dtype: Any, name: Any) -> pd.Series:
    """Cast decoded float64 values to ``dtype``, writing the dtype's missing marker where
    ``missing`` is true."""
    if is_bool_dtype(dtype):
        result: Any = values >= 0.5
    elif is_integer_dtype(dtype):
        numpy_dtype = np.dtype(getattr(dtype, "numpy_dtype", dtype))
        info = np.iinfo(numpy_dtype)
        result = np.clip(np.rint(values), info.min, info.max).astype(numpy_dtype)
    else:
        result = values
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        series = pd.Series(result, name=name).astype(dtype)
        if missing.any():
            series = series.mask(pd.Series(missing), pd.NA)
        return series.astype(dtype)
    if missing.any():
        # A numpy int / bool column cannot hold NaN, so fit never saw missing values in it; this
        # branch only runs for float columns.
        result = np.where(missing, np.nan, result)
    return pd.Series(result, name=name).astype(dtype)


def _sorted_categories(values: list[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


@dataclass
class _CategoricalEncoder(_Encoder):
    """One-hot over the fitted categories; a missing value is its own (last) category.

    After a DP fit the categories are the declared public ones and ``unknown_as_missing`` is set:
    a value outside them is encoded like a missing value.
    """

    kind: ColumnKind = "categorical"
    categories: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    null_value: Any = None
    unknown_as_missing: bool = False
    _index: pd.Index | None = None

    def fit(
        self, series: pd.Series, *, max_categories: int, accesses: list[StatisticAccess]
    ) -> None:
        col = self.label
        missing = series.isna().to_numpy(dtype=bool)
        _check_all_missing(col, missing)
        self.has_missing = bool(missing.any())
        accesses.append(
            StatisticAccess(col, "missing_rate", "whether the column has missing values")
        )
        if isinstance(self.dtype, pd.CategoricalDtype):
            cats = list(self.dtype.categories)
            detail = "category set (the dtype's declared categories, in dtype order)"
        else:
            uniques = pd.unique(series[~missing].astype(object).to_numpy())
            cats = _sorted_categories(list(uniques))
            detail = "set of distinct values seen in the fit data (sorted)"
        if len(cats) > max_categories:
            raise UserInputError(
                f"column {col!r} has {len(cats)} distinct values, more than max_categories="
                f"{max_categories}; declare it continuous in column_kinds (if it is numeric) "
                "or raise max_categories"
            )
        accesses.append(StatisticAccess(col, "category_set", detail))
        self.categories = np.empty(len(cats), dtype=object)
        self.categories[:] = cats
        self._index = pd.Index(self.categories, dtype=object)
        if self.has_missing:
            if is_object_dtype(self.dtype):
                # Keep the kind of null the data used (None, NaN, pd.NA, NaT).
                self.null_value = series[missing].iloc[0]
            elif isinstance(self.dtype, pd.api.extensions.ExtensionDtype):
                self.null_value = self.dtype.na_value
            else:
                self.null_value = np.nan
        width = len(cats) + (1 if self.has_missing else 0)
        self.spans_rel = [(col, "categorical", width)]

    def encoding(self) -> str:
        declared = "declared " if self.unknown_as_missing else ""
        text = f"one-hot over {len(self.categories)} {declared}categories"
        if self.has_missing:
            text += " + missing category"
        return text

    def transform(self, series: pd.Series) -> np.ndarray:
        assert self._index is not None
        n = len(series)
        missing = series.isna().to_numpy(dtype=bool)
        idx = self._index.get_indexer(series.astype(object).to_numpy())
        if self.unknown_as_missing:
            missing = missing | (idx < 0)
        idx[missing] = len(self.categories) if self.has_missing else -1
        out = np.zeros((n, self.width), dtype=np.float64)
        rows = np.flatnonzero(idx >= 0)
        out[rows, idx[rows]] = 1.0
        return out

    def inverse(self, block: np.ndarray) -> pd.Series:
        idx = np.argmax(block, axis=1)
        n_cats = len(self.categories)
        missing = idx >= n_cats
        if isinstance(self.dtype, pd.CategoricalDtype):
            # Position of each fitted category among the dtype's categories (-1: not one of
            # them, decoded as missing); the identity unless a DP fit declared other categories.
            dtype_codes = self.dtype.categories.get_indexer(pd.Index(self.categories))
            codes = np.where(missing, -1, dtype_codes[np.minimum(idx, n_cats - 1)])
            return pd.Series(pd.Categorical.from_codes(codes, dtype=self.dtype), name=self.name)
        values = self.categories.take(np.minimum(idx, n_cats - 1))
        if missing.any():
            values[missing] = self.null_value
        series = pd.Series(values, dtype=object, name=self.name)
        if is_object_dtype(self.dtype):
            return series
        return series.astype(self.dtype)


@dataclass
class _DatetimeEncoder(_Encoder):
    """Ordinal + time-of-day angle + day-of-week angle (+ missing indicator)."""

    kind: ColumnKind = "datetime"
    unit: str = "ns"
    min_int: int = 0
    max_int: int = 0
    mean: float = 0.0
    std: float = 1.0
    impute_int: int = 0
    clip_to_range: bool = False  # DP fit: clip to the declared [start, end] before encoding

    @property
    def units_per_second(self) -> int:
        return _UNITS_PER_SECOND[self.unit]

    @property
    def units_per_day(self) -> int:
        return self.units_per_second * _SECONDS_PER_DAY

    def _ints(self, series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """Integer timestamps in the fitted unit, and the missing mask."""
        col = self.label
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            raise UserInputError(
                f"column {col!r} is timezone-aware ({series.dtype}); convert it to tz-naive "
                "first, e.g. series.dt.tz_convert('UTC').dt.tz_localize(None)"
            )
        if not is_datetime64_any_dtype(series.dtype):
            raise UserInputError(
                f"column {col!r} is declared datetime but has dtype {series.dtype}; convert it "
                "with pd.to_datetime first"
            )
        missing = series.isna().to_numpy(dtype=bool)
        ints = series.to_numpy(dtype=f"datetime64[{self.unit}]").view(np.int64).copy()
        return ints, missing

    def fit(self, series: pd.Series, *, accesses: list[StatisticAccess]) -> None:
        col = self.label
        if isinstance(self.dtype, pd.DatetimeTZDtype):
            self._ints(series)  # raises the tz-aware error
        if is_datetime64_any_dtype(self.dtype):
            self.unit = np.datetime_data(np.dtype(self.dtype))[0]
        if self.unit not in _UNITS_PER_SECOND:
            raise UserInputError(f"column {col!r}: unsupported datetime unit {self.unit!r}")
        ints, missing = self._ints(series)
        _check_all_missing(col, missing)
        self.has_missing = bool(missing.any())
        accesses.append(
            StatisticAccess(col, "missing_rate", "whether / how often the column is NaT")
        )
        observed = ints[~missing]
        self.min_int, self.max_int = int(observed.min()), int(observed.max())
        accesses.append(
            StatisticAccess(col, "datetime_range", "earliest and latest timestamp (decoding range)")
        )
        seconds = (observed - self.min_int) / self.units_per_second
        self.mean = float(seconds.mean())
        std = float(seconds.std())
        self.std = std if std > 0 else 1.0
        accesses.append(StatisticAccess(col, "mean", "mean timestamp (ordinal centring)"))
        accesses.append(StatisticAccess(col, "std", "standard deviation of the timestamps"))
        median_seconds = float(np.median(seconds))
        self.impute_int = self.min_int + round(median_seconds * self.units_per_second)
        accesses.append(StatisticAccess(col, "median", "median timestamp (imputation value)"))
        self.spans_rel = [
            (f"{col}__ordinal", "continuous", 1),
            (f"{col}__hour_sin", "continuous", 1),
            (f"{col}__hour_cos", "continuous", 1),
            (f"{col}__dow_sin", "continuous", 1),
            (f"{col}__dow_cos", "continuous", 1),
        ]
        if self.has_missing:
            self.spans_rel.append((f"{col}__missing", "categorical", 2))

    def encoding(self) -> str:
        text = "ordinal seconds (standardized) + time-of-day sin/cos + day-of-week sin/cos"
        if self.clip_to_range:
            text = (
                "clip to declared range, ordinal seconds (standardized with DP mean and std) + "
                "time-of-day sin/cos + day-of-week sin/cos"
            )
        if self.has_missing:
            text += " + missing indicator"
        return text

    def transform(self, series: pd.Series) -> np.ndarray:
        ints, missing = self._ints(series)
        if self.clip_to_range:
            ints = np.clip(ints, self.min_int, self.max_int)
        ints[missing] = self.impute_int
        ordinal = ((ints - self.min_int) / self.units_per_second - self.mean) / self.std
        tod_seconds = np.mod(ints, self.units_per_day) / self.units_per_second
        tod_angle = 2.0 * np.pi * tod_seconds / _SECONDS_PER_DAY
        dow = np.mod(np.floor_divide(ints, self.units_per_day) + _EPOCH_DAY_OF_WEEK, 7)
        dow_angle = 2.0 * np.pi * dow / 7.0
        out = np.stack(
            [ordinal, np.sin(tod_angle), np.cos(tod_angle), np.sin(dow_angle), np.cos(dow_angle)],
            axis=1,
        )
        if self.has_missing:
            out = np.concatenate([out, _missing_block(missing)], axis=1)
        return out

    def inverse(self, block: np.ndarray) -> pd.Series:
        ups, upd = self.units_per_second, self.units_per_day
        range_seconds = (self.max_int - self.min_int) / ups
        # Seconds since the fitted minimum, bounded (one day of slack) so the integers below
        # cannot overflow whatever the generator emits.
        seconds = np.clip(
            block[:, 0] * self.std + self.mean,
            -_SECONDS_PER_DAY,
            range_seconds + _SECONDS_PER_DAY,
        )
        tod_angle = np.mod(np.arctan2(block[:, 1], block[:, 2]), 2.0 * np.pi)
        tod = np.rint(tod_angle / (2.0 * np.pi) * _SECONDS_PER_DAY)  # whole seconds, 0..86400
        min_day, min_rem = divmod(self.min_int, upd)
        day_estimate = min_day + (min_rem / ups + seconds) / _SECONDS_PER_DAY
        # The day whose midnight plus the decoded time of day lies closest to the ordinal: the
        # ordinal (float32, coarse) fixes the date, the angle (precise) the time of day.
        day = np.rint(day_estimate - tod / _SECONDS_PER_DAY).astype(np.int64)
        ints = day * upd + tod.astype(np.int64) * ups
        ints = np.clip(ints, self.min_int, self.max_int)
        if self.has_missing:
            missing = np.argmax(block[:, 5:7], axis=1) == 1
            ints[missing] = np.iinfo(np.int64).min  # NaT
        values = ints.view(f"datetime64[{self.unit}]")
        return pd.Series(values, name=self.name).astype(self.dtype)


# --------------------------------------------------------------------------------------------
# Differentially private fit: public domain, statistics query, release
# --------------------------------------------------------------------------------------------

_FIX_PREFIX = "dataset.public_domain"
# A numeric record touches count, sum(v), sum(v^2) with |v| <= 1: squared norm <= 3.
_NUMERIC_SQUARED_SENSITIVITY = 3
# Standard deviation floor, as a fraction of the declared range.
_STD_FLOOR_FRACTION = 1e-3
# Below this many noise stds of present values, a numeric column's noisy mean and std are noise:
# the column falls back to the public default (midpoint, std of a uniform on the range).
_FALLBACK_NOISE_STDS = 3.0
# a noisy variance below this many of its noise stds is reported as not resolved
# (DPRelease.unresolved_std_columns); 2 stds: a column with no spread is flagged 98 % of the time
_STD_RESOLVED_NOISE_STDS = 2.0
# A missing-value span is added when the noisy missing count exceeds this many noise stds
# (plus half a record): a column without missing values gets one with probability 0.13 %.
_MISSING_SPAN_NOISE_STDS = 3.0


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool | np.bool_)


def _preview(names: Any, limit: int = 20) -> str:
    """A list of column names for an error message, cut after ``limit`` (MNIST has 784)."""
    names = [str(n) for n in names]
    if len(names) <= limit:
        return str(names)
    return f"{names[:limit]} ... and {len(names) - limit} more"


def _declare_hint(column: str, kind: str) -> str:
    if kind == "continuous":
        return f"declare {_FIX_PREFIX}.{column}.bounds=[lo, hi]"
    if kind == "datetime":
        return f"declare {_FIX_PREFIX}.{column}.start=... and .end=... (timestamps)"
    return f"declare {_FIX_PREFIX}.{column}.categories=[...]"


def _holds_missing(dtype: Any) -> bool:
    """Whether a column of this dtype can hold a missing value (numpy int / bool cannot)."""
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return True
    return np.dtype(dtype).kind not in "iub"


@dataclass(frozen=True)
class PublicDomain:
    """The public domain of each column a DP fit encodes: declared by the caller, never read
    from the data.

    Exactly one entry per column, which also fixes the column's encoding under
    :meth:`TabularTransformer.fit_dp`:

    Attributes:
        bounds: ``{column: (lo, hi)}``, finite ``lo < hi``: a continuous column (int, float or
            bool dtype). Values are clipped to ``[lo, hi]``, which is also the decoding range
            (rounded inwards to whole numbers for integer dtypes).
        categories: ``{column: (c1, c2, ...)}``, non-empty and distinct: a categorical column
            (one-hot in this order). A value outside the list counts, and is encoded, as missing.
        time_ranges: ``{column: (start, end)}``, tz-naive timestamps with ``start < end``
            (both inclusive): a datetime column. Values are clipped to the range, which is also
            the decoding range.

    Keys are column names as strings (a frame column ``c`` is looked up as ``str(c)``).
    :meth:`from_mapping` builds one from a config node; :meth:`to_dict` is its inverse.
    """

    # Any sequences on input; stored as read-only mappings of tuples (floats, the categories,
    # pd.Timestamp pairs).
    bounds: Mapping[str, Sequence[float]] = field(default_factory=dict)
    categories: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    time_ranges: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bounds: dict[str, tuple[float, float]] = {}
        for key, value in dict(self.bounds).items():
            col = str(key)
            pair = list(value) if isinstance(value, Sequence | np.ndarray) else []
            if (
                isinstance(value, str)
                or len(pair) != 2
                or not all(_is_real(v) and math.isfinite(float(v)) for v in pair)
                or not float(pair[0]) < float(pair[1])
            ):
                raise UserInputError(
                    f"public domain of column {col!r}: bounds must be two finite numbers "
                    f"lo < hi, got {value!r}; {_declare_hint(col, 'continuous')}"
                )
            bounds[col] = (float(pair[0]), float(pair[1]))
        categories: dict[str, tuple[Any, ...]] = {}
        for key, value in dict(self.categories).items():
            col = str(key)
            cats = (
                list(value)
                if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str)
                else []
            )
            if not cats or not pd.Index(cats, dtype=object).is_unique:
                raise UserInputError(
                    f"public domain of column {col!r}: categories must be a non-empty list of "
                    f"distinct values, got {value!r}; {_declare_hint(col, 'categorical')}"
                )
            categories[col] = tuple(cats)
        time_ranges: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = {}
        for key, value in dict(self.time_ranges).items():
            col = str(key)
            bad = UserInputError(
                f"public domain of column {col!r}: the time range must be two tz-naive "
                f"timestamps start < end, got {value!r}; {_declare_hint(col, 'datetime')}"
            )
            pair = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []
            if len(pair) != 2:
                raise bad
            try:
                start, end = pd.Timestamp(pair[0]), pd.Timestamp(pair[1])
            except (TypeError, ValueError) as err:
                raise bad from err
            if pd.isna(start) or pd.isna(end) or start.tzinfo or end.tzinfo or not start < end:
                raise bad
            time_ranges[col] = (start, end)
        declared_twice = sorted(
            (set(bounds) & set(categories))
            | (set(bounds) & set(time_ranges))
            | (set(categories) & set(time_ranges))
        )
        if declared_twice:
            raise UserInputError(
                f"public domain declares columns {declared_twice} more than once; give each "
                "column exactly one of bounds, categories or a time range"
            )
        object.__setattr__(self, "bounds", MappingProxyType(bounds))
        object.__setattr__(self, "categories", MappingProxyType(categories))
        object.__setattr__(self, "time_ranges", MappingProxyType(time_ranges))

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Mapping[str, Any]]) -> PublicDomain:
        """Build from ``{column: {"bounds": [lo, hi]} | {"categories": [...]} |
        {"start": ..., "end": ...}}`` (the form of a ``dataset.public_domain`` config node)."""
        bounds: dict[str, Any] = {}
        categories: dict[str, Any] = {}
        time_ranges: dict[str, Any] = {}
        for key, entry in spec.items():
            col = str(key)
            keys = set(entry) if isinstance(entry, Mapping) else set()
            if keys == {"bounds"}:
                bounds[col] = entry["bounds"]
            elif keys == {"categories"}:
                categories[col] = entry["categories"]
            elif keys == {"start", "end"}:
                time_ranges[col] = (entry["start"], entry["end"])
            else:
                raise UserInputError(
                    f"public domain of column {col!r} must have exactly one of the forms "
                    "{bounds: [lo, hi]}, {categories: [...]} or {start: ..., end: ...}, got "
                    f"{entry!r}"
                )
        return cls(bounds=bounds, categories=categories, time_ranges=time_ranges)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The :meth:`from_mapping` form, JSON-friendly (timestamps as ISO strings)."""
        out: dict[str, dict[str, Any]] = {}
        for col, (lo, hi) in self.bounds.items():
            out[col] = {"bounds": [lo, hi]}
        for col, cats in self.categories.items():
            out[col] = {"categories": [_plain(c) for c in cats]}
        for col, (start, end) in self.time_ranges.items():
            out[col] = {"start": start.isoformat(), "end": end.isoformat()}
        return out

    @property
    def columns(self) -> tuple[str, ...]:
        """Every declared column."""
        return (*self.bounds, *self.categories, *self.time_ranges)

    def kind(self, column: str) -> ColumnKind | None:
        """The encoding the declaration implies, or ``None`` if ``column`` is not declared."""
        if column in self.bounds:
            return "continuous"
        if column in self.categories:
            return "categorical"
        if column in self.time_ranges:
            return "datetime"
        return None


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar (for JSON)."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class _QueryColumn:
    """One column's block of the statistics query (see :class:`StatisticsQuery`)."""

    name: Any
    kind: ColumnKind
    dtype: Any
    start: int  # first coordinate of the block
    low: float = 0.0  # declared bounds; datetime: integer timestamps in ``unit``
    high: float = 1.0
    categories: tuple[Any, ...] = ()
    unit: str = "ns"
    log: bool = False  # continuous: v scales log1p(x - low) by log1p(high - low)

    @property
    def label(self) -> str:
        return str(self.name)

    @property
    def width(self) -> int:
        return len(self.categories) + 1 if self.kind == "categorical" else 4

    @property
    def squared_sensitivity(self) -> int:
        return 1 if self.kind == "categorical" else _NUMERIC_SQUARED_SENSITIVITY

    @property
    def coordinates(self) -> list[str]:
        col = self.label
        if self.kind == "categorical":
            return [f"{col}=={c!r}:count" for c in self.categories] + [
                f"{col}:missing_or_other_count"
            ]
        return [f"{col}:count", f"{col}:sum_v", f"{col}:sum_v2", f"{col}:missing_count"]

    def block(self, series: pd.Series) -> np.ndarray:
        """Per-record contributions, shape ``(len(series), width)``; never raises on values."""
        n = len(series)
        out = np.zeros((n, self.width), dtype=np.float64)
        if self.kind == "categorical":
            missing = series.isna().to_numpy(dtype=bool)
            idx = pd.Index(self.categories, dtype=object).get_indexer(
                series.astype(object).to_numpy()
            )
            idx[missing | (idx < 0)] = len(self.categories)
            out[np.arange(n), idx] = 1.0
            return out
        if self.kind == "continuous":
            values = _ContinuousEncoder.values(self.label, series, allow_infinite=True)
            missing = np.isnan(values)
            offset = np.clip(np.where(missing, self.low, values), self.low, self.high) - self.low
            if self.log:
                # the public log scale: v = 2 log1p(offset) / log1p(high - low) - 1, in [-1, 1]
                # like the linear v, so the sensitivity is unchanged
                v = 2.0 * np.log1p(offset) / math.log1p(self.high - self.low) - 1.0
                return self._numeric_block(out, v, missing)
        else:
            ints = series.to_numpy(dtype=f"datetime64[{self.unit}]").view(np.int64)
            missing = series.isna().to_numpy(dtype=bool)
            lo, hi = int(self.low), int(self.high)
            offset = (np.clip(np.where(missing, lo, ints), lo, hi) - lo).astype(np.float64)
        # v in [-1, 1]: the centred, scaled value.
        v = 2.0 * offset / (self.high - self.low) - 1.0
        return self._numeric_block(out, v, missing)

    @staticmethod
    def _numeric_block(out: np.ndarray, v: np.ndarray, missing: np.ndarray) -> np.ndarray:
        present = ~missing
        out[:, 0] = present
        out[:, 1] = np.where(present, v, 0.0)
        out[:, 2] = np.where(present, v * v, 0.0)
        out[:, 3] = missing
        return out


class StatisticsQuery:
    """The one vector query a DP fit releases: every statistic the DP encoding needs.

    Built from the frame's *schema* (column names and dtypes) and the :class:`PublicDomain`
    only. Per column, with ``v = 2 (clip(x, lo, hi) - lo) / (hi - lo) - 1`` in ``[-1, 1]``:

    * continuous / datetime (4 coordinates): count of present values, sum of ``v``, sum of
      ``v**2``, count of missing values;
    * categorical with ``K`` declared categories (``K + 1`` coordinates): the count of each
      category, and the count of missing-or-undeclared values.

    Sensitivity (add/remove one record): a record adds the vector :meth:`contributions` gives it.
    In a numeric column it adds either ``(1, v, v**2, 0)`` (squared norm ``1 + v**2 + v**4 <= 3``,
    equality at ``v = +-1``, a value at a bound) or ``(0, 0, 0, 1)`` (norm 1); in a categorical
    column it adds one to exactly one coordinate (norm 1). Blocks are disjoint, so the L2
    sensitivity is exactly ``sqrt(3 * n_numeric + n_categorical)``.
    """

    def __init__(
        self,
        dtypes: pd.Series,
        domain: PublicDomain,
        *,
        max_categories: int = 100,
        continuous_scale: str = "linear",
    ) -> None:
        check_continuous_scale(continuous_scale)
        if not isinstance(domain, PublicDomain):
            raise UserInputError(
                f"domain must be a PublicDomain, got {type(domain).__name__}; build one with "
                "PublicDomain(bounds=..., categories=..., time_ranges=...) or "
                "PublicDomain.from_mapping(...)"
            )
        columns: list[_QueryColumn] = []
        start = 0
        for name, dtype in dtypes.items():
            spec = self._column(name, dtype, domain, start, max_categories, continuous_scale)
            columns.append(spec)
            start += spec.width
        self.columns: tuple[_QueryColumn, ...] = tuple(columns)
        self.n_coordinates = start
        self.coordinates: tuple[str, ...] = tuple(c for q in columns for c in q.coordinates)
        self.l2_sensitivity = math.sqrt(sum(q.squared_sensitivity for q in columns))

    @staticmethod
    def _column(
        name: Any,
        dtype: Any,
        domain: PublicDomain,
        start: int,
        max_categories: int,
        continuous_scale: str,
    ) -> _QueryColumn:
        col = str(name)
        kind = domain.kind(col)
        if kind is None:
            try:
                guess = _kind_for_dtype(col, dtype)
            except UserInputError:
                guess = "categorical"
            raise UserInputError(
                f"fit_dp: column {col!r} has no public domain; {_declare_hint(col, guess)} "
                "from public knowledge (never from the data), or drop the column"
            )
        is_datetime = is_datetime64_any_dtype(dtype)
        if isinstance(dtype, pd.DatetimeTZDtype):
            raise UserInputError(
                f"column {col!r} is timezone-aware ({dtype}); convert it to tz-naive first, "
                "e.g. series.dt.tz_convert('UTC').dt.tz_localize(None)"
            )
        if kind == "continuous":
            if is_datetime or not (is_numeric_dtype(dtype) or is_bool_dtype(dtype)):
                raise UserInputError(
                    f"column {col!r} has dtype {dtype} but the public domain declares numeric "
                    f"bounds; {_declare_hint(col, _kind_for_dtype(col, dtype))} instead"
                )
            _kind_for_dtype(col, dtype)  # rejects complex dtypes
            lo, hi = domain.bounds[col]
            if is_integer_dtype(dtype) and math.ceil(lo) > math.floor(hi):
                raise UserInputError(
                    f"column {col!r} has integer dtype {dtype} but its declared bounds "
                    f"[{lo:g}, {hi:g}] contain no integer; {_declare_hint(col, 'continuous')}"
                )
            log = log_scaled(lo, hi, continuous_scale)
            if log and is_integer_dtype(dtype):
                # the encoder clips integers to the integer bounds inside [lo, hi] and takes
                # log1p(x - low) from its lower one: the query uses the same origin (public)
                lo, hi = float(math.ceil(lo)), float(math.floor(hi))
            return _QueryColumn(name, "continuous", dtype, start, low=lo, high=hi, log=log)
        if kind == "datetime":
            if not is_datetime:
                raise UserInputError(
                    f"column {col!r} has dtype {dtype} but the public domain declares a time "
                    "range; convert it with pd.to_datetime or declare bounds / categories"
                )
            unit = np.datetime_data(np.dtype(dtype))[0]
            if unit not in _UNITS_PER_SECOND:
                raise UserInputError(f"column {col!r}: unsupported datetime unit {unit!r}")
            ts_start, ts_end = domain.time_ranges[col]
            try:
                lo_int = int(ts_start.to_datetime64().astype(f"datetime64[{unit}]").view(np.int64))
                hi_int = int(ts_end.to_datetime64().astype(f"datetime64[{unit}]").view(np.int64))
            except (OverflowError, ValueError) as err:  # pragma: no cover - extreme dates
                raise UserInputError(
                    f"column {col!r}: declared time range does not fit datetime64[{unit}]"
                ) from err
            if not lo_int < hi_int:
                raise UserInputError(
                    f"column {col!r}: declared time range is empty at resolution {unit!r}; "
                    f"{_declare_hint(col, 'datetime')}"
                )
            return _QueryColumn(
                name, "datetime", dtype, start, low=float(lo_int), high=float(hi_int), unit=unit
            )
        if is_datetime:
            raise UserInputError(
                f"column {col!r} is a datetime column but the public domain declares "
                f"categories; {_declare_hint(col, 'datetime')}"
            )
        cats = domain.categories[col]
        if (is_numeric_dtype(dtype) or is_bool_dtype(dtype)) and not all(
            isinstance(c, Real | np.bool_) for c in cats
        ):
            raise UserInputError(
                f"column {col!r} has dtype {dtype} but its declared categories {list(cats)!r} "
                f"are not all numbers / booleans; {_declare_hint(col, 'categorical')} with "
                "values of the column's type"
            )
        if len(cats) > max_categories:
            raise UserInputError(
                f"column {col!r} declares {len(cats)} categories, more than max_categories="
                f"{max_categories}; raise max_categories or declare it continuous"
            )
        return _QueryColumn(name, "categorical", dtype, start, categories=tuple(cats))

    def contributions(self, frame: pd.DataFrame) -> np.ndarray:
        """Each record's contribution, shape ``(len(frame), n_coordinates)``; the query's value
        is its column sum. For tests and audits: the DP fit only needs :meth:`evaluate`."""
        return np.concatenate([q.block(frame[q.name]) for q in self.columns], axis=1).reshape(
            len(frame), self.n_coordinates
        )

    def evaluate(self, frame: pd.DataFrame) -> np.ndarray:
        """The exact (non-private) value of the query on ``frame``, shape ``(n_coordinates,)``.

        Never raises because of the values in ``frame`` (only its schema is checked, when the
        query is built): an error that depends on the records would itself leak.
        """
        return np.concatenate([q.block(frame[q.name]).sum(axis=0) for q in self.columns])


@dataclass(frozen=True)
class DPRelease:
    """What :meth:`TabularTransformer.fit_dp` released: one Gaussian mechanism.

    The caller records it in the privacy ledger (:meth:`ledger_parameters`) and accounts for it
    as one Gaussian mechanism with noise multiplier ``noise_multiplier`` (sensitivity-normalised),
    sample rate 1, 1 step, add/remove-one-record adjacency. Everything here is the mechanism's
    output or public, so it may be saved and published (except the noise seed, which is *not*
    stored: knowing it would reveal the exact statistics).

    Attributes:
        mechanism: ``"gaussian"``.
        noise_multiplier: noise standard deviation / L2 sensitivity.
        l2_sensitivity: L2 sensitivity of the query (see :class:`StatisticsQuery`).
        n_coordinates: length of the released vector.
        records: the noisy total record count (post-processed: rounded, at least 1); the true
            count is not released.
        columns: the fitted columns, in order.
        noise_std: ``noise_multiplier * l2_sensitivity``, the noise added to every coordinate.
        coordinates: the name of each coordinate of ``noisy_statistics``.
        noisy_statistics: the released vector (query value plus noise), before post-processing.
        statistics: per column, the post-processed statistics the encoding uses (counts clamped
            at 0; means / stds in the column's units, seconds since ``start`` for datetimes;
            ``std_resolved``: whether the noisy variance stands out of its noise;
            ``std_at_floor``: whether the std is the floor, 1e-3 of the declared range; category
            counts and frequencies).
    """

    mechanism: str
    noise_multiplier: float
    l2_sensitivity: float
    n_coordinates: int
    records: int
    columns: tuple[str, ...]
    noise_std: float
    coordinates: tuple[str, ...]
    noisy_statistics: tuple[float, ...]
    statistics: Mapping[str, Mapping[str, Any]]

    def ledger_parameters(self) -> dict[str, Any]:
        """The mechanism's parameters for a privacy-ledger entry (no data values)."""
        return {
            "mechanism": self.mechanism,
            "noise_multiplier": self.noise_multiplier,
            "l2_sensitivity": self.l2_sensitivity,
            "noise_std": self.noise_std,
            "n_coordinates": self.n_coordinates,
            "sample_rate": 1.0,
            "steps": 1,
            "adjacency": "add/remove one record",
            "noisy_records": self.records,
        }

    def unresolved_std_columns(self) -> list[str]:
        """The numeric columns whose noisy variance is within :data:`_STD_RESOLVED_NOISE_STDS`
        noise stds of 0 (``std_resolved`` false): their standard deviation, and so the scale
        of their encoding, is mostly noise. A release saved before the flag existed has none."""
        return [
            c
            for c, s in self.statistics.items()
            if s["kind"] in ("continuous", "datetime") and not s.get("std_resolved", True)
        ]

    def category_counts(self, column: str) -> dict[Any, float]:
        """Noisy counts (clamped at 0) of each declared category of a categorical column, e.g.
        the class counts when the target is part of the fitted frame."""
        stats = self.statistics.get(column)
        if stats is None or stats["kind"] != "categorical":
            categorical = [c for c, s in self.statistics.items() if s["kind"] == "categorical"]
            raise UserInputError(
                f"{column!r} is not a categorical column of this release; categorical columns "
                f"are {categorical}"
            )
        return dict(zip(stats["categories"], stats["counts"], strict=True))

    def category_frequencies(self, column: str) -> dict[Any, float]:
        """:meth:`category_counts` normalised to sum to 1 (uniform if every count is 0)."""
        counts = self.category_counts(column)
        total = sum(counts.values())
        if total <= 0:
            return {c: 1.0 / len(counts) for c in counts}
        return {c: v / total for c, v in counts.items()}


def _numeric_from_noisy(
    noisy: np.ndarray, noise_std: float
) -> tuple[float, float, float, float, bool, bool, bool]:
    """Post-process a numeric block ``(count, sum_v, sum_v2, missing)``.

    Returns ``(count, mean_v, std_v, missing_count, missing_span, std_resolved, std_at_floor)``
    with counts clamped at 0, ``mean_v`` in [-1, 1], ``std_v`` in [2e-3, 1] (the floor is 1e-3
    of the declared range, which is 2 in units of v; ``std_at_floor`` says the noisy variance
    fell to or below it) and ``missing_span`` true when the noisy missing count is clearly
    positive. When the noisy count of present values is below
    ``max(0.5, 3 * noise_std)`` the ratios would be noise: ``mean_v = 0`` and
    ``std_v = 1 / sqrt(3)`` (a uniform distribution on the declared range), a public default.

    ``std_resolved`` is false when the noisy variance of v is below
    :data:`_STD_RESOLVED_NOISE_STDS` times its own noise level, ``noise_std / count *
    sqrt(1 + 4 mean_v^2)`` (first order: the noise of ``sum_v2 / count`` and of ``mean_v^2``).
    The std of such a column is mostly noise (it may sit at the floor): the column is narrow
    for its declared range, and a public log scale (``continuous_scale="log"``) or a tighter
    declared bound resolves it. Computed from the noisy vector only (post-processing).
    """
    count, sum_v, sum_v2, missing = (float(x) for x in noisy)
    missing_span = missing > 0.5 + _MISSING_SPAN_NOISE_STDS * noise_std
    if count < max(0.5, _FALLBACK_NOISE_STDS * noise_std):
        default_std = 1.0 / math.sqrt(3.0)
        return max(count, 0.0), 0.0, default_std, max(missing, 0.0), missing_span, False, False
    mean_v = min(max(sum_v / count, -1.0), 1.0)
    second = min(max(sum_v2 / count, mean_v * mean_v), 1.0)
    floor = 2.0 * _STD_FLOOR_FRACTION
    variance_v = max(second - mean_v * mean_v, 0.0)
    raw_std = math.sqrt(variance_v)
    at_floor = raw_std <= floor
    std_v = max(raw_std, floor)
    variance_noise = noise_std / count * math.sqrt(1.0 + 4.0 * mean_v * mean_v)
    resolved = variance_v > _STD_RESOLVED_NOISE_STDS * variance_noise
    return max(count, 0.0), mean_v, std_v, max(missing, 0.0), missing_span, resolved, at_floor


def _numeric_from_query(
    q: _QueryColumn, block: np.ndarray, noise_std: float
) -> tuple[_Encoder, dict[str, Any]]:
    """The continuous / datetime encoder and released statistics of one noisy numeric block."""
    count, mean_v, std_v, missing, missing_span, resolved, at_floor = _numeric_from_noisy(
        block, noise_std
    )
    has_missing = missing_span and _holds_missing(q.dtype)
    half_range = (q.high - q.low) / 2.0
    if q.kind == "continuous":
        low, high = q.low, q.high
        if is_integer_dtype(q.dtype):
            low, high = float(math.ceil(low)), float(math.floor(high))
        if q.log:
            # mean / std of s = log1p(x - low), on [0, log1p(high - low)]
            half_log = math.log1p(q.high - q.low) / 2.0
            mean = half_log * (1.0 + mean_v)
            std = half_log * std_v
            impute = min(max(math.expm1(mean) + q.low, low), high)
        else:
            mean = (q.low + q.high) / 2.0 + half_range * mean_v
            std = half_range * std_v
            impute = min(max(mean, low), high)
        cont = _ContinuousEncoder(
            name=q.name,
            dtype=q.dtype,
            has_missing=has_missing,
            mode="standard",
            low=low,
            high=high,
            clipped_by_bounds=True,
            log_scale=q.log,
            impute_value=impute,
            mean=mean,
            std=std,
        )
        cont.spans_rel = [(q.label, "continuous", 1)]
        if has_missing:
            cont.spans_rel.append((f"{q.label}__missing", "categorical", 2))
        stats: dict[str, Any] = {
            "kind": "continuous",
            "bounds": (q.low, q.high),
            "count": count,
            "missing_count": missing,
            "scale": "log1p(x - lower)" if q.log else "linear",
            "mean": mean,
            "std": std,
            "std_resolved": resolved,
            "std_at_floor": at_floor,
        }
        return cont, stats
    ups = _UNITS_PER_SECOND[q.unit]
    min_int, max_int = int(q.low), int(q.high)
    half_seconds = half_range / ups
    mean_seconds = half_seconds * (1.0 + mean_v)
    dt = _DatetimeEncoder(
        name=q.name,
        dtype=q.dtype,
        has_missing=has_missing,
        unit=q.unit,
        min_int=min_int,
        max_int=max_int,
        mean=mean_seconds,
        std=half_seconds * std_v,
        impute_int=min(min_int + round(mean_seconds * ups), max_int),
        clip_to_range=True,
    )
    col = q.label
    dt.spans_rel = [
        (f"{col}__ordinal", "continuous", 1),
        (f"{col}__hour_sin", "continuous", 1),
        (f"{col}__hour_cos", "continuous", 1),
        (f"{col}__dow_sin", "continuous", 1),
        (f"{col}__dow_cos", "continuous", 1),
    ]
    if has_missing:
        dt.spans_rel.append((f"{col}__missing", "categorical", 2))
    start = pd.Timestamp(min_int, unit=q.unit)
    end = pd.Timestamp(max_int, unit=q.unit)
    stats = {
        "kind": "datetime",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "count": count,
        "missing_count": missing,
        "mean_seconds_since_start": mean_seconds,
        "std_seconds": half_seconds * std_v,
        "std_resolved": resolved,
        "std_at_floor": at_floor,
    }
    return dt, stats


def _categorical_from_noisy(
    q: _QueryColumn, block: np.ndarray, noise_std: float
) -> tuple[_Encoder, dict[str, Any]]:
    """The one-hot encoder over the declared categories and the released counts of one block."""
    n_cats = len(q.categories)
    counts = np.maximum(block[:n_cats], 0.0)
    missing = float(block[n_cats])
    has_missing = missing > 0.5 + _MISSING_SPAN_NOISE_STDS * noise_std and _holds_missing(q.dtype)
    cat = _CategoricalEncoder(
        name=q.name, dtype=q.dtype, has_missing=has_missing, unknown_as_missing=True
    )
    cat.categories = np.empty(n_cats, dtype=object)
    cat.categories[:] = list(q.categories)
    cat._index = pd.Index(cat.categories, dtype=object)
    if is_object_dtype(q.dtype):
        cat.null_value = None
    elif isinstance(q.dtype, pd.api.extensions.ExtensionDtype):
        cat.null_value = q.dtype.na_value
    else:
        cat.null_value = np.nan
    cat.spans_rel = [(q.label, "categorical", n_cats + (1 if has_missing else 0))]
    stats: dict[str, Any] = {
        "kind": "categorical",
        "categories": tuple(_plain(c) for c in q.categories),
        "counts": tuple(float(c) for c in counts),
        "missing_or_other_count": max(missing, 0.0),
    }
    return cat, stats


def _check_frame(frame: Any, what: str, *, allow_no_rows: bool) -> None:
    """Schema checks shared by fit and fit_dp (shape and names, never values)."""
    if not isinstance(frame, pd.DataFrame):
        raise UserInputError(f"{what} expects a pandas DataFrame, got {type(frame).__name__}")
    if frame.shape[1] == 0 or (frame.shape[0] == 0 and not allow_no_rows):
        raise UserInputError(
            f"cannot fit on an empty frame (shape {frame.shape}); need rows and columns"
        )
    if not frame.columns.is_unique:
        dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise UserInputError(f"frame has duplicate column names: {dupes}")


# --------------------------------------------------------------------------------------------
# JSON form of values and dtypes (a saved transformer: no pickle)
# --------------------------------------------------------------------------------------------


def value_to_json(value: Any) -> Any:
    """A scalar of a table (a category, a class, a missing-value marker) as JSON: str, int,
    finite float, bool and None as themselves; NaN, infinities, ``pd.NA``, ``NaT`` and
    timestamps as ``{"$": ...}`` tags. :func:`value_from_json` is its inverse (numpy scalars
    come back as the equal Python scalar). Any other type raises
    :class:`~dpshare.errors.UserInputError`: it cannot be saved without pickle."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if value is pd.NA:
        return {"$": "NA"}
    if value is pd.NaT:
        return {"$": "NaT"}
    if isinstance(value, Real):
        number = float(value)
        if math.isnan(number):
            return {"$": "nan"}
        if math.isinf(number):
            return {"$": "inf" if number > 0 else "-inf"}
        return number
    if isinstance(value, pd.Timestamp | np.datetime64):
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            return {"$": "NaT"}
        return {"$": "timestamp", "value": stamp.isoformat()}
    raise UserInputError(
        f"value {value!r} of type {type(value).__name__} cannot be saved in a generator "
        "artifact (JSON, no pickle); use numbers, strings, booleans or timestamps as values"
    )


_TAGS: dict[str, Any] = {
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "NA": pd.NA,
    "NaT": pd.NaT,
}


def value_from_json(value: Any) -> Any:
    """The scalar :func:`value_to_json` wrote."""
    if isinstance(value, dict):
        tag = value.get("$")
        if tag == "timestamp":
            return pd.Timestamp(value["value"])
        if tag in _TAGS:
            return _TAGS[tag]
        raise UserInputError(f"unknown value tag {value!r} in a saved transformer")
    return value


def dtype_to_json(dtype: Any) -> Any:
    """A column dtype as JSON: numpy and pandas dtypes by name (``"int64"``, ``"Int64"``,
    ``"datetime64[ns]"``), a categorical dtype with its categories and order, a string dtype
    with its storage and missing-value marker. Raises :class:`~dpshare.errors.UserInputError`
    for a dtype the name does not rebuild exactly."""
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories
        return {
            "categorical": {
                "categories": [value_to_json(c) for c in cats],
                "categories_dtype": dtype_to_json(cats.dtype),
                "ordered": bool(dtype.ordered),
            }
        }
    if isinstance(dtype, pd.StringDtype):
        na = "nan" if dtype.na_value is np.nan else "NA"
        return {"string": {"storage": dtype.storage, "na_value": na}}
    name = str(dtype)
    try:
        rebuilt = pd.api.types.pandas_dtype(name)
    except TypeError:
        rebuilt = None
    if rebuilt is None or rebuilt != dtype:
        raise UserInputError(
            f"dtype {dtype!r} cannot be saved in a generator artifact (its name {name!r} does "
            "not rebuild it); convert the column to a numpy, nullable, string or category dtype"
        )
    return name


def dtype_from_json(spec: Any) -> Any:
    """The dtype :func:`dtype_to_json` wrote."""
    if isinstance(spec, str):
        return pd.api.types.pandas_dtype(spec)
    if isinstance(spec, dict) and "categorical" in spec:
        cat = spec["categorical"]
        categories = pd.Index(
            [value_from_json(c) for c in cat["categories"]],
            dtype=dtype_from_json(cat["categories_dtype"]),
        )
        return pd.CategoricalDtype(categories, ordered=bool(cat["ordered"]))
    if isinstance(spec, dict) and "string" in spec:
        string = spec["string"]
        na_value = np.nan if string["na_value"] == "nan" else pd.NA
        return pd.StringDtype(storage=string["storage"], na_value=na_value)
    raise UserInputError(f"unknown dtype {spec!r} in a saved transformer")


def _tree_to_json(obj: Any) -> Any:
    """Nested mappings / sequences of scalars (a DP release's statistics) as JSON."""
    if isinstance(obj, Mapping):
        return {str(k): _tree_to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_tree_to_json(v) for v in obj]
    return value_to_json(obj)


def _tree_from_json(obj: Any) -> Any:
    """:func:`_tree_to_json`'s inverse, with sequences as tuples (as a release holds them)."""
    if isinstance(obj, dict) and "$" not in obj:
        return {k: _tree_from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return tuple(_tree_from_json(v) for v in obj)
    return value_from_json(obj)


def _encoder_to_json(encoder: _Encoder) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": encoder.kind,
        "name": value_to_json(encoder.name),
        "dtype": dtype_to_json(encoder.dtype),
        "has_missing": bool(encoder.has_missing),
        "spans": [[name, kind, int(width)] for name, kind, width in encoder.spans_rel],
    }
    if isinstance(encoder, _ContinuousEncoder):
        qt = encoder.quantile_transformer
        out.update(
            mode=encoder.mode,
            low=value_to_json(encoder.low),
            high=value_to_json(encoder.high),
            clipped_by_quantiles=encoder.clipped_by_quantiles,
            clipped_by_bounds=encoder.clipped_by_bounds,
            public_scaling=encoder.public_scaling,
            log_scale=encoder.log_scale,
            impute_value=value_to_json(encoder.impute_value),
            mean=value_to_json(encoder.mean),
            std=value_to_json(encoder.std),
            quantile_transformer=None
            if qt is None
            else {
                "n_quantiles": int(qt.n_quantiles),
                "n_quantiles_": int(qt.n_quantiles_),
                "output_distribution": qt.output_distribution,
                "random_state": qt.random_state,
                "quantiles": [float(v) for v in np.asarray(qt.quantiles_)[:, 0]],
                "references": [float(v) for v in np.asarray(qt.references_)],
            },
        )
    elif isinstance(encoder, _CategoricalEncoder):
        out.update(
            categories=[value_to_json(c) for c in encoder.categories],
            null_value=value_to_json(encoder.null_value),
            unknown_as_missing=encoder.unknown_as_missing,
        )
    elif isinstance(encoder, _DatetimeEncoder):
        out.update(
            unit=encoder.unit,
            min_int=int(encoder.min_int),
            max_int=int(encoder.max_int),
            mean=value_to_json(encoder.mean),
            std=value_to_json(encoder.std),
            impute_int=int(encoder.impute_int),
            clip_to_range=encoder.clip_to_range,
        )
    return out


def _encoder_from_json(spec: Mapping[str, Any]) -> _Encoder:
    common: dict[str, Any] = {
        "name": value_from_json(spec["name"]),
        "dtype": dtype_from_json(spec["dtype"]),
        "has_missing": bool(spec["has_missing"]),
        "spans_rel": [(str(n), k, int(w)) for n, k, w in spec["spans"]],
    }
    kind = spec["kind"]
    encoder: _Encoder
    if kind == "continuous":
        qt_spec = spec["quantile_transformer"]
        qt = None
        if qt_spec is not None:
            qt = QuantileTransformer(
                output_distribution=qt_spec["output_distribution"],
                n_quantiles=int(qt_spec["n_quantiles"]),
                subsample=None,
                random_state=qt_spec["random_state"],
            )
            qt.n_quantiles_ = int(qt_spec["n_quantiles_"])
            qt.quantiles_ = np.asarray(qt_spec["quantiles"], dtype=np.float64).reshape(-1, 1)
            qt.references_ = np.asarray(qt_spec["references"], dtype=np.float64)
            qt.n_features_in_ = 1
        encoder = _ContinuousEncoder(
            **common,
            mode=spec["mode"],
            low=value_from_json(spec["low"]),
            high=value_from_json(spec["high"]),
            clipped_by_quantiles=bool(spec["clipped_by_quantiles"]),
            clipped_by_bounds=bool(spec["clipped_by_bounds"]),
            public_scaling=bool(spec["public_scaling"]),
            log_scale=bool(spec.get("log_scale", False)),  # absent in transformers saved before
            impute_value=value_from_json(spec["impute_value"]),
            mean=value_from_json(spec["mean"]),
            std=value_from_json(spec["std"]),
            quantile_transformer=qt,
        )
    elif kind == "categorical":
        cat = _CategoricalEncoder(
            **common,
            null_value=value_from_json(spec["null_value"]),
            unknown_as_missing=bool(spec["unknown_as_missing"]),
        )
        values = [value_from_json(c) for c in spec["categories"]]
        cat.categories = np.empty(len(values), dtype=object)
        cat.categories[:] = values
        cat._index = pd.Index(cat.categories, dtype=object)
        encoder = cat
    elif kind == "datetime":
        encoder = _DatetimeEncoder(
            **common,
            unit=spec["unit"],
            min_int=int(spec["min_int"]),
            max_int=int(spec["max_int"]),
            mean=value_from_json(spec["mean"]),
            std=value_from_json(spec["std"]),
            impute_int=int(spec["impute_int"]),
            clip_to_range=bool(spec["clip_to_range"]),
        )
    else:
        raise UserInputError(f"unknown encoder kind {kind!r} in a saved transformer")
    return encoder


# --------------------------------------------------------------------------------------------
# The transformer
# --------------------------------------------------------------------------------------------


class TabularTransformer:
    """Reversible encoder between a mixed-type DataFrame and a ``float32`` GAN matrix.

    Args:
        continuous_mode: ``"standard"`` (``(x - mean) / std``) or ``"quantile"`` (sklearn
            ``QuantileTransformer`` to a standard normal) for continuous columns.
        clip_quantiles: lower and upper quantile (fractions in [0, 1]) of the fit data to which
            continuous values are clipped before scaling and after decoding; ``None`` disables
            clipping (the decoding range is then the observed min/max).
        max_categories: most distinct values a categorical column may have.
        n_quantiles: number of quantiles of the quantile transformer (capped at the number of
            observed rows).
        seed: random state of the quantile transformer.

    :meth:`fit` reads exact statistics of the records (not private); :meth:`fit_dp` fits the
    same kind of encoding from one Gaussian-mechanism release (:attr:`release`). See the module
    docstring for the encodings, the DP design, the decoding rules and the privacy caveats.
    """

    def __init__(
        self,
        *,
        continuous_mode: Literal["standard", "quantile"] = "standard",
        clip_quantiles: tuple[float, float] | None = (0.005, 0.995),
        max_categories: int = 100,
        n_quantiles: int = 1000,
        seed: int = 0,
    ) -> None:
        if continuous_mode not in ("standard", "quantile"):
            raise UserInputError(
                f"continuous_mode must be 'standard' or 'quantile', got {continuous_mode!r}"
            )
        if clip_quantiles is not None:
            low, high = clip_quantiles
            if not (0.0 <= low < high <= 1.0):
                raise UserInputError(
                    f"clip_quantiles must satisfy 0 <= low < high <= 1, got {clip_quantiles!r}"
                )
            clip_quantiles = (float(low), float(high))
        if max_categories < 1:
            raise UserInputError(f"max_categories must be >= 1, got {max_categories}")
        if n_quantiles < 2:
            raise UserInputError(f"n_quantiles must be >= 2, got {n_quantiles}")
        self.continuous_mode = continuous_mode
        self.clip_quantiles = clip_quantiles
        self.max_categories = int(max_categories)
        self.n_quantiles = int(n_quantiles)
        self.seed = int(seed)
        self._encoders: list[_Encoder] = []
        self._spans: list[OutputSpan] = []
        self._accesses: list[StatisticAccess] = []
        self._dtypes: pd.Series | None = None
        self._release: DPRelease | None = None
        self._public_fit = False
        self._fitted = False

    # ---------------------------------------------------------------- fit

    def fit(
        self, frame: pd.DataFrame, column_kinds: Mapping[str, ColumnKind] | None = None
    ) -> TabularTransformer:
        """Read the encoding statistics from ``frame`` (real records; see the privacy note).

        Args:
            frame: the released columns to model, without the target label. Every column is
                encoded, in frame order.
            column_kinds: optional overrides of :func:`infer_column_kinds` for some columns
                (e.g. an integer code declared ``"categorical"``).

        Returns:
            ``self``.
        """
        _check_frame(frame, "fit", allow_no_rows=False)
        kinds_override = dict(column_kinds or {})
        unknown = [c for c in kinds_override if c not in frame.columns]
        if unknown:
            raise UserInputError(
                f"column_kinds names columns not in the frame: {unknown}; "
                f"frame columns are {_preview(frame.columns)}"
            )
        bad = {c: k for c, k in kinds_override.items() if k not in _KINDS}
        if bad:
            raise UserInputError(f"unknown column kinds {bad}; valid kinds are {list(_KINDS)}")

        encoders: list[_Encoder] = []
        accesses: list[StatisticAccess] = []
        for col in frame.columns:
            series = frame[col]
            kind = kinds_override.get(col) or _kind_for_dtype(str(col), series.dtype)
            encoder: _Encoder
            if kind == "continuous":
                cont = _ContinuousEncoder(name=col, dtype=series.dtype)
                cont.fit(
                    series,
                    mode=self.continuous_mode,
                    clip_quantiles=self.clip_quantiles,
                    n_quantiles=self.n_quantiles,
                    seed=self.seed,
                    accesses=accesses,
                )
                encoder = cont
            elif kind == "categorical":
                cat = _CategoricalEncoder(name=col, dtype=series.dtype)
                cat.fit(series, max_categories=self.max_categories, accesses=accesses)
                encoder = cat
            else:
                dt = _DatetimeEncoder(name=col, dtype=series.dtype)
                dt.fit(series, accesses=accesses)
                encoder = dt
            encoders.append(encoder)
        self._install(encoders, accesses, frame.dtypes)
        self._release = None
        return self

    def fit_dp(
        self,
        frame: pd.DataFrame,
        *,
        domain: PublicDomain,
        noise_multiplier: float,
        seed: int | None,
        continuous_scale: str = "linear",
    ) -> TabularTransformer:
        """Fit the encoding from ONE Gaussian-mechanism release of the statistics it needs.

        The steps, in order: build the :class:`StatisticsQuery` from the frame's schema and the
        public ``domain`` -> evaluate it on the records -> add ``N(0, (noise_multiplier *
        l2_sensitivity)^2)`` noise to every coordinate -> post-process (see the module
        docstring). Only the last step's inputs (the noisy vector and public information) decide
        the encoding, so the fitted transformer is a post-processing of the release. The caller
        charges :attr:`release` to the privacy ledger.

        Args:
            frame: the columns to model, in order (include the target to also release its
                class counts). Only its schema (names, dtypes) and the query read it.
            domain: public domain of every column of ``frame``; it fixes each column's encoding
                (bounds -> continuous, categories -> categorical, time range -> datetime).
            noise_multiplier: Gaussian noise standard deviation divided by the L2 sensitivity;
                a positive finite number.
            seed: seed of the noise generator. ``None`` draws fresh OS entropy; the DP guarantee
                assumes the seed is kept secret (anyone who knows it can subtract the noise).
            continuous_scale: the public scale of bounded continuous columns
                (:data:`CONTINUOUS_SCALES`, rule :func:`log_scaled`): on the log scale the query
                reads ``v = 2 log1p(x - lo) / log1p(hi - lo) - 1`` (still in ``[-1, 1]``: same
                sensitivity) and the encoder standardises ``log1p(x - lo)`` with its noisy mean
                and std; decoding inverts it. ``linear`` (default) is the module docstring's.

        Returns:
            ``self``.
        """
        if self.continuous_mode != "standard":
            raise UserInputError(
                f"fit_dp supports continuous_mode='standard' only, got {self.continuous_mode!r}: "
                "a quantile transform needs many quantiles of the data, which this DP fit does "
                "not release; use continuous_mode='standard' (or fit without DP)"
            )
        if not (_is_real(noise_multiplier) and 0.0 < float(noise_multiplier) < math.inf):
            raise UserInputError(
                f"noise_multiplier must be a positive finite number, got {noise_multiplier!r}"
            )
        if seed is not None and not (
            isinstance(seed, Integral) and not isinstance(seed, bool) and seed >= 0
        ):
            raise UserInputError(f"seed must be a non-negative integer or None, got {seed!r}")
        _check_frame(frame, "fit_dp", allow_no_rows=True)
        noise_multiplier = float(noise_multiplier)

        # 1. The query, from public information only.
        query = StatisticsQuery(
            frame.dtypes,
            domain,
            max_categories=self.max_categories,
            continuous_scale=continuous_scale,
        )
        # 2. + 3. Evaluate on the records and add Gaussian noise: the only access to the data.
        noise_std = noise_multiplier * query.l2_sensitivity
        rng = np.random.default_rng(seed)
        noisy = query.evaluate(frame) + rng.normal(0.0, noise_std, query.n_coordinates)
        # 4. Post-processing of the noisy vector and public information.
        encoders: list[_Encoder] = []
        accesses: list[StatisticAccess] = []
        statistics: dict[str, Mapping[str, Any]] = {}
        totals: list[tuple[float, int]] = []  # (noisy record count, coordinates summed)
        mech = f"Gaussian mechanism, noise_multiplier={noise_multiplier:g}"
        for q in query.columns:
            block = noisy[q.start : q.start + q.width]
            col = q.label
            if q.kind == "categorical":
                encoder, stats = _categorical_from_noisy(q, block, noise_std)
                totals.append((float(block.sum()), q.width))
                accesses.append(
                    StatisticAccess(
                        col,
                        "dp_category_counts",
                        f"noisy count of each declared category ({mech})",
                        differentially_private=True,
                    )
                )
                accesses.append(
                    StatisticAccess(
                        col,
                        "dp_missing_count",
                        f"noisy count of missing or undeclared values ({mech})",
                        differentially_private=True,
                    )
                )
            else:
                encoder, stats = _numeric_from_query(q, block, noise_std)
                totals.append((float(block[0] + block[3]), 2))
                for statistic, what in (
                    ("dp_count", "noisy count of present values"),
                    ("dp_sum", "noisy sum of the clipped value scaled to [-1, 1]"),
                    ("dp_sum_of_squares", "noisy sum of the squared scaled value"),
                    ("dp_missing_count", "noisy count of missing values"),
                ):
                    accesses.append(StatisticAccess(col, statistic, f"{what} ({mech})", True))
            encoders.append(encoder)
            statistics[col] = MappingProxyType(stats)
        # Noisy total count: inverse-variance weighted mean of the columns' count totals.
        weights = [1.0 / m for _, m in totals]
        records_estimate = sum(t * w for (t, _), w in zip(totals, weights, strict=True)) / sum(
            weights
        )
        self._install(encoders, accesses, frame.dtypes)
        self._release = DPRelease(
            mechanism="gaussian",
            noise_multiplier=noise_multiplier,
            l2_sensitivity=query.l2_sensitivity,
            n_coordinates=query.n_coordinates,
            records=max(1, round(records_estimate)),
            columns=tuple(q.label for q in query.columns),
            noise_std=noise_std,
            coordinates=query.coordinates,
            noisy_statistics=tuple(float(x) for x in noisy),
            statistics=MappingProxyType(statistics),
        )
        return self

    def fit_public(self, frame: pd.DataFrame, *, domain: PublicDomain) -> TabularTransformer:
        """Scale every column by its declared public bounds, reading NO statistic of the records.

        ``v = 2 (x - lo) / (hi - lo) - 1`` in ``[-1, 1]`` (``mean = (lo + hi) / 2``, ``std =
        (hi - lo) / 2`` in the standardisation the encoder applies); decoding inverts it and clips
        to the bounds (rounded inwards for integer dtypes). Only ``frame``'s schema (names,
        dtypes) is used, so the fit costs no privacy and nothing goes into :attr:`accesses`; the
        caller may note in its ledger that the scaling came from public bounds. Meant for images
        (MNIST pixels in [0, 255]) whose generator ends in ``tanh``. Missing values get no
        indicator span (whether a column has any is a fact about the data) and are imputed with
        the midpoint.

        Raises:
            UserInputError: a column has no declared ``bounds`` in ``domain`` (categorical and
                datetime columns are not supported here: use :meth:`fit_dp`).
        """
        _check_frame(frame, "fit_public", allow_no_rows=True)
        undeclared = [str(c) for c in frame.columns if str(c) not in domain.bounds]
        if undeclared:
            raise UserInputError(
                f"fit_public scales continuous columns by declared bounds, and columns "
                f"{_preview(undeclared)} have none; declare bounds for them or use fit_dp"
            )
        encoders: list[_Encoder] = []
        for col in frame.columns:
            lo, hi = domain.bounds[str(col)]
            dtype = frame[col].dtype
            low, high = lo, hi
            if is_integer_dtype(dtype):
                low, high = float(math.ceil(lo)), float(math.floor(hi))
            enc = _ContinuousEncoder(
                name=col,
                dtype=dtype,
                mode="standard",
                low=low,
                high=high,
                clipped_by_bounds=True,
                public_scaling=True,
                impute_value=(lo + hi) / 2.0,
                mean=(lo + hi) / 2.0,
                std=(hi - lo) / 2.0,
            )
            enc.spans_rel = [(str(col), "continuous", 1)]
            encoders.append(enc)
        self._install(encoders, [], frame.dtypes)
        self._release = None
        self._public_fit = True
        return self

    def _install(
        self, encoders: list[_Encoder], accesses: list[StatisticAccess], dtypes: pd.Series
    ) -> None:
        """Adopt fitted encoders and lay out their output spans."""
        spans: list[OutputSpan] = []
        offset = 0
        for encoder in encoders:
            for span_name, span_kind, width in encoder.spans_rel:
                spans.append(
                    OutputSpan(span_name, span_kind, offset, offset + width, encoder.label)
                )
                offset += width
        self._encoders = encoders
        self._spans = spans
        self._accesses = accesses
        self._dtypes = dtypes.copy()
        self._public_fit = False  # fit_public sets it after installing
        self._fitted = True

    # ---------------------------------------------------------------- properties

    def _require_fitted(self, what: str) -> None:
        if not self._fitted:
            raise UserInputError(f"TabularTransformer.{what} called before fit; call fit first")

    @property
    def output_dim(self) -> int:
        """Width of the encoded matrix (number of float columns)."""
        self._require_fitted("output_dim")
        return self._spans[-1].end

    @property
    def output_spans(self) -> list[OutputSpan]:
        """Ordered spans covering ``[0, output_dim)`` exactly, one per generator head."""
        self._require_fitted("output_spans")
        return list(self._spans)

    @property
    def columns(self) -> list[str]:
        """The source columns, in the order they were fitted (and are decoded)."""
        self._require_fitted("columns")
        return [e.name for e in self._encoders]

    @property
    def dtypes(self) -> pd.Series:
        """The dtypes recorded at fit (restored by :meth:`inverse_transform`)."""
        self._require_fitted("dtypes")
        assert self._dtypes is not None
        return self._dtypes.copy()

    @property
    def accesses(self) -> list[StatisticAccess]:
        """Every statistic read from the real data by the last fit: exact reads after
        :meth:`fit` (``differentially_private`` false), noisy releases after :meth:`fit_dp`
        (true; all of them one Gaussian mechanism, :attr:`release`)."""
        return list(self._accesses)

    @property
    def release(self) -> DPRelease | None:
        """The Gaussian-mechanism release of the last :meth:`fit_dp`; ``None`` after
        :meth:`fit` (or before any fit)."""
        return self._release

    @property
    def differentially_private(self) -> bool:
        """Whether the last fit was a DP release (:meth:`fit_dp`) or read nothing
        (:meth:`fit_public`), rather than a raw read."""
        self._require_fitted("differentially_private")
        return self._release is not None or self._public_fit

    def describe(self) -> list[dict[str, Any]]:
        """One dict per source column: ``name``, ``kind``, ``dtype``, ``encoding``, ``width``
        (encoded columns, missing indicator included), ``missing_indicator``, ``fit``
        (``"dp_release"`` after :meth:`fit_dp`, ``"public_bounds"`` after :meth:`fit_public`,
        ``"raw"`` after :meth:`fit`) and
        ``differentially_private``."""
        self._require_fitted("describe")
        private = self._release is not None or self._public_fit
        fit = "public_bounds" if self._public_fit else "dp_release" if private else "raw"
        return [
            {
                "name": e.label,
                "kind": e.kind,
                "dtype": str(e.dtype),
                "encoding": e.encoding(),
                "width": e.width,
                "missing_indicator": e.has_missing and e.kind != "categorical",
                "fit": fit,
                "differentially_private": private,
            }
            for e in self._encoders
        ]

    # ---------------------------------------------------------------- transform / inverse

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode ``frame`` (which must hold every fitted column; extra columns are ignored).

        Returns:
            ``float32`` array of shape ``(len(frame), output_dim)``.
        """
        self._require_fitted("transform")
        if not isinstance(frame, pd.DataFrame):
            raise UserInputError(
                f"transform expects a pandas DataFrame, got {type(frame).__name__}"
            )
        absent = [e.name for e in self._encoders if e.name not in frame.columns]
        if absent:
            raise UserInputError(f"frame is missing fitted columns: {absent}")
        out = np.empty((len(frame), self.output_dim), dtype=np.float32)
        offset = 0
        for encoder in self._encoders:
            block = encoder.transform(frame[encoder.name])
            out[:, offset : offset + encoder.width] = block
            offset += encoder.width
        return out

    def inverse_transform(self, data: np.ndarray) -> pd.DataFrame:
        """Decode generator output (or :meth:`transform` output) back to the original table.

        Continuous spans are read as values (any real number), categorical spans by argmax (so
        logits, probabilities or one-hot rows all work).

        Returns:
            DataFrame with the fitted columns, in order, with the fitted dtypes and a RangeIndex.
        """
        self._require_fitted("inverse_transform")
        array = np.asarray(data)
        if array.ndim != 2:
            raise UserInputError(
                f"inverse_transform expects a 2-D array, got {array.ndim} dimension(s)"
            )
        if array.shape[1] != self.output_dim:
            raise UserInputError(
                f"inverse_transform: expected {self.output_dim} columns, got {array.shape[1]}"
            )
        try:
            array = array.astype(np.float64, copy=False)
        except (TypeError, ValueError) as err:
            raise UserInputError(f"inverse_transform expects numbers: {err}") from err
        if not np.isfinite(array).all():
            raise UserInputError(
                "inverse_transform input contains NaN or infinite values "
                f"({int((~np.isfinite(array)).sum())} entries)"
            )
        decoded: dict[Any, pd.Series] = {}
        offset = 0
        for encoder in self._encoders:
            series = encoder.inverse(array[:, offset : offset + encoder.width])
            decoded[encoder.name] = series.reset_index(drop=True)
            offset += encoder.width
        return pd.DataFrame(decoded, columns=pd.Index([e.name for e in self._encoders]))

    def fit_transform(
        self, frame: pd.DataFrame, column_kinds: Mapping[str, ColumnKind] | None = None
    ) -> np.ndarray:
        """:meth:`fit` then :meth:`transform` on the same frame."""
        return self.fit(frame, column_kinds).transform(frame)

    # ---------------------------------------------------------------- JSON form (no pickle)

    def to_dict(self) -> dict[str, Any]:
        """The fitted transformer as JSON-able data (:meth:`from_dict` rebuilds it exactly):
        settings, every column's encoder (dtype, categories, bounds, means, stds, the
        quantile transformer's quantiles in ``quantile`` mode), the recorded accesses and the
        DP release (:class:`DPRelease`, the noisy vector and its post-processed statistics; the
        noise seed is never part of it). After :meth:`fit` these are EXACT statistics of the
        real records (a non-private access, listed in the run's ledger); after :meth:`fit_dp`
        a DP release; after :meth:`fit_public` only declared bounds."""
        self._require_fitted("to_dict")
        assert self._dtypes is not None
        release = self._release
        return {
            "continuous_mode": self.continuous_mode,
            "clip_quantiles": None if self.clip_quantiles is None else list(self.clip_quantiles),
            "max_categories": self.max_categories,
            "n_quantiles": self.n_quantiles,
            "seed": self.seed,
            "fit": "public_bounds"
            if self._public_fit
            else "dp_release"
            if release is not None
            else "raw",
            "encoders": [_encoder_to_json(e) for e in self._encoders],
            "dtypes": [
                [value_to_json(name), dtype_to_json(dtype)] for name, dtype in self._dtypes.items()
            ],
            "accesses": [
                {
                    "column": a.column,
                    "statistic": a.statistic,
                    "detail": a.detail,
                    "differentially_private": a.differentially_private,
                }
                for a in self._accesses
            ],
            "release": None
            if release is None
            else {
                "mechanism": release.mechanism,
                "noise_multiplier": release.noise_multiplier,
                "l2_sensitivity": release.l2_sensitivity,
                "n_coordinates": release.n_coordinates,
                "records": release.records,
                "columns": list(release.columns),
                "noise_std": release.noise_std,
                "coordinates": list(release.coordinates),
                "noisy_statistics": [value_to_json(v) for v in release.noisy_statistics],
                "statistics": _tree_to_json(release.statistics),
            },
        }

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> TabularTransformer:
        """The fitted transformer :meth:`to_dict` wrote; reads no record."""
        clip = spec["clip_quantiles"]
        transformer = cls(
            continuous_mode=spec["continuous_mode"],
            clip_quantiles=None if clip is None else (float(clip[0]), float(clip[1])),
            max_categories=int(spec["max_categories"]),
            n_quantiles=int(spec["n_quantiles"]),
            seed=int(spec["seed"]),
        )
        encoders = [_encoder_from_json(e) for e in spec["encoders"]]
        names = [value_from_json(n) for n, _ in spec["dtypes"]]
        dtypes = pd.Series(
            [dtype_from_json(d) for _, d in spec["dtypes"]], index=pd.Index(names), dtype=object
        )
        accesses = [
            StatisticAccess(
                str(a["column"]),
                str(a["statistic"]),
                str(a["detail"]),
                bool(a["differentially_private"]),
            )
            for a in spec["accesses"]
        ]
        transformer._install(encoders, accesses, dtypes)
        transformer._public_fit = spec["fit"] == "public_bounds"
        rel = spec["release"]
        if rel is not None:
            statistics = _tree_from_json(rel["statistics"])
            transformer._release = DPRelease(
                mechanism=str(rel["mechanism"]),
                noise_multiplier=float(rel["noise_multiplier"]),
                l2_sensitivity=float(rel["l2_sensitivity"]),
                n_coordinates=int(rel["n_coordinates"]),
                records=int(rel["records"]),
                columns=tuple(str(c) for c in rel["columns"]),
                noise_std=float(rel["noise_std"]),
                coordinates=tuple(str(c) for c in rel["coordinates"]),
                noisy_statistics=tuple(float(value_from_json(v)) for v in rel["noisy_statistics"]),
                statistics=MappingProxyType(
                    {col: MappingProxyType(dict(stats)) for col, stats in statistics.items()}
                ),
            )
        return transformer

    def __repr__(self) -> str:
        state = f"output_dim={self.output_dim}" if self._fitted else "unfitted"
        if self._release is not None:
            state += f", dp_release(noise_multiplier={self._release.noise_multiplier:g})"
        return (
            f"TabularTransformer(continuous_mode={self.continuous_mode!r}, "
            f"clip_quantiles={self.clip_quantiles!r}, {state})"
        )
