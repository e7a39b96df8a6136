"""Accounting: golden values, calibration round trips, varying-sigma composition, the ledger's
composition over every mechanism, and its hard stop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis

from dpshare.errors import UserInputError
from dpshare.privacy import (
    BudgetExceededError,
    PrivacyLedger,
    calibrate_noise_multiplier,
    compose_epsilon,
)
from dpshare.privacy.accounting import RDP_ORDERS
from dpshare.privacy.ledger import SUBSAMPLED_GAUSSIAN
from dpshare.privacy.signals import frechet_distance, release_moments


def test_golden_rdp_value_from_opacus_tests() -> None:
    # RDP, sigma 1.5, q 0.04, 90 epochs (2250 steps), delta 1e-5 -> eps ~ 7.33 (Opacus tests)
    eps = compose_epsilon([(1.5, 0.04, 2250)], delta=1e-5)
    assert eps == pytest.approx(7.33, abs=0.01)


def test_prv_is_a_valid_tighter_bound() -> None:
    rdp = compose_epsilon([(1.5, 0.04, 2250)], delta=1e-5, accountant="rdp")
    prv = compose_epsilon([(1.5, 0.04, 2250)], delta=1e-5, accountant="prv")
    assert 6.0 < prv <= rdp


def test_no_noise_is_infinite_and_empty_is_zero() -> None:
    assert compose_epsilon([(0.0, 0.1, 10)], delta=1e-5) == math.inf
    assert compose_epsilon([], delta=1e-5) == 0.0


@pytest.mark.parametrize(
    ("target", "q", "steps"), [(1.0, 0.0357, 560), (0.5, 0.01, 3000), (8.0, 0.1, 200)]
)
def test_calibrate_then_account_round_trip(target: float, q: float, steps: int) -> None:
    sigma = calibrate_noise_multiplier(
        target_epsilon=target, target_delta=1e-5, sample_rate=q, steps=steps
    )
    eps = compose_epsilon([(sigma, q, steps)], delta=1e-5)
    assert target - 0.01 <= eps <= target
    # a slightly smaller sigma would overspend: the calibration is not needlessly loose
    assert compose_epsilon([(sigma * 0.97, q, steps)], delta=1e-5) > target


def test_calibration_accounts_for_prior_releases() -> None:
    prior = [(5.0, 1.0, 1)]
    alone = calibrate_noise_multiplier(
        target_epsilon=2.0, target_delta=1e-5, sample_rate=0.02, steps=1000
    )
    with_prior = calibrate_noise_multiplier(
        target_epsilon=2.0, target_delta=1e-5, sample_rate=0.02, steps=1000, prior_history=prior
    )
    assert with_prior > alone
    assert compose_epsilon([*prior, (with_prior, 0.02, 1000)], delta=1e-5) <= 2.0


def test_calibration_refuses_impossible_budgets() -> None:
    with pytest.raises(UserInputError, match="target_epsilon"):
        calibrate_noise_multiplier(target_epsilon=-1, target_delta=1e-5, sample_rate=0.1, steps=9)
    with pytest.raises(UserInputError, match="already spend"):
        calibrate_noise_multiplier(
            target_epsilon=0.1,
            target_delta=1e-5,
            sample_rate=0.1,
            steps=10,
            prior_history=[(0.5, 1.0, 1)],
        )
    with pytest.raises(UserInputError, match="target_delta"):
        compose_epsilon([(1.0, 0.1, 1)], delta=1.5)


def test_varying_sigma_composition_equals_direct_rdp() -> None:
    schedule = [(3.0, 0.05, 100), (2.0, 0.05, 50), (1.2, 0.05, 200), (2.5, 0.02, 10)]
    direct = sum(
        np.asarray(
            rdp_analysis.compute_rdp(q=q, noise_multiplier=s, steps=n, orders=list(RDP_ORDERS))
        )
        for s, q, n in schedule
    )
    expected, _ = rdp_analysis.get_privacy_spent(orders=list(RDP_ORDERS), rdp=direct, delta=1e-6)
    assert compose_epsilon(schedule, delta=1e-6) == pytest.approx(expected, rel=1e-9)
    # and equals Opacus's own accountant stepped one step at a time through the schedule
    acc = RDPAccountant()
    for s, q, n in schedule:
        for _ in range(n):
            acc.step(noise_multiplier=s, sample_rate=q)
    assert compose_epsilon(schedule, delta=1e-6) == pytest.approx(
        acc.get_epsilon(delta=1e-6, alphas=list(RDP_ORDERS)), rel=1e-9
    )


def test_ledger_composes_every_mechanism() -> None:
    ledger = PrivacyLedger(target_epsilon=None, target_delta=1e-5, n_records=10_000)
    ledger.record_gaussian(
        module="transformer",
        purpose="stats",
        records=10_000,
        noise_multiplier=5.0,
        l2_sensitivity=3.0,
    )
    sgd = ledger.open_dp_sgd(
        module="discriminator",
        purpose="dp-sgd",
        records=10_000,
        sample_rate=0.05,
        poisson_sampling=True,
    )
    for sigma in [2.0] * 30 + [1.5] * 20:
        ledger.step(sgd, sigma)
    expected = compose_epsilon([(5.0, 1.0, 1), (2.0, 0.05, 30), (1.5, 0.05, 20)], delta=1e-5)
    assert ledger.epsilon_spent() == pytest.approx(expected)
    assert sgd.steps == 50
    assert sgd.history == [[2.0, 0.05, 30], [1.5, 0.05, 20]]
    record = ledger.to_dict()
    assert record["entries"][1]["noise_multiplier_min"] == 1.5
    assert record["epsilon_by_mechanism"]["transformer"] < record["epsilon_spent"]


def test_feedback_signal_on_real_data_raises_the_total() -> None:
    def run(with_signal: bool) -> float:
        ledger = PrivacyLedger(target_delta=1e-5)
        sgd = ledger.open_dp_sgd(
            module="d", purpose="x", records=1000, sample_rate=0.05, poisson_sampling=True
        )
        signal = ledger.open_dp_sgd(
            module="controller_signal",
            purpose="noisy count",
            records=1000,
            sample_rate=0.05,
            poisson_sampling=True,
            mechanism=SUBSAMPLED_GAUSSIAN,
        )
        for step in range(100):
            ledger.step(sgd, 1.0)
            if with_signal and step % 10 == 0:
                ledger.step(signal, 2.0)
        return ledger.epsilon_spent()

    assert run(True) > run(False) > 0


def test_hard_stop_refuses_the_step_that_would_overspend() -> None:
    ledger = PrivacyLedger(target_epsilon=1.0, target_delta=1e-5)
    entry = ledger.open_dp_sgd(
        module="d", purpose="x", records=1000, sample_rate=0.05, poisson_sampling=True
    )
    taken = 0
    while ledger.allows([(entry, 2.0)]):
        ledger.step(entry, 2.0)
        taken += 1
    assert 10 < taken < 5000
    assert ledger.epsilon_spent() <= 1.0
    assert compose_epsilon([(2.0, 0.05, taken + 1)], delta=1e-5) > 1.0
    with pytest.raises(BudgetExceededError):
        ledger.step(entry, 2.0)
    assert ledger.refused_steps == 1 and entry.steps == taken


def test_non_private_access_makes_epsilon_infinite_and_poisson_flag() -> None:
    ledger = PrivacyLedger()
    ledger.open_dp_sgd(module="d", purpose="x", records=10, sample_rate=0.5, poisson_sampling=False)
    assert ledger.approximate
    ledger.record_non_private(module="t", purpose="raw", records=10)
    assert ledger.epsilon_spent() == math.inf
    assert ledger.to_dict()["epsilon_spent"] == "inf"


def test_delta_at_least_one_over_n_is_flagged() -> None:
    with pytest.warns(UserWarning, match="1/n"):
        ledger = PrivacyLedger(target_delta=1e-3, n_records=5000)
    assert ledger.delta_warning and ledger.to_dict()["delta_ge_1_over_n"]
    assert not PrivacyLedger(target_delta=1e-6, n_records=500).delta_warning


@settings(max_examples=25, deadline=None)
@given(
    sigmas=st.lists(st.floats(0.5, 5.0), min_size=1, max_size=60),
    target=st.floats(0.2, 3.0),
)
def test_budget_never_exceeded_for_any_sigma_sequence(sigmas: list[float], target: float) -> None:
    ledger = PrivacyLedger(target_epsilon=target, target_delta=1e-5)
    entry = ledger.open_dp_sgd(
        module="d", purpose="x", records=1000, sample_rate=0.2, poisson_sampling=True
    )
    for sigma in sigmas * 20:
        if not ledger.allows([(entry, sigma)]):
            break
        ledger.step(entry, sigma)
    assert ledger.epsilon_spent() <= target + 1e-9


def test_moments_release_is_close_with_little_noise_and_fd_is_zero_on_itself() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 4)) * 0.3
    m = release_moments(x, clip_norm=4.0, noise_multiplier=0.5, rng=rng)
    assert np.allclose(m.mean, x.mean(axis=0), atol=0.01)
    assert np.allclose(m.cov, np.cov(x, rowvar=False), atol=0.01)
    assert m.l2_sensitivity == pytest.approx(math.sqrt(3))
    assert frechet_distance(m.mean, m.cov, m.mean, m.cov) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(np.zeros(4), np.eye(4), np.ones(4), np.eye(4)) == pytest.approx(4.0)


def test_adaptive_schedule_is_accounted_at_its_floor() -> None:
    ledger = PrivacyLedger(target_delta=1e-5)
    entry = ledger.open_dp_sgd(
        module="d",
        purpose="x",
        records=1000,
        sample_rate=0.05,
        poisson_sampling=True,
        adaptive_noise_floor=1.0,
    )
    for sigma in [3.0] * 50 + [1.5] * 50:
        ledger.step(entry, sigma)
    assert entry.history == [[3.0, 0.05, 50], [1.5, 0.05, 50]]  # what was used, for the record
    assert ledger.epsilon_spent() == pytest.approx(compose_epsilon([(1.0, 0.05, 100)], delta=1e-5))
    assert ledger.realized_epsilon() < ledger.epsilon_spent()
