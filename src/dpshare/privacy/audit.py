"""Empirical privacy auditing: lower bounds on epsilon from membership guesses on canaries.

The accountant gives an *upper* bound on epsilon (a proof); an audit gives a *lower* bound (an
experiment). A correct implementation has ``lower <= upper``; a lower bound above the claimed
epsilon (at the stated confidence) shows that the claim is false: a bug in the code, the
accounting or the configuration.

Two bounds live here, both pure numpy/scipy:

* :func:`one_run_epsilon_lower_bound`: the one-training-run audit of Steinke, Nasr & Jagielski,
  "Privacy Auditing with One (1) Training Run", NeurIPS 2023 (arXiv:2305.08846), Theorem 3.1 /
  Algorithm 2 (``delta > 0``; for ``delta = 0`` it reduces to their Binomial domination bound).
  Each of ``m`` canaries is included independently with probability 1/2; after *one* training
  run the auditor guesses "in" / "out" for ``r`` of them and gets ``v`` right. If the mechanism
  is (epsilon, delta)-DP, ``P[V >= v] <= P[Binomial(r, e^eps / (1 + e^eps)) >= v]
  + 2 m delta max_{1 <= i <= v} P[v - i <= Binomial(r, .) < v] / i``. The bound is the largest
  epsilon that this p-value rejects at level ``beta``.
* :func:`clopper_pearson_epsilon_lower_bound`: the classical many-run audit of Jagielski, Ullman
  & Oprea, "Auditing Differentially Private Machine Learning: How Private is Private SGD?",
  NeurIPS 2020: from a distinguishing test's false-positive and false-negative counts over
  *independent* trials, with Clopper-Pearson upper bounds on both rates,
  ``eps >= max(log((1 - delta - FPR_hi) / FNR_hi), log((1 - delta - FNR_hi) / FPR_hi))``.
  Its trials must be independent (one training run per trial); do not feed it the guesses of a
  single run — that is what the one-run bound is for.

Units: epsilon in nats (the ``e^eps`` of the DP definition), delta and beta/alpha are
probabilities, counts are numbers of canaries (or trials). ``confidence = 1 - beta``.
This module imports neither torch, Lightning nor wandb (STYLE.md rule 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special, stats

ONE_RUN_METHOD = "steinke_nasr_jagielski_2023_one_run"
CLOPPER_PEARSON_METHOD = "jagielski_ullman_oprea_2020_clopper_pearson"

_BISECTION_STEPS = 60  # interval halvings after bracketing: far below 1e-9 in epsilon


def _check_probability(name: str, value: float, *, open_low: bool, open_high: bool) -> float:
    value = float(value)
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not (low_ok and high_ok):
        lo = "(" if open_low else "["
        hi = ")" if open_high else "]"
        raise ValueError(f"{name}={value!r} must lie in {lo}0, 1{hi}")
    return value


def _check_count(name: str, value: int) -> int:
    if int(value) != value or value < 0:
        raise ValueError(f"{name}={value!r} must be a non-negative integer")
    return int(value)


# ---------------------------------------------------------------------------- Clopper-Pearson


def clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """Exact (Clopper & Pearson 1934) two-sided interval for a binomial proportion.

    Args:
        k: observed successes, ``0 <= k <= n``.
        n: trials, ``n >= 1``.
        alpha: total miss probability; each tail gets ``alpha / 2``, so the interval covers the
            true proportion with probability at least ``1 - alpha``.

    Returns:
        ``(lo, hi)`` with ``lo = Beta(alpha/2; k, n-k+1)`` quantile (0 when ``k = 0``) and
        ``hi = Beta(1-alpha/2; k+1, n-k)`` quantile (1 when ``k = n``).

    >>> lo, hi = clopper_pearson(0, 10, 0.05)
    >>> (lo, round(hi, 4))
    (0.0, 0.3085)
    """
    k = _check_count("k", k)
    n = _check_count("n", n)
    if n == 0 or k > n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    alpha = _check_probability("alpha", alpha, open_low=True, open_high=True)
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


# --------------------------------------------------------------------- one run (Steinke et al.)


def one_run_p_value(
    *, n_guesses: int, n_correct: int, n_canaries: int, epsilon: float, delta: float
) -> float:
    """P-value of ``n_correct`` or more correct guesses if the mechanism were (epsilon, delta)-DP.

    Steinke, Nasr & Jagielski (NeurIPS 2023), Theorem 3.1: with ``q = e^eps / (1 + e^eps)``
    (the accuracy of eps-DP randomized response), ``W ~ Binomial(n_guesses, q)``,

        p = P[W >= v] + 2 * m * delta * max_{i=1..v} P[v - i <= W < v] / i,

    with ``v = n_correct`` and ``m = n_canaries`` (clipped to 1). For ``delta = 0`` only the
    Binomial tail remains: the number of correct guesses of an eps-DP mechanism is
    stochastically dominated by ``Binomial(r, q)``.
    """
    r = _check_count("n_guesses", n_guesses)
    v = _check_count("n_correct", n_correct)
    m = _check_count("n_canaries", n_canaries)
    if not v <= r <= m:
        raise ValueError(f"need n_correct <= n_guesses <= n_canaries, got {v}, {r}, {m}")
    if not epsilon >= 0:
        raise ValueError(f"epsilon={epsilon!r} must be >= 0")
    delta = _check_probability("delta", delta, open_low=False, open_high=False)
    q = float(special.expit(epsilon))
    tail = float(stats.binom.sf(v - 1, r, q))  # P[W >= v]
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    i = np.arange(1, v + 1)
    window = stats.binom.sf(v - i - 1, r, q) - tail  # P[v - i <= W < v]
    alpha = float(np.max(window / i))
    return min(tail + 2.0 * m * delta * alpha, 1.0)


def one_run_epsilon_lower_bound(
    *, n_guesses: int, n_correct: int, n_canaries: int, delta: float, beta: float
) -> float:
    """Largest epsilon the one-run audit rejects: with probability >= ``1 - beta`` the mechanism
    is *not* (epsilon', delta)-DP for any epsilon' below the returned value.

    Steinke, Nasr & Jagielski (NeurIPS 2023), Algorithm 2: search for the largest epsilon whose
    :func:`one_run_p_value` is below ``beta``; 0 when even epsilon = 0 is not rejected (e.g.
    guessing at chance). Rejecting epsilon rejects every smaller epsilon too, because
    (eps', delta)-DP implies (eps, delta)-DP for eps' <= eps.

    For ``delta = 0`` this equals ``logit`` of the one-sided Clopper-Pearson lower confidence
    bound on the guess accuracy ``n_correct / n_guesses`` at level ``beta``.

    Args:
        n_guesses: canaries guessed "in" or "out" (abstentions excluded), ``r``.
        n_correct: correct guesses, ``v <= r``.
        n_canaries: canaries in the experiment, ``m >= r``; each included with probability 1/2.
        delta: the delta of the (epsilon, delta)-DP claim being tested.
        beta: allowed failure probability (``confidence = 1 - beta``).

    Returns:
        The epsilon lower bound in nats (``>= 0``; bisection resolution far below 1e-6).

    >>> round(one_run_epsilon_lower_bound(
    ...     n_guesses=100, n_correct=100, n_canaries=1000, delta=0.0, beta=0.05), 4)
    3.493
    """
    beta = _check_probability("beta", beta, open_low=True, open_high=True)

    def rejected(eps: float) -> bool:
        p = one_run_p_value(
            n_guesses=n_guesses,
            n_correct=n_correct,
            n_canaries=n_canaries,
            epsilon=eps,
            delta=delta,
        )
        return p < beta

    if not rejected(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    while rejected(hi):  # p -> P[W >= v] -> 1 as eps grows (v <= r), so this stops
        lo, hi = hi, 2.0 * hi
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if rejected(mid):
            lo = mid
        else:
            hi = mid
    return lo


# --------------------------------------------------------- many runs (Jagielski et al. 2020)


def clopper_pearson_epsilon_lower_bound(
    *,
    true_positives: int,
    false_positives: int,
    true_negatives: int,
    false_negatives: int,
    delta: float,
    alpha: float,
) -> float:
    """Epsilon lower bound from a distinguishing test's error rates over independent trials.

    Jagielski, Ullman & Oprea (NeurIPS 2020), Algorithm 2: an (eps, delta)-DP mechanism forces
    every test to satisfy ``FPR + e^eps FNR >= 1 - delta`` and ``FNR + e^eps FPR >= 1 - delta``,
    so, with upper confidence bounds ``FPR_hi``, ``FNR_hi``,

        eps >= max(log((1 - delta - FPR_hi) / FNR_hi), log((1 - delta - FNR_hi) / FPR_hi)).

    "Positive" means "the canary / poison was in the training set". ``FPR_hi`` and ``FNR_hi``
    are the upper ends of :func:`clopper_pearson` intervals at level ``alpha`` (each one-sided
    miss probability ``alpha / 2``), so by a union bound the result holds with probability at
    least ``1 - alpha``. A rate with no trials (e.g. no positives) is bounded by 1, giving 0.

    Returns:
        The epsilon lower bound in nats, ``>= 0``.
    """
    tp = _check_count("true_positives", true_positives)
    fp = _check_count("false_positives", false_positives)
    tn = _check_count("true_negatives", true_negatives)
    fn = _check_count("false_negatives", false_negatives)
    delta = _check_probability("delta", delta, open_low=False, open_high=True)
    alpha = _check_probability("alpha", alpha, open_low=True, open_high=True)
    fpr_hi = clopper_pearson(fp, fp + tn, alpha)[1] if fp + tn > 0 else 1.0
    fnr_hi = clopper_pearson(fn, fn + tp, alpha)[1] if fn + tp > 0 else 1.0
    best = 0.0
    for numerator, denominator in ((1 - delta - fpr_hi, fnr_hi), (1 - delta - fnr_hi, fpr_hi)):
        if numerator > 0 and denominator > 0:
            best = max(best, math.log(numerator / denominator))
    return best


# ------------------------------------------------------------------------- guesses and result


def one_run_guesses(
    scores: np.ndarray, *, k_positive: int, k_negative: int, seed: int | Sequence[int] = 0
) -> np.ndarray:
    """Guesses in {+1 (in), -1 (out), 0 (abstain)}: +1 for the ``k_positive`` highest scores,
    -1 for the ``k_negative`` lowest, 0 for the rest (Steinke et al. 2023, Section 5).

    Ties are broken uniformly at random (``numpy.random.default_rng(seed)``), never by canary
    index, so that a block of equal scores cannot line up with the inclusion pattern; use a
    seed whose stream is not the one that drew the inclusion pattern.
    """
    scores = np.asarray(scores, dtype=float)
    m = scores.shape[0]
    k_positive = _check_count("k_positive", k_positive)
    k_negative = _check_count("k_negative", k_negative)
    if k_positive + k_negative > m:
        raise ValueError(f"k_positive + k_negative = {k_positive + k_negative} > {m} canaries")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    shuffle = np.random.default_rng(seed).permutation(m)
    order = shuffle[np.argsort(scores[shuffle], kind="stable")]  # ascending, random tie order
    guesses = np.zeros(m, dtype=int)
    if k_negative:
        guesses[order[:k_negative]] = -1
    if k_positive:
        guesses[order[m - k_positive :]] = 1
    return guesses


def guess_counts(guesses: np.ndarray, included: np.ndarray) -> dict[str, int]:
    """Confusion counts of in/out guesses against the true inclusion pattern (abstentions apart).

    "Positive" = guessed in. Keys: ``true_positives``, ``false_positives``, ``true_negatives``,
    ``false_negatives``, ``abstentions``, ``n_guesses``, ``n_correct``, ``n_canaries``,
    ``n_included``.
    """
    guesses = np.asarray(guesses)
    included = np.asarray(included, dtype=bool)
    if guesses.shape != included.shape:
        raise ValueError(f"guesses {guesses.shape} and included {included.shape} differ in shape")
    tp = int(np.sum((guesses == 1) & included))
    fp = int(np.sum((guesses == 1) & ~included))
    tn = int(np.sum((guesses == -1) & ~included))
    fn = int(np.sum((guesses == -1) & included))
    return {
        "true_positives": tp,
        "false_positives": fp,
        "true_negatives": tn,
        "false_negatives": fn,
        "abstentions": int(np.sum(guesses == 0)),
        "n_guesses": tp + fp + tn + fn,
        "n_correct": tp + tn,
        "n_canaries": int(included.shape[0]),
        "n_included": int(included.sum()),
    }


@dataclass(frozen=True)
class AuditResult:
    """One audit's outcome, with everything needed to read it.

    Attributes:
        epsilon_lower_bound: empirical lower bound on epsilon (nats) at ``confidence``.
        confidence: ``1 - beta``; the bound fails with probability at most ``beta``.
        counts: guess counts (see :func:`guess_counts`).
        method: which bound produced ``epsilon_lower_bound`` (``ONE_RUN_METHOD``...).
        theoretical_epsilon: the accountant's upper bound at ``delta`` (``inf`` if not DP).
        delta: the delta of every epsilon here.
        claimed_epsilon: what the audited run reports; ``None`` means the theoretical epsilon.
        parameters: mechanism and audit settings (noise_multiplier, sample_rate, ...).
    """

    epsilon_lower_bound: float
    confidence: float
    counts: dict[str, int]
    method: str
    theoretical_epsilon: float
    delta: float
    claimed_epsilon: float | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def epsilon_checked(self) -> float:
        """The epsilon the lower bound is compared with: the claim, else the theoretical one."""
        return self.theoretical_epsilon if self.claimed_epsilon is None else self.claimed_epsilon

    @property
    def violation(self) -> bool:
        """True when the audit refutes the checked epsilon (lower bound above it)."""
        return self.epsilon_lower_bound > self.epsilon_checked

    @property
    def guess_accuracy(self) -> float:
        n = self.counts.get("n_guesses", 0)
        return self.counts.get("n_correct", 0) / n if n else float("nan")

    @property
    def guess_accuracy_lower_bound(self) -> float:
        """One-sided Clopper-Pearson lower bound on the guess accuracy at ``confidence``.

        For ``delta = 0`` the one-run bound is exactly its log-odds; ``delta > 0`` lowers it.
        """
        n = self.counts.get("n_guesses", 0)
        if not n:
            return float("nan")
        return clopper_pearson(self.counts["n_correct"], n, 2 * (1 - self.confidence))[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``inf`` stays a float; the record writer turns it into ``"inf"``)."""
        return {
            "method": self.method,
            "epsilon_lower_bound": self.epsilon_lower_bound,
            "confidence": self.confidence,
            # one-sided: with probability >= confidence, the true epsilon lies in this interval
            "epsilon_confidence_interval": [self.epsilon_lower_bound, math.inf],
            "theoretical_epsilon": self.theoretical_epsilon,
            "claimed_epsilon": self.claimed_epsilon,
            "epsilon_checked": self.epsilon_checked,
            "violation": self.violation,
            "delta": self.delta,
            "guess_accuracy": self.guess_accuracy,
            "guess_accuracy_lower_bound": self.guess_accuracy_lower_bound,
            "counts": dict(self.counts),
            "parameters": dict(self.parameters),
        }


def audit_one_run(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    k_positive: int,
    k_negative: int,
    delta: float,
    confidence: float,
    theoretical_epsilon: float,
    claimed_epsilon: float | None = None,
    seed: int | Sequence[int] = 0,
    parameters: dict[str, Any] | None = None,
) -> AuditResult:
    """Guess from canary scores (higher = more likely included), count, and bound epsilon.

    ``k_positive``, ``k_negative`` must be fixed before looking at the scores: choosing them to
    maximize the bound afterwards voids the confidence level.
    """
    confidence = _check_probability("confidence", confidence, open_low=True, open_high=True)
    guesses = one_run_guesses(scores, k_positive=k_positive, k_negative=k_negative, seed=seed)
    counts = guess_counts(guesses, included)
    bound = one_run_epsilon_lower_bound(
        n_guesses=counts["n_guesses"],
        n_correct=counts["n_correct"],
        n_canaries=counts["n_canaries"],
        delta=delta,
        beta=1.0 - confidence,
    )
    return AuditResult(
        epsilon_lower_bound=bound,
        confidence=confidence,
        counts=counts,
        method=ONE_RUN_METHOD,
        theoretical_epsilon=float(theoretical_epsilon),
        delta=float(delta),
        claimed_epsilon=None if claimed_epsilon is None else float(claimed_epsilon),
        parameters=dict(parameters or {}),
    )
