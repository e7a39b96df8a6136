"""Attacks on released models (loss MIA, offline LiRA, model inversion) and the attribute
inference attack on synthetic tables, each on a case with a known answer."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest
from sklearn.neural_network import MLPClassifier

from dpshare.errors import UserInputError
from dpshare.evaluation import attacks
from dpshare.evaluation.attacks import aia as aia_module
from dpshare.evaluation.attacks.base import AttackContext, PredictProba, build_context
from dpshare.evaluation.metrics import metric_info

TARGET = "label"
N_FEATURES = 50
CLASSES = np.array([0, 1])


def _population(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """50 Gaussian features, a noisy logistic label: easy to overfit with 100 records."""
    x = rng.normal(size=(n, N_FEATURES))
    w = np.r_[np.full(5, 0.6), np.zeros(N_FEATURES - 5)]
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-x @ w))).astype(int)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(N_FEATURES)])
    frame[TARGET] = y
    return frame


def _overfit_proba(table: pd.DataFrame) -> PredictProba:
    """A non-private MLP (64 hidden units, no weight decay) that memorises its 100 records."""
    model = MLPClassifier((64,), alpha=0.0, max_iter=2000, random_state=0).fit(
        table.drop(columns=[TARGET]).to_numpy(), table[TARGET].to_numpy()
    )
    assert list(model.classes_) == list(CLASSES)
    return lambda features: model.predict_proba(features.to_numpy())


def _dp_sgd_proba(
    table: pd.DataFrame,
    *,
    noise_multiplier: float,
    max_grad_norm: float = 1.0,
    sample_rate: float = 0.5,
    steps: int = 100,
    lr: float = 0.5,
    seed: int = 0,
) -> PredictProba:
    """DP-SGD logistic regression written out: Poisson-sampled batches, per-sample clipping
    of the analytic gradient ``(p - y) [x, 1]`` to ``max_grad_norm``, Gaussian noise of
    ``noise_multiplier * max_grad_norm``, normalised by the expected batch size."""
    rng = np.random.default_rng(seed)
    x = np.c_[table.drop(columns=[TARGET]).to_numpy(), np.ones(len(table))]
    y = table[TARGET].to_numpy().astype(float)
    theta = np.zeros(x.shape[1])
    expected_batch = sample_rate * len(x)
    for _ in range(steps):
        batch = rng.random(len(x)) < sample_rate
        p = 1.0 / (1.0 + np.exp(-x[batch] @ theta))
        grads = (p - y[batch])[:, None] * x[batch]
        norms = np.linalg.norm(grads, axis=1, keepdims=True)
        grads = grads / np.maximum(1.0, norms / max_grad_norm)
        noise = rng.normal(0.0, noise_multiplier * max_grad_norm, size=theta.shape)
        theta -= lr * (grads.sum(axis=0) + noise) / expected_batch

    def predict_proba(features: pd.DataFrame) -> np.ndarray:
        z = np.c_[features.to_numpy(), np.ones(len(features))] @ theta
        p1 = 1.0 / (1.0 + np.exp(-z))
        return np.c_[1.0 - p1, p1]

    return predict_proba


def value(result: dict[str, float | None], key: str) -> float:
    """A reported number that must be present."""
    number = result[key]
    assert isinstance(number, float), f"{key} = {number!r}"
    return number


@pytest.fixture(scope="module")
def mia_data() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    return {
        "train": _population(100, rng),
        "test": _population(200, rng),  # room for 100 label-matched non-members
        "reference": _population(200, rng),  # halves of 100 = the target's training size
    }


def _model_context(data: dict[str, pd.DataFrame], predict_proba: PredictProba) -> AttackContext:
    ctx = build_context(
        train=data["train"],
        test=data["test"],
        reference=data["reference"],
        target=TARGET,
        positive_label=1,
        n_targets=100,
        seed=0,
        predict_proba=predict_proba,
        model_classes=CLASSES,
    )
    ctx.shadow_factory = _overfit_proba
    return ctx


@pytest.fixture(scope="module")
def mia_results(mia_data: dict[str, pd.DataFrame]) -> dict[str, dict[str, float | None]]:
    overfit = _model_context(mia_data, _overfit_proba(mia_data["train"]))
    # noise_multiplier 20, sample_rate 0.5, 100 steps: epsilon ~= 1.02 at delta 1e-5 (Opacus RDP)
    private = _model_context(
        mia_data, _dp_sgd_proba(mia_data["train"], noise_multiplier=20.0, seed=0)
    )
    return {
        "loss_nondp": attacks.ATTACKS.get("mia_loss").run(overfit),
        "loss_dp": attacks.ATTACKS.get("mia_loss").run(private),
        "lira_nondp": attacks.ATTACKS.get("mia_lira").run(overfit),
        "lira_dp": attacks.ATTACKS.get("mia_lira").run(private),
    }


def test_attack_on_overfit_model_beats_attack_on_strongly_private_model(
    mia_results: dict[str, dict[str, float | None]],
) -> None:
    nondp, dp = value(mia_results["loss_nondp"], "auc"), value(mia_results["loss_dp"], "auc")
    assert nondp > 0.7
    assert abs(dp - 0.5) < 0.1
    assert nondp > dp + 0.15
    assert mia_results["loss_nondp"]["n_members"] == 100.0


def test_offline_lira_beats_chance_on_overfit_model(
    mia_results: dict[str, dict[str, float | None]],
) -> None:
    lira = mia_results["lira_nondp"]
    assert value(lira, "auc") > 0.65
    assert 0.0 <= value(lira, "tpr_at_fpr_1pct") <= 1.0
    assert lira["tpr_at_fpr_0p1pct"] is None  # 100 non-members cannot resolve 0.1%
    assert abs(value(mia_results["lira_dp"], "auc") - 0.5) < 0.1


def test_lira_per_target_variance_and_determinism(mia_data: dict[str, pd.DataFrame]) -> None:
    ctx = _model_context(mia_data, _overfit_proba(mia_data["train"]))
    ctx.params = {"n_shadows": 4, "global_variance": False}
    first = attacks.ATTACKS.get("mia_lira").run(ctx)
    again = attacks.ATTACKS.get("mia_lira").run(ctx)
    assert first == again
    assert value(first, "auc") > 0.6


def test_loss_attack_on_input_blind_model_is_exactly_chance() -> None:
    labels = np.tile([0, 1, 1], 20)  # same label counts among members and non-members
    rng = np.random.default_rng(1)

    def table(n_rows: int) -> pd.DataFrame:
        return pd.DataFrame({"x": rng.normal(size=n_rows), TARGET: labels[:n_rows]})

    def constant(features: pd.DataFrame) -> np.ndarray:
        return np.tile([0.7, 0.3], (len(features), 1))

    ctx = AttackContext(
        members=table(60),
        non_members=table(60),
        reference=table(60),
        target=TARGET,
        positive_label=1,
        predict_proba=constant,
        model_classes=CLASSES,
    )
    result = attacks.ATTACKS.get("mia_loss").run(ctx)
    assert result["auc"] == 0.5
    assert result["success_rate"] == 0.5
    assert result["advantage"] == 0.0


def test_model_attacks_reject_missing_model_reference_or_shadows(
    mia_data: dict[str, pd.DataFrame],
) -> None:
    no_model = _model_context(mia_data, _overfit_proba(mia_data["train"]))
    no_model.predict_proba = None
    for name in ("mia_loss", "mia_lira", "inversion"):
        with pytest.raises(ValueError, match="released model"):
            attacks.ATTACKS.get(name).run(no_model)
    no_reference = _model_context(mia_data, _overfit_proba(mia_data["train"]))
    no_reference.reference = mia_data["reference"].iloc[:0]
    for name in ("mia_lira", "inversion"):
        with pytest.raises(UserInputError, match="reference_fraction"):
            attacks.ATTACKS.get(name).run(no_reference)
    no_shadows = _model_context(mia_data, _overfit_proba(mia_data["train"]))
    no_shadows.shadow_factory = None
    with pytest.raises(ValueError, match="shadow_factory"):
        attacks.ATTACKS.get("mia_lira").run(no_shadows)


# --- attribute inference ----------------------------------------------------------------------


def _aia_population(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Four numeric quasi-identifiers, one categorical; a 4-valued secret weakly tied to them."""
    x = rng.normal(size=(n, 4))
    region = rng.choice(["north", "south", "east"], size=n)
    noisy = x[:, 0] + rng.normal(scale=2.0, size=n)
    secret = np.select([noisy < -1, noisy < 0, noisy < 1], ["a", "b", "c"], "d")
    frame = pd.DataFrame(x, columns=["age", "income", "visits", "tenure"])
    frame["region"] = region
    frame["diagnosis"] = secret
    frame["spend"] = 100.0 + 20.0 * x[:, 1] + rng.normal(scale=10.0, size=n)
    return frame


