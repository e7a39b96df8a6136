"""A tiny run end to end: the record on disk has every expected key with valid values."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from dpshare.data.datasets import DATASETS
from dpshare.train import train

EXPECTED_KEYS = {
    "utility/tstr_auc",
    "utility/trtr_auc",
    "utility/tstr_f1",
    "utility/trtr_f1",
    "utility/tstr_accuracy",
    "utility/tstr_precision",
    "utility/tstr_recall",
    "utility/tstr_minority_recall",
    "utility/trtr_minority_recall",
    "utility/logreg/tstr_auc",
    "utility/hgb/tstr_auc",
    "utility/logreg/trtr_auc",
    "runtime/fit_seconds",
    "runtime/total_seconds",
    "data/n_train",
    "data/n_test",
    "data/n_synthetic",
    "privacy/is_dp",
    "privacy/epsilon_spent",
    "train/discriminator_steps",
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from conftest import TINY, compose_config

    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    cfg = compose_config(TINY, run_dir)
    metrics = train(cfg)
    return cfg, run_dir, metrics


def test_record_files_exist(tiny_run) -> None:
    _, run_dir, _ = tiny_run
    for name in (
        ".hydra/config.yaml",
        "config_resolved.yaml",
        "metrics.json",
        "run.json",
        "privacy_ledger.json",
        "synthetic.parquet",
        "synthetic.csv",
        "synthetic_schema.json",
        "model.pt",
        "csv/metrics.csv",
    ):
        assert (run_dir / name).is_file(), name


def test_metrics_keys_and_ranges(tiny_run) -> None:
    cfg, run_dir, metrics = tiny_run
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert set(on_disk) >= EXPECTED_KEYS
    for key, value in on_disk.items():
        if key.startswith("utility/") and key != "utility/tstr_single_class":
            assert value is None or 0.0 <= value <= 1.0, key
    assert 0.5 < on_disk["utility/trtr_auc"] <= 1.0  # real data carry signal
    assert on_disk["data/n_synthetic"] == on_disk["data/n_train"]
    assert on_disk["data/n_train"] + on_disk["data/n_validation"] + on_disk["data/n_test"] == 2500
    assert on_disk["privacy/is_dp"] == 0
    assert on_disk["privacy/epsilon_spent"] == "inf"
    assert on_disk["runtime/fit_seconds"] > 0
    # 2 epochs of floor(n_train / 200) batches, one discriminator step each
    assert on_disk["train/discriminator_steps"] == 2 * (on_disk["data/n_train"] // 200)
    assert metrics["utility/tstr_auc"] == on_disk["utility/tstr_auc"]


def test_synthetic_has_the_simulator_schema(tiny_run) -> None:
    cfg, run_dir, _ = tiny_run
    synthetic = pd.read_parquet(run_dir / "synthetic.parquet")
    real = DATASETS.get("bank_sim")(cfg.dataset, max_records=200).frame
    assert list(synthetic.columns) == list(real.columns)
    assert synthetic.dtypes.astype(str).to_dict() == real.dtypes.astype(str).to_dict()
    assert set(synthetic["is_high_risk"].unique()) <= {0, 1}
    assert synthetic.notna().all().drop("hours_since_prev").all()


def test_ledger_lists_every_real_data_access(tiny_run) -> None:
    _, run_dir, _ = tiny_run
    ledger = json.loads((run_dir / "privacy_ledger.json").read_text())
    modules = {e["module"] for e in ledger["entries"]}
    assert {"transformer", "label_distribution", "discriminator"} <= modules
    assert ledger["differentially_private"] is False
    steps = next(e for e in ledger["entries"] if e["module"] == "discriminator")["parameters"]
    assert steps["steps"] > 0


def test_run_json_marks_completion(tiny_run) -> None:
    _, run_dir, _ = tiny_run
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete"
    assert info["environment"]["torch"].startswith("2.13.0")


def test_failed_run_leaves_no_metrics(tmp_path) -> None:
    from conftest import TINY, compose_config

    cfg = compose_config([*TINY, "method.batch_size=100000"], tmp_path / "bad")
    with pytest.raises(ValueError, match="batch_size"):
        train(cfg)
    assert not (tmp_path / "bad" / "metrics.json").exists()
    info = json.loads((tmp_path / "bad" / "run.json").read_text())
    assert info["status"] == "failed" and "batch_size" in info["error"]


@pytest.mark.parametrize(
    "overrides",
    [
        [],  # non-private standard GAN
        # DP cluster: DP noise comes from OS entropy unless privacy.noise_seed is set
        pytest.param(
            ["method=multidisc_gan", "privacy=fixed", "privacy.target_epsilon=5"]
            + ["privacy.noise_seed=7"],
            marks=pytest.mark.slow,
        ),
    ],
    ids=["standard_gan", "multidisc_gan_dp"],
)
def test_same_seed_same_metrics(tmp_path, overrides: list[str]) -> None:
    """Determinism on CPU: the same config and seed give every metric identically (timings
    aside), fidelity and attacks included; another seed does not."""
    from conftest import TINY, compose_config

    fast = [
        *TINY,
        "scale.max_epochs=1",
        "scale.max_records=1500",
        "eval.fidelity=[fd_raw,prdc]",
        "eval.attacks=[mia_dcr,copies]",
        "eval.attack_targets=50",
        *overrides,
    ]
    a = train(compose_config(fast, tmp_path / "a"))
    b = train(compose_config(fast, tmp_path / "b"))
    keys = sorted(k for k in a if not k.startswith("runtime/"))
    assert keys == sorted(k for k in b if not k.startswith("runtime/"))
    different = [k for k in keys if a[k] != b[k] and not (_nan(a[k]) and _nan(b[k]))]
    assert not different, {k: (a[k], b[k]) for k in different}
    assert any(k.startswith("attack/") for k in keys) and any(
        k.startswith("fidelity/") for k in keys
    )
    assert not math.isnan(a["utility/trtr_auc"])
    if not overrides:  # and the seed matters
        c = train(compose_config([*fast, "seed=1"], tmp_path / "c"))
        assert a["utility/tstr_auc"] != c["utility/tstr_auc"]


def _nan(x: object) -> bool:
    return isinstance(x, float) and math.isnan(x)
