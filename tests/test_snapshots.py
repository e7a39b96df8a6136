"""Budget snapshots (``privacy.snapshots``): more (epsilon, delta) points from one noisy
trajectory, each with a complete record whose ledger holds exactly the steps its budget allows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import TINY, compose_config
from dpshare.errors import UserInputError
from dpshare.privacy import compose_epsilon
from dpshare.privacy.accounting import max_steps_within_budget
from dpshare.privacy.ledger import PrivacyLedger
from dpshare.privacy.plan import plan_privacy
from dpshare.report import load_records
from dpshare.snapshots import SNAPSHOT_DIR
from dpshare.train import train, train_method

# sigma 1.5 on ~1,750 train rows, batch 200: the run's own point (epsilon 3) allows the most
# steps (58), the snapshots 3 and 14
BUDGET = [
    "privacy=fixed",
    "privacy.target_epsilon=3.0",
    "privacy.target_delta=1e-4",
    "privacy.noise_multiplier=1.5",
    "privacy.training_length=budget",
    "eval.models=[logistic_regression]",
    "eval.primary_model=logistic_regression",
    "eval.fidelity=[]",
    "eval.attacks=[]",
]
SNAPS = "privacy.snapshots=[{target_epsilon: 1.0},{target_epsilon: 2.0, target_delta: 1e-5}]"


def _steps(eps: float, delta: float, plan) -> int:  # type: ignore[no-untyped-def]
    return max_steps_within_budget(
        target_epsilon=eps,
        target_delta=delta,
        sample_rate=plan.sample_rate,
        noise_multiplier=plan.noise_multiplier,
        prior_history=plan.planned_history,
    )


def test_plan_resolves_each_snapshot_budget() -> None:
    cfg = compose_config([*TINY, *BUDGET, SNAPS])
    plan = plan_privacy(cfg.privacy, n_train=1750, batch_size=200, max_epochs=2)
    assert [(s.target_epsilon, s.target_delta) for s in plan.snapshots] == [
        (1.0, 1e-4),  # the run's delta when the entry names none
        (2.0, 1e-5),
    ]
    for snap in plan.snapshots:
        assert snap.budget_steps == _steps(snap.target_epsilon, snap.target_delta, plan)
        assert snap.steps == min(snap.budget_steps, plan.planned_steps)
        assert 0 < snap.steps < plan.planned_steps and not snap.capped


def test_a_cap_below_a_snapshot_budget_is_flagged() -> None:
    cfg = compose_config([*TINY, *BUDGET, SNAPS, "privacy.budget_max_epochs=1"])
    plan = plan_privacy(cfg.privacy, n_train=1750, batch_size=200, max_epochs=2)
    capped = [s for s in plan.snapshots if s.budget_steps > plan.planned_steps]
    assert capped and all(s.capped and s.steps == plan.planned_steps for s in capped)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["privacy.training_length=epochs"], "training_length=budget"),
        (["privacy.snapshots=[{target_epsilon: -1}]"], "finite number > 0"),
        (["privacy.snapshots=[{epsilon: 1}]"], "target_epsilon"),
        (["privacy.snapshots=[{target_epsilon: 1, sigma: 2}]"], "unknown key"),
        (["privacy.snapshots=[{target_epsilon: 1, target_delta: 2}]"], "delta"),
    ],
)
def test_bad_snapshot_settings_are_clear_errors(extra: list[str], match: str) -> None:
    cfg = compose_config([*TINY, *BUDGET, SNAPS, *extra])
    with pytest.raises(UserInputError, match=match):
        plan_privacy(cfg.privacy, n_train=1750, batch_size=200, max_epochs=2)


def test_ledger_snapshot_is_a_frozen_copy_at_another_target() -> None:
    ledger = PrivacyLedger(target_epsilon=5.0, target_delta=1e-5, n_records=1000)
    entry = ledger.open_dp_sgd(
        module="d", purpose="t", records=1000, sample_rate=0.1, poisson_sampling=True
    )
    for _ in range(30):
        ledger.step(entry, 2.0)
    snap = ledger.snapshot(target_epsilon=1.5, target_delta=1e-4)
    ledger.step(entry, 2.0)  # later steps do not reach the copy
    assert snap.entries[0].steps == 30 and ledger.entries[0].steps == 31
    assert snap.target_epsilon == 1.5 and snap.target_delta == 1e-4
    assert snap.epsilon_spent() == pytest.approx(
        compose_epsilon([(2.0, 0.1, 30)], delta=1e-4), rel=1e-12
    )
    assert snap.allows([(snap.entries[0], 2.0)]) == (
        compose_epsilon([(2.0, 0.1, 31)], delta=1e-4) <= 1.5
    )


@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One budget run with two snapshots, trained once for the tests below."""
    root = tmp_path_factory.mktemp("snapshots")
    cfg = compose_config([*TINY, *BUDGET, SNAPS], root / "run")
    metrics, method = train_method(cfg)
    return root, cfg, metrics, method