@pytest.fixture(scope="module")
def aia_data() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(2)
    return {name: _aia_population(300, rng) for name in ("train", "test", "reference", "fresh")}


def _aia_context(
    data: dict[str, pd.DataFrame], synthetic: pd.DataFrame, **params: object
) -> AttackContext:
    ctx = build_context(
        train=data["train"],
        test=data["test"],
        reference=data["reference"],
        target="diagnosis",
        positive_label="a",
        n_targets=200,
        seed=0,
        synthetic=synthetic,
    )
    ctx.params = dict(params)
    return ctx


def test_aia_on_a_copy_of_the_training_data_is_high_risk(
    aia_data: dict[str, pd.DataFrame],
) -> None:
    result = attacks.ATTACKS.get("aia").run(_aia_context(aia_data, aia_data["train"]))
    assert result["success_rate"] == 1.0
    assert result["n_targets"] == 200.0
    assert 0.15 < value(result, "control_success_rate") < 0.5
    assert value(result, "risk") > 0.5
    assert value(result, "risk_ci_low") <= value(result, "risk") <= value(result, "risk_ci_high")
    assert all(isinstance(v, float) for v in result.values())


def test_aia_on_independent_synthetic_data_is_no_risk(aia_data: dict[str, pd.DataFrame]) -> None:
    result = attacks.ATTACKS.get("aia").run(_aia_context(aia_data, aia_data["fresh"]))
    assert value(result, "risk") < 0.1
    assert result["risk_ci_low"] == 0.0  # the interval covers 0
    assert abs(value(result, "success_rate") - value(result, "control_success_rate")) < 0.1
    assert 0.15 < value(result, "baseline_success_rate") < 0.5


