"""The metric registry: every reported number has a name, a family, a direction and a unit.

Reports read direction and range from here (synthcity's idea) instead of branching on names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dpshare.registry import Registry


@dataclass(frozen=True)
class MetricInfo:
    """Describes one metric key suffix, e.g. ``auc`` in ``utility/tstr_auc``."""

    name: str
    family: Literal["utility", "fidelity", "privacy", "attack", "runtime", "data"]
    direction: Literal["maximize", "minimize", "none"]
    unit: str
    value_range: tuple[float, float] | None
    description: str


METRICS: Registry[MetricInfo] = Registry("metric")


def _register(info: MetricInfo) -> None:
    METRICS.register(info.name)(info)


for _info in (
    MetricInfo(
        "accuracy",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "share of correctly classified real test records",
    ),
    MetricInfo(
        "precision",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "positive predictive value (binary: the positive class; multiclass: macro mean)",
    ),
    MetricInfo(
        "recall",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "true positive rate (binary: the positive class; multiclass: macro mean)",
    ),
    MetricInfo(
        "f1",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "harmonic mean of precision and recall (binary: positive class; else macro)",
    ),
    MetricInfo(
        "auc",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "ROC-AUC from predicted probabilities (multiclass: one-vs-rest macro)",
    ),
    MetricInfo(
        "minority_recall",
        "utility",
        "maximize",
        "fraction",
        (0.0, 1.0),
        "recall of the least frequent class of the real train split",
    ),
):
    _register(_info)
