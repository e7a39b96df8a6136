"""Every dataset option trains end to end through ``dpshare.train`` (tiny runs).

The loaders have their own tests (test_mimic3.py, test_mnist.py, test_table.py); these check the
wiring: each ``conf/dataset/*.yaml`` has a registered loader, composes, trains, and leaves a record
with TSTR/TRTR metrics; DP runs on real tables stop with a clear error when a column has no
public domain.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import CONF_DIR, SHARED_DATASETS, TINY, compose_config
from dpshare.data.datasets import DATASETS, DOMAINS, declared_domain
from dpshare.errors import UserInputError
from dpshare.train import train

needs_shared = pytest.mark.skipif(
    not SHARED_DATASETS.is_dir(), reason=f"shared datasets not found at {SHARED_DATASETS}"
)
FAST_DP = ["privacy=fixed", "privacy.target_epsilon=2.0"]


def test_every_dataset_option_has_a_loader() -> None:
    options = {p.stem for p in (CONF_DIR / "dataset").glob("*.yaml")}
    assert options == {"bank_sim", "mimic3", "mnist", "table", "bank_marketing", "diabetes130"}
    assert options <= set(DATASETS.names())


def test_declared_domain_is_the_loaders_without_loading_a_record() -> None:
    """What the report reads for saved runs: the domain a dataset config declares."""
    from dpshare.data import bank_sim

    bank = compose_config(["dataset=bank_sim", "scale=smoke", "scale.max_records=500"])
    loaded = DATASETS.get("bank_sim")(bank.dataset, max_records=500).public_domain
    declared = declared_domain(bank.dataset)
    assert declared.bounds == loaded.bounds and declared.categories == loaded.categories
    # the simulator's own domain for these settings, and another one for other settings
    own = bank_sim.public_domain(n_banks=5, days=180, start="2025-01-01")
    assert bank.dataset.n_banks == 5 and bank.dataset.days == 180
    assert declared.bounds == own.bounds and declared.categories == own.categories
    other = declared_domain({**dict(bank.dataset), "n_banks": 3})
    assert other.categories != declared.categories
    # a saved record holds the config as a plain mapping (dates as text)
    plain = {**dict(bank.dataset), "start": str(bank.dataset.start)}
    assert declared_domain(plain).bounds == loaded.bounds
    mimic = declared_domain(compose_config(["dataset=mimic3"]).dataset)
    assert "age" in mimic.bounds
    pixels = declared_domain({"name": "mnist"}).bounds
    assert len(pixels) == 784 and set(pixels.values()) == {(0.0, 255.0)}
    table = {"name": "table", "public_domain": {"x": {"bounds": [0, 5]}}}
    assert declared_domain(table).bounds == {"x": (0.0, 5.0)}
    assert declared_domain({"name": "table", "public_domain": None}) is None
    # a derived domain sits beside its loader: never one without a data set of that name
    assert set(DOMAINS.names()) == {"bank_sim", "mimic3", "mnist"} <= set(DATASETS.names())


def _metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("utility/tstr_auc", "utility/trtr_auc", "utility/tstr_accuracy"):
        assert key in metrics, key
    return metrics


def _run(overrides: list[str], run_dir: Path) -> dict:
    train(compose_config([*TINY, *overrides], run_dir))
    return _metrics(run_dir)


def test_user_table_trains_and_releases_its_own_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 1200
    x = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "patient": np.arange(n) + 1000,
            "Blood Pressure": 120 + 15 * x,
            "smoker": rng.choice(["yes", "no"], n),
            "visit": pd.date_range("2024-01-01", periods=n, freq="h").astype(str),
            "outcome": np.where(x + rng.normal(scale=0.5, size=n) > 0.8, "sick", "well"),
        }
    )
    path = tmp_path / "clinic.tsv"
    frame.to_csv(path, sep="\t", index=False)
    metrics = _run(
        [
            "dataset=table",
            f"dataset.path={path}",
            "dataset.target=outcome",
            "dataset.id_column=patient",
            "method.batch_size=100",
        ],
        tmp_path / "run",
    )
    assert metrics["data/n_train"] + metrics["data/n_validation"] + metrics["data/n_test"] == n
    assert metrics["utility/trtr_auc"] > 0.7  # the label depends on blood pressure
    synthetic = pd.read_parquet(tmp_path / "run" / "synthetic.parquet")
    assert set(synthetic.columns) == {"Blood Pressure", "smoker", "visit", "outcome"}
    assert set(synthetic["outcome"].unique()) <= {"sick", "well"}


@needs_shared
def test_bank_marketing_dp_run_spends_at_most_its_target(tmp_path: Path) -> None:
    path = SHARED_DATASETS / "bank-marketing" / "bank-additional-full.csv.gz"
    metrics = _run(["dataset=bank_marketing", f"dataset.path={path}", *FAST_DP], tmp_path / "r")
    assert metrics["privacy/is_dp"] == 1
    assert 1.0 < metrics["privacy/epsilon_spent"] <= 2.0
    assert 0.6 < metrics["utility/trtr_auc"] <= 1.0


@needs_shared
def test_diabetes130_dp_run_names_the_undeclared_columns(tmp_path: Path) -> None:
    path = SHARED_DATASETS / "diabetes130" / "dataset_diabetes.zip"
    base = ["dataset=diabetes130", f"dataset.path={path}", *FAST_DP]
    with pytest.raises(UserInputError, match=r"payer_code.*medical_specialty.*drop_columns"):
        _run(base, tmp_path / "refused")
    metrics = _run([*base, "dataset.drop_columns=[payer_code,medical_specialty]"], tmp_path / "r")
    assert metrics["privacy/is_dp"] == 1
    assert metrics["privacy/epsilon_spent"] <= 2.0


@needs_shared
def test_mimic3_demo_trains(tmp_path: Path) -> None:
    root = SHARED_DATASETS / "mimic3-demo"
    metrics = _run(
        [
            "dataset=mimic3",
            f"dataset.root={root}",
            f"dataset.cache_dir={tmp_path / 'cache'}",
            "method.batch_size=16",
        ],
        tmp_path / "r",
    )
    assert metrics["data/n_train"] + metrics["data/n_validation"] + metrics["data/n_test"] == 51


@needs_shared
def test_mnist_trains_and_tests_on_official_test_images(tmp_path: Path) -> None:
    root = SHARED_DATASETS / "mnist"
    metrics = _run(
        [
            "dataset=mnist",
            f"dataset.root={root}",
            "scale.max_records=1500",
            "scale.max_epochs=1",
            "eval.models=[logistic_regression]",
            "eval.primary_model=logistic_regression",
            "eval.fidelity=[prdc]",  # the full evaluation on images has its own tests
            "eval.attacks=[mia_dcr]",
        ],
        tmp_path / "r",
    )
    assert metrics["data/n_test"] > 0
    assert 0.5 < metrics["utility/trtr_accuracy"] <= 1.0  # 10 classes: chance is 0.1