def test_aia_numeric_secret_uses_the_tolerance(aia_data: dict[str, pd.DataFrame]) -> None:
    known = ["age", "income", "visits", "tenure", "region"]
    copy = attacks.ATTACKS.get("aia").run(
        _aia_context(aia_data, aia_data["train"], secret="spend", known=known)
    )
    assert copy["success_rate"] == 1.0
    fresh = attacks.ATTACKS.get("aia").run(
        _aia_context(aia_data, aia_data["fresh"], secret="spend", known=known)
    )
    assert value(fresh, "success_rate") < 0.3
    assert value(fresh, "risk") < 0.1


def test_aia_rejects_missing_artifact_and_empty_reference(
    aia_data: dict[str, pd.DataFrame],
) -> None:
    ctx = _aia_context(aia_data, aia_data["train"])
    ctx.synthetic = None
    with pytest.raises(ValueError, match="synthetic"):
        attacks.ATTACKS.get("aia").run(ctx)
    ctx = _aia_context(aia_data, aia_data["train"])
    ctx.reference = aia_data["reference"].iloc[:0]
    with pytest.raises(UserInputError, match="reference_fraction"):
        attacks.ATTACKS.get("aia").run(ctx)


def test_anonymeter_risk_formula() -> None:
    assert doctest.testmod(aia_module).failed == 0
    # no excess over control -> 0; a perfect attack against a 50% control -> ~1
    assert aia_module.privacy_risk(50, 100, 50, 100)[0] == pytest.approx(0.0, abs=1e-12)
    risk, low, high = aia_module.privacy_risk(400, 400, 200, 400)
    assert risk == pytest.approx(0.9906, abs=1e-3) and low < risk and high == 1.0


# --- model inversion --------------------------------------------------------------------------

N_CAT = 8


def _categorical_population(n: int, rng: np.random.Generator) -> pd.DataFrame:
    frame = pd.DataFrame(
        {f"c{j}": rng.choice(list("vwxyz"), size=n) for j in range(N_CAT)}, dtype=object
    )
    frame[TARGET] = np.arange(n) % 2
    return frame


def _memorising_proba(members: pd.DataFrame, *, sharpness: float = 2.0) -> PredictProba:
    """A kernel classifier over the member records: the probability of class c grows with the
    number of attributes an input shares with a member of class c (it memorises them)."""
    feature_cols = [f"c{j}" for j in range(N_CAT)]
    stored = members[feature_cols].to_numpy(dtype=object)
    labels = members[TARGET].to_numpy()

    def predict_proba(features: pd.DataFrame) -> np.ndarray:
        x = features[feature_cols].to_numpy(dtype=object)
        agreement = (x[:, None, :] == stored[None, :, :]).sum(axis=2)
        kernel = np.exp(sharpness * agreement)
        scores = np.stack([kernel[:, labels == c].sum(axis=1) for c in CLASSES], axis=1)
        return scores / scores.sum(axis=1, keepdims=True)

    return predict_proba


