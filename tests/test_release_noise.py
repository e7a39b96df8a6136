"""privacy.release_budget_share: the pre-training Gaussian releases (transformer statistics,
class counts, mean embedding, controller moments) at a noise calibrated to a share of the
budget instead of the fixed privacy.release_noise_multiplier (docs/privacy.md "Release noise")."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import TINY, compose_config
from dpshare.errors import UserInputError
from dpshare.privacy.accounting import rdp_of, rdp_to_epsilon
from dpshare.privacy.plan import plan_privacy
from dpshare.train import train
from test_mean_embedding import QUICK_EVAL

KW = dict(n_train=2000, batch_size=200, max_epochs=5)


def _plan(*overrides: str, **kw: int):
    cfg = compose_config([*TINY, "privacy=fixed", *overrides])
    return plan_privacy(cfg.privacy, **(KW | kw))


def _releases_epsilon(plan) -> float:
    """What the planned releases at the release sigma spend on their own (float64)."""
    runs = [r for r in plan.planned_history if r[1] == 1.0 and r[2] == 1]
    return rdp_to_epsilon(rdp_of(runs), 1e-5)


def test_without_a_share_the_releases_keep_the_fixed_multiplier() -> None:
    for eps in (1.0, 10.0):
        plan = _plan(f"privacy.target_epsilon={eps}")
        assert plan.release_noise_multiplier == 20.0
        assert plan.planned_history == [(20.0, 1.0, 1)] * 2  # transformer + class counts


@pytest.mark.parametrize("releases", [0, 1, 3])
def test_a_share_calibrates_the_release_noise_to_the_budget(releases: int) -> None:
    share = 0.3
    sigmas = {}
    for eps in (1.0, 10.0):
        plan = _plan(
            f"privacy.target_epsilon={eps}",
            f"privacy.release_budget_share={share}",
            method_releases=releases,
        )
        sigma = plan.release_noise_multiplier
        assert plan.planned_history == [(sigma, 1.0, 1)] * (2 + releases)
        spent = _releases_epsilon(plan)
        # the releases alone spend their share, to the calibration's tolerance, and no more
        assert spent <= share * eps
        assert spent >= share * eps - 0.01
        # DP-SGD is calibrated for what is left: the whole plan stays within the target
        assert plan.calibrated and plan.noise_multiplier > 0
        sigmas[eps] = sigma
    # ten times the budget, far less release noise (the fixed multiplier is the same at both)
    assert sigmas[10.0] < sigmas[1.0] / 5
    # about today's fixed 20 at epsilon 1: a share of 0.3 is the default's cost there
    assert 15 < sigmas[1.0] < 30


def test_a_share_counts_the_controllers_moments_release() -> None:
    cfg = compose_config(
        [
            *TINY,
            "privacy=pid",
            "privacy.target_epsilon=10",
            "privacy.release_budget_share=0.2",
            "privacy.pid.signal_weights.frechet_distance=1.0",
        ]
    )
    plan = plan_privacy(cfg.privacy, **KW)
    sigma = plan.release_noise_multiplier
    assert plan.planned_history.count((sigma, 1.0, 1)) == 3  # transformer, counts, moments
    assert 2.0 - 0.01 <= _releases_epsilon(plan) <= 2.0


@pytest.mark.parametrize("share", ["0", "1", "-0.2", "1.5", "nan"])
def test_a_share_outside_zero_one_is_refused(share: str) -> None:
    with pytest.raises(UserInputError, match=r"release_budget_share must be in \(0, 1\)"):
        _plan("privacy.target_epsilon=1", f"privacy.release_budget_share={share}")


def test_a_share_needs_a_target_epsilon() -> None:
    with pytest.raises(UserInputError, match="share of privacy.target_epsilon, which is null"):
        _plan(
            "privacy.target_epsilon=null",
            "privacy.noise_multiplier=1.0",
            "privacy.release_budget_share=0.3",
        )


def test_a_run_releases_at_the_calibrated_noise_and_stays_within_budget(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = compose_config(
        [
            *TINY,
            "method=standard_gan",
            "privacy=fixed",
            "privacy.target_epsilon=10.0",
            "privacy.release_budget_share=0.3",
            "scale.max_epochs=1",
            *QUICK_EVAL,
        ],
        run,
    )
    metrics = train(cfg)
    ledger = json.loads((run / "privacy_ledger.json").read_text())
    sigma = ledger["plan"]["release_noise_multiplier"]
    assert math.isfinite(sigma) and sigma < 20.0 / 5
    releases = [e for e in ledger["entries"] if e["history"] == [[sigma, 1.0, 1]]]
    assert {e["module"] for e in releases} >= {"transformer", "label_distribution"}
    assert 9.0 < metrics["privacy/epsilon_spent"] <= 10.0
