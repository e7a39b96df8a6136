"""Fidelity: how close the synthetic table's distribution is to the real one.

Protocol.

* **Reference.** Synthetic records are compared with the held-out real TEST split, never with
  the train split the generator saw: a generator that copies its training records gains nothing
  (copying is what the attacks in :mod:`dpshare.evaluation.attacks` measure).
* **Fitting.** Every learned or fitted map is fitted on the real TRAIN split only: the
  :class:`~dpshare.evaluation.features.TableEncoder` (on all its rows), the autoencoder (on at
  most ``max_rows`` of its rows, drawn with ``seed``) and the LeNet feature network (on all its
  images; :mod:`dpshare.evaluation.feature_nets`).
* **Sample sizes.** The synthetic table and the real test split are each cut to at most
  ``max_rows`` records (default 5000) drawn without replacement with ``seed``. Frechet
  distances and PRDC are biased by sample size, so compare numbers computed with the same
  ``max_rows`` (and similar table sizes).
* **Schema.** Every column of the real train split, the target included, must be in both other
  tables with the same kind (numeric/bool, datetime, other). A missing value is allowed in any
  column: the encoder imputes it (numeric: the train median; categorical: an unseen category,
  all-zero one-hot) and the marginals count it as a category. A DP transformer may release a
  missing-value span for a column the real train split has none in (its noisy missing count
  passed the threshold), so the generator can then legitimately emit NaN there; such columns are
  logged. Any infinite value raises a :class:`UserInputError`.

Metrics, by config name (``eval.fidelity`` lists them; keys of ``metrics.json`` in brackets):

* ``fd_raw`` [``fidelity/fd_raw``]: Frechet distance (Heusel et al. 2017, the formula of FID)
  between Gaussians fitted to the TableEncoder features (standardised numeric, one-hot
  categorical, target included) of the real test and synthetic records. Squared standardised
  units; 0 for equal means and covariances; lower is better. On image tables it is dominated
  by border pixels that are almost always 0 in the real train split (standardising them blows
  up their rare non-zero values): read ``fd_lenet`` for images.
* ``fd_encoder`` [``fidelity/fd_encoder``]: the same in the 16-d bottleneck of an autoencoder
  trained on the real train split's TableEncoder features (``feature_nets.train_autoencoder``).
* ``fd_lenet`` [``fidelity/fd_lenet``]: images only. The same in the 128-d penultimate layer
  of a LeNet classifier trained on the real MNIST train images (``feature_nets``, versioned
  ``lenet-v1``). This is the usual way to compute an FID-like score on MNIST; it is NOT
  Inception FID and its values are not comparable with published Inception-FID numbers.
* ``prdc`` [``fidelity/precision``, ``fidelity/recall``, ``fidelity/density``,
  ``fidelity/coverage``]: improved precision and recall (Kynkaanniemi et al. 2019, NeurIPS) and
  density and coverage (Naeem et al. 2020, ICML) with ``prdc_k`` nearest neighbours (default 5),
  computed by the authors' ``prdc`` package (0.2). Feature space: the TableEncoder features,
  or with ``feature_net`` set, a learned one: ``"lenet"`` (the LeNet features above, images
  only) or ``"encoder"`` (the autoencoder bottleneck). The keys do not name the space: read it
  from the run's config (``eval.feature_net``). Caveat of the reference code: a point lies in
  a k-NN ball only when STRICTLY closer than the radius, so on tables with many exact duplicate
  rows (radius 0, e.g. only categorical columns) even a perfect copy scores below 1.
* ``marginals`` [``fidelity/marginal_tvd_mean``, ``fidelity/marginal_ks_mean``,
  ``fidelity/marginal_distance_max``]: per column of the real train split (target included),
  the total variation distance ``0.5 sum_v |p(v) - q(v)|`` for discrete columns (non-numeric,
  bool, and integer columns with at most :data:`DISCRETE_MAX_UNIQUE` distinct values in the
  real train split; a missing value is a category of its own) and the two-sample
  Kolmogorov-Smirnov statistic (``scipy.stats.ks_2samp``; missing values left out) for the
  other numeric and datetime columns. Mean per kind (``None`` when a table has no column of
  that kind) and the maximum over all columns. In [0, 1]; 0 for equal marginals, 1 for
  disjoint supports.
* ``correlations`` [``fidelity/correlation_distance``]: mean over feature pairs ``i < j`` of
  ``|r_real(i, j) - r_synth(i, j)|``, ``r`` the Pearson correlation of the TableEncoder
  features (numeric columns and one-hot indicator columns, target included) within each table.
  A feature constant within a table has correlation 0 with every other one there (Pearson
  leaves it undefined). In [0, 2]; lower is better. ``None`` with fewer than two features.

Frechet distance, precision/recall and density/coverage are sample statistics: an identical
copy of the real test sample scores FD 0, precision = recall = coverage = 1 and density 1
(slightly less with exact duplicate rows, see the caveat above).

Cost on 2 CPU cores, ``max_rows=5000``: a few seconds for a 30,000-row bank table; about 30 s
for MNIST (fitting the TableEncoder on 60,000 x 785 pixels takes ~12 s of it), plus ~25 s the
first time the LeNet is trained (later runs load it from the cache).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from prdc import compute_prdc
from scipy import linalg
from scipy.stats import ks_2samp
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from dpshare.errors import UserInputError
from dpshare.evaluation.feature_nets import (
    LENET_FEATURES_VERSION,
    default_cache_dir,
    lenet_features,
    load_or_train_lenet,
    require_image_table,
    train_autoencoder,
)
from dpshare.evaluation.features import TableEncoder, sample_rows
from dpshare.evaluation.metrics import MetricInfo, register_metric
from dpshare.registry import Registry

DISCRETE_MAX_UNIQUE = 20  # integer columns with at most this many real train values use TVD
FD_EPS = 1e-6  # added to both covariances' diagonals when sqrtm fails (as pytorch-fid does)
_CONSTANT_STD = 1e-9  # relative: a feature whose spread is below this is constant (correlations)

FeaturePair = tuple[np.ndarray, np.ndarray]  # (real test, synthetic) features, rows x dims
_Kind = Literal["numeric", "datetime", "other"]

log = logging.getLogger("dpshare.evaluation.fidelity")


# ------------------------------------------------------------------------ array-level metrics
def _check_features(real: np.ndarray, synthetic: np.ndarray, *, min_rows: int = 2) -> None:
    for label, array in (("real", real), ("synthetic", synthetic)):
        if array.ndim != 2:
            raise UserInputError(f"{label} features must be a 2-D array, got shape {array.shape}")
        if len(array) < min_rows:
            raise UserInputError(
                f"{label} features have {len(array)} row(s); this metric needs at least "
                f"{min_rows} (a covariance needs 2 rows, k-NN radii k + 1)"
            )
        if not np.isfinite(array).all():
            raise UserInputError(f"{label} features hold NaN or infinite values")
    if real.shape[1] != synthetic.shape[1]:
        raise UserInputError(
            f"real and synthetic features differ in width: {real.shape[1]} vs {synthetic.shape[1]}"
        )


def frechet_distance_from_moments(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *, eps: float = FD_EPS
) -> float:
    """Frechet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))`` (Dowson & Landau 1982;
    the formula of FID, Heusel et al. 2017). Squared feature units, >= 0.

    Hand-written after pytorch-fid's ``calculate_frechet_distance`` because no maintained CPU
    library computes it on arbitrary feature arrays without pulling in Inception weights and
    torchvision (pytorch-fid, torchmetrics, clean-fid all bundle the image pipeline).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape[0] != len(mu1):
        raise UserInputError("means and covariances of the two sets must have matching shapes")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # one-hot blocks and constant pixels make covariances singular; the fallback below
        # handles the cases where that actually breaks sqrtm
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(mu1)) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)  # rounding leaves a tiny imaginary part
    distance = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(distance, 0.0)  # rounding can give -1e-12 for identical moments


