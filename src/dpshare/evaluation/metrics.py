"""The metric registry: every reported number has a name, a family, a direction and a unit.

Reports read direction and range from here (synthcity's idea) instead of branching on names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dpshare.registry import Registry


@dataclass(frozen=True)
class MetricInfo:
    """Describes one metric: ``name`` is ``<family>/<suffix>``, e.g. ``utility/auc`` describes
    ``utility/tstr_auc`` and ``utility/hgb/trtr_auc``; ``attack/auc`` describes
    ``attack/mia_dcr/auc``."""

    name: str
    family: Literal["utility", "fidelity", "privacy", "attack", "runtime", "data"]
    direction: Literal["maximize", "minimize", "none"]
    unit: str
    value_range: tuple[float, float] | None
    description: str


METRICS: Registry[MetricInfo] = Registry("metric")


def register_metric(info: MetricInfo) -> MetricInfo:
    """Add ``info`` to :data:`METRICS` (its name must start with its family)."""
    if info.name.split("/", 1)[0] != info.family:
        raise ValueError(f"metric {info.name!r} must be named '{info.family}/<suffix>'")
    METRICS.register(info.name)(info)
    return info


_SCHEME_PREFIXES = ("tstr_", "trtr_", "model_", "downstream_")


def metric_info(key: str) -> MetricInfo:
    """The registry entry of a ``metrics.json`` key, e.g. ``utility/hgb/tstr_auc`` ->
    ``utility/auc`` or ``attack/mia_domias/tpr_at_fpr_1pct`` -> ``attack/tpr_at_fpr_1pct``.

    Raises :class:`dpshare.registry.UnknownNameError` for an unregistered metric.
    """
    family, _, rest = key.partition("/")
    suffix = rest.rsplit("/", 1)[-1]
    if family == "utility":
        for prefix in _SCHEME_PREFIXES:
            if suffix.startswith(prefix):
                suffix = suffix[len(prefix) :]
                break
    return METRICS.get(f"{family}/{suffix}")


for _info in (
    MetricInfo(
        "utility/accuracy",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "share of correctly classified real test records",
    ),
    MetricInfo(
        "utility/precision",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "positive predictive value (binary: the positive class; multiclass: macro mean)",
    ),
    MetricInfo(
        "utility/recall",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "true positive rate (binary: the positive class; multiclass: macro mean)",
    ),
    MetricInfo(
        "utility/f1",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "harmonic mean of precision and recall (binary: positive class; else macro)",
    ),
    MetricInfo(
        "utility/auc",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "ROC-AUC from predicted probabilities (multiclass: one-vs-rest macro)",
    ),
    MetricInfo(
        "utility/minority_recall",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "recall of the least frequent class of the real train split",
    ),
    MetricInfo(
        "utility/minority_recall_valthr",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "recall of the minority class at the decision threshold chosen on the real "
        "validation split (best minority F1 there), scored on the test split",
    ),
    MetricInfo(
        "utility/minority_precision_valthr",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "precision of the minority class at the validation-chosen threshold",
    ),
    MetricInfo(
        "utility/minority_f1_valthr",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "F1 of the minority class at the validation-chosen threshold",
    ),
    MetricInfo(
        "utility/valthr",
        "utility",
        "none",
        "probability",
        (0.0, 1.0),
        "the decision threshold on the minority class's probability chosen on the validation "
        "split (best minority F1 there)",
    ),
    MetricInfo(
        "utility/single_class",
        "utility",
        "none",
        "flag",
        (0.0, 1.0),
        "1 when the synthetic table held a single class, so no TSTR model could be trained "
        "(its TSTR scores are then None)",
    ),
):
    register_metric(_info)
