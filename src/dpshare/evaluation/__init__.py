"""Evaluation: utility of released artifacts on the held-out real test split."""

from dpshare.evaluation import cnn  # noqa: F401  (registers the "cnn" downstream model)
from dpshare.evaluation.metrics import METRICS, MetricInfo
from dpshare.evaluation.utility import DOWNSTREAM_MODELS, evaluate_utility

__all__ = ["DOWNSTREAM_MODELS", "METRICS", "MetricInfo", "evaluate_utility"]
