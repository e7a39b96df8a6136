"""The reversible tabular transformer: round trips, dtypes, spans, generator output, errors."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from dpshare.data.transformer import (
    OutputSpan,
    PublicDomain,
    StatisticAccess,
    StatisticsQuery,
    TabularTransformer,
    infer_column_kinds,
)
from dpshare.errors import UserInputError
from numerics import float32_atol

N_ROWS = 2_000
CAT_ORDER = ["low", "mid", "high"]  # deliberately not alphabetical


def make_mixed_frame(n: int = N_ROWS, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f = rng.normal(50.0, 10.0, n)
    f[rng.random(n) < 0.05] = np.nan
    nullable = pd.array(rng.integers(0, 40, n), dtype="Int64")
    nullable[rng.random(n) < 0.05] = pd.NA
    cat = pd.Categorical(rng.choice(CAT_ORDER, n), categories=CAT_ORDER)
    cat[[3, 10]] = np.nan
    obj = pd.Series(rng.choice(["x", "y", "z"], n).astype(object), dtype=object)
    obj[[5, 6]] = None
    strings = pd.Series(rng.choice(["p", "q", "r"], n), dtype="str")
    strings[[7, 8]] = None
    seconds = rng.integers(0, 3 * 365 * 86_400, n)
    dt = pd.Series(pd.Timestamp("2021-01-01") + pd.to_timedelta(seconds, unit="s"))
    dt = dt.astype("datetime64[ns]")
    dt[[1, 2]] = pd.NaT
    return pd.DataFrame(
        {
            "f": f,
            "i": rng.integers(-500, 500, n),
            "I": nullable,
            "b": rng.random(n) < 0.3,
            "cat": cat,
            "obj": obj,
            "s": strings,
            "dt": dt,
            "const": np.full(n, 3.25),
        }
    )


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_mixed_frame()


@pytest.fixture(scope="module")
def exact(frame: pd.DataFrame) -> TabularTransformer:
    return TabularTransformer(clip_quantiles=None).fit(frame)


def test_fixture_has_the_intended_dtypes(frame: pd.DataFrame) -> None:
    assert [str(d) for d in frame.dtypes] == [
        "float64",
        "int64",
        "Int64",
        "bool",
        "category",
        "object",
        "str",
        "datetime64[ns]",
        "float64",
    ]


def test_infer_column_kinds(frame: pd.DataFrame) -> None:
    assert infer_column_kinds(frame) == {
        "f": "continuous",
        "i": "continuous",
        "I": "continuous",
        "b": "categorical",
        "cat": "categorical",
        "obj": "categorical",
        "s": "categorical",
        "dt": "datetime",
        "const": "continuous",
    }


def _assert_round_trip(
    original: pd.DataFrame, back: pd.DataFrame, float_atol: float, float_cols: list[str]
) -> None:
    assert list(back.columns) == list(original.columns)
    assert back.dtypes.equals(original.dtypes)
    assert back.index.equals(pd.RangeIndex(len(original)))
    for col in original.columns:
        if col in float_cols:
            assert back[col].isna().equals(original[col].isna()), col
            np.testing.assert_allclose(
                back[col].to_numpy(), original[col].to_numpy(), atol=float_atol, rtol=0, err_msg=col
            )
        elif col == "dt":
            assert back[col].isna().equals(original[col].isna())
            diff = (back[col] - original[col]).abs().max()
            assert diff <= pd.Timedelta(seconds=1)
        else:
            pd.testing.assert_series_equal(back[col], original[col], check_exact=True)


def test_round_trip_exact_standard(frame: pd.DataFrame, exact: TabularTransformer) -> None:
    encoded = exact.transform(frame)
    assert encoded.dtype == np.float32
    assert encoded.shape == (N_ROWS, exact.output_dim)
    back = exact.inverse_transform(encoded)
    # the encoding is float32: a round trip is exact up to float32 rounding at f's magnitude
    atol = float32_atol(frame["f"], frame["const"])
    _assert_round_trip(frame, back, float_atol=atol, float_cols=["f", "const"])
    # Constant column: decoded exactly, encoded as zeros (std 0 -> 1, centred on the mean).
    assert (back["const"] == 3.25).all()
    # Object nulls keep their kind (None), the str column its NaN marker.
    assert back["obj"][5] is None
    assert back["s"].isna().sum() == 2


def test_round_trip_quantile_mode(frame: pd.DataFrame) -> None:
    tt = TabularTransformer(continuous_mode="quantile", clip_quantiles=None).fit(frame)
    back = tt.inverse_transform(tt.transform(frame))
    _assert_round_trip(frame, back, float_atol=1e-2, float_cols=["f", "const"])
    encoded = tt.transform(frame)
    # The quantile-transformed column is roughly standard normal.
    f_col = encoded[~frame["f"].isna().to_numpy(), 0]
    assert abs(float(f_col.mean())) < 0.05
    assert abs(float(f_col.std()) - 1.0) < 0.1


def test_standard_mode_scales_to_zero_mean_unit_std(
    frame: pd.DataFrame, exact: TabularTransformer
) -> None:
    encoded = exact.transform(frame)
    i_span = next(s for s in exact.output_spans if s.column == "i")
    col = encoded[:, i_span.start].astype(np.float64)
    assert abs(col.mean()) < 1e-5
    assert abs(col.std() - 1.0) < 1e-5
    const_span = next(s for s in exact.output_spans if s.column == "const")
    assert np.all(encoded[:, const_span.start] == 0.0)


def test_clipping_to_quantiles(frame: pd.DataFrame) -> None:
    tt = TabularTransformer(clip_quantiles=(0.05, 0.95)).fit(frame)
    back = tt.inverse_transform(tt.transform(frame))
    observed = frame["f"].dropna().to_numpy()
    low, high = np.quantile(observed, [0.05, 0.95])
    expected = np.clip(frame["f"].to_numpy(), low, high)
    atol = float32_atol(expected)  # float32 encoding: rounding at the values' magnitude
    np.testing.assert_allclose(back["f"].to_numpy(), expected, atol=atol, rtol=0)
    outside = (frame["f"] < low) | (frame["f"] > high)
    assert outside.sum() > 100  # clipping really happened
    assert back["f"].min() == pytest.approx(low, abs=atol)
    assert back["f"].max() == pytest.approx(high, abs=atol)
    i_low, i_high = np.quantile(frame["i"].to_numpy(), [0.05, 0.95])
    assert back["i"].min() == round(i_low)
    assert back["i"].max() == round(i_high)
    assert back.dtypes.equals(frame.dtypes)


def test_output_spans(exact: TabularTransformer) -> None:
    spans = exact.output_spans
    assert spans[0].start == 0
    assert spans[-1].end == exact.output_dim
    for before, after in zip(spans, spans[1:], strict=False):
        assert before.end == after.start
    assert all(s.width >= 1 for s in spans)
    layout = [(s.column, s.kind, s.width, s.source_column) for s in spans]
    assert layout == [
        ("f", "continuous", 1, "f"),
        ("f__missing", "categorical", 2, "f"),
        ("i", "continuous", 1, "i"),
        ("I", "continuous", 1, "I"),
        ("I__missing", "categorical", 2, "I"),
        ("b", "categorical", 2, "b"),
        ("cat", "categorical", 4, "cat"),  # 3 categories + missing
        ("obj", "categorical", 4, "obj"),
        ("s", "categorical", 4, "s"),
        ("dt__ordinal", "continuous", 1, "dt"),
        ("dt__hour_sin", "continuous", 1, "dt"),
        ("dt__hour_cos", "continuous", 1, "dt"),
        ("dt__dow_sin", "continuous", 1, "dt"),
        ("dt__dow_cos", "continuous", 1, "dt"),
        ("dt__missing", "categorical", 2, "dt"),
        ("const", "continuous", 1, "const"),
    ]
    assert exact.output_dim == 29
    assert exact.columns == ["f", "i", "I", "b", "cat", "obj", "s", "dt", "const"]
    missing_spans = {s.source_column for s in spans if s.column.endswith("__missing")}
    assert missing_spans == {"f", "I", "dt"}


def test_one_hot_encoding_values(frame: pd.DataFrame, exact: TabularTransformer) -> None:
    encoded = exact.transform(frame)
    spans = {s.column: s for s in exact.output_spans}
    cat = encoded[:, spans["cat"].start : spans["cat"].end]
    assert np.all(cat.sum(axis=1) == 1.0)
    # Dtype order low, mid, high, then the missing slot.
    expected = frame["cat"].cat.codes.to_numpy().copy()
    expected[expected == -1] = 3
    np.testing.assert_array_equal(cat.argmax(axis=1), expected)
    obj = encoded[:, spans["obj"].start : spans["obj"].end]
    assert obj[0].tolist() == [float(frame["obj"][0] == v) for v in ["x", "y", "z"]] + [0.0]
    assert obj[5].tolist() == [0.0, 0.0, 0.0, 1.0]
    f_missing = encoded[:, spans["f__missing"].start : spans["f__missing"].end]
    np.testing.assert_array_equal(f_missing[:, 1], frame["f"].isna().to_numpy().astype(np.float32))


def test_datetime_angles() -> None:
    df = pd.DataFrame(
        {"t": pd.to_datetime(["2024-01-01 06:00:00", "2024-01-06 18:00:00", "2024-01-03 00:00:00"])}
    )
    tt = TabularTransformer().fit(df)
    enc = tt.transform(df)
    # 2024-01-01 is a Monday (day 0), 06:00 is a quarter turn.
    np.testing.assert_allclose(enc[0, 1:5], [1.0, 0.0, 0.0, 1.0], atol=1e-6)
    # 2024-01-06 is a Saturday (day 5), 18:00 is three quarters of a turn.
    np.testing.assert_allclose(
        enc[1, 1:5], [-1.0, 0.0, np.sin(2 * np.pi * 5 / 7), np.cos(2 * np.pi * 5 / 7)], atol=1e-6
    )
    back = tt.inverse_transform(enc)
    pd.testing.assert_frame_equal(back, df)
    assert str(back["t"].dtype) == str(df["t"].dtype)


def _generator_like(tt: TabularTransformer, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, tt.output_dim), dtype=np.float32)
    for span in tt.output_spans:
        if span.kind == "continuous":
            out[:, span.start : span.end] = rng.normal(0.0, 2.0, (n, span.width))
        else:
            out[:, span.start : span.end] = rng.normal(0.0, 3.0, (n, span.width))
    return out


@pytest.mark.parametrize("mode", ["standard", "quantile"])
def test_inverse_of_generator_output(frame: pd.DataFrame, mode: str) -> None:
    tt = TabularTransformer(continuous_mode=mode).fit(frame)
    fake = tt.inverse_transform(_generator_like(tt, 5_000, seed=3))
    assert list(fake.columns) == list(frame.columns)
    assert fake.dtypes.equals(frame.dtypes)
    assert len(fake) == 5_000
    # No missing values where the fit data had none.
    for col in ["i", "b", "const"]:
        assert not fake[col].isna().any(), col
    # Missing values appear where the fit data had them (random logits pick them sometimes).
    for col in ["f", "I", "cat", "obj", "s", "dt"]:
        assert fake[col].isna().any(), col
    # Values stay in the fitted ranges / category sets.
    low, high = np.quantile(frame["f"].dropna(), [0.005, 0.995])
    assert fake["f"].min() >= low - 1e-9 and fake["f"].max() <= high + 1e-9
    assert set(fake["obj"].dropna()) <= {"x", "y", "z"}
    assert set(fake["s"].dropna()) <= {"p", "q", "r"}
    assert list(fake["cat"].cat.categories) == CAT_ORDER
    assert fake["dt"].min() >= frame["dt"].min()
    assert fake["dt"].max() <= frame["dt"].max()
    assert (fake["const"] == 3.25).all()
    # Datetimes are decoded to whole seconds.
    assert (fake["dt"].dropna().dt.microsecond == 0).all()
    # The argmax of the logits decides the category.
    span = next(s for s in tt.output_spans if s.column == "b")
    raw = _generator_like(tt, 5_000, seed=3)[:, span.start : span.end]
    np.testing.assert_array_equal(fake["b"].to_numpy(), raw.argmax(axis=1) == 1)


def test_more_dtypes_round_trip() -> None:
    rng = np.random.default_rng(11)
    n = 600
    df = pd.DataFrame(
        {
            "f32": rng.normal(size=n).astype("float32"),
            "i32": rng.integers(0, 10_000, n).astype("int32"),
            "u8": rng.integers(0, 256, n).astype("uint8"),
            "code": rng.integers(1, 6, n),  # declared categorical below
            "nb": pd.array(rng.choice([True, False, None], n), dtype="boolean"),
            "F": pd.array(rng.normal(size=n), dtype="Float64"),
            "us": pd.Series(pd.date_range("1800-01-01", "2200-01-01", periods=n)).astype(
                "datetime64[us]"
            ),
            "sec": pd.Series(pd.date_range("2000-01-01", periods=n, freq="37min")).astype(
                "datetime64[s]"
            ),
        }
    )
    df.loc[3, "F"] = pd.NA
    tt = TabularTransformer(clip_quantiles=None).fit(df, column_kinds={"code": "categorical"})
    assert next(s for s in tt.output_spans if s.column == "code").width == 5
    back = tt.inverse_transform(tt.transform(df))
    assert back.dtypes.equals(df.dtypes)
    for col in ["i32", "u8", "code", "nb", "sec"]:
        pd.testing.assert_series_equal(back[col], df[col], check_exact=True)
    np.testing.assert_allclose(back["f32"], df["f32"], atol=1e-5)
    assert back["F"].isna().equals(df["F"].isna())
    np.testing.assert_allclose(
        back["F"].dropna().to_numpy(float), df["F"].dropna().to_numpy(float), atol=1e-5
    )
    assert (back["us"] - df["us"]).abs().max() <= pd.Timedelta(seconds=1)


def test_unseen_category_and_unexpected_missing(
    frame: pd.DataFrame, exact: TabularTransformer
) -> None:
    new = frame.head(4).copy()
    new["obj"] = pd.Series(["never-seen", "x", None, "y"], dtype=object)
    new["b"] = [True, False, True, False]
    new["i"] = new["i"].astype("float64")
    new.loc[0, "i"] = np.nan  # "i" had no missing values in fit: imputed with the median
    new["extra"] = 1  # extra columns are ignored
    encoded = exact.transform(new)
    spans = {s.column: s for s in exact.output_spans}
    obj = encoded[:, spans["obj"].start : spans["obj"].end]
    assert obj[0].tolist() == [0.0, 0.0, 0.0, 0.0]  # unseen -> all zeros
    assert obj[2].tolist() == [0.0, 0.0, 0.0, 1.0]  # missing slot
    back = exact.inverse_transform(encoded)
    assert back["obj"][0] == "x"  # all zeros decodes to the first category
    assert back["obj"][2] is None
    assert abs(back["i"][0] - float(np.median(frame["i"]))) <= 0.5
    assert list(back.columns) == list(frame.columns)


def test_unseen_category_in_categorical_dtype(frame: pd.DataFrame) -> None:
    tt = TabularTransformer().fit(frame[["cat"]])
    other = pd.DataFrame({"cat": pd.Categorical(["mid", "extreme"])})
    encoded = tt.transform(other)
    np.testing.assert_array_equal(encoded, [[0, 1, 0, 0], [0, 0, 0, 0]])


def test_accesses_list_every_column(frame: pd.DataFrame, exact: TabularTransformer) -> None:
    accesses = exact.accesses
    assert all(isinstance(a, StatisticAccess) for a in accesses)
    assert {a.column for a in accesses} == set(frame.columns)
    by_column: dict[str, set[str]] = {}
    for a in accesses:
        by_column.setdefault(a.column, set()).add(a.statistic)
    assert by_column["f"] == {"missing_rate", "min_max", "median", "mean", "std"}
    assert by_column["cat"] == {"missing_rate", "category_set"}
    assert by_column["dt"] == {"missing_rate", "datetime_range", "mean", "std", "median"}
    clipped = TabularTransformer(continuous_mode="quantile").fit(frame)
    stats_f = [a.statistic for a in clipped.accesses if a.column == "f"]
    assert stats_f == ["missing_rate", "quantiles", "median", "quantiles"]
    # Details name the statistic, never its value.
    mean_f = str(round(float(frame["f"].mean()), 2))
    assert all(mean_f not in a.detail for a in accesses)


def test_describe(exact: TabularTransformer) -> None:
    rows = exact.describe()
    assert [r["name"] for r in rows] == exact.columns
    assert sum(r["width"] for r in rows) == exact.output_dim
    by_name = {r["name"]: r for r in rows}
    assert by_name["I"]["dtype"] == "Int64"
    assert by_name["I"]["kind"] == "continuous"
    assert by_name["dt"]["width"] == 7
    assert by_name["cat"]["encoding"] == "one-hot over 3 categories + missing category"
    assert set(rows[0]) >= {"name", "kind", "dtype", "encoding", "width"}


def test_refit_resets_state(frame: pd.DataFrame) -> None:
    tt = TabularTransformer().fit(frame)
    tt.fit(frame[["i", "b"]])
    assert tt.columns == ["i", "b"]
    assert tt.output_dim == 3
    assert {a.column for a in tt.accesses} == {"i", "b"}


# ---------------------------------------------------------------------------- errors


def test_error_empty_frame() -> None:
    with pytest.raises(ValueError, match="empty frame"):
        TabularTransformer().fit(pd.DataFrame())
    with pytest.raises(ValueError, match="empty frame"):
        TabularTransformer().fit(pd.DataFrame({"a": pd.Series([], dtype=float)}))


def test_error_unknown_column_in_kinds(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"columns not in the frame: \['nope'\]"):
        TabularTransformer().fit(frame, column_kinds={"nope": "continuous"})
    with pytest.raises(ValueError, match="unknown column kinds"):
        TabularTransformer().fit(frame, column_kinds={"i": "ordinal"})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([np.nan] * 5),
        pd.Series([None] * 5, dtype=object),
        pd.Series([pd.NaT] * 5, dtype="datetime64[ns]"),
        pd.Series(pd.array([pd.NA] * 5, dtype="Int64")),
    ],
)
def test_error_all_missing_column(column: pd.Series) -> None:
    df = pd.DataFrame({"ok": np.arange(5.0), "hollow": column})
    with pytest.raises(ValueError, match=r"column 'hollow' is entirely missing.*drop it"):
        TabularTransformer().fit(df)


def test_error_before_fit() -> None:
    tt = TabularTransformer()
    with pytest.raises(ValueError, match="transform called before fit"):
        tt.transform(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(ValueError, match="inverse_transform called before fit"):
        tt.inverse_transform(np.zeros((1, 1)))
    with pytest.raises(ValueError, match="before fit"):
        _ = tt.output_dim


def test_error_inverse_wrong_width(exact: TabularTransformer) -> None:
    with pytest.raises(ValueError, match="expected 29 columns, got 28"):
        exact.inverse_transform(np.zeros((4, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="2-D"):
        exact.inverse_transform(np.zeros(29))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_error_inverse_non_finite(exact: TabularTransformer, bad: float) -> None:
    data = np.zeros((3, exact.output_dim), dtype=np.float32)
    data[1, 4] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        exact.inverse_transform(data)


def test_error_transform_missing_columns(frame: pd.DataFrame, exact: TabularTransformer) -> None:
    with pytest.raises(ValueError, match=r"missing fitted columns: \['cat', 'dt'\]"):
        exact.transform(frame.drop(columns=["dt", "cat"]))


def test_error_too_many_categories() -> None:
    df = pd.DataFrame({"code": [f"c{i}" for i in range(12)]})
    with pytest.raises(ValueError, match=r"'code' has 12 distinct.*declare it continuous"):
        TabularTransformer(max_categories=10).fit(df)
    TabularTransformer(max_categories=12).fit(df)  # raising the limit works


def test_error_tz_aware_datetime() -> None:
    df = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")})
    with pytest.raises(ValueError, match="'t' is timezone-aware"):
        TabularTransformer().fit(df)


def test_error_non_numeric_declared_continuous(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="'s' is declared continuous"):
        TabularTransformer().fit(frame, column_kinds={"s": "continuous"})


def test_error_infinite_in_fit() -> None:
    with pytest.raises(ValueError, match="'x' contains infinite values"):
        TabularTransformer().fit(pd.DataFrame({"x": [1.0, np.inf, 2.0]}))


def test_spans_are_output_span_instances(exact: TabularTransformer) -> None:
    span = exact.output_spans[1]
    assert isinstance(span, OutputSpan)
    assert span == OutputSpan("f__missing", "categorical", 1, 3, "f")
    assert OutputSpan("a", "continuous", 0, 1).source_column == "a"


def test_speed_100k_rows_15_columns() -> None:
    base = make_mixed_frame(n=10_000, seed=1)
    big = pd.concat([base] * 10, ignore_index=True)
    extra = big[["f", "i", "I", "b", "cat", "obj"]].add_suffix("_2")
    big = pd.concat([big, extra], axis=1)
    assert big.shape == (100_000, 15)
    start = time.perf_counter()
    tt = TabularTransformer(continuous_mode="quantile").fit(big)
    back = tt.inverse_transform(tt.transform(big))
    elapsed = time.perf_counter() - start
    assert back.dtypes.equals(big.dtypes)
    assert elapsed < 10.0, f"fit + transform + inverse took {elapsed:.1f} s"


# ---------------------------------------------------------------------------- DP fit

MIXED_DOMAIN = PublicDomain(
    bounds={"f": (0.0, 100.0), "i": (-500, 500), "I": (0, 40), "const": (0.0, 10.0)},
    categories={
        "b": [False, True],
        "cat": CAT_ORDER,
        "obj": ["x", "y", "z"],
        "s": ["p", "q", "r"],
    },
    time_ranges={"dt": ("2021-01-01", "2024-01-01")},
)


def make_small_frame() -> pd.DataFrame:
    """12 records with missing values, infinities, out-of-bounds values and undeclared categories;
    record 0 sits at the upper bound of every numeric column (the worst case)."""
    return pd.DataFrame(
        {
            "x": [10.0, 3.0, np.nan, -np.inf, np.inf, 25.0, -4.0, 0.0, 5.0, 7.5, 1.0, 9.9],
            "k": pd.array([5, 0, None, 3, 9, -2, 1, 2, 2, None, 4, 5], dtype="Int64"),
            "flag": [True, False, True, True, False, False, True, False, True, True, False, True],
            "c": pd.Series(
                ["a", "b", None, "zzz", "a", "c", "b", "a", "c", "c", "a", "b"], dtype=object
            ),
            "t": pd.to_datetime(
                [
                    "2024-12-31", "2024-01-05 13:00", None, "2023-06-01", "2024-03-03",
                    "2025-07-01", "2024-02-29 23:59:59", "2024-07-14", "2024-08-01",
                    "2024-09-09", "2024-10-10", "2024-11-11",
                ],
                format="ISO8601",
            ),
        }
    )  # fmt: skip


SMALL_DOMAIN = PublicDomain(
    bounds={"x": (0.0, 10.0), "k": (0, 5)},
    categories={"flag": [False, True], "c": ["a", "b", "c"]},
    time_ranges={"t": ("2024-01-01", "2024-12-31")},
)


def test_dp_sensitivity_matches_brute_force() -> None:
    frame = make_small_frame()
    query = StatisticsQuery(frame.dtypes, SMALL_DOMAIN)
    # 3 numeric columns touch at most 3 coordinates each, 2 categorical ones 1 each.
    assert query.l2_sensitivity == pytest.approx(np.sqrt(3 * 3 + 2 * 1), abs=1e-12)
    assert query.n_coordinates == 4 + 4 + 3 + 4 + 4
    assert len(query.coordinates) == query.n_coordinates
    full = query.evaluate(frame)
    # Removing each record in turn (add/remove adjacency): the change is that record's row.
    changes = np.stack(
        [full - query.evaluate(frame.drop(index=i).reset_index(drop=True)) for i in frame.index]
    )
    np.testing.assert_allclose(changes, query.contributions(frame), atol=1e-12)
    norms = np.linalg.norm(changes, axis=1)
    assert norms.max() <= query.l2_sensitivity + 1e-12
    # Record 0 is at the upper bound of every numeric column: the bound is attained (tight).
    assert norms[0] == pytest.approx(query.l2_sensitivity, abs=1e-12)
    assert int(np.argmax(norms)) == 0
    # Every coordinate moves by at most 1 per record.
    assert np.abs(changes).max() <= 1.0 + 1e-12
    tt = TabularTransformer().fit_dp(frame, domain=SMALL_DOMAIN, noise_multiplier=1.0, seed=0)
    assert tt.release is not None
    assert tt.release.l2_sensitivity == query.l2_sensitivity
    assert tt.release.n_coordinates == query.n_coordinates
    assert tt.release.coordinates == query.coordinates


def test_dp_noise_scale_matches_noise_multiplier() -> None:
    frame = make_small_frame()
    query = StatisticsQuery(frame.dtypes, SMALL_DOMAIN)
    exact = query.evaluate(frame)
    noise_multiplier = 0.7
    draws = []
    for seed in range(250):
        tt = TabularTransformer().fit_dp(
            frame, domain=SMALL_DOMAIN, noise_multiplier=noise_multiplier, seed=seed
        )
        assert tt.release is not None
        draws.append(np.asarray(tt.release.noisy_statistics) - exact)
    noise = np.stack(draws)  # (250, 19): 4,750 draws
    expected_std = noise_multiplier * query.l2_sensitivity
    assert tt.release.noise_std == pytest.approx(expected_std)
    # Std of a sample std over 4,750 normal draws is ~1 %: 4 % is four of those.
    assert noise.std() == pytest.approx(expected_std, rel=0.04)
    assert abs(noise.mean()) < 4 * expected_std / np.sqrt(noise.size)
    # Each coordinate gets the same scale (no coordinate is left without noise).
    per_coordinate = noise.std(axis=0)
    assert per_coordinate.min() > 0.75 * expected_std
    assert per_coordinate.max() < 1.25 * expected_std
    # Same seed, same release; another seed, another release.
    again = TabularTransformer().fit_dp(
        frame, domain=SMALL_DOMAIN, noise_multiplier=noise_multiplier, seed=249
    )
    assert again.release == tt.release
    assert draws[0].tolist() != draws[1].tolist()


def _in_mixed_domain(fake: pd.DataFrame) -> None:
    for col, (lo, hi) in MIXED_DOMAIN.bounds.items():
        values = fake[col].dropna().astype(float)
        assert values.min() >= lo and values.max() <= hi, col
    for col, cats in MIXED_DOMAIN.categories.items():
        assert set(fake[col].dropna()) <= set(cats), col
    start, end = MIXED_DOMAIN.time_ranges["dt"]
    assert fake["dt"].min() >= start and fake["dt"].max() <= end


def test_dp_huge_noise_still_gives_a_valid_invertible_transformer(frame: pd.DataFrame) -> None:
    tt = TabularTransformer().fit_dp(frame, domain=MIXED_DOMAIN, noise_multiplier=1e6, seed=1)
    assert tt.differentially_private
    encoded = tt.transform(frame)
    assert encoded.dtype == np.float32 and np.isfinite(encoded).all()
    # The statistics are noise: each column falls back to a sane public scaling.
    assert np.abs(encoded).max() < 10.0
    back = tt.inverse_transform(encoded)
    assert list(back.columns) == list(frame.columns)
    assert back.dtypes.equals(frame.dtypes)
    _in_mixed_domain(back)
    # Present values inside the bounds survive the round trip.
    present = frame["f"].notna()
    # scaled by the public bounds (0, 100) in float32: rounding at that magnitude
    atol = float32_atol(MIXED_DOMAIN.bounds["f"])
    np.testing.assert_allclose(back["f"][present], frame["f"][present], atol=atol)
    pd.testing.assert_series_equal(back["i"], frame["i"])
    fake = tt.inverse_transform(_generator_like(tt, 2_000, seed=4))
    assert fake.dtypes.equals(frame.dtypes)
    _in_mixed_domain(fake)
    assert list(fake["cat"].cat.categories) == CAT_ORDER
    assert tt.release is not None and tt.release.records >= 1


def test_dp_tiny_noise_approaches_the_non_dp_fit(frame: pd.DataFrame) -> None:
    raw = TabularTransformer(clip_quantiles=None).fit(frame)
    dp = TabularTransformer().fit_dp(frame, domain=MIXED_DOMAIN, noise_multiplier=1e-6, seed=2)
    layout = [(s.column, s.kind, s.width) for s in dp.output_spans]
    assert layout == [(s.column, s.kind, s.width) for s in raw.output_spans]
    assert dp.release is not None
    stats = dp.release.statistics
    observed = frame["f"].dropna()
    assert stats["f"]["mean"] == pytest.approx(observed.mean(), abs=1e-3)
    assert stats["f"]["std"] == pytest.approx(observed.std(ddof=0), abs=1e-3)
    assert stats["f"]["missing_count"] == pytest.approx(frame["f"].isna().sum(), abs=1e-3)
    assert dp.release.records == len(frame)
    counts = dp.release.category_counts("cat")
    assert counts == pytest.approx(frame["cat"].value_counts().to_dict(), abs=1e-3)
    # The encodings agree wherever the non-DP imputation (median) is not involved.
    a, b = dp.transform(frame), raw.transform(frame)
    for span in raw.output_spans:
        rows = frame[span.source_column].notna().to_numpy() | (span.kind == "categorical")
        np.testing.assert_allclose(
            a[rows, span.start : span.end], b[rows, span.start : span.end], atol=1e-3,
            err_msg=span.column,
        )  # fmt: skip


def test_dp_refuses_quantile_mode(frame: pd.DataFrame) -> None:
    with pytest.raises(UserInputError, match="continuous_mode='standard' only.*quantiles"):
        TabularTransformer(continuous_mode="quantile").fit_dp(
            frame, domain=MIXED_DOMAIN, noise_multiplier=1.0, seed=0
        )


@pytest.mark.parametrize(
    ("column", "fix"),
    [
        ("f", r"dataset\.public_domain\.f\.bounds=\[lo, hi\]"),
        ("cat", r"dataset\.public_domain\.cat\.categories"),
        ("dt", r"dataset\.public_domain\.dt\.start"),
    ],
)
def test_dp_refuses_a_column_without_domain(frame: pd.DataFrame, column: str, fix: str) -> None:
    spec = MIXED_DOMAIN.to_dict()
    del spec[column]
    domain = PublicDomain.from_mapping(spec)
    with pytest.raises(UserInputError, match=rf"column '{column}' has no public domain.*{fix}"):
        TabularTransformer().fit_dp(frame, domain=domain, noise_multiplier=1.0, seed=0)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf, True, "1.0"])
def test_dp_refuses_bad_noise_multiplier(bad: object) -> None:
    with pytest.raises(UserInputError, match="noise_multiplier must be a positive finite"):
        TabularTransformer().fit_dp(
            make_small_frame(), domain=SMALL_DOMAIN, noise_multiplier=bad, seed=0
        )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"bounds": {"amount": (5.0, 5.0)}},
            r"'amount': bounds must be .* lo < hi.*amount\.bounds",
        ),
        ({"bounds": {"amount": (1.0, np.nan)}}, r"'amount': bounds must be two finite"),
        ({"bounds": {"amount": (1.0, 2.0, 3.0)}}, r"'amount': bounds must be"),
        ({"categories": {"channel": []}}, r"'channel': categories must be a non-empty.*channel"),
        ({"categories": {"channel": ["a", "a"]}}, r"'channel': categories must be .* distinct"),
        ({"time_ranges": {"ts": ("2025-02-01", "2025-01-01")}}, r"'ts': the time range"),
        ({"bounds": {"a": (0, 1)}, "categories": {"a": [0, 1]}}, r"\['a'\] more than once"),
    ],
)
def test_public_domain_rejects_bad_declarations(kwargs: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        PublicDomain(**kwargs)


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        (PublicDomain(bounds={"s": (0, 1)}), r"'s' has dtype str but .* numeric bounds"),
        (PublicDomain(time_ranges={"s": ("2020", "2021")}), r"'s' has dtype str but .* time"),
        (PublicDomain(categories={"d": ["2020-01-01"]}), r"'d' is a datetime column"),
        (PublicDomain(categories={"n": ["0", "1"]}), r"'n' has dtype int64 .* not all numbers"),
        (PublicDomain(bounds={"n": (0.2, 0.8)}), r"'n' has integer dtype .* contain no integer"),
    ],
)
def test_dp_refuses_a_domain_that_does_not_fit_the_dtype(
    domain: PublicDomain, message: str
) -> None:
    frame = pd.DataFrame(
        {
            "s": pd.Series(["a", "b"], dtype="str"),
            "d": pd.to_datetime(["2020-01-01", "2020-01-02"]),
            "n": [0, 1],
        }
    )
    column = message.split("'")[1]
    with pytest.raises(UserInputError, match=message):
        TabularTransformer().fit_dp(frame[[column]], domain=domain, noise_multiplier=1.0, seed=0)


def test_dp_never_raises_because_of_values() -> None:
    frame = pd.DataFrame(
        {
            "hollow": [np.nan] * 4,
            "wild": [np.inf, -np.inf, 1e300, np.nan],
            "c": pd.Series([None, "never-declared", None, None], dtype=object),
        }
    )
    domain = PublicDomain(bounds={"hollow": (0, 1), "wild": (-1, 1)}, categories={"c": ["a"]})
    tt = TabularTransformer().fit_dp(frame, domain=domain, noise_multiplier=0.5, seed=0)
    back = tt.inverse_transform(tt.transform(frame))
    assert back["wild"].dropna().between(-1, 1).all()
    empty = TabularTransformer().fit_dp(frame.iloc[:0], domain=domain, noise_multiplier=0.5, seed=0)
    assert empty.output_dim >= 3
    assert len(empty.inverse_transform(np.zeros((3, empty.output_dim)))) == 3


def test_dp_undeclared_categories_count_and_encode_as_missing() -> None:
    frame = make_small_frame()
    tt = TabularTransformer().fit_dp(frame, domain=SMALL_DOMAIN, noise_multiplier=1e-6, seed=0)
    assert tt.release is not None
    # "zzz" and None are both "missing or other".
    assert tt.release.statistics["c"]["missing_or_other_count"] == pytest.approx(2.0, abs=1e-3)
    span = next(s for s in tt.output_spans if s.column == "c")
    assert span.width == 4  # a, b, c + missing
    block = tt.transform(frame)[:, span.start : span.end]
    assert block[3].tolist() == [0.0, 0.0, 0.0, 1.0]  # "zzz"
    assert block[2].tolist() == [0.0, 0.0, 0.0, 1.0]  # None
    back = tt.inverse_transform(tt.transform(frame))
    assert back["c"][3] is None
    # Out-of-range values are clipped to the declared bounds, integers stay integers.
    assert back["x"][4] == 10.0 and back["x"][3] == 0.0
    assert back["k"][5] == 0 and str(back["k"].dtype) == "Int64"
    assert back["t"][5] == pd.Timestamp("2024-12-31")


def test_dp_releases_target_class_counts() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(5_000) < 0.1).astype(np.int64)
    frame = pd.DataFrame({"amount": rng.uniform(0, 10, 5_000), "label": y})
    domain = PublicDomain(bounds={"amount": (0, 10)}, categories={"label": [0, 1]})
    tt = TabularTransformer().fit_dp(frame, domain=domain, noise_multiplier=2.0, seed=3)
    release = tt.release
    assert release is not None
    noise_std = 2.0 * np.sqrt(3 + 1)
    assert release.noise_std == pytest.approx(noise_std)
    counts = release.category_counts("label")
    assert set(counts) == {0, 1}
    assert counts[1] == pytest.approx(y.sum(), abs=5 * noise_std)
    assert sum(release.category_frequencies("label").values()) == pytest.approx(1.0)
    # The noisy record count (the true one is not released) is close to the truth.
    assert abs(release.records - 5_000) < 5 * noise_std
    with pytest.raises(UserInputError, match="'amount' is not a categorical column"):
        release.category_counts("amount")
    params = release.ledger_parameters()
    assert params["mechanism"] == "gaussian"
    assert params["sample_rate"] == 1.0 and params["steps"] == 1
    assert params["noise_multiplier"] == 2.0
    assert "seed" not in params


def test_dp_accesses_and_describe_say_how_the_fit_was_made(frame: pd.DataFrame) -> None:
    tt = TabularTransformer().fit_dp(frame, domain=MIXED_DOMAIN, noise_multiplier=1.0, seed=0)
    assert tt.accesses and all(a.differentially_private for a in tt.accesses)
    assert {a.column for a in tt.accesses} == set(frame.columns)
    assert all(r["differentially_private"] and r["fit"] == "dp_release" for r in tt.describe())
    assert next(r for r in tt.describe() if r["name"] == "f")["encoding"].startswith(
        "clip to declared bounds"
    )
    # Details name the mechanism, never a value of the data.
    assert all("Gaussian mechanism" in a.detail for a in tt.accesses)
    tt.fit(frame)  # a raw refit replaces the release
    assert tt.release is None and not tt.differentially_private
    assert not any(a.differentially_private for a in tt.accesses)
    assert all(r["fit"] == "raw" and not r["differentially_private"] for r in tt.describe())


def test_public_domain_mapping_round_trip() -> None:
    spec = MIXED_DOMAIN.to_dict()
    assert spec["f"] == {"bounds": [0.0, 100.0]}
    assert spec["dt"] == {"start": "2021-01-01T00:00:00", "end": "2024-01-01T00:00:00"}
    assert PublicDomain.from_mapping(spec) == MIXED_DOMAIN
    assert MIXED_DOMAIN.kind("dt") == "datetime" and MIXED_DOMAIN.kind("nope") is None
    with pytest.raises(UserInputError, match="'f' must have exactly one of the forms"):
        PublicDomain.from_mapping({"f": {"bounds": [0, 1], "categories": [1]}})


def _heavy_tailed_frame(n: int = 4_000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = np.exp(rng.normal(4.0, 1.5, n))  # log-normal, median ~55, a tail to ~10^4
    amount[:3] = [0.0, 1e6, 100_000.0]  # below / above / at the declared bounds
    return pd.DataFrame({"amount": amount, "small": rng.uniform(0.0, 10.0, n)})


HEAVY_DOMAIN = PublicDomain(bounds={"amount": (0.0, 100_000.0), "small": (0.0, 10.0)})


def test_dp_log_scale_has_the_linear_sensitivity() -> None:
    frame = _heavy_tailed_frame(n=40)
    linear = StatisticsQuery(frame.dtypes, HEAVY_DOMAIN)
    log = StatisticsQuery(frame.dtypes, HEAVY_DOMAIN, continuous_scale="log")
    assert log.l2_sensitivity == linear.l2_sensitivity
    assert log.coordinates == linear.coordinates
    full = log.evaluate(frame)
    changes = np.stack(
        [full - log.evaluate(frame.drop(index=i).reset_index(drop=True)) for i in frame.index]
    )
    np.testing.assert_allclose(changes, log.contributions(frame), atol=1e-12)
    assert np.linalg.norm(changes, axis=1).max() <= log.l2_sensitivity + 1e-12
    # v of a value is 2 log1p(x - lo) / log1p(hi - lo) - 1: -1 at the lower bound, +1 at the
    # upper bound (a value above it is clipped), the log-midpoint in between
    contributions = log.contributions(frame)
    np.testing.assert_allclose(contributions[:3, 1], [-1.0, 1.0, 1.0], atol=1e-12)
    mid = np.expm1(np.log1p(100_000.0) / 2.0)
    one = log.contributions(pd.DataFrame({"amount": [mid], "small": [5.0]}))
    assert one[0, 1] == pytest.approx(0.0, abs=1e-12)
    # the linear query puts nearly every amount at the bottom of [-1, 1]
    linear_v = linear.contributions(frame)[3:, 1]
    log_v = contributions[3:, 1]
    assert np.median(linear_v) < -0.99 < np.median(log_v)


def test_dp_auto_scale_logs_only_columns_declared_zero_to_at_least_1000() -> None:
    frame = _heavy_tailed_frame()
    tt = TabularTransformer().fit_dp(
        frame, domain=HEAVY_DOMAIN, noise_multiplier=1e-6, seed=0, continuous_scale="auto"
    )
    assert tt.release is not None
    stats = tt.release.statistics
    assert stats["amount"]["scale"] == "log1p(x - lower)"
    assert stats["small"]["scale"] == "linear"
    # with negligible noise the released mean / std are those of log1p(clipped amount)
    logs = np.log1p(frame["amount"].clip(0.0, 100_000.0).to_numpy(np.float64))
    assert stats["amount"]["mean"] == pytest.approx(logs.mean(), rel=1e-6)
    assert stats["amount"]["std"] == pytest.approx(logs.std(), rel=1e-5)
    encoded = tt.transform(frame)
    spans = {s.column: s.start for s in tt.output_spans}
    z = encoded[:, spans["amount"]].astype(np.float64)
    # standardised on the log scale: mean 0, std 1 (float32 encoding, compared in float64)
    assert z.mean() == pytest.approx(0.0, abs=1e-3) and z.std() == pytest.approx(1.0, rel=1e-3)
    back = tt.inverse_transform(encoded)
    inside = frame["amount"].clip(0.0, 100_000.0).to_numpy(np.float64)
    # the round trip is exact up to float32 rounding of log1p(x) (relative error ~1e-6 in x)
    np.testing.assert_allclose(back["amount"].to_numpy(np.float64), inside, rtol=1e-4, atol=1e-3)
    assert "log1p" in next(r["encoding"] for r in tt.describe() if r["name"] == "amount")
    # generator output far outside the range decodes inside the declared bounds
    wild = np.zeros((2, encoded.shape[1]), dtype=np.float32)
    wild[:, spans["amount"]] = [-1e3, 1e3]
    decoded = tt.inverse_transform(wild)["amount"].to_numpy(np.float64)
    np.testing.assert_allclose(decoded, [0.0, 100_000.0], rtol=1e-9)
    # the saved transformer keeps the scale
    again = TabularTransformer.from_dict(tt.to_dict())
    np.testing.assert_array_equal(again.transform(frame), encoded)
    # linear (the default) is the plain standardisation of x
    plain = TabularTransformer().fit_dp(frame, domain=HEAVY_DOMAIN, noise_multiplier=1e-6, seed=0)
    assert plain.release is not None and plain.release.statistics["amount"]["scale"] == "linear"


def test_dp_log_scale_of_an_integer_column_takes_the_encoders_origin() -> None:
    """An integer column declared with non-integer bounds is clipped to the integers inside
    them; the DP mean of log1p(x - origin) must use that same origin as the encoder."""
    rng = np.random.default_rng(5)
    counts = rng.integers(1, 3000, 3000).astype(np.int64)
    frame = pd.DataFrame({"count": counts})
    domain = PublicDomain(bounds={"count": (0.5, 4000.7)})
    tt = TabularTransformer().fit_dp(
        frame, domain=domain, noise_multiplier=1e-6, seed=0, continuous_scale="log"
    )
    assert tt.release is not None
    stats = tt.release.statistics["count"]
    logs = np.log1p(counts.astype(np.float64) - 1.0)  # origin 1: the lowest integer allowed
    assert stats["mean"] == pytest.approx(logs.mean(), rel=1e-6)
    assert stats["std"] == pytest.approx(logs.std(), rel=1e-5)
    z = tt.transform(frame)[:, 0].astype(np.float64)
    assert z.mean() == pytest.approx(0.0, abs=1e-3) and z.std() == pytest.approx(1.0, rel=1e-3)
    back = tt.inverse_transform(tt.transform(frame))["count"].to_numpy()
    np.testing.assert_array_equal(back, counts)


def test_dp_refuses_an_unknown_continuous_scale() -> None:
    with pytest.raises(UserInputError, match="continuous_scale='exp'.*auto.*linear.*log"):
        TabularTransformer().fit_dp(
            _heavy_tailed_frame(n=10),
            domain=HEAVY_DOMAIN,
            noise_multiplier=1.0,
            seed=0,
            continuous_scale="exp",
        )


def test_dp_flags_a_std_that_does_not_stand_out_of_its_noise() -> None:
    """A count column that is mostly 0 on a declared [0, 50] range: on the linear scale its
    noisy variance is buried in noise (bank_sim's cross_bank_count_24h, whose std hit the floor
    in 36 % of releases), and the release says so; on the public log scale it is resolved, and
    so is a column that spans its range."""
    rng = np.random.default_rng(11)
    n = 20_000
    frame = pd.DataFrame(
        {
            "count": (rng.random(n) < 0.1).astype(np.int64),  # 0 or 1 on [0, 50]
            "wide": rng.uniform(0.0, 50.0, n),
        }
    )
    domain = PublicDomain(bounds={"count": (0.0, 50.0), "wide": (0.0, 50.0)})
    for seed in range(5):
        linear = TabularTransformer().fit_dp(frame, domain=domain, noise_multiplier=5.0, seed=seed)
        assert linear.release is not None
        assert linear.release.unresolved_std_columns() == ["count"]
        assert linear.release.statistics["count"]["std_resolved"] is False
        assert linear.release.statistics["wide"]["std_resolved"] is True
        log = TabularTransformer().fit_dp(
            frame, domain=domain, noise_multiplier=5.0, seed=seed, continuous_scale="log"
        )
        assert log.release is not None and log.release.unresolved_std_columns() == []
        true_std = float(np.log1p(frame["count"].to_numpy(np.float64)).std())
        assert log.release.statistics["count"]["std"] == pytest.approx(true_std, rel=0.1)
    # with (almost) no noise the narrow column is resolved on the linear scale too
    exact = TabularTransformer().fit_dp(frame, domain=domain, noise_multiplier=1e-6, seed=0)
    assert exact.release is not None and exact.release.unresolved_std_columns() == []


def test_dp_release_says_when_a_std_sits_at_its_floor() -> None:
    """A column with no spread gets the floor std (1e-3 of its declared range, never 0) and
    the release says so in ``std_at_floor``; a column that spans its range does not."""
    n = 5_000
    frame = pd.DataFrame(
        {"flat": np.full(n, 7.0), "wide": np.random.default_rng(3).uniform(0.0, 50.0, n)}
    )
    domain = PublicDomain(bounds={"flat": (0.0, 50.0), "wide": (0.0, 50.0)})
    tt = TabularTransformer().fit_dp(frame, domain=domain, noise_multiplier=1e-6, seed=0)
    assert tt.release is not None
    flat, wide = tt.release.statistics["flat"], tt.release.statistics["wide"]
    assert flat["std_at_floor"] is True and wide["std_at_floor"] is False
    assert float(flat["std"]) == pytest.approx(1e-3 * 50.0, rel=1e-9)
    assert flat["std_resolved"] is False and flat["scale"] == "linear"
