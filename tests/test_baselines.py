"""Model-releasing baselines: ``dp_lr`` (DP-SGD logistic regression) and ``fedavg``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, compose_config
from dpshare.data.base import split_records
from dpshare.data.datamodule import TabularDataModule
from dpshare.data.datasets import DATASETS
from dpshare.errors import UserInputError
from dpshare.evaluation.utility import evaluate_released_model
from dpshare.models.classifier import DPLogisticRegression
from dpshare.models.fedavg import FedAvg
from dpshare.privacy import PrivacyLedger
from dpshare.privacy.plan import plan_privacy
from dpshare.train import train

# TINY without the GAN's layer sizes
TINY = [o for o in TINY if not o.startswith(("method.generator_dims", "method.discriminator_dims"))]
DP = ["privacy=fixed", "privacy.target_epsilon=2.0", "privacy.target_delta=1e-4"]


def _ledger(tmp: Path) -> dict:
    return json.loads((tmp / "privacy_ledger.json").read_text())


@pytest.mark.parametrize("method", ["dp_lr", "fedavg"])
@pytest.mark.parametrize("dp", [False, True])
def test_model_methods_train_release_a_model_and_respect_the_budget(
    tmp_path: Path, method: str, dp: bool
) -> None:
    cfg = compose_config([*TINY, f"method={method}", *(DP if dp else [])], tmp_path / "run")
    metrics = train(cfg)
    assert metrics["data/artifact"] == "model"
    assert 0.0 <= metrics["utility/model_auc"] <= 1.0
    assert metrics["utility/downstream_auc"] == metrics["utility/model_auc"]
    assert metrics["utility/trtr_auc"] is not None
    assert not (tmp_path / "run" / "synthetic.parquet").exists()
    ledger = _ledger(tmp_path / "run")
    modules = [e["module"] for e in ledger["entries"]]
    assert "label_distribution" not in modules  # a classifier needs no class frequencies
    if dp:
        assert metrics["privacy/epsilon_spent"] <= 2.0
        name = "classifier" if method == "dp_lr" else "fedavg_clients"
        entry = next(e for e in ledger["entries"] if e["module"] == name)
        assert entry["mechanism"] == "dp_sgd" and entry["steps"] > 0
    else:
        assert metrics["privacy/epsilon_spent"] == "inf" or metrics[
            "privacy/epsilon_spent"
        ] == float("inf")


def _parts(overrides: list[str], dp: bool = False):
    cfg = compose_config([*TINY, *overrides, *(DP if dp else [])])
    data = DATASETS.get(cfg.dataset.name)(cfg.dataset, max_records=cfg.scale.max_records)
    splits = split_records(data, val_fraction=0.1, test_fraction=0.2, split_seed=0, stratify=True)
    plan = None
    if dp:
        plan = plan_privacy(
            cfg.privacy,
            n_train=len(splits.train),
            batch_size=cfg.method.batch_size,
            max_epochs=int(cfg.method.get("rounds", cfg.trainer.max_epochs))
            * int(cfg.method.get("local_epochs", 1)),
        )
    ledger = PrivacyLedger(
        target_epsilon=cfg.privacy.get("target_epsilon"),
        target_delta=cfg.privacy.get("target_delta", 1e-5),
        n_records=len(splits.train),
    )
    dm = TabularDataModule(
        data, splits.train, batch_size=cfg.method.batch_size, ledger=ledger, plan=plan
    )
    return cfg, dm, plan, ledger, splits


def test_fedavg_with_one_client_matches_centralized_training() -> None:
    common = ["method.optimizer=sgd", "method.momentum=0.0", "method.lr=0.2"]
    cfg, dm, _, _, splits = _parts(
        ["method=fedavg", "method.rounds=30", "method.local_epochs=1", *common]
    )
    fed = FedAvg(cfg.method, dm)
    everyone = np.arange(dm.n_train)
    fed.client_names, fed.client_index = ["all"], [everyone]  # one client holding every record
    fed.fit(None)
    # centralized: the same network, optimiser and epochs, trained on all records at once
    cfg_c, dm_c, _, _, _ = _parts(["method=dp_lr", "scale.max_epochs=30", *common])
    central = DPLogisticRegression(cfg_c.method, dm_c)
    import pytorch_lightning as pl

    central.fit(
        pl.Trainer(
            max_epochs=30,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    )
    test = splits.test
    p_fed = fed.predict_proba(test)[:, 1]
    p_cen = central.predict_proba(test)[:, 1]
    assert np.abs(p_fed - p_cen).mean() < 0.01
    assert np.corrcoef(p_fed, p_cen)[0, 1] > 0.99


def test_fedavg_clients_come_from_the_institution_column_and_dp_accounting_is_per_round() -> None:
    cfg, dm, plan, ledger, _ = _parts(["method=fedavg", "method.rounds=3"], dp=True)
    fed = FedAvg(cfg.method, dm, plan=plan)
    assert fed.column == "bank"
    assert sum(len(i) for i in fed.client_index) == dm.n_train
    fed.fit(None)
    entry = next(e for e in ledger.entries if e.module == "fedavg_clients")
    assert fed.rounds_done == 3
    assert entry.steps == 3 * fed.steps_per_round
    assert fed.steps_per_round == int(1 / plan.sample_rate)
    assert ledger.epsilon_spent() <= 2.0


def test_fedavg_on_data_without_institutions_needs_simulated_clients() -> None:
    """diabetes130 has no hospital id: fedavg says how to proceed, and
    method=fedavg_random_clients federates 10 equal, disjoint clients of a seeded random
    partition, with the same per-round accounting."""
    cfg, dm, plan, ledger, _ = _parts(["method=fedavg"], dp=True)
    dm.data.institution_column = None  # as a table without one
    with pytest.raises(UserInputError, match="method.simulated_clients=K"):
        FedAvg(cfg.method, dm, plan=plan)
    cfg, dm, plan, ledger, _ = _parts(["method=fedavg_random_clients", "method.rounds=2"], dp=True)
    dm.data.institution_column = None
    fed = FedAvg(cfg.method, dm, plan=plan)
    assert fed.column is None and len(fed.client_index) == cfg.method.simulated_clients == 10
    sizes = [len(i) for i in fed.client_index]
    assert max(sizes) - min(sizes) <= 1
    everyone = np.concatenate(fed.client_index)
    assert len(everyone) == dm.n_train and len(np.unique(everyone)) == dm.n_train
    again = FedAvg(cfg.method, dm, plan=None)  # seeded: the same partition
    assert all(
        np.array_equal(a, b) for a, b in zip(fed.client_index, again.client_index, strict=True)
    )
    fed.fit(None)
    entry = next(e for e in ledger.entries if e.module == "fedavg_clients")
    assert entry.steps == 2 * fed.steps_per_round and ledger.epsilon_spent() <= 2.0
    cfg, dm, plan, _, _ = _parts(["method=fedavg", "method.simulated_clients=1"])
    with pytest.raises(UserInputError, match="simulated_clients must be >= 2"):
        FedAvg(cfg.method, dm)


def test_fedavg_stops_before_a_round_would_pass_the_target() -> None:
    cfg, dm, plan, ledger, _ = _parts(
        ["method=fedavg", "method.rounds=50", "privacy.noise_multiplier=1.5"], dp=True
    )
    fed = FedAvg(cfg.method, dm, plan=plan)
    fed.fit(None)
    assert 0 < fed.rounds_done < 50
    assert ledger.epsilon_spent() <= 2.0
    entry = next(e for e in ledger.entries if e.module == "fedavg_clients")
    assert entry.parameters["stopped_by_budget"] is True


def test_fedavg_empty_poisson_batch_takes_a_noise_only_step() -> None:
    cfg, dm, plan, _, _ = _parts(["method=fedavg"], dp=True)
    fed = FedAvg(cfg.method, dm, plan=plan)
    fed.sample_rate = 1e-9  # every local batch is empty
    fed.steps_per_round = 2
    before = {k: v.clone() for k, v in fed.module.net.state_dict().items()}
    after = fed._local_update(fed.module.net, fed.client_index[0], torch.Generator())
    moved = any(not torch.equal(before[k], after[k]) for k in before)
    assert moved  # noise was added although no record was sampled


def test_bad_configs_are_clear_errors(tmp_path: Path) -> None:
    cfg, dm, plan, _, _ = _parts(["method=fedavg", "method.client_fraction=0"])
    with pytest.raises(UserInputError, match="client_fraction"):
        FedAvg(cfg.method, dm)
    cfg, dm, plan, _, _ = _parts(["method=fedavg", "method.institution_column=nope"])
    with pytest.raises(UserInputError, match="not a column"):
        FedAvg(cfg.method, dm)
    cfg = compose_config([*TINY, "method=dp_lr", "privacy=pid"], tmp_path / "pid")
    with pytest.raises(UserInputError, match="privacy=none or privacy=fixed"):
        train(cfg)


def test_released_model_scores_and_shape_check() -> None:
    train_frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "y": [0, 1, 0, 1]})
    test = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "y": [0, 1, 0, 1]})

    def perfect(frame: pd.DataFrame) -> np.ndarray:
        p1 = (frame["a"].to_numpy() % 2).astype(float)
        return np.stack([1 - p1, p1], axis=1)

    out = evaluate_released_model(
        predict_proba=perfect,
        model_classes=np.array([0, 1]),
        real_train=train_frame,
        real_test=test,
        target="y",
        positive_label=1,
        models=["logistic_regression"],
        primary_model="logistic_regression",
        trtr=False,
    )
    assert out["utility/model_auc"] == 1.0 and out["utility/model_accuracy"] == 1.0
    with pytest.raises(ValueError, match="shape"):
        evaluate_released_model(
            predict_proba=lambda f: np.ones((len(f), 3)),
            model_classes=np.array([0, 1]),
            real_train=train_frame,
            real_test=test,
            target="y",
            positive_label=1,
            models=["logistic_regression"],
            primary_model="logistic_regression",
            trtr=False,
        )


def test_comparison_table_is_rebuilt_from_records(tmp_path: Path) -> None:
    from dpshare.reporting.summary import load_run, main

    for seed in (0, 1):
        train(compose_config([*TINY, "method=dp_lr", f"seed={seed}"], tmp_path / f"lr{seed}"))
    gan = [*TINY, "method.generator_dims=[32]", "method.discriminator_dims=[32]"]
    train(compose_config(gan, tmp_path / "gan"))
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "comparison.csv")
    lr = table[table["method"] == "dp_lr"].iloc[0]
    assert lr["seeds"] == 2 and lr["artifact"] == "model"
    runs = [load_run(tmp_path / f"lr{s}") for s in (0, 1)]
    expected = np.mean([r.metrics["utility/model_auc"] for r in runs])
    assert lr["auc"] == pytest.approx(expected)
    gan_row = table[table["method"] == "standard_gan"].iloc[0]
    assert gan_row["artifact"] == "synthetic"
    assert gan_row["auc"] == pytest.approx(load_run(tmp_path / "gan").metrics["utility/tstr_auc"])
    assert (table["method"] == "real data (TRTR)").sum() == 1
    assert "real data (TRTR)" in (tmp_path / "out" / "comparison.md").read_text()


def test_plan_budgets_no_class_counts_for_a_classifier() -> None:
    cfg = compose_config([*TINY, "method=dp_lr", *DP])
    kw = dict(n_train=1750, batch_size=200, max_epochs=2)
    gan = plan_privacy(cfg.privacy, **kw)
    clf = plan_privacy(cfg.privacy, **kw, class_counts_release=False)
    assert clf.noise_multiplier < gan.noise_multiplier  # the saved release buys less noise
    none = plan_privacy(cfg.privacy, **kw, class_counts_release=False, transformer_release=False)
    assert none.noise_multiplier < clf.noise_multiplier
    assert DPLogisticRegression.releases_class_counts is False
    assert FedAvg.releases_class_counts is False
    from dpshare.models.dp_wgan import DPWGAN

    assert DPWGAN.releases_transformer_stats is False


def test_paper_values_sit_beside_measured_ones(tmp_path: Path) -> None:
    from dpshare.reporting.summary import RunRecord, reported_values, write_comparison

    repo = Path(__file__).resolve().parents[1]
    column, metric, values = reported_values(
        repo / "experiments" / "tao2020" / "reported.yaml", "fig2_epsilon"
    )
    assert (column, metric) == ("target_epsilon", "accuracy")
    assert values[4.0] == pytest.approx(0.9086) and values[0.5] == pytest.approx(0.8943)

    def record(eps: float, acc: float, seed: int) -> RunRecord:
        cfg = {
            "dataset": {"name": "mnist"},
            "method": {"name": "dp_wgan"},
            "privacy": {"name": "wgan_feedback", "target_epsilon": eps},
            "seed": seed,
        }
        metrics = {"privacy/epsilon_spent": eps - 0.01, "utility/downstream_accuracy": acc}
        return RunRecord(tmp_path / f"{eps}-{seed}", cfg, metrics, {}, {})

    runs = [record(4.0, 0.10, 0), record(4.0, 0.20, 1), record(3.0, 0.3, 0)]
    write_comparison(runs, tmp_path, title="t", reported=(column, metric, values))
    table = pd.read_csv(tmp_path / "comparison.csv")
    row = table[table["target_epsilon"] == 4.0].iloc[0]
    assert row["accuracy"] == pytest.approx(0.15) and row["paper_accuracy"] == pytest.approx(0.9086)
    assert np.isnan(table[table["target_epsilon"] == 3.0].iloc[0]["paper_accuracy"])
    with pytest.raises(ValueError, match="no experiment"):
        reported_values(repo / "experiments" / "tao2020" / "reported.yaml", "nope")
