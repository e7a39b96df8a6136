"""Run the configured attacks on one released artifact and return ``attack/...`` keys.

The runner is the only place that decides which attack sees which artifact (registry-driven:
each :class:`~dpshare.evaluation.attacks.base.AttackSpec` says whether it needs a synthetic
table or a model):

* a method that releases a synthetic table gets every ``synthetic`` attack on that table, and
  every ``model`` attack on the TSTR model (``eval.attack_model`` trained on the synthetic
  table): the model a data user would build and might publish;
* a method that releases a model (DP-LR, FedAvg) gets the ``model`` attacks on that model; the
  ``synthetic`` attacks do not apply and are listed in ``attack/skipped``.

Shadow models (LiRA) use ``shadow_factory``: for the TSTR model, the same downstream model class
trained on real reference records; for a released model, the method's non-private
scikit-learn surrogate (:meth:`dpshare.models.base.ReleasedModelMethod.attack_surrogate`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dpshare.errors import UserInputError
from dpshare.evaluation.attacks.base import ATTACKS, PredictProba, build_context
from dpshare.evaluation.utility import fit_downstream

log = logging.getLogger(__name__)

ShadowFactory = Callable[[pd.DataFrame], PredictProba]


def evaluate_attacks(
    *,
    names: Sequence[str],
    real_train: pd.DataFrame,
    real_test: pd.DataFrame,
    reference: pd.DataFrame,
    target: str,
    positive_label: Any,
    synthetic: pd.DataFrame | None = None,
    predict_proba: PredictProba | None = None,
    model_classes: np.ndarray | None = None,
    released_surrogate: Callable[[int], Any] | None = None,
    attack_model: str = "hist_gradient_boosting",
    n_targets: int = 1000,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Every attack in ``names`` that applies to the artifact, as ``attack/<name>/<key>``.

    Give ``synthetic`` for a method that releases data, or ``predict_proba`` +
    ``model_classes`` (+ ``released_surrogate``, a ``seed -> unfitted estimator`` for shadows)
    for one that releases a model. ``reference`` is the attacker's population sample.
    """
    specs = [ATTACKS.get(name) for name in names]  # unknown names fail before any work
    params = dict(params or {})
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise UserInputError(
            f"eval.attack_params names attack(s) {unknown} that are not in "
            f"eval.attacks={list(names)}"
        )
    if not specs:
        return {}
    if len(reference) == 0:
        raise UserInputError(
            "the privacy attacks need a reference population: set dataset.reference_fraction > 0 "
            "or keep a validation split (dataset.val_fraction > 0), or set eval.attacks=[]"
        )
    if (synthetic is None) == (predict_proba is None):
        raise ValueError("give exactly one artifact: synthetic or predict_proba")
    classes = np.unique(real_train[target].to_numpy())
    shadow_factory: ShadowFactory | None
    model_label: str
    if synthetic is not None:
        model_label = f"tstr_{attack_model}"
        predict_proba = fit_downstream(
            attack_model, synthetic, target=target, classes=classes, seed=seed
        )
        model_classes = classes

        def shadow_factory(frame: pd.DataFrame) -> PredictProba:
            return _fitted(attack_model, frame, target, classes, seed)

    else:
        model_label = "released"
        if released_surrogate is None:
            shadow_factory = None
        else:
            surrogate = released_surrogate

            def shadow_factory(frame: pd.DataFrame) -> PredictProba:
                return _fitted(surrogate(seed), frame, target, classes, seed)

    ctx = build_context(
        train=real_train,
        test=real_test,
        reference=reference,
        target=target,
        positive_label=positive_label,
        n_targets=n_targets,
        seed=seed,
        synthetic=synthetic,
        predict_proba=predict_proba,
        model_classes=model_classes,
    )
    ctx.model_label = model_label
    ctx.shadow_factory = shadow_factory
    out: dict[str, Any] = {"attack/model_attacked": model_label}
    skipped: list[str] = []
    for spec in specs:
        if spec.artifact == "synthetic" and synthetic is None:
            skipped.append(spec.name)
            continue
        if spec.artifact == "model" and ctx.predict_proba is None:
            # the synthetic table has a single class: no TSTR model exists to attack
            skipped.append(spec.name)
            continue
        t0 = time.perf_counter()
        result = spec.run(dataclasses.replace(ctx, params=dict(params.get(spec.name, {}))))
        log.info("attack %s: %.1f s", spec.name, time.perf_counter() - t0)
        for key, value in result.items():
            out[f"attack/{spec.name}/{key}"] = value
    out["attack/skipped"] = ",".join(skipped)
    return out


def _fitted(
    model: str | Any, frame: pd.DataFrame, target: str, classes: np.ndarray, seed: int
) -> PredictProba:
    predict = fit_downstream(model, frame, target=target, classes=classes, seed=seed)
    if predict is None:  # a shadow split with one class: an uninformative constant model
        share = np.array([(frame[target].to_numpy() == c).mean() for c in classes])

        def predict(x: pd.DataFrame) -> np.ndarray:
            return np.tile(share, (len(x), 1))

    return predict
