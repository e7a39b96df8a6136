"""Fidelity metrics on cases with known answers (dpshare.evaluation.fidelity, feature_nets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from dpshare.data.mnist import PIXEL_COLUMNS
from dpshare.errors import UserInputError
from dpshare.evaluation import feature_nets
from dpshare.evaluation.fidelity import (
    FIDELITY_METRICS,
    correlation_distance,
    evaluate_fidelity,
    frechet_distance,
    frechet_distance_from_moments,
    marginal_distances,
    precision_recall_density_coverage,
)
from dpshare.evaluation.metrics import metric_info
from dpshare.registry import UnknownNameError

TABULAR = ["fd_raw", "fd_encoder", "prdc", "marginals", "correlations"]


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "x": x,
            "y": 0.8 * x + 0.6 * rng.normal(size=n),
            "z": rng.gamma(2.0, size=n),
            "count": rng.poisson(2.0, size=n),
            "colour": rng.choice(["red", "green", "blue"], size=n),
            "flag": rng.random(n) < 0.3,
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.uniform(0, 90, n), unit="D"),
            "label": (x + rng.normal(size=n) > 0).astype(int),
        }
    )


@pytest.fixture(scope="module")
def splits() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _table(600, seed=0), _table(300, seed=1)


def _images(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        rng.integers(0, 256, size=(n, len(PIXEL_COLUMNS)), dtype=np.uint8),
        columns=list(PIXEL_COLUMNS),
    )
    frame["label"] = rng.integers(0, 3, size=n)
    return frame


# ------------------------------------------------------------------ Frechet distance
def test_frechet_identical_samples_is_zero() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 6)) @ rng.normal(size=(6, 6))
    assert frechet_distance(x, x.copy()) == pytest.approx(0.0, abs=1e-6)


def test_frechet_shifted_sample_is_squared_mean_shift() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 4))
    mu = np.array([1.0, -2.0, 0.5, 0.0])
    # same covariance, means differ by exactly mu
    assert frechet_distance(x, x + mu) == pytest.approx(mu @ mu, rel=1e-6)


def test_frechet_independent_gaussians_match_closed_form() -> None:
    rng = np.random.default_rng(2)
    mu = np.array([1.0, 1.0, 0.0])
    real = rng.normal(size=(20_000, 3))
    synthetic = rng.normal(size=(20_000, 3)) + mu
    # identity covariances: FD = ||mu1 - mu2||^2 = 2, up to O(d / n) sampling error
    assert frechet_distance(real, synthetic) == pytest.approx(2.0, abs=0.06)


def test_frechet_from_moments_diagonal_closed_form() -> None:
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([0.0, 3.0, 4.0])
    expected = 25.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # 25 + 1 + 1
    got = frechet_distance_from_moments(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_singular_covariance_stays_finite() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 5))
    x[:, 2] = 0.0  # a constant feature (e.g. a border pixel)
    x[:, 4] = x[:, 3]  # a redundant one (e.g. a one-hot block)
    assert frechet_distance(x, x.copy()) == pytest.approx(0.0, abs=1e-5)
    assert frechet_distance(x, x + 1.0) == pytest.approx(5.0, rel=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_frechet_rejects_non_finite_features(bad: float) -> None:
    x = np.random.default_rng(0).normal(size=(50, 3))
    y = x.copy()
    y[7, 1] = bad
    with pytest.raises(UserInputError, match="NaN or infinite"):
        frechet_distance(x, y)


def test_frechet_rejects_single_row() -> None:
    x = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(UserInputError, match="at least 2"):
        frechet_distance(x, x[:1])


# ------------------------------------------------------------------ PRDC
def test_prdc_identical_is_perfect() -> None:
    x = np.random.default_rng(4).normal(size=(400, 5)).astype(np.float32)
    scores = precision_recall_density_coverage(x, x.copy(), k=5)
    assert scores["precision"] == 1.0
    assert scores["recall"] == 1.0
    assert scores["coverage"] == 1.0
    # each real ball strictly holds its centre and k - 1 neighbours: density exactly 1
    assert scores["density"] == pytest.approx(1.0, abs=1e-9)


def test_prdc_disjoint_supports_are_zero() -> None:
    rng = np.random.default_rng(5)
    real = rng.normal(size=(300, 4))
    synthetic = rng.normal(size=(300, 4)) + 100.0
    scores = precision_recall_density_coverage(real, synthetic, k=5)
    assert scores == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    x = np.random.default_rng(6).normal(size=(50, 2))
    precision_recall_density_coverage(x, x, k=3)
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------ correlations, marginals
def test_correlation_distance_known_answers() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=500)
    const = np.full(500, 3.0)
    real = np.column_stack([a, a, const])  # r(0, 1) = 1, constant column correlates 0
    synthetic = np.column_stack([a, -a, const])  # r(0, 1) = -1
    assert correlation_distance(real, real.copy()) == pytest.approx(0.0, abs=1e-12)
    # pairs (0,1), (0,2), (1,2): |1 - (-1)| + 0 + 0, averaged over 3 pairs
    assert correlation_distance(real, synthetic) == pytest.approx(2.0 / 3.0, rel=1e-9)
    assert correlation_distance(real[:, :1], synthetic[:, :1]) is None


def test_marginals_identical_tables_are_zero(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, _ = splits
    scores = marginal_distances(train, train.copy())
    assert scores == {
        "marginal_tvd_mean": 0.0,
        "marginal_ks_mean": 0.0,
        "marginal_distance_max": 0.0,
    }


def test_marginals_disjoint_supports_are_one() -> None:
    real = pd.DataFrame({"c": ["a", "b"] * 50, "v": np.linspace(0.0, 1.0, 100)})
    synthetic = pd.DataFrame({"c": ["u", "v"] * 50, "v": np.linspace(2.0, 3.0, 100)})
    scores = marginal_distances(real, synthetic)
    assert scores["marginal_tvd_mean"] == pytest.approx(1.0)
    assert scores["marginal_ks_mean"] == pytest.approx(1.0)
    assert scores["marginal_distance_max"] == pytest.approx(1.0)


def test_marginals_known_partial_values() -> None:
    real = pd.DataFrame(
        {
            "c": ["a"] * 50 + ["b"] * 50,
            "n": np.arange(100, dtype=float),
            "k": [1] * 60 + [2] * 40,
            "t": pd.date_range("2024-01-01", periods=100, freq="h"),
        }
    )
    synthetic = pd.DataFrame(
        {
            "c": ["a"] * 75 + ["b"] * 25,  # TVD 0.25
            "n": np.arange(100, dtype=float) + 30.0,  # CDF gap 30/100
            "k": [1.0] * 60 + [2.0] * 40,  # same values as floats: TVD 0
            "t": pd.date_range("2024-01-01", periods=100, freq="h") + pd.Timedelta(hours=10),
        }
    )
    scores = marginal_distances(real, synthetic)
    assert scores["marginal_tvd_mean"] == pytest.approx((0.25 + 0.0) / 2)
    assert scores["marginal_ks_mean"] == pytest.approx((0.30 + 0.10) / 2)
    assert scores["marginal_distance_max"] == pytest.approx(0.30)


# ------------------------------------------------------------------ evaluate_fidelity (tables)
def test_identical_tables_are_perfect(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = splits
    out = evaluate_fidelity(
        synthetic=test.copy(), real_train=train, real_test=test, target="label", names=TABULAR
    )
    assert out["fidelity/fd_raw"] == pytest.approx(0.0, abs=1e-5)
    assert out["fidelity/fd_encoder"] == pytest.approx(0.0, abs=1e-5)
    assert out["fidelity/precision"] == 1.0
    assert out["fidelity/recall"] == 1.0
    assert out["fidelity/coverage"] == 1.0
    assert out["fidelity/marginal_distance_max"] == 0.0
    assert out["fidelity/correlation_distance"] == pytest.approx(0.0, abs=1e-9)
    expected_keys = {key for name in TABULAR for key in FIDELITY_METRICS.get(name).keys}
    assert set(out) == expected_keys
    for key, value in out.items():
        assert type(value) is float, key
        info = metric_info(key)
        assert info.family == "fidelity"
        assert info.value_range is not None
        assert info.value_range[0] <= value <= info.value_range[1]


def test_shifted_column_gives_closed_form_fd(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = splits
    synthetic = test.copy()
    # 3 standard deviations of the real train split (StandardScaler uses ddof=0)
    synthetic["x"] = synthetic["x"] + 3.0 * train["x"].std(ddof=0)
    out = evaluate_fidelity(
        synthetic=synthetic, real_train=train, real_test=test, target="label", names=["fd_raw"]
    )
    assert out["fidelity/fd_raw"] == pytest.approx(9.0, rel=1e-4)


def test_far_away_synthetic_has_zero_precision(
    splits: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = splits
    synthetic = test.copy()
    synthetic[["x", "y", "z"]] += 100.0
    out = evaluate_fidelity(
        synthetic=synthetic,
        real_train=train,
        real_test=test,
        target="label",
        names=["prdc", "marginals"],
    )
    assert out["fidelity/precision"] == 0.0
    assert out["fidelity/recall"] == 0.0
    assert out["fidelity/coverage"] == 0.0
    assert out["fidelity/marginal_distance_max"] == 1.0


def test_seeded_and_capped(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = splits
    synthetic = _table(500, seed=9)
    kwargs: dict[str, Any] = dict(
        synthetic=synthetic,
        real_train=train,
        real_test=test,
        target="label",
        names=["fd_encoder", "prdc"],
        max_rows=200,
        seed=3,
    )
    first, second = evaluate_fidelity(**kwargs), evaluate_fidelity(**kwargs)
    assert first == second
    # the same seed draws the same rows from equally long tables: an identical copy stays one
    out = evaluate_fidelity(
        synthetic=test.copy(),
        real_train=train,
        real_test=test,
        target="label",
        names=["fd_raw"],
        max_rows=100,
    )
    assert out["fidelity/fd_raw"] == pytest.approx(0.0, abs=1e-5)


def test_encoder_feature_net_for_prdc(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = splits
    out = evaluate_fidelity(
        synthetic=test.copy(),
        real_train=train,
        real_test=test,
        target="label",
        names=["prdc"],
        feature_net="encoder",
    )
    assert out["fidelity/precision"] == 1.0
    assert out["fidelity/recall"] == 1.0


# ------------------------------------------------------------------ errors
def test_unknown_names_raise(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = splits
    with pytest.raises(UnknownNameError, match="fd_raw"):
        evaluate_fidelity(
            synthetic=test, real_train=train, real_test=test, target="label", names=["fid"]
        )
    with pytest.raises(UnknownNameError, match="lenet"):
        evaluate_fidelity(
            synthetic=test,
            real_train=train,
            real_test=test,
            target="label",
            names=["prdc"],
            feature_net="inception",
        )


def test_nan_in_synthetic_is_imputed_and_inf_is_an_error(
    splits: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """A DP transformer may release a missing-value span the real train split lacks, so NaN in
    the synthetic table is imputed, not refused; an infinite value is refused."""
    train, test = splits
    synthetic = test.copy()
    synthetic.loc[synthetic.index[3], "z"] = np.nan
    out = evaluate_fidelity(
        synthetic=synthetic, real_train=train, real_test=test, target="label", names=["fd_raw"]
    )
    assert np.isfinite(out["fidelity/fd_raw"])
    synthetic.loc[synthetic.index[3], "z"] = np.inf
    with pytest.raises(UserInputError, match="infinite"):
        evaluate_fidelity(
            synthetic=synthetic, real_train=train, real_test=test, target="label", names=["fd_raw"]
        )


def test_missing_values_allowed_where_real_has_them(
    splits: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = splits
    train = train.copy()
    train.loc[train.index[:10], "z"] = np.nan
    synthetic = test.copy()
    synthetic.loc[synthetic.index[:20], "z"] = np.nan
    out = evaluate_fidelity(
        synthetic=synthetic,
        real_train=train,
        real_test=test,
        target="label",
        names=["fd_raw", "marginals"],
    )
    value = out["fidelity/fd_raw"]
    assert value is not None and np.isfinite(value)


def test_single_row_is_an_error(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = splits
    with pytest.raises(UserInputError, match="at least 2"):
        evaluate_fidelity(
            synthetic=test.iloc[:1], real_train=train, real_test=test, target="label", names=TABULAR
        )


def test_missing_column_is_an_error(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = splits
    with pytest.raises(UserInputError, match="lacks column"):
        evaluate_fidelity(
            synthetic=test.drop(columns=["colour"]),
            real_train=train,
            real_test=test,
            target="label",
            names=["marginals"],
        )


def test_prdc_needs_more_rows_than_k(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = splits
    with pytest.raises(UserInputError, match="prdc_k"):
        evaluate_fidelity(
            synthetic=test.iloc[:5],
            real_train=train,
            real_test=test,
            target="label",
            names=["prdc"],
            prdc_k=5,
        )


def test_lenet_on_a_table_is_an_error(splits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = splits
    with pytest.raises(UserInputError, match="fd_lenet needs an image table"):
        evaluate_fidelity(
            synthetic=test, real_train=train, real_test=test, target="label", names=["fd_lenet"]
        )
    with pytest.raises(UserInputError, match="needs an image table"):
        evaluate_fidelity(
            synthetic=test,
            real_train=train,
            real_test=test,
            target="label",
            names=["prdc"],
            feature_net="lenet",
        )


# ------------------------------------------------------------------ LeNet feature network
def test_lenet_is_cached_and_reloaded(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    train = _images(200, seed=0)
    probe = _images(30, seed=1)
    net = feature_nets.load_or_train_lenet(train, target="label", cache_dir=tmp_path, epochs=1)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1
    assert files[0].startswith(f"{feature_nets.LENET_FEATURES_VERSION}-")
    assert len(files[0]) == len(feature_nets.LENET_FEATURES_VERSION) + 1 + 12 + len(".pt")
    assert (
        files[0]
        == feature_nets.lenet_cache_path(train, target="label", cache_dir=tmp_path, epochs=1).name
    )
    first = feature_nets.lenet_features(net, probe)
    assert first.shape == (30, feature_nets.LENET_FEATURE_DIM)
    assert first.dtype == np.float32

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached LeNet should have been loaded")

    monkeypatch.setattr(feature_nets, "_train_lenet", no_training)
    again = feature_nets.load_or_train_lenet(train, target="label", cache_dir=tmp_path, epochs=1)
    np.testing.assert_array_equal(feature_nets.lenet_features(again, probe), first)
    # other training data or another recipe is another file, never stale weights
    other = feature_nets.lenet_cache_path(train.iloc[1:], target="label", cache_dir=tmp_path)
    assert other.name not in files


def test_fd_lenet_identical_images(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(feature_nets.CACHE_ENV, str(tmp_path))  # cache_dir=None reads it
    train, test = _images(200, seed=2), _images(60, seed=3)
    out = evaluate_fidelity(
        synthetic=test.copy(),
        real_train=train,
        real_test=test,
        target="label",
        names=["fd_lenet", "prdc"],
        feature_net="lenet",
    )
    assert out["fidelity/fd_lenet"] == pytest.approx(0.0, abs=1e-4)
    assert out["fidelity/precision"] == 1.0
    assert out["fidelity/recall"] == 1.0
    assert len(list(tmp_path.glob(f"{feature_nets.LENET_FEATURES_VERSION}-*.pt"))) == 1


def test_detection_is_chance_for_one_distribution_and_perfect_for_disjoint_ones() -> None:
    from dpshare.evaluation.fidelity import detection_scores

    rng = np.random.default_rng(0)
    same = detection_scores(rng.normal(size=(600, 4)), rng.normal(size=(600, 4)), seed=0)
    assert same["detection_auc"] == pytest.approx(0.5, abs=0.07)
    assert same["detection_accuracy"] == pytest.approx(0.5, abs=0.07)
    far = detection_scores(rng.normal(size=(300, 4)), rng.normal(5.0, 1.0, size=(300, 4)))
    assert far["detection_auc"] > 0.99 and far["detection_accuracy"] > 0.97
