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
statistics of the real data and are **not differentially private in this module**. The privacy
layer (a separate module) is responsible for charging them to the privacy budget or replacing them
with noised / public values. :attr:`TabularTransformer.accesses` lists every statistic read from
the real data, so nothing is hidden; the entries name the statistic but never carry its value.

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
  or the observed min/max when ``clip_quantiles=None``); integer columns are rounded then cast.
* Datetimes decode to whole seconds; the date comes from the ordinal and the time of day from the
  angle, so encoded real data round-trips to within one second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    "ColumnKind",
    "OutputSpan",
    "StatisticAccess",
    "TabularTransformer",
    "infer_column_kinds",
]

ColumnKind = Literal["continuous", "categorical", "datetime"]
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
    """One statistic of the real data read during :meth:`TabularTransformer.fit`.

    A privacy-relevant access: the privacy layer must account for it. ``detail`` says what was
    read, never the value.
    """

    column: str
    statistic: str
    detail: str


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
    """Clipping + median imputation + standard or quantile scaling (+ missing indicator)."""

    kind: ColumnKind = "continuous"
    mode: str = "standard"
    low: float = 0.0
    high: float = 0.0
    clipped_by_quantiles: bool = False
    median: float = 0.0
    mean: float = 0.0
    std: float = 1.0
    quantile_transformer: QuantileTransformer | None = None

    @staticmethod
    def values(column: str, series: pd.Series) -> np.ndarray:
        """The column as float64 with NaN for missing."""
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
        if np.isinf(values).any():
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
        self.median = float(np.median(clipped))
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
        values = self.values(self.label, series)
        missing = np.isnan(values)
        filled = np.where(missing, self.median, np.clip(values, self.low, self.high))
        if self.quantile_transformer is None:
            scaled = (filled - self.mean) / self.std
        else:
            scaled = self.quantile_transformer.transform(filled.reshape(-1, 1))[:, 0]
        out = scaled.reshape(-1, 1)
        if self.has_missing:
            out = np.concatenate([out, _missing_block(missing)], axis=1)
        return out

    def inverse(self, block: np.ndarray) -> pd.Series:
        if self.quantile_transformer is None:
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
    """One-hot over the fitted categories; a missing value is its own (last) category."""

    kind: ColumnKind = "categorical"
    categories: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    null_value: Any = None
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
        text = f"one-hot over {len(self.categories)} categories"
        if self.has_missing:
            text += " + missing category"
        return text

    def transform(self, series: pd.Series) -> np.ndarray:
        assert self._index is not None
        n = len(series)
        missing = series.isna().to_numpy(dtype=bool)
        idx = self._index.get_indexer(series.astype(object).to_numpy())
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
            codes = np.where(missing, -1, idx)
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
        if self.has_missing:
            text += " + missing indicator"
        return text

    def transform(self, series: pd.Series) -> np.ndarray:
        ints, missing = self._ints(series)
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

    See the module docstring for the encodings, the decoding rules and the privacy caveat.
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
        if not isinstance(frame, pd.DataFrame):
            raise UserInputError(f"fit expects a pandas DataFrame, got {type(frame).__name__}")
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise UserInputError(
                f"cannot fit on an empty frame (shape {frame.shape}); need rows and columns"
            )
        if not frame.columns.is_unique:
            dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            raise UserInputError(f"frame has duplicate column names: {dupes}")
        kinds_override = dict(column_kinds or {})
        unknown = [c for c in kinds_override if c not in frame.columns]
        if unknown:
            raise UserInputError(
                f"column_kinds names columns not in the frame: {unknown}; "
                f"frame columns are {list(frame.columns)}"
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
        self._dtypes = frame.dtypes.copy()
        self._fitted = True
        return self

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
        """Every statistic read from the real data during :meth:`fit` (not DP; see module doc)."""
        return list(self._accesses)

    def describe(self) -> list[dict[str, Any]]:
        """One dict per source column: ``name``, ``kind``, ``dtype``, ``encoding``, ``width``
        (encoded columns, missing indicator included) and ``missing_indicator``."""
        self._require_fitted("describe")
        return [
            {
                "name": e.label,
                "kind": e.kind,
                "dtype": str(e.dtype),
                "encoding": e.encoding(),
                "width": e.width,
                "missing_indicator": e.has_missing and e.kind != "categorical",
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

    def __repr__(self) -> str:
        state = f"output_dim={self.output_dim}" if self._fitted else "unfitted"
        return (
            f"TabularTransformer(continuous_mode={self.continuous_mode!r}, "
            f"clip_quantiles={self.clip_quantiles!r}, {state})"
        )