def test_one_run_writes_a_complete_record_per_snapshot(snapshot_run) -> None:  # type: ignore[no-untyped-def]
    tmp_path, cfg, metrics, method = snapshot_run
    final = {k: v.clone() for k, v in method.module.generator.state_dict().items()}
    run_dir = tmp_path / "run"
    info = json.loads((run_dir / "run.json").read_text())
    assert [s["status"] for s in info["snapshots"]] == ["complete", "complete"]
    plan = plan_privacy(cfg.privacy, n_train=metrics["data/n_train"], batch_size=200, max_epochs=2)
    for eps, delta in ((1.0, 1e-4), (2.0, 1e-5)):
        snap_dir = run_dir / SNAPSHOT_DIR / f"eps{eps:g}_delta{delta:g}"
        snap_metrics = json.loads((snap_dir / "metrics.json").read_text())
        ledger = json.loads((snap_dir / "privacy_ledger.json").read_text())
        steps = next(e["steps"] for e in ledger["entries"] if e["module"] == "discriminator")
        # exactly the steps this point's budget allows, and the epsilon they spend
        assert steps == snap_metrics["privacy/noisy_steps"] == _steps(eps, delta, plan)
        assert snap_metrics["privacy/target_epsilon"] == eps
        assert snap_metrics["privacy/delta"] == delta
        assert snap_metrics["privacy/epsilon_spent"] <= eps
        assert snap_metrics["privacy/snapshot"] == 1
        history = [tuple(r) for e in ledger["entries"] if "history" in e for r in e["history"]]
        assert snap_metrics["privacy/epsilon_spent"] == pytest.approx(
            compose_epsilon(history, delta=delta), rel=1e-12
        )
        assert len(pd.read_parquet(snap_dir / "synthetic.parquet")) == metrics["data/n_synthetic"]
        run = json.loads((snap_dir / "run.json").read_text())
        assert run["status"] == "complete" and run["snapshot_of"] == str(run_dir.resolve())
        assert "eval/shared_from" not in snap_metrics  # its own model: scored on its own
    # fewer steps than the run; the run's own record is untouched and its weights restored
    assert metrics["privacy/noisy_steps"] > steps
    for key, value in method.module.generator.state_dict().items():
        assert torch.equal(value, final[key])
    # the report sees three points of one trajectory
    recs = load_records(tmp_path)
    assert sorted(r.get("privacy.target_epsilon") for r in recs if r.complete) == [1.0, 2.0, 3.0]


def test_snapshot_models_differ_from_the_final_one(snapshot_run) -> None:  # type: ignore[no-untyped-def]
    """The snapshot record's released weights are those of its own step, not the final ones."""
    tmp_path = snapshot_run[0]
    final = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["generator"]
    early = torch.load(
        tmp_path / "run" / SNAPSHOT_DIR / "eps1_delta0.0001" / "model.pt", weights_only=True
    )["generator"]
    assert any(not torch.equal(final[k], early[k]) for k in final if final[k].is_floating_point())