@pytest.fixture(scope="module")
def inversion_data() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(3)
    return {
        "train": _categorical_population(40, rng),
        "test": _categorical_population(40, rng),
        "reference": _categorical_population(400, rng),
    }


def _inversion_context(
    data: dict[str, pd.DataFrame], predict_proba: PredictProba, seed: int
) -> AttackContext:
    ctx = build_context(
        train=data["train"],
        test=data["test"],
        reference=data["reference"],
        target=TARGET,
        positive_label=1,
        n_targets=40,
        seed=seed,
        predict_proba=predict_proba,
        model_classes=CLASSES,
    )
    ctx.params = {"n_rounds": 60}
    return ctx


def test_inversion_recovers_records_a_model_memorised(
    inversion_data: dict[str, pd.DataFrame],
) -> None:
    model = _memorising_proba(inversion_data["train"])
    result = attacks.ATTACKS.get("inversion").run(_inversion_context(inversion_data, model, 0))
    again = attacks.ATTACKS.get("inversion").run(_inversion_context(inversion_data, model, 0))
    assert result == again
    for key in ("reconstruction_accuracy", "reconstruction_accuracy_control"):
        assert 0.0 <= value(result, key) <= 1.0
    assert value(result, "reconstruction_accuracy") > 0.9
    assert value(result, "reconstruction_advantage") > 0.3
    assert value(result, "mean_target_confidence") > 0.99


def test_inversion_on_an_input_blind_model_shows_no_advantage(
    inversion_data: dict[str, pd.DataFrame],
) -> None:
    def constant(features: pd.DataFrame) -> np.ndarray:
        return np.tile([0.5, 0.5], (len(features), 1))

    result = attacks.ATTACKS.get("inversion").run(_inversion_context(inversion_data, constant, 0))
    assert result["mean_target_confidence"] == 0.5
    assert abs(value(result, "reconstruction_advantage")) < 0.1


def test_inversion_on_a_numeric_model_is_in_range_and_seeded(
    mia_data: dict[str, pd.DataFrame],
) -> None:
    ctx = _model_context(mia_data, _overfit_proba(mia_data["train"]))
    ctx.params = {"n_candidates": 50, "n_rounds": 5}
    first = attacks.ATTACKS.get("inversion").run(ctx)
    assert first == attacks.ATTACKS.get("inversion").run(ctx)
    assert all(isinstance(v, float) for v in first.values())
    assert 0.0 <= value(first, "reconstruction_accuracy") <= 1.0
    assert 0.0 <= value(first, "reconstruction_accuracy_control") <= 1.0
    assert 0.5 < value(first, "mean_target_confidence") <= 1.0


# --- metric registry --------------------------------------------------------------------------

SHARED_SUFFIXES = {  # registered by attacks/mia_synthetic.py
    "auc",
    "tpr_at_fpr_1pct",
    "tpr_at_fpr_0p1pct",
    "success_rate",
    "advantage",
    "n_members",
    "n_non_members",
}


@pytest.fixture(scope="module")
def emitted_keys(
    mia_results: dict[str, dict[str, float | None]],
    aia_data: dict[str, pd.DataFrame],
    inversion_data: dict[str, pd.DataFrame],
) -> list[str]:
    results = {
        "mia_loss": mia_results["loss_nondp"],
        "mia_lira": mia_results["lira_nondp"],
        "aia": attacks.ATTACKS.get("aia").run(_aia_context(aia_data, aia_data["train"])),
        "inversion": attacks.ATTACKS.get("inversion").run(
            _inversion_context(inversion_data, _memorising_proba(inversion_data["train"]), 0)
        ),
    }
    return [f"attack/{name}/{key}" for name, result in results.items() for key in result]


def test_every_new_key_is_registered(emitted_keys: list[str]) -> None:
    own = [k for k in emitted_keys if k.rsplit("/", 1)[1] not in SHARED_SUFFIXES]
    assert len(own) == 10
    for key in own:
        assert metric_info(key).family == "attack"


def test_every_shared_key_is_registered(emitted_keys: list[str]) -> None:
    """Needs attacks/mia_synthetic.py's registrations (imported with the attacks package)."""
    for key in emitted_keys:
        assert metric_info(key).family == "attack"
