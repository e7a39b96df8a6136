"""Fidelity and attacks as every run writes them: keys, registry, artifact routing, errors,
and the copy / independent known answers on real-shaped data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, compose_config
from dpshare.errors import UserInputError
from dpshare.evaluation.attacks.runner import evaluate_attacks
from dpshare.evaluation.metrics import metric_info
from dpshare.evaluation.sanity import run_sanity, summarize
from dpshare.registry import UnknownNameError
from dpshare.train import train

LR_TINY = [
    o for o in TINY if not o.startswith(("method.generator_dims", "method.discriminator_dims"))
]


def _check_registered(metrics: dict) -> int:
    """Every utility/fidelity/attack key resolves in the registry; numbers lie in its range."""
    checked = 0
    for key, value in metrics.items():
        if not key.startswith(("utility/", "fidelity/", "attack/")):
            continue
        info = metric_info(key)
        checked += 1
        if isinstance(value, float) and info.value_range is not None:
            lo, hi = info.value_range
            assert lo - 1e-9 <= value <= hi + 1e-9, (key, value, info.value_range)
    return checked


def test_a_gan_run_records_fidelity_and_every_attack(tmp_path: Path) -> None:
    metrics = train(compose_config(TINY, tmp_path / "run"))
    for key in (
        "fidelity/fd_raw",
        "fidelity/fd_encoder",
        "fidelity/precision",
        "fidelity/coverage",
        "fidelity/marginal_ks_mean",
        "fidelity/correlation_distance",
        "attack/mia_dcr/auc",
        "attack/mia_dcr/tpr_at_fpr_1pct",
        "attack/mia_domias/success_rate",
        "attack/mia_shadow/auc",
        "attack/copies/dcr_share_closer_to_train",
        "attack/aia/risk",
        "attack/mia_loss/auc",
        "attack/mia_lira/auc",
        "attack/inversion/reconstruction_accuracy",
    ):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key
    assert metrics["attack/model_attacked"] == "tstr_hist_gradient_boosting"
    assert metrics["attack/skipped"] == ""
    assert metrics["attack/reference_split"] == "validation"
    # 2,500 records -> 500 test records: the membership games are balanced at 500 each
    assert metrics["attack/mia_dcr/n_members"] == metrics["attack/mia_dcr/n_non_members"] == 500
    assert _check_registered(metrics) > 80


def test_a_released_model_gets_the_model_attacks_only(tmp_path: Path) -> None:
    metrics = train(compose_config([*LR_TINY, "method=dp_lr"], tmp_path / "run"))
    assert metrics["attack/model_attacked"] == "released"
    assert set(metrics["attack/skipped"].split(",")) == {
        "mia_dcr",
        "mia_domias",
        "mia_shadow",
        "copies",
        "aia",
    }
    assert 0.0 <= metrics["attack/mia_lira/auc"] <= 1.0
    assert not any(k.startswith("fidelity/") for k in metrics)
    _check_registered(metrics)


def test_the_reference_split_is_the_attackers_population_when_there_is_one(
    tmp_path: Path,
) -> None:
    cfg = compose_config(
        [*TINY, "dataset.reference_fraction=0.2", "eval.attacks=[mia_domias]", "eval.fidelity=[]"],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert metrics["attack/reference_split"] == "reference"
    assert "attack/mia_domias/auc" in metrics


@pytest.mark.parametrize(
    ("override", "error", "words"),
    [
        ("eval.attacks=[mia_nope]", UnknownNameError, "mia_dcr"),
        ("eval.fidelity=[fid_inception]", UnknownNameError, "fd_raw"),
        ("eval.feature_net=inception", UnknownNameError, "lenet"),
        ("eval.attack_model=svm", UnknownNameError, "logistic_regression"),
        ("+eval.attack_params={mia_lira: {n_shadows: 2}}", None, None),
        ("eval.attack_targets=3", UserInputError, "at least 10"),
    ],
)
def test_bad_eval_config_fails_before_training_with_the_valid_names(
    tmp_path: Path, override: str, error: type[Exception] | None, words: str | None
) -> None:
    if error is None:  # attack_params for an attack that is not configured
        cfg = compose_config([*TINY, "eval.attacks=[mia_dcr]", override], tmp_path / "run")
        error, words = UserInputError, "not in eval.attacks"
    else:
        cfg = compose_config([*TINY, override], tmp_path / "run")
    with pytest.raises(error, match=words):
        train(cfg)
    assert not (tmp_path / "run" / "model.pt").exists()  # nothing was trained


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    return pd.DataFrame(
        {
            **{f"x{i}": x[:, i] for i in range(6)},
            "kind": rng.choice(["a", "b", "c"], size=n),
            "y": (x[:, 0] + rng.normal(scale=0.5, size=n) > 0).astype(int),
        }
    )


def test_copying_more_train_records_than_the_member_sample_is_still_a_copy() -> None:
    train_split, test, reference = _table(3000, 0), _table(800, 1), _table(1000, 2)
    out = evaluate_attacks(
        names=["mia_dcr", "copies"],
        real_train=train_split,
        real_test=test,
        reference=reference,
        target="y",
        positive_label=1,
        synthetic=train_split,  # the copier releases all 3,000; members are a sample of 800
        n_targets=1000,
        seed=0,
    )
    assert out["attack/mia_dcr/n_members"] == 800
    assert out["attack/mia_dcr/auc"] == pytest.approx(1.0)
    assert out["attack/mia_dcr/tpr_at_fpr_1pct"] == pytest.approx(1.0)
    assert out["attack/copies/exact_copy_share"] == pytest.approx(1.0)
    assert out["attack/copies/dcr_median"] == pytest.approx(0.0)
    assert out["attack/copies/near_copy_share"] == pytest.approx(1.0)
    # equal-size samples: only the 800 sampled members are certainly closer to train
    assert 0.55 < out["attack/copies/dcr_share_closer_to_train"] < 0.75


def test_sanity_check_on_the_simulator_gives_the_known_answers(tmp_path: Path) -> None:
    cfg = compose_config(
        [
            "scale=smoke",
            "scale.max_records=4000",
            "eval.fidelity=[prdc]",
            "eval.attacks=[mia_dcr,mia_shadow,copies]",
        ],
        tmp_path / "sanity",
    )
    record = run_sanity(cfg)
    copy, independent = record["generators"]["copy"], record["generators"]["independent"]
    assert copy["attack/mia_dcr/auc"] > 0.99
    assert copy["attack/mia_shadow/auc"] > 0.9
    assert copy["attack/copies/exact_copy_share"] == pytest.approx(1.0)
    assert independent["attack/copies/exact_copy_share"] < 0.01
    for key in ("attack/mia_dcr/auc", "attack/mia_shadow/auc"):
        assert independent[key] == pytest.approx(0.5, abs=0.08), key
    assert (tmp_path / "sanity" / "sanity.json").exists()
    assert "attack/mia_dcr/auc" in summarize(record)