def test_a_capped_snapshot_carries_the_runs_evaluation(tmp_path: Path) -> None:
    """A snapshot that training never got past (the cap ends training before its budget) holds
    the final model: it releases the run's table byte for byte and carries the run's scores
    instead of computing them again; its privacy keys stay its own. A snapshot inside the
    trajectory is scored on its own."""
    cfg = compose_config(
        [
            *TINY,
            *BUDGET,
            "privacy.budget_max_epochs=1",
            "privacy.snapshots=[{target_epsilon: 0.9},{target_epsilon: 2.5}]",
        ],
        tmp_path / "run",
    )
    metrics, _ = train_method(cfg)
    run_dir = tmp_path / "run"
    early = json.loads((run_dir / SNAPSHOT_DIR / "eps0.9_delta0.0001" / "metrics.json").read_text())
    capped_dir = run_dir / SNAPSHOT_DIR / "eps2.5_delta0.0001"
    capped = json.loads((capped_dir / "metrics.json").read_text())
    assert early["privacy/noisy_steps"] < metrics["privacy/noisy_steps"]
    assert "eval/shared_from" not in early and early["runtime/eval_seconds"] > 0
    assert capped["privacy/noisy_steps"] == metrics["privacy/noisy_steps"]
    assert capped["privacy/budget_capped"] == 1
    assert capped["eval/shared_from"] == str(run_dir.resolve())
    assert capped["runtime/eval_seconds"] == 0.0
    run_info = json.loads((run_dir / "run.json").read_text())
    capped_info = json.loads((capped_dir / "run.json").read_text())
    table = "synthetic.parquet"  # the same table (the artifact's metadata names its own point)
    assert capped_info["artifact_sha256"][table] == run_info["artifact_sha256"][table]
    scores = [k for k in metrics if k.startswith(("utility/", "fidelity/", "attack/"))]
    assert scores and all(capped[k] == metrics[k] for k in scores)
    # its own point: target 2.5, the delta's epsilon for the same steps
    assert capped["privacy/target_epsilon"] == 2.5 and metrics["privacy/target_epsilon"] == 3.0
    assert capped["privacy/epsilon_spent"] == pytest.approx(metrics["privacy/epsilon_spent"])


def test_a_snapshot_whose_budget_fits_no_step_fails_alone(tmp_path: Path) -> None:
    cfg = compose_config(
        [*TINY, *BUDGET, "privacy.snapshots=[{target_epsilon: 0.001}]"], tmp_path / "run"
    )
    metrics = train(cfg)
    assert metrics["privacy/noisy_steps"] > 0  # the run itself is complete
    snap = tmp_path / "run" / SNAPSHOT_DIR / "eps0.001_delta0.0001"
    run = json.loads((snap / "run.json").read_text())
    assert run["status"] == "failed" and "too small to take even one step" in run["error"]
    assert not (snap / "metrics.json").exists()


# ------------------------------------------------------------------------- release variants


def test_a_release_variant_is_the_same_generator_sampled_another_way(tmp_path: Path) -> None:
    cfg = compose_config(
        [
            *TINY,
            "privacy=fixed",
            "privacy.target_epsilon=2.0",
            "privacy.target_delta=1e-4",
            "eval.fidelity=[]",
            "eval.attacks=[]",
            "eval.models=[logistic_regression]",
            "eval.primary_model=logistic_regression",
            "method.release_variants=[{class_mix: {1: 0.5, 0: 0.5}}]",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    run_dir = tmp_path / "run"
    var = run_dir / "variants" / "variant0"
    var_metrics = json.loads((var / "metrics.json").read_text())
    info = json.loads((var / "run.json").read_text())
    assert info["status"] == "complete" and info["variant"] == {"class_mix": {"1": 0.5, "0": 0.5}}
    # the same generator, released with half high-risk rows; nothing more charged
    same = torch.load(run_dir / "model.pt", weights_only=True)["generator"]
    other = torch.load(var / "model.pt", weights_only=True)["generator"]
    assert all(torch.equal(same[k], other[k]) for k in same)
    assert var_metrics["data/positive_rate_synthetic"] == pytest.approx(0.5, abs=0.05)
    assert metrics["data/positive_rate_synthetic"] < 0.2
    assert var_metrics["privacy/epsilon_spent"] == metrics["privacy/epsilon_spent"]
    assert var_metrics["privacy/release_variant"] == 1
    # the report labels it as the class-mix release of the method
    recs = {r.run_dir.name: r for r in load_records(tmp_path)}
    assert recs["variant0"].method_label == "standard_gan"  # only multidisc_gan gets its own row
    assert recs["variant0"].get("method.class_mix") == {1: 0.5, 0: 0.5}


def test_a_bad_release_variant_fails_alone(tmp_path: Path) -> None:
    cfg = compose_config(
        [
            *TINY,
            "eval.fidelity=[]",
            "eval.attacks=[]",
            "eval.models=[logistic_regression]",
            "eval.primary_model=logistic_regression",
            "method.release_variants=[{temperature: 2}]",
        ],
        tmp_path / "run",
    )
    train(cfg)
    info = json.loads((tmp_path / "run" / "variants" / "variant0" / "run.json").read_text())
    assert info["status"] == "failed" and "class_mix" in info["error"]
    assert (tmp_path / "run" / "metrics.json").exists()