def frechet_distance(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted (mean, unbiased covariance) to two feature
    arrays of shape (n, d) and (m, d); see :func:`frechet_distance_from_moments`."""
    real, synthetic = np.asarray(real), np.asarray(synthetic)
    _check_features(real, synthetic)
    moments = []
    for array in (real, synthetic):
        array = array.astype(np.float64)
        moments += [array.mean(axis=0), np.atleast_2d(np.cov(array, rowvar=False))]
    return frechet_distance_from_moments(*moments)


def precision_recall_density_coverage(
    real: np.ndarray, synthetic: np.ndarray, *, k: int = 5
) -> dict[str, float]:
    """``precision``, ``recall`` (Kynkaanniemi et al. 2019), ``density``, ``coverage`` (Naeem
    et al. 2020) with ``k`` nearest neighbours, by the ``prdc`` reference implementation.

    Precision, recall, coverage in [0, 1] (higher is better); density >= 0, about 1 when the
    synthetic records are distributed like the real ones.
    """
    if k < 1:
        raise UserInputError(f"prdc_k must be >= 1, got {k}")
    real, synthetic = np.asarray(real), np.asarray(synthetic)
    _check_features(real, synthetic, min_rows=k + 1)
    with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the set sizes
        scores = compute_prdc(real_features=real, fake_features=synthetic, nearest_k=k)
    return {name: float(scores[name]) for name in ("precision", "recall", "density", "coverage")}


def _pearson(features: np.ndarray) -> np.ndarray:
    x = features.astype(np.float64)
    x = x - x.mean(axis=0)
    std = np.sqrt((x**2).mean(axis=0))
    scale = np.maximum(np.abs(features).max(axis=0, initial=0.0), 1.0)
    varies = std > _CONSTANT_STD * scale
    z = np.where(varies, x / np.where(varies, std, 1.0), 0.0)
    return np.clip(z.T @ z / len(x), -1.0, 1.0)


def correlation_distance(real: np.ndarray, synthetic: np.ndarray) -> float | None:
    """Mean ``|r_real - r_synth|`` over the pairs ``i < j`` of Pearson correlation matrices of
    two (n, d) feature arrays (a constant feature correlates 0). In [0, 2]; None when d < 2."""
    real, synthetic = np.asarray(real), np.asarray(synthetic)
    _check_features(real, synthetic)
    if real.shape[1] < 2:
        return None
    upper = np.triu_indices(real.shape[1], k=1)
    return float(np.abs(_pearson(real)[upper] - _pearson(synthetic)[upper]).mean())


# ------------------------------------------------------------------------ marginals
def _kind(series: pd.Series) -> _Kind:
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return "numeric"
    return "other"


def _is_discrete(real: pd.Series) -> bool:
    """TVD for non-numeric, bool and low-cardinality integer columns; KS for the rest."""
    kind = _kind(real)
    if kind == "datetime":
        return False
    if kind == "other" or pd.api.types.is_bool_dtype(real):
        return True
    return pd.api.types.is_integer_dtype(real) and real.nunique() <= DISCRETE_MAX_UNIQUE


def _category_keys(series: pd.Series) -> pd.Series:
    """Comparable category labels: numbers and bools as floats (1 == 1.0 == True), other values
    as strings, missing values as one sentinel."""
    missing = series.isna().to_numpy()
    if _kind(series) == "numeric":
        values = series.to_numpy(dtype=np.float64, na_value=np.nan).astype(object)
    else:
        values = series.astype(str).to_numpy(dtype=object)
    values[missing] = "__missing__"
    return pd.Series(values, dtype=object)


def total_variation_distance(real: pd.Series, synthetic: pd.Series) -> float:
    """``0.5 * sum_v |p_real(v) - p_synth(v)|`` over the values of two discrete columns
    (missing is a value of its own). In [0, 1]."""
    p = _category_keys(real).value_counts(normalize=True)
    q = _category_keys(synthetic).value_counts(normalize=True)
    p, q = p.align(q, fill_value=0.0)
    return float(0.5 * np.abs(p.to_numpy() - q.to_numpy()).sum())


def _as_float(series: pd.Series) -> np.ndarray:
    if _kind(series) == "datetime":
        epoch = pd.Timestamp("1970-01-01", tz=series.dt.tz)
        return (series - epoch).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def ks_statistic(real: pd.Series, synthetic: pd.Series) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (max gap between the empirical CDFs) of two
    numeric or datetime columns, missing values left out. In [0, 1]; 1 when only one side has
    observed values, 0 when neither has."""
    a, b = _as_float(real), _as_float(synthetic)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return float(len(a) != len(b))
    # only the statistic is used; "asymp" skips the exact p-value's cost on large samples
    return float(ks_2samp(a, b, method="asymp").statistic)


def marginal_distances(
    real: pd.DataFrame, synthetic: pd.DataFrame, *, kinds_from: pd.DataFrame | None = None
) -> dict[str, float | None]:
    """Per-column TVD / KS distances of ``synthetic`` to ``real`` over ``real``'s columns,
    summarised as in the module docstring. ``kinds_from`` (default ``real``) decides which
    columns are discrete: the real train split in :func:`evaluate_fidelity`."""
    kinds_from = real if kinds_from is None else kinds_from
    tvd, ks = [], []
    for column in real.columns:
        if _is_discrete(kinds_from[column]):
            tvd.append(total_variation_distance(real[column], synthetic[column]))
        else:
            ks.append(ks_statistic(real[column], synthetic[column]))
    return {
        "marginal_tvd_mean": float(np.mean(tvd)) if tvd else None,
        "marginal_ks_mean": float(np.mean(ks)) if ks else None,
        "marginal_distance_max": float(max(tvd + ks)) if tvd or ks else None,
    }


# ------------------------------------------------------------------------ inputs and registry
@dataclass
class FidelityInputs:
    """The (already capped) tables a fidelity metric reads, with its feature views computed
    once and shared: ``real_train`` fits the encoders, ``real_test`` is the reference."""

    synthetic: pd.DataFrame
    real_train: pd.DataFrame
    real_test: pd.DataFrame
    target: str
    max_rows: int | None = 5000
    prdc_k: int = 5
    seed: int = 0
    feature_net: str | None = None
    cache_dir: Path | None = None

    @cached_property
    def encoder(self) -> TableEncoder:
        """TableEncoder (all columns, target included) fitted on the whole real train split."""
        return TableEncoder().fit(self.real_train)

    @cached_property
    def table_features(self) -> FeaturePair:
        return self.encoder.transform(self.real_test), self.encoder.transform(self.synthetic)

    @cached_property
    def encoder_features(self) -> FeaturePair:
        """Autoencoder bottleneck codes; the net is trained on <= max_rows real train rows."""
        train_rows = sample_rows(self.real_train, self.max_rows, seed=self.seed)
        net = train_autoencoder(self.encoder.transform(train_rows), seed=self.seed)
        real, synthetic = self.table_features
        return net.encode(real), net.encode(synthetic)

    @cached_property
    def lenet_features(self) -> FeaturePair:
        net = load_or_train_lenet(self.real_train, target=self.target, cache_dir=self.cache_dir)
        return lenet_features(net, self.real_test), lenet_features(net, self.synthetic)


@dataclass(frozen=True)
class FeatureSpace:
    """A feature space PRDC can use (``feature_net``): how to get it and whether it needs
    an image table."""

    features: Callable[[FidelityInputs], FeaturePair]
    needs_image_table: bool = False


FEATURE_NETS: Registry[FeatureSpace] = Registry("feature net")
FEATURE_NETS.register("lenet")(FeatureSpace(lambda x: x.lenet_features, needs_image_table=True))
FEATURE_NETS.register("encoder")(FeatureSpace(lambda x: x.encoder_features))


@dataclass(frozen=True)
class FidelityMetric:
    """A registered fidelity metric: ``metric(inputs)`` returns its ``fidelity/...`` keys."""

    compute: Callable[[FidelityInputs], dict[str, float | None]]
    keys: tuple[str, ...]
    needs_image_table: bool = False
    uses_feature_net: bool = False  # reads FidelityInputs.feature_net (its space's needs apply)

    def __call__(self, inputs: FidelityInputs) -> dict[str, float | None]:
        return self.compute(inputs)


FIDELITY_METRICS: Registry[FidelityMetric] = Registry("fidelity metric")


def _fd_raw(x: FidelityInputs) -> dict[str, float | None]:
    return {"fidelity/fd_raw": frechet_distance(*x.table_features)}


def _fd_encoder(x: FidelityInputs) -> dict[str, float | None]:
    return {"fidelity/fd_encoder": frechet_distance(*x.encoder_features)}


def _fd_lenet(x: FidelityInputs) -> dict[str, float | None]:
    return {"fidelity/fd_lenet": frechet_distance(*x.lenet_features)}


def _prdc(x: FidelityInputs) -> dict[str, float | None]:
    for label, frame in (("real test", x.real_test), ("synthetic", x.synthetic)):
        if len(frame) <= x.prdc_k:
            raise UserInputError(
                f"prdc with prdc_k={x.prdc_k} needs more than {x.prdc_k} {label} rows, got "
                f"{len(frame)}; lower eval.prdc_k or sample more records"
            )
    if x.feature_net is None:
        real, synthetic = x.table_features
    else:
        real, synthetic = FEATURE_NETS.get(x.feature_net).features(x)
    scores = precision_recall_density_coverage(real, synthetic, k=x.prdc_k)
    return {f"fidelity/{name}": value for name, value in scores.items()}


def _marginals(x: FidelityInputs) -> dict[str, float | None]:
    columns = list(x.real_train.columns)
    scores = marginal_distances(
        x.real_test[columns], x.synthetic[columns], kinds_from=x.real_train[columns]
    )
    return {f"fidelity/{name}": value for name, value in scores.items()}


def detection_scores(
    real: np.ndarray, synthetic: np.ndarray, *, seed: int = 0, folds: int = 5
) -> dict[str, float]:
    """Classifier two-sample test (Lopez-Paz & Oquab 2017): a gradient-boosting classifier
    tells real (label 0) from synthetic (label 1) rows, scored by stratified ``folds``-fold
    cross-validation on equal-size samples. Returns ``detection_auc`` (0.5 = indistinguishable,
    1 = always told apart) and ``detection_accuracy``. This is what Deng 2026 (Table 1) calls
    its "MIA accuracy": "the accuracy of an attacker model distinguishing real data from
    generated data"; it measures realism, not membership (docs/evaluation.md)."""
    n = min(len(real), len(synthetic))
    if n < folds:
        raise UserInputError(f"detection needs at least {folds} rows of each table, got {n}")
    rng = np.random.default_rng(seed)
    x = np.vstack(
        [
            real[rng.choice(len(real), n, replace=False)],
            synthetic[rng.choice(len(synthetic), n, replace=False)],
        ]
    )
    y = np.r_[np.zeros(n), np.ones(n)]
    proba = cross_val_predict(
        HistGradientBoostingClassifier(random_state=seed, max_iter=100),
        x,
        y,
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        method="predict_proba",
    )[:, 1]
    return {
        "detection_auc": float(roc_auc_score(y, proba)),
        "detection_accuracy": float(np.mean((proba > 0.5) == y)),
    }


def _detection(x: FidelityInputs) -> dict[str, float | None]:
    scores = detection_scores(*x.table_features, seed=x.seed)
    return {f"fidelity/{name}": value for name, value in scores.items()}


def _correlations(x: FidelityInputs) -> dict[str, float | None]:
    return {"fidelity/correlation_distance": correlation_distance(*x.table_features)}


for _name, _metric in {
    "fd_raw": FidelityMetric(_fd_raw, ("fidelity/fd_raw",)),
    "fd_encoder": FidelityMetric(_fd_encoder, ("fidelity/fd_encoder",)),
    "fd_lenet": FidelityMetric(_fd_lenet, ("fidelity/fd_lenet",), needs_image_table=True),
    "prdc": FidelityMetric(
        _prdc,
        ("fidelity/precision", "fidelity/recall", "fidelity/density", "fidelity/coverage"),
        uses_feature_net=True,
    ),
    "marginals": FidelityMetric(
        _marginals,
        (
            "fidelity/marginal_tvd_mean",
            "fidelity/marginal_ks_mean",
            "fidelity/marginal_distance_max",
        ),
    ),
    "correlations": FidelityMetric(_correlations, ("fidelity/correlation_distance",)),
    "detection": FidelityMetric(
        _detection, ("fidelity/detection_auc", "fidelity/detection_accuracy")
    ),
}.items():
    FIDELITY_METRICS.register(_name)(_metric)


# ------------------------------------------------------------------------ validation
def _check_tables(real_train: pd.DataFrame, others: dict[str, pd.DataFrame], target: str) -> None:
    if target not in real_train.columns:
        raise UserInputError(f"the real train table has no target column {target!r}")
    columns = list(real_train.columns)
    may_miss = {c for c in columns if real_train[c].isna().any()}
    for label, frame in {"real train": real_train, **others}.items():
        if len(frame) < 2:
            raise UserInputError(
                f"the {label} table has {len(frame)} row(s); fidelity needs at least 2 "
                "(a covariance needs 2 rows)"
            )
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise UserInputError(f"the {label} table lacks column(s) {absent} of the real data")
        wrong = [
            f"{c} ({frame[c].dtype}, real train {real_train[c].dtype})"
            for c in columns
            if _kind(frame[c]) != _kind(real_train[c])
        ]
        if wrong:
            raise UserInputError(f"the {label} table has columns of another kind: {wrong}")
        missing = [c for c in columns if c not in may_miss and frame[c].isna().any()]
        if missing:
            log.warning(
                "the %s table has missing values in column(s) %s, where the real train split "
                "has none; they are imputed (numeric) or an unseen category (categorical)",
                label,
                missing[:10],
            )
        infinite = [
            c
            for c in columns
            if _kind(frame[c]) == "numeric"
            and np.isinf(frame[c].to_numpy(dtype=np.float64, na_value=np.nan)).any()
        ]
        if infinite:
            raise UserInputError(f"the {label} table has infinite values in column(s) {infinite}")


def evaluate_fidelity(
    *,
    synthetic: pd.DataFrame,
    real_train: pd.DataFrame,
    real_test: pd.DataFrame,
    target: str,
    names: Sequence[str],
    max_rows: int | None = 5000,
    prdc_k: int = 5,
    seed: int = 0,
    feature_net: str | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, float | None]:
    """The fidelity metrics ``names`` (keys of :data:`FIDELITY_METRICS`) of ``synthetic``
    against ``real_test``, with encoders fitted on ``real_train`` (module docstring).

    Args:
        synthetic: the released synthetic table (the real data's columns; extra ones ignored).
        real_train: the real train split (fits the encoders and the feature networks).
        real_test: the held-out real test split (the reference distribution).
        target: the label column (part of every feature view).
        names: metrics to compute, e.g. ``["fd_raw", "prdc", "marginals"]``.
        max_rows: cap on the synthetic and real test records compared (None: all).
        prdc_k: nearest neighbours for precision/recall/density/coverage.
        seed: drives the subsampling and the autoencoder's training.
        feature_net: PRDC's feature space: None (TableEncoder features), ``"lenet"`` or
            ``"encoder"`` (keys of :data:`FEATURE_NETS`).
        cache_dir: where the LeNet weights are cached (None: ``$DPSHARE_CACHE`` or
            ``~/.cache/dpshare``).

    Returns:
        Flat ``fidelity/...`` keys (Python floats; None where a summary has no column).

    Raises:
        UnknownNameError: an unknown metric or feature net name.
        UserInputError: bad tables (see the module docstring) or parameters.
    """
    metrics = [FIDELITY_METRICS.get(name) for name in dict.fromkeys(names)]
    space = None if feature_net is None else FEATURE_NETS.get(feature_net)
    if not metrics:
        return {}
    if max_rows is not None and max_rows < 2:
        raise UserInputError(f"max_rows must be >= 2 or None, got {max_rows}")
    if prdc_k < 1:
        raise UserInputError(f"prdc_k must be >= 1, got {prdc_k}")
    _check_tables(real_train, {"real test": real_test, "synthetic": synthetic}, target)
    for name, metric in zip(dict.fromkeys(names), metrics, strict=True):
        if metric.needs_image_table:
            require_image_table(real_train, what=name)
        if metric.uses_feature_net and space is not None and space.needs_image_table:
            require_image_table(real_train, what=f"{name} with feature_net={feature_net!r}")
    inputs = FidelityInputs(
        synthetic=sample_rows(synthetic, max_rows, seed=seed),
        real_train=real_train,
        real_test=sample_rows(real_test, max_rows, seed=seed),
        target=target,
        max_rows=max_rows,
        prdc_k=prdc_k,
        seed=seed,
        feature_net=feature_net,
        cache_dir=Path(os.fspath(cache_dir)) if cache_dir is not None else default_cache_dir(),
    )
    out: dict[str, float | None] = {}
    for metric in metrics:
        out.update(metric(inputs))
    return out


# ------------------------------------------------------------------------ metric registry
_FD_UNIT = "squared feature units"
for _info in (
    MetricInfo(
        "fidelity/fd_raw",
        "fidelity",
        "minimize",
        _FD_UNIT,
        (0.0, float("inf")),
        "Frechet distance, synthetic vs real test, on TableEncoder features fitted on real "
        "train (standardised numeric, one-hot categorical, target included)",
    ),
    MetricInfo(
        "fidelity/fd_encoder",
        "fidelity",
        "minimize",
        _FD_UNIT,
        (0.0, float("inf")),
        "Frechet distance, synthetic vs real test, in the 16-d bottleneck of an MLP "
        "autoencoder trained on the real train split's TableEncoder features",
    ),
    MetricInfo(
        "fidelity/fd_lenet",
        "fidelity",
        "minimize",
        _FD_UNIT,
        (0.0, float("inf")),
        "Frechet distance, synthetic vs real test images, in the 128-d penultimate layer of a "
        f"LeNet trained on real MNIST train images ({LENET_FEATURES_VERSION}; not Inception FID)",
    ),
    MetricInfo(
        "fidelity/precision",
        "fidelity",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "improved precision (Kynkaanniemi et al. 2019): share of synthetic records inside the "
        "k-NN balls of real test records",
    ),
    MetricInfo(
        "fidelity/recall",
        "fidelity",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "improved recall (Kynkaanniemi et al. 2019): share of real test records inside the "
        "k-NN balls of synthetic records",
    ),
    MetricInfo(
        "fidelity/density",
        "fidelity",
        "none",
        "ratio",
        (0.0, float("inf")),
        "density (Naeem et al. 2020): mean number of real k-NN balls holding a synthetic "
        "record, divided by k; about 1 when distributions match, above 1 when synthetic "
        "records crowd dense real regions",
    ),
    MetricInfo(
        "fidelity/coverage",
        "fidelity",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "coverage (Naeem et al. 2020): share of real test records whose k-NN ball holds a "
        "synthetic record",
    ),
    MetricInfo(
        "fidelity/marginal_tvd_mean",
        "fidelity",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "mean total variation distance of the discrete columns' marginals, synthetic vs real test",
    ),
    MetricInfo(
        "fidelity/marginal_ks_mean",
        "fidelity",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "mean Kolmogorov-Smirnov statistic of the continuous and datetime columns' marginals, "
        "synthetic vs real test",
    ),
    MetricInfo(
        "fidelity/marginal_distance_max",
        "fidelity",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "largest per-column marginal distance (TVD or KS) over all columns",
    ),
    MetricInfo(
        "fidelity/correlation_distance",
        "fidelity",
        "minimize",
        "absolute correlation difference",
        (0.0, 2.0),
        "mean |r_real - r_synth| over pairs of TableEncoder features (Pearson, within the real "
        "test and the synthetic table)",
    ),
    MetricInfo(
        "fidelity/detection_auc",
        "fidelity",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "classifier two-sample test: cross-validated ROC-AUC of gradient boosting telling real "
        "test rows from synthetic rows (0.5 = indistinguishable); Deng 2026's 'MIA accuracy'",
    ),
    MetricInfo(
        "fidelity/detection_accuracy",
        "fidelity",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "classifier two-sample test: cross-validated accuracy on equal real/synthetic samples "
        "(0.5 = indistinguishable)",
    ),
):
    register_metric(_info)
