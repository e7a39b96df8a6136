"""Accountants and noise calibration: thin, pure wrappers over Opacus's accountants.

Every DP mechanism in dpshare is a (possibly subsampled) Gaussian mechanism described by Opacus's
history format: a list of ``(noise_multiplier, sample_rate, steps)`` runs.

- a DP-SGD step on a Poisson-sampled batch: ``(sigma, q, 1)``, sigma = noise std / clipping bound;
- a Gaussian release of statistics with L2 sensitivity ``s`` and noise std ``sigma * s`` on the
  whole table: ``(sigma, 1.0, 1)`` (a sampled Gaussian with q = 1 is the plain Gaussian mechanism);
- a noisy feedback signal computed on a Poisson-sampled batch: ``(sigma, q, 1)``.

The whole run's (epsilon, delta) is the composition of every run in every ledger entry, computed
by one accountant. Neighbouring datasets differ by adding or removing one record (the adjacency
Opacus's Poisson-sampling analysis uses).

Accountants (``privacy.accountant``):

- ``rdp`` (default): Renyi DP of the sampled Gaussian mechanism (Mironov et al. 2019) with the
  conversion of Balle et al. 2020, Theorem 21. RDP composes exactly over heterogeneous steps by
  adding RDP curves, which is what a per-step budget check needs: :class:`RDPBudget` keeps the
  running curve, so asking "may I take one more step?" costs one vector addition.
- ``prv``: numerical composition of privacy loss random variables (Gopi et al. 2021); tighter,
  but far too expensive to evaluate before every step. With ``prv`` the budget is still *enforced*
  with RDP (a valid upper bound), and the reported epsilon is the smaller of the two valid upper
  bounds, so it never exceeds the target.

Opacus's ``gdp`` accountant is a central-limit approximation, not an upper bound, so it is not
offered.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

import numpy as np
from opacus.accountants import create_accountant
from opacus.accountants.analysis import rdp as rdp_analysis

from dpshare.errors import UserInputError

ACCOUNTANTS = ("rdp", "prv")
# Opacus's default RDP orders: fine below 11, integers up to 63.
RDP_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))
MAX_NOISE_MULTIPLIER = 1e4

Run = tuple[float, float, int]  # (noise_multiplier, sample_rate, steps), as in Opacus's history


def check_accountant(name: str) -> str:
    if name not in ACCOUNTANTS:
        raise UserInputError(
            f"privacy.accountant={name!r} is not supported; choose one of {list(ACCOUNTANTS)}"
        )
    return name


def check_delta(delta: float) -> float:
    if not (isinstance(delta, int | float) and 0.0 < float(delta) < 1.0):
        raise UserInputError(
            f"privacy.target_delta must be in (0, 1), got {delta!r}; use a delta well below "
            "1/n for a train split of n records (e.g. privacy.target_delta=1e-5)"
        )
    return float(delta)


def _check_run(run: Sequence[float]) -> Run:
    sigma, q, steps = float(run[0]), float(run[1]), int(run[2])
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise UserInputError(f"noise_multiplier must be a finite number >= 0, got {sigma}")
    if not 0.0 < q <= 1.0:
        raise UserInputError(f"sample_rate must be in (0, 1], got {q}")
    if steps < 0:
        raise UserInputError(f"steps must be >= 0, got {steps}")
    return sigma, q, steps


@lru_cache(maxsize=4096)
def rdp_curve(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """RDP of ONE sampled-Gaussian step at :data:`RDP_ORDERS` (``inf`` everywhere if sigma = 0).

    Cached: DP-SGD repeats a handful of (sigma, q) pairs thousands of times.
    """
    if noise_multiplier == 0:
        return np.full(len(RDP_ORDERS), np.inf)
    curve = rdp_analysis.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(RDP_ORDERS)
    )
    curve = np.asarray(curve, dtype=float)
    curve.setflags(write=False)
    return curve


def rdp_to_epsilon(rdp: np.ndarray, delta: float) -> float:
    """(epsilon, delta)-DP from an RDP curve (Balle et al. 2020, Thm 21, via Opacus)."""
    if not np.any(rdp):
        return 0.0
    if np.all(np.isinf(rdp)):
        return math.inf
    with warnings.catch_warnings():
        # "optimal order is the largest alpha" only means the bound could be tightened.
        warnings.simplefilter("ignore", UserWarning)
        eps, _ = rdp_analysis.get_privacy_spent(orders=list(RDP_ORDERS), rdp=rdp, delta=delta)
    return float(max(eps, 0.0))


def rdp_of(history: Iterable[Sequence[float]]) -> np.ndarray:
    total = np.zeros(len(RDP_ORDERS))
    for run in history:
        sigma, q, steps = _check_run(run)
        if steps:
            total = total + steps * rdp_curve(sigma, q)
    return total


def compose_epsilon(
    history: Iterable[Sequence[float]], *, delta: float, accountant: str = "rdp"
) -> float:
    """Epsilon of the composition of every ``(noise_multiplier, sample_rate, steps)`` run.

    0 for an empty history; ``inf`` if any run has noise_multiplier 0 (no noise).

    >>> round(compose_epsilon([(1.5, 0.04, 2250)], delta=1e-5), 2)  # Opacus's golden value
    7.33
    """
    check_accountant(accountant)
    delta = check_delta(delta)
    runs = [_check_run(r) for r in history]
    runs = [r for r in runs if r[2] > 0]
    if not runs:
        return 0.0
    if any(sigma == 0 for sigma, _, _ in runs):
        return math.inf
    eps_rdp = rdp_to_epsilon(rdp_of(runs), delta)
    if accountant == "rdp":
        return eps_rdp
    prv = create_accountant(mechanism="prv")
    prv.history = list(runs)
    try:
        eps_prv = float(prv.get_epsilon(delta=delta))
    except (ValueError, RuntimeError, FloatingPointError):  # PRV domain errors on extreme inputs
        return eps_rdp
    # Both are valid upper bounds on the true epsilon; report the tighter one.
    return min(eps_prv, eps_rdp)


def max_steps_within_budget(
    *,
    target_epsilon: float,
    target_delta: float,
    sample_rate: float,
    noise_multiplier: float,
    prior_history: Iterable[Sequence[float]] = (),
    max_steps: int = 100_000_000,
) -> int:
    """The largest number of sampled-Gaussian steps at ``noise_multiplier`` and ``sample_rate``
    that, composed with ``prior_history``, spend at most ``target_epsilon`` at ``target_delta``
    under RDP (0 when not even one fits; ``max_steps`` when the budget never binds).

    This is how long DP-SGD may train when epsilon, delta AND sigma are all fixed (Tao 2020's
    figures): the accountant, not an epoch count, decides. Epsilon is monotone in the number of
    steps, so a bisection over integers finds it. Opacus offers the inverse only for sigma.
    """
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise UserInputError(
            f"privacy.target_epsilon must be a finite number > 0, got {target_epsilon!r}"
        )
    target_delta = check_delta(target_delta)
    _check_run((noise_multiplier, sample_rate, 1))
    if noise_multiplier <= 0:
        raise UserInputError(
            f"privacy.noise_multiplier must be > 0 to train within a budget, got {noise_multiplier}"
        )
    prior = rdp_of(prior_history)
    curve = rdp_curve(noise_multiplier, sample_rate)

    def fits(steps: int) -> bool:
        return rdp_to_epsilon(prior + steps * curve, target_delta) <= target_epsilon

    if not fits(1):
        return 0
    low, high = 1, 2
    while fits(high):
        low, high = high, 2 * high
        if high > max_steps:
            return max_steps if fits(max_steps) else _bisect(fits, low, max_steps)
    return _bisect(fits, low, high)


def _bisect(fits: Callable[[int], bool], low: int, high: int) -> int:
    """Largest ``n`` in ``[low, high)`` with ``fits(n)``; ``fits(low)`` true, ``fits(high)`` not."""
    while high - low > 1:
        mid = (low + high) // 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return low


def calibrate_noise_multiplier(
    *,
    target_epsilon: float,
    target_delta: float,
    sample_rate: float,
    steps: int,
    prior_history: Iterable[Sequence[float]] = (),
    epsilon_tolerance: float = 0.005,
) -> float:
    """Smallest noise multiplier (to ``epsilon_tolerance``) such that ``steps`` sampled-Gaussian
    steps at ``sample_rate``, composed with ``prior_history`` (releases already made or planned),
    spend at most ``target_epsilon`` at ``target_delta`` under RDP.

    Calibrate with the ACTUAL number of noisy steps the run will take: a run that takes more steps
    than it was calibrated for overspends (a known bug in public DP-GAN code). The budget guard
    stops training before any step that would exceed the target anyway.

    Opacus's ``get_noise_multiplier`` cannot include a prior history (the transformer's release,
    feedback signals), hence this bisection.
    """
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise UserInputError(
            f"privacy.target_epsilon must be a finite number > 0, got {target_epsilon!r}"
        )
    target_delta = check_delta(target_delta)
    _check_run((1.0, sample_rate, steps))
    if steps < 1:
        raise UserInputError(f"cannot calibrate noise for {steps} steps; need at least one")
    prior = rdp_of(prior_history)
    prior_eps = rdp_to_epsilon(prior, target_delta)
    if prior_eps >= target_epsilon:
        raise UserInputError(
            f"the releases made before training already spend epsilon {prior_eps:.3f} >= "
            f"privacy.target_epsilon={target_epsilon}; raise the target or add more noise to "
            "those releases (privacy.release_noise_multiplier / privacy.signal_noise_multiplier)"
        )

    def eps_at(sigma: float) -> float:
        return rdp_to_epsilon(prior + steps * rdp_curve(sigma, sample_rate), target_delta)

    low, high = 0.0, 1.0
    while eps_at(high) > target_epsilon:
        low, high = high, 2 * high
        if high > MAX_NOISE_MULTIPLIER:
            raise UserInputError(
                f"privacy.target_epsilon={target_epsilon} cannot be reached with {steps} steps at "
                f"sample_rate {sample_rate:.4g}, even with noise_multiplier "
                f"{MAX_NOISE_MULTIPLIER:g}; raise the target, or take fewer steps "
                "(fewer epochs, smaller batches)"
            )
    while high - low > 1e-4 and target_epsilon - eps_at(high) > epsilon_tolerance:
        mid = (low + high) / 2
        if eps_at(mid) <= target_epsilon:
            high = mid
        else:
            low = mid
    return high


class RDPBudget:
    """Running RDP curve of everything charged so far, with a per-step "may I?" check.

    This is the hard stop: a caller asks :meth:`allows` before each noisy step and stops when the
    answer is no, so the total never passes ``target_epsilon`` (``None`` = no target: any step is
    allowed and only counted).
    """

    def __init__(self, *, target_epsilon: float | None, target_delta: float) -> None:
        self.target_epsilon = target_epsilon
        self.target_delta = check_delta(target_delta)
        self.rdp = np.zeros(len(RDP_ORDERS))

    def epsilon(self) -> float:
        return rdp_to_epsilon(self.rdp, self.target_delta)

    def epsilon_after(self, runs: Iterable[Sequence[float]]) -> float:
        return rdp_to_epsilon(self.rdp + rdp_of(runs), self.target_delta)

    def allows(self, runs: Iterable[Sequence[float]]) -> bool:
        if self.target_epsilon is None:
            return True
        return self.epsilon_after(runs) <= self.target_epsilon

    def charge(self, runs: Iterable[Sequence[float]]) -> None:
        self.rdp = self.rdp + rdp_of(runs)
