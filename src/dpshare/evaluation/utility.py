"""Downstream utility: train on synthetic, test on real (TSTR) and train on real, test on real
(TRTR), with scikit-learn models, on the held-out real test split.

Keys written (``<scheme>`` is ``tstr`` or ``trtr``; ``<model>`` a key of
:data:`DOWNSTREAM_MODELS`): ``utility/<model>/<scheme>_<metric>`` for every model and
``utility/<scheme>_<metric>`` for the configured primary model. Metric meanings are in
:mod:`dpshare.evaluation.metrics`. No threshold tuning and no model selection touch the test
split: models use fixed hyper-parameters and the default 0.5 decision threshold. For a binary
task with a rare class, ``0.5`` often predicts the minority never (F1 0.000); with a
``validation`` split the decision threshold on the minority class's probability is also chosen
there (the one with the best minority F1 on the real validation records, never on test) and
the minority recall, precision and F1 at that threshold are reported as ``..._valthr`` keys
(:func:`choose_threshold`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline

from dpshare.errors import UserInputError
from dpshare.evaluation.features import _as_object, _numeric_view, _preprocessor
from dpshare.registry import Registry
from dpshare.reporting import records

DOWNSTREAM_MODELS: Registry[Callable[[int], Any]] = Registry("downstream model")
DOWNSTREAM_MODELS.register("logistic_regression")(
    lambda seed: LogisticRegression(max_iter=2000, random_state=seed)
)
DOWNSTREAM_MODELS.register("hist_gradient_boosting")(
    lambda seed: HistGradientBoostingClassifier(random_state=seed)
)

_SHORT = {"logistic_regression": "logreg", "hist_gradient_boosting": "hgb"}


def _scores(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    positive_label: Any,
    minority_label: Any,
) -> dict[str, float]:
    y_pred = classes[np.argmax(proba, axis=1)]
    binary = len(classes) == 2
    avg = "binary" if binary else "macro"
    kwargs = {"pos_label": positive_label} if binary else {}
    out = {
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": precision_score(y_true, y_pred, average=avg, zero_division=0, **kwargs),
        "recall": recall_score(y_true, y_pred, average=avg, zero_division=0, **kwargs),
        "f1": f1_score(y_true, y_pred, average=avg, zero_division=0, **kwargs),
        "minority_recall": recall_score(
            y_true, y_pred, labels=[minority_label], average="macro", zero_division=0
        ),
    }
    if binary:
        pos_col = int(np.flatnonzero(classes == positive_label)[0])
        out["auc"] = roc_auc_score(y_true == positive_label, proba[:, pos_col])
    else:
        out["auc"] = roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
    return {k: float(v) for k, v in out.items()}


def choose_threshold(y_true: np.ndarray, score: np.ndarray, minority_label: Any) -> float:
    """The decision threshold on ``score`` (the predicted probability of ``minority_label``)
    with the best F1 of that class on these (validation) records; ties go to the lower
    threshold. Candidates are the distinct scores, so every achievable split is tried."""
    positive = np.asarray(y_true) == minority_label
    order = np.argsort(-score, kind="stable")
    s, hit = score[order], positive[order].astype(np.int64)
    true_pos = np.cumsum(hit)
    predicted = np.arange(1, len(s) + 1)
    last = np.r_[s[1:] != s[:-1], True]  # the last index of each distinct score
    tp, pp = true_pos[last], predicted[last]
    total = max(int(positive.sum()), 1)
    f1 = 2 * tp / (pp + total)
    best = int(np.flatnonzero(f1 == f1.max())[-1])  # lowest threshold among the best
    return float(s[last][best])


def _threshold_scores(
    y_true: np.ndarray, score: np.ndarray, threshold: float, minority_label: Any
) -> dict[str, float]:
    """Minority precision / recall / F1 when predicting the minority at ``score >=
    threshold``."""
    positive = np.asarray(y_true) == minority_label
    predicted = score >= threshold
    return {
        "minority_recall_valthr": float(recall_score(positive, predicted, zero_division=0)),
        "minority_precision_valthr": float(precision_score(positive, predicted, zero_division=0)),
        "minority_f1_valthr": float(f1_score(positive, predicted, zero_division=0)),
        "valthr": float(threshold),
    }


def fit_downstream(
    model: str | Any,
    train: pd.DataFrame,
    *,
    target: str,
    classes: np.ndarray,
    seed: int,
) -> Callable[[pd.DataFrame], np.ndarray] | None:
    """Fit a downstream model (a :data:`DOWNSTREAM_MODELS` name or an unfitted scikit-learn
    estimator) on ``train`` and return its ``predict_proba`` over feature columns, one column
    per entry of ``classes`` (classes unseen in training get probability 0). None when
    ``train`` has a single class."""
    y_train = train[target].to_numpy()
    if len(np.unique(y_train)) < 2:
        return None
    x_train = _as_object(_numeric_view(train.drop(columns=[target])))
    estimator = DOWNSTREAM_MODELS.get(model)(seed) if isinstance(model, str) else model
    # a model that reads raw columns (the image cnn) gets them unscaled
    prep = "passthrough" if getattr(estimator, "raw_features", False) else _preprocessor(x_train)
    pipe = Pipeline([("prep", prep), ("model", estimator)])
    pipe.fit(x_train, y_train)
    columns = [int(np.flatnonzero(classes == c)[0]) for c in pipe.classes_]

    def predict_proba(frame: pd.DataFrame) -> np.ndarray:
        x = _as_object(_numeric_view(frame.drop(columns=[target], errors="ignore")))
        proba_known = pipe.predict_proba(x[x_train.columns])
        proba = np.zeros((len(frame), len(classes)))
        proba[:, columns] = proba_known
        return proba

    return predict_proba


def _fit_and_score(
    model_name: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    target: str,
    classes: np.ndarray,
    positive_label: Any,
    minority_label: Any,
    seed: int,
    validation: pd.DataFrame | None = None,
) -> dict[str, float] | None:
    """Scores of one model trained on ``train``; None when ``train`` has a single class."""
    predict_proba = fit_downstream(model_name, train, target=target, classes=classes, seed=seed)
    if predict_proba is None:
        return None
    proba = predict_proba(test)
    out = _scores(test[target].to_numpy(), proba, classes, positive_label, minority_label)
    if validation is not None and len(classes) == 2:
        out |= _valthr_scores(predict_proba, validation, test, target, classes, minority_label)
    return out


def _valthr_scores(
    predict_proba: Callable[[pd.DataFrame], np.ndarray],
    validation: pd.DataFrame,
    test: pd.DataFrame,
    target: str,
    classes: np.ndarray,
    minority_label: Any,
) -> dict[str, float]:
    """Threshold chosen on the validation split, minority scores at it on the test split."""
    col = int(np.flatnonzero(classes == minority_label)[0])
    threshold = choose_threshold(
        validation[target].to_numpy(), predict_proba(validation)[:, col], minority_label
    )
    return _threshold_scores(
        test[target].to_numpy(), predict_proba(test)[:, col], threshold, minority_label
    )


def evaluate_utility(
    *,
    synthetic: pd.DataFrame | None,
    real_train: pd.DataFrame,
    real_test: pd.DataFrame,
    target: str,
    positive_label: Any,
    models: Sequence[str],
    primary_model: str,
    trtr: bool = True,
    max_train_rows: int | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
    validation: pd.DataFrame | None = None,
) -> dict[str, float | None]:
    """TSTR (and TRTR) scores on ``real_test``. Returns flat ``utility/...`` keys; with a
    real ``validation`` split and a binary target also the ``..._valthr`` minority scores at
    the threshold chosen on it (module docstring).

    TRTR depends only on the real splits and the evaluation settings, so a sweep would refit the
    same real-data models at every point; with ``cache_dir`` its scores are kept in
    ``cache_dir/trtr/<key>.json``, the key a SHA-1 of the splits' contents, the target, models,
    ``max_train_rows``, ``seed`` and the library versions (:func:`_trtr_key`).

    A synthetic table with a single class cannot train a classifier: its TSTR scores are
    ``None`` and ``utility/tstr_single_class`` is 1. ``synthetic=None`` (a method that releases
    a model, not data) computes only the TRTR reference. ``utility/downstream_<metric>`` repeats
    the primary TSTR scores: the headline a comparison table reads for every kind of method.
    """
    for name in models:
        DOWNSTREAM_MODELS.get(name)  # unknown names fail before any fitting
    if primary_model not in models:
        raise UserInputError(
            f"eval.primary_model={primary_model!r} is not in eval.models={list(models)}"
        )
    classes = np.unique(real_train[target].to_numpy())
    counts = real_train[target].value_counts()
    minority_label = counts.idxmin()
    binary = len(classes) == 2

    def cap(frame: pd.DataFrame) -> pd.DataFrame:
        if max_train_rows is None or len(frame) <= max_train_rows:
            return frame
        return frame.sample(n=max_train_rows, random_state=seed)

    tables = {} if synthetic is None else {"tstr": cap(synthetic)}
    cached: dict[str, float | None] | None = None
    cache_file: Path | None = None
    if trtr:
        if cache_dir is not None:
            cache_file = (
                Path(cache_dir)
                / "trtr"
                / (
                    _trtr_key(
                        real_train,
                        real_test,
                        target,
                        models,
                        primary_model,
                        max_train_rows,
                        seed,
                        validation,
                    )
                    + ".json"
                )
            )
            cached = _read_cache(cache_file)
        if cached is None:
            tables["trtr"] = cap(real_train)
    out: dict[str, float | None] = dict(cached or {})
    single_class = 0
    for scheme, table in tables.items():
        for name in models:
            scores = _fit_and_score(
                name,
                table,
                real_test,
                target,
                classes,
                positive_label,
                minority_label,
                seed,
                validation,
            )
            if scores is None:
                single_class = 1
            names = METRIC_NAMES + (VALTHR_NAMES if validation is not None and binary else ())
            for metric in names:
                value = None if scores is None else scores[metric]
                out[f"utility/{_SHORT.get(name, name)}/{scheme}_{metric}"] = value
                if name == primary_model:
                    out[f"utility/{scheme}_{metric}"] = value
    if cache_file is not None and cached is None:
        records.write_json(cache_file, {k: v for k, v in out.items() if "/trtr_" in k})
    if synthetic is not None:
        out["utility/tstr_single_class"] = single_class
        for metric in METRIC_NAMES + VALTHR_NAMES:
            if f"utility/tstr_{metric}" in out:
                out[f"utility/downstream_{metric}"] = out[f"utility/tstr_{metric}"]
    return out


METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "auc", "minority_recall")
# binary targets with a validation split: minority scores at the validation-chosen threshold
VALTHR_NAMES = (
    "minority_recall_valthr",
    "minority_precision_valthr",
    "minority_f1_valthr",
    "valthr",
)
TRTR_CACHE_VERSION = "trtr-v2"  # bump when the downstream models or their scoring change


def _trtr_key(
    real_train: pd.DataFrame,
    real_test: pd.DataFrame,
    target: str,
    models: Sequence[str],
    primary_model: str,
    max_train_rows: int | None,
    seed: int,
    validation: pd.DataFrame | None = None,
) -> str:
    """What a TRTR score depends on, hashed: the splits' bytes (rows, order and dtypes), the
    settings and the versions of the libraries that fit the models."""
    import sklearn
    import torch

    digest = hashlib.sha1()
    for frame in (real_train, real_test, *([] if validation is None else [validation])):
        digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
        digest.update(repr(list(zip(frame.columns, map(str, frame.dtypes), strict=True))).encode())
    settings = [
        TRTR_CACHE_VERSION,
        target,
        list(models),
        primary_model,
        max_train_rows,
        seed,
        sklearn.__version__,
        torch.__version__,
    ]
    digest.update(json.dumps(settings, default=str).encode())
    return digest.hexdigest()


def _read_cache(path: Path) -> dict[str, float | None] | None:
    """The cached TRTR scores, or None when absent or unreadable (then they are recomputed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data else None


def evaluate_released_model(
    *,
    predict_proba: Callable[[pd.DataFrame], np.ndarray],
    model_classes: np.ndarray,
    real_train: pd.DataFrame,
    real_test: pd.DataFrame,
    target: str,
    positive_label: Any,
    models: Sequence[str],
    primary_model: str,
    trtr: bool = True,
    max_train_rows: int | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
    validation: pd.DataFrame | None = None,
) -> dict[str, float | None]:
    """Scores of a released classifier (DP-LR, FedAvg) on ``real_test``, as
    ``utility/model_<metric>`` and ``utility/downstream_<metric>``, beside the same TRTR
    reference the generators get. The test split is only scored, never used to choose."""
    classes = np.unique(real_train[target].to_numpy())
    minority_label = real_train[target].value_counts().idxmin()
    features = real_test.drop(columns=[target])
    proba_known = np.asarray(predict_proba(features), dtype=float)
    if proba_known.shape != (len(real_test), len(model_classes)):
        raise ValueError(
            f"predict_proba returned shape {proba_known.shape}, expected "
            f"{(len(real_test), len(model_classes))}"
        )
    proba = np.zeros((len(real_test), len(classes)))
    for j, c in enumerate(model_classes):
        hit = np.flatnonzero(classes == c)
        if len(hit):
            proba[:, int(hit[0])] = proba_known[:, j]
    scores = _scores(real_test[target].to_numpy(), proba, classes, positive_label, minority_label)
    if validation is not None and len(classes) == 2:

        def aligned(frame: pd.DataFrame) -> np.ndarray:
            known = np.asarray(predict_proba(frame.drop(columns=[target])), dtype=float)
            full = np.zeros((len(frame), len(classes)))
            for j, c in enumerate(model_classes):
                hit = np.flatnonzero(classes == c)
                if len(hit):
                    full[:, int(hit[0])] = known[:, j]
            return full

        scores |= _valthr_scores(aligned, validation, real_test, target, classes, minority_label)
    out: dict[str, float | None] = {}
    for metric in METRIC_NAMES + VALTHR_NAMES:
        if metric in scores:
            out[f"utility/model_{metric}"] = scores[metric]
            out[f"utility/downstream_{metric}"] = scores[metric]
    if trtr:
        out.update(
            evaluate_utility(
                synthetic=None,
                real_train=real_train,
                real_test=real_test,
                target=target,
                positive_label=positive_label,
                models=models,
                primary_model=primary_model,
                trtr=True,
                max_train_rows=max_train_rows,
                seed=seed,
                cache_dir=cache_dir,
                validation=validation,
            )
        )
    return out
