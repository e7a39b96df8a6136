"""With epsilon, delta AND sigma all fixed (Tao 2020's figures), the accountant decides how long
DP-SGD trains: ``privacy.training_length=budget``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conftest import TINY, compose_config
from dpshare.errors import UserInputError
from dpshare.privacy import compose_epsilon
from dpshare.privacy.accounting import max_steps_within_budget
from dpshare.privacy.plan import plan_privacy
from dpshare.train import train

BUDGET = [
    "privacy=fixed",
    "privacy.target_epsilon=1.0",
    "privacy.target_delta=1e-5",
    "privacy.noise_multiplier=2.0",
    "privacy.training_length=budget",
]


@pytest.mark.parametrize(
    ("sigma", "q", "eps", "prior"),
    [(6.0, 64 / 53_000, 0.5, []), (1.0, 0.01, 2.0, []), (2.0, 0.08, 1.0, [(20.0, 1.0, 2)])],
)
def test_budget_steps_are_the_most_that_fit(
    sigma: float, q: float, eps: float, prior: list[tuple[float, float, int]]
) -> None:
    steps = max_steps_within_budget(
        target_epsilon=eps,
        target_delta=1e-5,
        sample_rate=q,
        noise_multiplier=sigma,
        prior_history=prior,
    )
    assert steps >= 1
    assert compose_epsilon([*prior, (sigma, q, steps)], delta=1e-5) <= eps
    assert compose_epsilon([*prior, (sigma, q, steps + 1)], delta=1e-5) > eps


def test_more_noise_or_budget_buys_more_steps() -> None:
    def steps(sigma: float, eps: float) -> int:
        return max_steps_within_budget(
            target_epsilon=eps, target_delta=1e-5, sample_rate=0.01, noise_multiplier=sigma
        )

    assert steps(2.0, 1.0) < steps(4.0, 1.0)
    assert steps(2.0, 1.0) < steps(2.0, 2.0)
    assert steps(0.3, 0.1) == 0  # not even one step fits


def test_plan_takes_its_length_from_the_budget() -> None:
    cfg = compose_config([*TINY, *BUDGET])
    plan = plan_privacy(cfg.privacy, n_train=1750, batch_size=200, max_epochs=2)
    assert plan.training_length == "budget" and plan.budget_steps is not None
    assert plan.planned_steps == plan.budget_steps
    assert plan.max_epochs == math.ceil(plan.budget_steps / plan.steps_per_epoch)
    assert not plan.calibrated and plan.noise_multiplier == 2.0
    # the planned releases and every budget step fit; one more step would not
    history = [*plan.planned_history, (2.0, plan.sample_rate, plan.budget_steps)]
    assert compose_epsilon(history, delta=1e-5) <= 1.0
    history[-1] = (2.0, plan.sample_rate, plan.budget_steps + 1)
    assert compose_epsilon(history, delta=1e-5) > 1.0


def test_budget_max_epochs_caps_and_says_so() -> None:
    cfg = compose_config(
        [*TINY, *BUDGET, "privacy.noise_multiplier=4.0", "privacy.budget_max_epochs=1"]
    )
    plan = plan_privacy(cfg.privacy, n_train=1750, batch_size=200, max_epochs=2)
    assert plan.capped and plan.max_epochs == 1
    assert plan.planned_steps == plan.steps_per_epoch < (plan.budget_steps or 0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["privacy.noise_multiplier=null"], "needs privacy=fixed with both"),
        (["privacy.target_epsilon=null"], "needs privacy=fixed with both"),
        (["privacy.noise_multiplier=0.2", "privacy.target_epsilon=0.05"], "too small to take"),
        (["privacy.training_length=forever"], "choose one of"),
        (["privacy.budget_max_epochs=0"], "budget_max_epochs must be >= 1"),
    ],
)
def test_impossible_budget_lengths_are_user_errors(extra: list[str], message: str) -> None:
    cfg = compose_config([*TINY, *BUDGET, *extra])
    with pytest.raises(UserInputError, match=message):
        plan_privacy(cfg.privacy, n_train=1750, batch_size=200, max_epochs=2)


def test_controllers_refuse_a_budget_length() -> None:
    cfg = compose_config([*TINY, "privacy=pid", "privacy.training_length=budget"])
    with pytest.raises(UserInputError, match="privacy=pid"):
        plan_privacy(cfg.privacy, n_train=1750, batch_size=200, max_epochs=2)


def test_a_budget_run_trains_until_the_accountant_stops_it(tmp_path: Path) -> None:
    # sigma 4 at q ~0.11 fits a few dozen steps in epsilon 1: about 4 epochs, not TINY's 2
    cfg = compose_config(
        [*TINY, *BUDGET, "privacy.noise_multiplier=4.0", "privacy.transformer_fit=dp"],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert metrics["privacy/training_length"] == "budget"
    steps = metrics["privacy/budget_steps"]
    assert metrics["privacy/noisy_steps"] == steps == metrics["privacy/planned_steps"]
    assert steps > 2 * 8  # more than TINY's 2 epochs of int(1 / q) = 8 steps
    assert 0.95 <= metrics["privacy/epsilon_spent"] <= 1.0
    assert metrics["privacy/budget_capped"] == 0
