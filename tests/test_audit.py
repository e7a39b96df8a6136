"""Empirical privacy audit: the pure bounds on known answers, and the audit of DP-SGD itself.

The audit must be able to fail: with the noise switched off, a claimed epsilon of 1 is refuted.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from scipy import special, stats

from conftest import CONF_DIR, PYTHON, subprocess_env
from dpshare.audit import canary_scores, make_task, run_audit, summarize, train_dp_sgd
from dpshare.config.audit_schema import AuditConfig, register_audit_config
from dpshare.errors import UserInputError
from dpshare.privacy.audit import (
    ONE_RUN_METHOD,
    AuditResult,
    audit_one_run,
    clopper_pearson,
    clopper_pearson_epsilon_lower_bound,
    guess_counts,
    one_run_epsilon_lower_bound,
    one_run_guesses,
    one_run_p_value,
)

# --------------------------------------------------------------------------- Clopper-Pearson


@pytest.mark.parametrize(
    ("k", "n", "alpha"), [(3, 10, 0.05), (50, 100, 0.05), (1, 1000, 0.1), (97, 100, 0.01)]
)
def test_clopper_pearson_equals_beta_quantiles(k: int, n: int, alpha: float) -> None:
    lo, hi = clopper_pearson(k, n, alpha)
    assert lo == pytest.approx(stats.beta.ppf(alpha / 2, k, n - k + 1), rel=1e-12)
    assert hi == pytest.approx(stats.beta.ppf(1 - alpha / 2, k + 1, n - k), rel=1e-12)
    assert 0 < lo < k / n < hi < 1


def test_clopper_pearson_edges_have_closed_forms() -> None:
    # k = 0: P[Bin(n, hi) = 0] = alpha/2  ->  hi = 1 - (alpha/2)^(1/n); k = n mirrors it
    assert clopper_pearson(0, 10, 0.05) == (0.0, pytest.approx(1 - 0.025**0.1, rel=1e-12))
    assert clopper_pearson(10, 10, 0.05) == (pytest.approx(0.025**0.1, rel=1e-12), 1.0)
    assert clopper_pearson(0, 10, 0.05)[1] == pytest.approx(0.30850, abs=1e-5)


@pytest.mark.parametrize(
    ("k", "n", "alpha"),
    [(-1, 10, 0.05), (11, 10, 0.05), (1, 0, 0.05), (1, 10, 0.0), (1, 10, 1.0), (1.5, 10, 0.05)],
)
def test_clopper_pearson_rejects_bad_input(k: float, n: int, alpha: float) -> None:
    with pytest.raises(ValueError):
        clopper_pearson(k, n, alpha)  # type: ignore[arg-type]


# ------------------------------------------------------------------ one run (Steinke et al.)


def _one_run(r: int, v: int, *, m: int = 1000, delta: float = 0.0, beta: float = 0.05) -> float:
    return one_run_epsilon_lower_bound(
        n_guesses=r, n_correct=v, n_canaries=m, delta=delta, beta=beta
    )


@pytest.mark.parametrize(("r", "expected"), [(10, 1.05187), (100, 3.49297), (1000, 5.80907)])
def test_all_correct_guesses_match_closed_form(r: int, expected: float) -> None:
    # delta = 0, v = r: p-value q^r = beta  ->  q = beta^(1/r), eps = log(q / (1 - q))
    q = 0.05 ** (1 / r)
    assert _one_run(r, r) == pytest.approx(math.log(q / (1 - q)), abs=1e-7)
    assert _one_run(r, r) == pytest.approx(expected, abs=1e-5)


def test_all_correct_bound_grows_with_the_number_of_guesses() -> None:
    bounds = [_one_run(r, r) for r in (5, 10, 50, 100, 200, 1000)]
    assert bounds == sorted(bounds)
    assert bounds[0] < 0.5 < 5.0 < bounds[-1]


@pytest.mark.parametrize("r", [10, 100, 1000])
def test_chance_guessing_gives_zero(r: int) -> None:
    assert _one_run(r, r // 2) == 0.0
    assert _one_run(r, r // 2, delta=1e-5) == 0.0
    assert _one_run(r, 0) == 0.0


@pytest.mark.parametrize(("r", "v"), [(100, 70), (100, 90), (200, 199), (1000, 600)])
def test_delta_zero_bound_is_logit_of_one_sided_clopper_pearson(r: int, v: int) -> None:
    # P[Bin(r, q) >= v] < beta  <=>  q < Beta(beta; v, r - v + 1): the one-sided CP lower bound
    expected = special.logit(stats.beta.ppf(0.05, v, r - v + 1))
    assert _one_run(r, v) == pytest.approx(expected, abs=1e-7)


def test_delta_bound_hand_computed_single_canary() -> None:
    # m = r = v = 1: p = q + 2 delta (1 - q). With delta = 0.1, beta = 0.9:
    # q (1 - 0.2) = 0.9 - 0.2  ->  q = 0.875, eps = log(0.875 / 0.125) = log 7
    bound = one_run_epsilon_lower_bound(n_guesses=1, n_correct=1, n_canaries=1, delta=0.1, beta=0.9)
    assert bound == pytest.approx(math.log(7), abs=1e-7)


def test_delta_p_value_hand_computed_two_canaries() -> None:
    # m = r = v = 2: p = q^2 + 2*2*delta * max(P[W=1] / 1, P[W<=1] / 2)
    eps, delta = 1.0, 0.01
    q = math.exp(eps) / (1 + math.exp(eps))
    expected = q**2 + 4 * delta * max(2 * q * (1 - q), (1 - q**2) / 2)
    p = one_run_p_value(n_guesses=2, n_correct=2, n_canaries=2, epsilon=eps, delta=delta)
    assert p == pytest.approx(expected, rel=1e-12)


def test_one_run_bound_is_monotone() -> None:
    in_correct = [_one_run(200, v) for v in range(100, 201, 10)]
    assert in_correct == sorted(in_correct)
    assert in_correct[0] == 0.0 < in_correct[-1]
    in_delta = [_one_run(200, 190, delta=d) for d in (0.0, 1e-6, 1e-4, 1e-3)]
    assert in_delta == sorted(in_delta, reverse=True)
    assert in_delta[0] > in_delta[-1]
    in_confidence = [_one_run(200, 190, beta=b) for b in (0.2, 0.05, 0.01, 0.001)]
    assert in_confidence == sorted(in_confidence, reverse=True)
    in_canaries = [_one_run(200, 190, m=m, delta=1e-4) for m in (200, 1000, 10000)]
    assert in_canaries == sorted(in_canaries, reverse=True)  # delta is charged 2 m times


def test_one_run_rejects_inconsistent_counts() -> None:
    with pytest.raises(ValueError, match="n_correct <= n_guesses <= n_canaries"):
        _one_run(10, 11)
    with pytest.raises(ValueError, match="n_correct <= n_guesses <= n_canaries"):
        _one_run(100, 50, m=10)
    with pytest.raises(ValueError, match="beta"):
        _one_run(10, 10, beta=0.0)


# ---------------------------------------------------------------- many runs (Jagielski 2020)


def _cp_bound(tp: int, fp: int, tn: int, fn: int, delta: float = 0.0) -> float:
    return clopper_pearson_epsilon_lower_bound(
        true_positives=tp,
        false_positives=fp,
        true_negatives=tn,
        false_negatives=fn,
        delta=delta,
        alpha=0.05,
    )


def test_jagielski_bound_without_errors_has_closed_form() -> None:
    # FP = FN = 0 over 100 + 100 trials: both upper rates u = 1 - 0.025^(1/100)
    u = 1 - 0.025 ** (1 / 100)
    assert _cp_bound(100, 0, 100, 0) == pytest.approx(math.log((1 - u) / u), abs=1e-9)
    assert _cp_bound(100, 0, 100, 0) == pytest.approx(3.28135, abs=1e-5)
    assert _cp_bound(100, 0, 100, 0, delta=0.01) == pytest.approx(
        math.log((0.99 - u) / u), abs=1e-9
    )


def test_jagielski_bound_golden_value_with_errors() -> None:
    # FNR = 10/100 -> FNR_hi = Beta(0.975; 11, 90) = 0.17622; FPR_hi = 1 - 0.025^(1/100)
    fnr_hi = stats.beta.ppf(0.975, 11, 90)
    fpr_hi = 1 - 0.025 ** (1 / 100)
    assert fnr_hi == pytest.approx(0.17622, abs=1e-5)
    assert _cp_bound(90, 0, 100, 10) == pytest.approx(math.log((1 - fnr_hi) / fpr_hi), abs=1e-9)
    assert _cp_bound(90, 0, 100, 10) == pytest.approx(3.12438, abs=1e-5)


def test_jagielski_bound_is_zero_at_chance_and_symmetric() -> None:
    assert _cp_bound(50, 50, 50, 50) == 0.0
    assert _cp_bound(0, 0, 100, 0) == 0.0  # no positives: FNR unbounded
    assert _cp_bound(90, 0, 100, 10) == pytest.approx(_cp_bound(100, 10, 90, 0), abs=1e-12)
    assert _cp_bound(95, 5, 95, 5) < _cp_bound(99, 1, 99, 1) < _cp_bound(100, 0, 100, 0)


# ------------------------------------------------------------------------ guesses and result


def test_guesses_take_top_and_bottom_scores() -> None:
    scores = np.array([0.5, -2.0, 3.0, 0.1, 9.0, -1.0])
    guesses = one_run_guesses(scores, k_positive=2, k_negative=1)
    assert guesses.tolist() == [0, -1, 1, 0, 1, 0]
    included = np.array([True, False, True, False, False, True])
    counts = guess_counts(guesses, included)
    assert counts == {
        "true_positives": 1,
        "false_positives": 1,
        "true_negatives": 1,
        "false_negatives": 0,
        "abstentions": 3,
        "n_guesses": 3,
        "n_correct": 2,
        "n_canaries": 6,
        "n_included": 3,
    }


def test_ties_are_broken_at_random_not_by_index() -> None:
    scores = np.zeros(1000)
    chosen = [
        np.flatnonzero(one_run_guesses(scores, k_positive=100, k_negative=0, seed=s) == 1)
        for s in range(3)
    ]
    for picks in chosen:
        assert len(picks) == 100
        assert 300 < picks.mean() < 700  # not the last (or first) 100 indices
    assert set(chosen[0]) != set(chosen[1])


def test_audit_result_checks_claim_else_theory() -> None:
    scores = np.r_[np.ones(60), np.zeros(40)]
    included = scores > 0.5
    kwargs = {"k_positive": 30, "k_negative": 30, "delta": 1e-5, "confidence": 0.95}
    refuted = audit_one_run(
        scores, included, theoretical_epsilon=10.0, claimed_epsilon=1.0, **kwargs
    )
    assert refuted.counts["n_correct"] == 60 and refuted.method == ONE_RUN_METHOD
    assert refuted.epsilon_lower_bound == pytest.approx(_one_run(60, 60, m=100, delta=1e-5))
    assert refuted.epsilon_lower_bound > 1.0 and refuted.violation
    assert not audit_one_run(scores, included, theoretical_epsilon=10.0, **kwargs).violation
    record = refuted.to_dict()
    assert record["epsilon_confidence_interval"] == [refuted.epsilon_lower_bound, math.inf]
    assert record["epsilon_checked"] == 1.0 and record["violation"] is True
    assert record["guess_accuracy"] == 1.0
    assert record["guess_accuracy_lower_bound"] == pytest.approx(0.05 ** (1 / 60), rel=1e-9)
    json.dumps(record)  # JSON-ready (inf is serialised by the record writer)


def test_audit_result_without_noise_and_without_claim_is_no_violation() -> None:
    result = AuditResult(
        epsilon_lower_bound=4.0,
        confidence=0.95,
        counts={},
        method=ONE_RUN_METHOD,
        theoretical_epsilon=math.inf,
        delta=1e-5,
    )
    assert not result.violation  # an infinite epsilon claims nothing to refute


# ------------------------------------------------------------------- the audit of DP-SGD

# ~0.2 s on a CPU: 200 records, 200 canaries, 100 Poisson steps at q = 0.05, 30 + 30 guesses.
# Noise off: 59-60 of 60 guesses correct over seeds 0-19 (lower bound 2.49-2.97); noise on
# (sigma = 1, theoretical epsilon 4.04): lower bound 0.00-0.50 over the same seeds.
SMALL = {
    "n_train": 200,
    "n_canaries": 200,
    "k_positive": 30,
    "k_negative": 30,
    "sample_rate": 0.05,
    "epochs": None,
    "steps": 100,
}


def _audit(tmp_path: Path, **overrides: object) -> dict:
    return run_audit(AuditConfig(output_dir=str(tmp_path), **{**SMALL, **overrides}))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correct_dp_sgd_stays_below_theory(tmp_path: Path, seed: int) -> None:
    record = _audit(tmp_path, noise_multiplier=1.0, seed=seed)
    assert record["theoretical_epsilon"] == pytest.approx(4.0383, abs=1e-3)  # RDP, q .05, T 100
    assert 0.0 <= record["epsilon_lower_bound"] <= record["theoretical_epsilon"]
    assert record["violation"] is False
    assert record["parameters"]["steps_taken"] == 100  # accountant counted every noisy step
    assert record["counts"]["n_guesses"] == 60
    saved = json.loads((tmp_path / "audit.json").read_text())
    assert saved["epsilon_lower_bound"] == pytest.approx(record["epsilon_lower_bound"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_audit_refutes_small_claim_when_noise_is_off(tmp_path: Path, seed: int) -> None:
    record = _audit(tmp_path, noise_multiplier=0.0, claimed_epsilon=1.0, seed=seed)
    assert record["theoretical_epsilon"] == math.inf
    assert record["counts"]["n_correct"] >= 58
    assert record["epsilon_lower_bound"] > 2.0  # well above the claim of 1
    assert record["violation"] is True
    saved = json.loads((tmp_path / "audit.json").read_text())
    assert saved["violation"] is True and saved["theoretical_epsilon"] == "inf"


def test_audit_is_reproducible(tmp_path: Path) -> None:
    first = _audit(tmp_path / "a", noise_multiplier=1.0, seed=3)
    second = _audit(tmp_path / "b", noise_multiplier=1.0, seed=3)
    assert first["counts"] == second["counts"]
    assert first["epsilon_lower_bound"] == second["epsilon_lower_bound"]
    line = summarize(first)
    assert line.startswith(
        f"empirical epsilon lower bound {first['epsilon_lower_bound']:.3f} (95% conf) vs "
        f"theoretical epsilon {first['theoretical_epsilon']:.3f} (delta=1e-05)"
    )
    assert "\n" not in line


def test_dp_sgd_steps_are_all_noisy_and_accounted_even_when_batches_are_empty() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 4)).astype(np.float32)
    y = (rng.random(20) < 0.5).astype(np.float32)
    kwargs = {
        "max_grad_norm": 1.0,
        "sample_rate": 0.01,
        "steps": 30,
        "expected_batch_size": 1,
        "learning_rate": 1.0,
        "seed": 0,
    }  # ~74% of the Poisson batches are empty
    model, accountant = train_dp_sgd(x, y, noise_multiplier=1.0, **kwargs)
    assert accountant.history == [(1.0, 0.01, 30)]
    assert torch.count_nonzero(model.weight) == 4  # noise reached every coordinate
    quiet, _ = train_dp_sgd(x, y, noise_multiplier=0.0, **kwargs)
    assert not torch.equal(quiet.weight, model.weight)


def test_without_noise_only_included_canaries_move() -> None:
    task = make_task(n_train=200, n_features=5, n_canaries=100, canary_norm=10.0, seed=0)
    x, y = task.training_set()
    model, _ = train_dp_sgd(
        x,
        y,
        noise_multiplier=0.0,
        max_grad_norm=1.0,
        sample_rate=0.05,
        steps=100,
        expected_batch_size=12,
        learning_rate=1.0,
        seed=0,
    )
    canary_weights = model.weight.detach().numpy()[0, 5:]
    assert np.all(canary_weights[~task.included] == 0.0)  # canaries do not interfere
    scores = canary_scores(model, task.canary_x, task.canary_y)
    assert np.all(scores[~task.included] == 0.0)
    assert np.mean(scores[task.included] > 0) >= 0.95  # the rest were never sampled


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"noise_multiplier": -1.0}, "noise_multiplier=-1.0 must be >= 0"),
        ({"sample_rate": 0.0}, "sample_rate=0.0 must lie in (0, 1]"),
        ({"sample_rate": 1.5}, "sample_rate=1.5 must lie in (0, 1]"),
        ({"max_grad_norm": 0.0}, "max_grad_norm=0.0 must be > 0"),
        ({"k_positive": 150, "k_negative": 100}, "k_positive + k_negative = 250 exceeds"),
        ({"confidence": 1.0}, "confidence=1.0 must lie in (0, 1)"),
        ({"target_delta": 0.0}, "target_delta=0.0 must lie in (0, 1)"),
        ({"steps": 0}, "steps=0 must be >= 1"),
        ({"steps": None, "epochs": None}, "epochs=None must be >= 1, or set steps"),
        ({"claimed_epsilon": -1.0}, "claimed_epsilon=-1.0 must be >= 0"),
    ],
)
def test_bad_input_raises_user_input_error(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(UserInputError) as info:
        _audit(tmp_path, **overrides)
    assert message in str(info.value)
    assert not (tmp_path / "audit.json").exists()


# -------------------------------------------------------------------- config and command line


def test_config_composes_and_rejects_typos() -> None:
    register_audit_config()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("audit", overrides=["noise_multiplier=0", "steps=50"])
        assert cfg.noise_multiplier == 0.0 and cfg.steps == 50 and cfg.claimed_epsilon is None
        assert set(cfg) == set(AuditConfig.__dataclass_fields__)
        with pytest.raises(ConfigCompositionException):
            compose("audit", overrides=["noise_multiplyer=0"])
        with pytest.raises(ConfigCompositionException):
            compose("audit", overrides=["n_canaries=many"])


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = subprocess_env()
    env["DPSHARE_OUTPUT"] = str(cwd)
    return subprocess.run(
        [PYTHON, "-m", "dpshare.audit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_audit_json_and_prints_summary(tmp_path: Path) -> None:
    args = [f"{k}={'null' if v is None else v}" for k, v in SMALL.items()]
    out = _cli([*args, "noise_multiplier=0", "claimed_epsilon=1"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "empirical epsilon lower bound " in out.stdout
    assert "(95% conf) vs theoretical epsilon inf" in out.stdout
    assert "violation: YES" in out.stdout
    (path,) = tmp_path.glob("audits/*/audit.json")
    record = json.loads(path.read_text())
    assert record["violation"] is True and record["epsilon_lower_bound"] > 1.0
    assert (path.parent / ".hydra" / "config.yaml").exists()


def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    out = _cli(["k_positive=600", "k_negative=600"], tmp_path)
    assert out.returncode == 2
    assert (
        "error: k_positive + k_negative = 1200 exceeds n_canaries=1000; lower the guesses or "
        "raise n_canaries" in out.stderr
    )
    assert "Traceback" not in out.stderr
    assert not list(tmp_path.glob("audits/*/audit.json"))
