"""Attribute inference from a synthetic table, in Anonymeter's main / control / baseline design.

Threat model: the attacker knows a target's quasi-identifiers (the ``known`` columns) and wants
its ``secret`` attribute; she holds the released synthetic table and a population sample
(``ctx.reference``). Following Anonymeter's inference evaluator (Giomi et al. 2023, "A unified
framework for quantifying privacy risk in synthetic data", PoPETs), three attacks are run:

* main: for every member target (a real TRAIN record), the synthetic record closest on the
  known columns is found (Euclidean distance in a :class:`~dpshare.evaluation.features.TableEncoder`
  view fitted on the reference population over the known columns) and its secret is the guess;
* control: the same attack on as many non-member targets (held-out real TEST records). The
  synthetic data can teach the attacker the population's correlations, which help on members
  and non-members alike; only the excess of main over control is a privacy leak;
* baseline: the attacker without the artifact guesses the secret of the closest record of the
  reference population (a naive nearest-neighbour attacker, in the spirit of Anonymeter's
  baseline; Anonymeter itself guesses at random). It shows what population knowledge alone gets.

Success: a categorical (or boolean, datetime) secret must be guessed exactly; a numeric one
within ``numeric_tolerance`` (default 0.05) times the reference population's interquartile
range (its standard deviation when the IQR is 0; exact match when both are 0). Anonymeter uses a
tolerance relative to the true value instead, which is undefined at 0.

Reported (all fractions in [0, 1] but ``n_targets``):

* ``success_rate``, ``control_success_rate``, ``baseline_success_rate``: raw shares of correct
  guesses.
* ``risk``: Anonymeter's privacy risk ``(main - control) / (1 - control)`` clipped to [0, 1],
  computed exactly as Anonymeter does from the Wilson score estimates of both rates (Wilson 1927;
  they differ from the raw shares by O(1/n) and keep ``1 - control`` away from 0).
* ``risk_ci_low`` / ``risk_ci_high``: its 95% interval, the Wilson errors of both rates
  propagated to first order, clipped to [0, 1] (Anonymeter's ``residual_success``).
* ``n_targets``: member targets attacked (as many non-members form the control).

Parameters (``eval.attack_params.aia``): ``secret`` (default: the target column), ``known``
(default: every other column), ``numeric_tolerance``, ``confidence_level`` (default 0.95).
For an imbalanced secret (e.g. a rare binary label) every naive guess is right most of the time,
so success rates are high even without a leak: read ``risk`` (main against control), not
``success_rate``, and compare with ``baseline_success_rate``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.neighbors import NearestNeighbors

from dpshare.errors import UserInputError
from dpshare.evaluation.attacks.base import AttackContext, register_attack
from dpshare.evaluation.attacks.mia_model import require_reference
from dpshare.evaluation.features import TableEncoder
from dpshare.evaluation.metrics import MetricInfo, register_metric


def wilson_rate(n_success: int, n_total: int, *, confidence_level: float) -> tuple[float, float]:
    """Wilson score estimate of a success rate and its error bound (Wilson 1927; as in
    Anonymeter's ``success_rate``): ``(centre, half-width)`` of the interval."""
    if n_total <= 0:
        raise ValueError("a success rate needs at least one trial")
    if not 0.0 < confidence_level < 1.0:
        raise UserInputError(f"confidence_level must be in (0, 1), got {confidence_level}")
    z = float(norm.ppf(0.5 * (1.0 + confidence_level)))
    z2 = z * z
    denominator = n_total + z2
    centre = (n_success + 0.5 * z2) / denominator
    variance = n_success * (n_total - n_success) / n_total
    return centre, z / denominator * float(np.sqrt(variance + 0.25 * z2))


def privacy_risk(
    n_main: int,
    n_main_total: int,
    n_control: int,
    n_control_total: int,
    *,
    confidence_level: float = 0.95,
) -> tuple[float, float, float]:
    """Anonymeter's residual risk ``(main - control) / (1 - control)`` and its interval, from
    ``n_main`` of ``n_main_total`` and ``n_control`` of ``n_control_total`` successful attacks;
    all three clipped to [0, 1].

    >>> [round(v, 3) for v in privacy_risk(100, 100, 50, 100)]
    [0.963, 0.925, 1.0]
    """
    main, main_err = wilson_rate(n_main, n_main_total, confidence_level=confidence_level)
    control, control_err = wilson_rate(
        n_control, n_control_total, confidence_level=confidence_level
    )
    risk = (main - control) / (1.0 - control)
    d_main = 1.0 / (1.0 - control)
    d_control = (main - 1.0) / (1.0 - control) ** 2
    error = float(np.hypot(main_err * d_main, control_err * d_control))

    def clip(value: float) -> float:
        return float(min(max(value, 0.0), 1.0))

    return clip(risk), clip(risk - error), clip(risk + error)


def _is_numeric(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def _correct(guess: np.ndarray, truth: np.ndarray, *, tolerance: float | None) -> np.ndarray:
    """Which guesses are right: within ``tolerance`` (numeric) or equal; missing = missing."""
    missing_guess = np.asarray(pd.isna(guess), dtype=bool)
    missing_truth = np.asarray(pd.isna(truth), dtype=bool)
    present = ~missing_guess & ~missing_truth
    equal = missing_guess & missing_truth
    if tolerance is None:
        equal[present] = [bool(g == t) for g, t in zip(guess[present], truth[present], strict=True)]
    else:
        diff = np.abs(guess[present].astype(float) - truth[present].astype(float))
        equal[present] = diff <= tolerance
    return equal


def _nearest_secret(
    encoder: TableEncoder,
    pool: pd.DataFrame,
    targets: pd.DataFrame,
    *,
    known: list[str],
    secret: str,
) -> np.ndarray:
    """The secret of each target's nearest record of ``pool`` on the known columns."""
    index = NearestNeighbors(n_neighbors=1).fit(encoder.transform(pool[known]))
    nearest = index.kneighbors(encoder.transform(targets[known]), return_distance=False)[:, 0]
    return pool[secret].to_numpy()[nearest]


def _columns(ctx: AttackContext, synthetic: pd.DataFrame) -> tuple[str, list[str]]:
    secret = ctx.params.get("secret") or ctx.target
    known_param: Any = ctx.params.get("known")
    known = (
        [c for c in ctx.reference.columns if c != secret]
        if not known_param
        else [str(c) for c in known_param]
    )
    if secret in known:
        raise UserInputError(f"aia: the secret column {secret!r} is also listed as known")
    if not known:
        raise UserInputError("aia needs at least one known column besides the secret")
    for name, table in (
        ("synthetic", synthetic),
        ("reference", ctx.reference),
        ("members", ctx.members),
        ("non_members", ctx.non_members),
    ):
        missing = [c for c in [secret, *known] if c not in table.columns]
        if missing:
            raise UserInputError(f"aia: the {name} table lacks column(s) {missing}")
    return secret, known


@register_attack(
    "aia",
    artifact="synthetic",
    threat_model=(
        "The attacker knows a target's quasi-identifiers and a population sample, and infers "
        "the target's secret attribute from its nearest synthetic record; the risk is the "
        "excess success on training records over held-out records (Anonymeter, Giomi et al. 2023)."
    ),
)
def aia(ctx: AttackContext) -> dict[str, float | None]:
    """Nearest-neighbour attribute inference: main, control and baseline success and the
    Anonymeter risk (see the module docstring for every definition)."""
    if ctx.synthetic is None:
        raise ValueError("aia needs a synthetic table (ctx.synthetic); it is None for a model")
    synthetic = ctx.synthetic
    if len(synthetic) == 0:
        raise UserInputError("aia: the synthetic table is empty")
    reference = require_reference(ctx)
    if len(ctx.members) == 0 or len(ctx.non_members) == 0:
        raise ValueError("aia needs at least one member and one non-member target")
    secret, known = _columns(ctx, synthetic)
    confidence_level = float(ctx.params.get("confidence_level", 0.95))

    tolerance: float | None = None
    if _is_numeric(reference[secret]):
        values = reference[secret].astype(float)
        scale = float(values.quantile(0.75) - values.quantile(0.25))
        if not scale > 0:
            scale = float(values.std()) if len(values.dropna()) > 1 else 0.0
        scale = scale if np.isfinite(scale) else 0.0
        tolerance = float(ctx.params.get("numeric_tolerance", 0.05)) * scale

    encoder = TableEncoder().fit(reference[known])
    truth_members = ctx.members[secret].to_numpy()
    truth_non_members = ctx.non_members[secret].to_numpy()

    def successes(pool: pd.DataFrame, targets: pd.DataFrame, truth: np.ndarray) -> int:
        guess = _nearest_secret(encoder, pool, targets, known=known, secret=secret)
        return int(_correct(guess, truth, tolerance=tolerance).sum())

    n_main = successes(synthetic, ctx.members, truth_members)
    n_control = successes(synthetic, ctx.non_members, truth_non_members)
    n_baseline = successes(reference, ctx.members, truth_members)
    n_targets = len(ctx.members)
    n_controls = len(ctx.non_members)
    risk, risk_low, risk_high = privacy_risk(
        n_main, n_targets, n_control, n_controls, confidence_level=confidence_level
    )
    return {
        "success_rate": n_main / n_targets,
        "control_success_rate": n_control / n_controls,
        "baseline_success_rate": n_baseline / n_targets,
        "risk": risk,
        "risk_ci_low": risk_low,
        "risk_ci_high": risk_high,
        "n_targets": float(n_targets),
    }


for _info in (
    MetricInfo(
        "attack/control_success_rate",
        "attack",
        "none",
        "fraction",
        (0.0, 1.0),
        "attribute inference: share of secrets guessed right for held-out (non-member) targets "
        "with the released artifact; the control of Anonymeter (Giomi et al. 2023)",
    ),
    MetricInfo(
        "attack/baseline_success_rate",
        "attack",
        "none",
        "fraction",
        (0.0, 1.0),
        "attribute inference without the artifact: share of member secrets guessed right from "
        "the nearest record of the attacker's population sample",
    ),
    MetricInfo(
        "attack/risk",
        "attack",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "Anonymeter privacy risk (main - control) / (1 - control) from Wilson score rates, "
        "clipped to [0, 1]; 0 = no leak beyond what held-out records reveal",
    ),
    MetricInfo(
        "attack/risk_ci_low",
        "attack",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "lower bound of the 95% interval of attack/risk (Wilson errors propagated, clipped)",
    ),
    MetricInfo(
        "attack/risk_ci_high",
        "attack",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "upper bound of the 95% interval of attack/risk (Wilson errors propagated, clipped)",
    ),
    MetricInfo(
        "attack/n_targets",
        "attack",
        "none",
        "count",
        None,
        "number of member targets attacked (as many non-members form the control)",
    ),
):
    register_metric(_info)
