"""W&B logging of the run record: the payload rebuilt from a run directory (config, final
metrics, noise and epsilon curves over noisy steps, a sample preview), sending it to an offline
run, and a tiny ``logger=wandb`` run end to end. Offline only: no network, no API key."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dpshare import loggers as dp_loggers
from dpshare.privacy import PrivacyLedger
from dpshare.privacy.accounting import compose_epsilon
from dpshare.reporting import records
from dpshare.reporting.wandb_log import privacy_curves, wandb_payload

# Hydra saves .hydra/config.yaml unresolved; run_dir is a ${hydra:...} interpolation.
CONFIG_YAML = """\
experiment_name: paper_table2
tags: [paper, smoke]
seed: 3
run_dir: ${hydra:runtime.output_dir}
dataset:
  name: bank_sim
privacy:
  name: fixed
  target_epsilon: 5.0
logger:
  name: wandb
  wandb: true
  wandb_group: ${experiment_name}
  wandb_tags: ${tags}
"""

METRICS = {
    "utility/tstr_auc": 0.71,
    "data/n_train": 1500,
    "privacy/is_dp": 1,
    "privacy/noise_calibrated": True,
    "privacy/epsilon_realized_schedule": "inf",
    "privacy/accountant": "rdp",
    "data/positive_rate_synthetic": None,
}

SIGMAS = [1.2, 1.2, 1.2, 0.9, 0.9, 1.5, 1.5, 1.5, 1.1]
SAMPLE_RATE = 0.05


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B offline, with every directory it writes to under tmp_path."""
    root = tmp_path / "wandb_home"
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        path = root / name.lower()
        path.mkdir(parents=True)
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return root


def _ledger(*, signal_steps: int = 0) -> tuple[PrivacyLedger, Any]:
    """A ledger with a Gaussian release before training, DP-SGD steps at SIGMAS and, optionally,
    noisy controller-signal steps."""
    ledger = PrivacyLedger(target_epsilon=None, target_delta=1e-5, n_records=1500)
    ledger.record_gaussian(
        module="transformer",
        purpose="normalisation statistics",
        records=1500,
        noise_multiplier=20.0,
        l2_sensitivity=1.0,
    )
    entry = ledger.open_dp_sgd(
        module="discriminator",
        purpose="DP-SGD",
        records=1500,
        sample_rate=SAMPLE_RATE,
        poisson_sampling=True,
    )
    signal = None
    if signal_steps:
        signal = ledger.open_dp_sgd(
            module="controller_signal",
            purpose="noisy count",
            records=1500,
            sample_rate=0.1,
            poisson_sampling=True,
            mechanism="subsampled_gaussian",
        )
    for i, sigma in enumerate(SIGMAS):
        ledger.step(entry, sigma)
        if signal is not None and i < signal_steps:
            ledger.step(signal, 5.0)
    return ledger, entry


def _write_run_dir(
    run_dir: Path,
    ledger: PrivacyLedger,
    *,
    images: np.ndarray | None = None,
    table: pd.DataFrame | None = None,
) -> Path:
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(CONFIG_YAML, encoding="utf-8")
    records.write_json(run_dir / records.METRICS_FILE, METRICS)
    records.write_json(run_dir / records.LEDGER_FILE, ledger.to_dict())
    if images is not None:
        records.write_array(run_dir / "synthetic_images_preview.npy", images)
    if table is not None:
        records.write_table(table, run_dir, csv=False)
    return run_dir


def _preview_images(n: int = 20) -> np.ndarray:
    """uint8 (n, 1, 28, 28), image i filled with the value i (so the grid layout is checkable)."""
    return np.repeat(np.arange(n, dtype=np.uint8), 28 * 28).reshape(n, 1, 28, 28)


def _table(n: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "amount": rng.normal(size=n),
            "bank": rng.choice(["a", "b"], size=n),
            "fraud": rng.integers(0, 2, size=n),
        }
    )


# ----------------------------------------------------------------------------------- payload


def test_payload_has_config_metrics_curves_and_image_preview(tmp_path: Path) -> None:
    ledger, entry = _ledger()
    run_dir = _write_run_dir(tmp_path / "run", ledger, images=_preview_images(20))
    payload = wandb_payload(run_dir)

    # the config, resolved (run_dir is the run directory itself), with group and tags
    config = payload["config"]
    assert config["experiment_name"] == "paper_table2"
    assert config["run_dir"] == str(run_dir)
    assert config["logger"]["wandb_tags"] == ["paper", "smoke"]
    assert payload["group"] == "paper_table2"
    assert payload["tags"] == ["paper", "smoke"]

    # every number of metrics.json, bools as 0/1; strings as strings; nulls left out
    assert payload["summary"] == {
        "utility/tstr_auc": 0.71,
        "data/n_train": 1500.0,
        "privacy/is_dp": 1.0,
        "privacy/noise_calibrated": 1.0,
        "privacy/epsilon_realized_schedule": "inf",
        "privacy/accountant": "rdp",
    }

    curves = payload["curves"]
    assert curves["module"] == "discriminator"
    assert curves["noisy_step"] == list(range(1, len(SIGMAS) + 1))
    assert curves["noise_multiplier"] == entry.noise_multipliers() == SIGMAS
    eps = curves["epsilon"]
    assert len(eps) == len(SIGMAS)
    assert all(b >= a for a, b in zip(eps, eps[1:], strict=False))
    # each point is the composition of the release and the steps so far
    release = (20.0, 1.0, 1)
    for k, value in zip(curves["noisy_step"], eps, strict=True):
        prefix = [release, *[(s, SAMPLE_RATE, 1) for s in SIGMAS[:k]]]
        assert value == pytest.approx(compose_epsilon(prefix, delta=1e-5), rel=1e-9)
    assert eps[0] > compose_epsilon([release], delta=1e-5)
    assert eps[-1] == pytest.approx(ledger.epsilon_spent(), rel=1e-9)

    # 20 images, 10 per row: image r * 10 + c sits at grid block (r, c)
    grid = payload["image_grid"]
    assert grid.shape == (2 * 28, 10 * 28)
    assert grid.dtype == np.uint8
    for i in range(20):
        r, c = divmod(i, 10)
        assert np.all(grid[r * 28 : (r + 1) * 28, c * 28 : (c + 1) * 28] == i)
    assert "one row per class" in payload["image_caption"]
    assert payload["table_preview"] is None


def test_payload_previews_the_first_50_rows_of_a_synthetic_table(tmp_path: Path) -> None:
    ledger, _ = _ledger()
    table = _table(80)
    payload = wandb_payload(_write_run_dir(tmp_path / "run", ledger, table=table))
    preview = payload["table_preview"]
    assert preview is not None
    pd.testing.assert_frame_equal(preview, table.head(50))
    assert payload["image_grid"] is None


def test_epsilon_curve_includes_controller_signals_and_ends_at_the_ledger_total(
    tmp_path: Path,
) -> None:
    ledger, entry = _ledger(signal_steps=4)
    curves = wandb_payload(_write_run_dir(tmp_path / "run", ledger))["curves"]
    assert curves["noise_multiplier"] == SIGMAS  # the DP-SGD entry, not the signal's
    eps = curves["epsilon"]
    assert all(b >= a for a, b in zip(eps, eps[1:], strict=False))
    assert eps[-1] == pytest.approx(ledger.epsilon_spent(), rel=1e-9)
    without_signals = _ledger()[0].epsilon_spent()
    assert eps[-1] > without_signals


def test_adaptive_schedule_is_accounted_at_its_floor() -> None:
    ledger = PrivacyLedger(target_delta=1e-5, n_records=1000)
    entry = ledger.open_dp_sgd(
        module="discriminator",
        purpose="DP-SGD with a PID noise controller",
        records=1000,
        sample_rate=0.1,
        poisson_sampling=True,
        adaptive_noise_floor=0.8,
    )
    for sigma in (2.0, 1.5, 1.0, 3.0):
        ledger.step(entry, sigma)
    curves = privacy_curves(ledger.to_dict())
    assert curves is not None
    assert curves["noise_multiplier"] == [2.0, 1.5, 1.0, 3.0]  # what was used
    assert curves["epsilon"][-1] == pytest.approx(ledger.epsilon_spent(), rel=1e-9)
    assert curves["epsilon"][-1] > ledger.realized_epsilon()  # accounted at 0.8, not the sigmas
    assert curves["epsilon"][-1] == pytest.approx(
        compose_epsilon([(0.8, 0.1, 4)], delta=1e-5), rel=1e-9
    )


def test_long_runs_are_subsampled_to_at_most_max_points() -> None:
    ledger = PrivacyLedger(target_delta=1e-5, n_records=10_000)
    entry = ledger.open_dp_sgd(
        module="critic", purpose="DP-SGD", records=10_000, sample_rate=0.01, poisson_sampling=True
    )
    sigmas = [1.0 + 0.001 * (i // 7) for i in range(1234)]
    for sigma in sigmas:
        ledger.step(entry, sigma)
    curves = privacy_curves(ledger.to_dict(), max_points=50)
    assert curves is not None
    steps = curves["noisy_step"]
    assert len(steps) <= 50
    assert steps[0] == 1 and steps[-1] == 1234
    assert steps == sorted(set(steps))
    assert curves["noise_multiplier"] == [sigmas[k - 1] for k in steps]
    eps = curves["epsilon"]
    assert all(b >= a for a, b in zip(eps, eps[1:], strict=False))
    assert eps[-1] == pytest.approx(ledger.epsilon_spent(), rel=1e-9)


def test_no_curves_without_noisy_steps_and_no_epsilon_when_not_private() -> None:
    assert privacy_curves(PrivacyLedger(n_records=100).to_dict()) is None
    ledger, _ = _ledger()
    ledger.record_non_private(module="transformer_raw", purpose="raw statistics", records=1500)
    curves = privacy_curves(ledger.to_dict())
    assert curves is not None
    assert curves["noise_multiplier"] == SIGMAS
    assert curves["epsilon"] is None  # infinite: one raw read


# ------------------------------------------------------------------------------------ sending


def test_send_payload_to_an_offline_run(tmp_path: Path, offline_wandb: Path) -> None:
    import wandb

    ledger, _ = _ledger()
    run_dir = _write_run_dir(tmp_path / "run", ledger, images=_preview_images(20))
    payload = wandb_payload(run_dir)
    run = wandb.init(
        project="dpshare-test",
        mode="offline",
        dir=str(tmp_path),
        group=payload["group"],
        tags=payload["tags"],
        config=payload["config"],
    )
    try:
        dp_loggers.send_payload(run, payload)
        assert run.summary["utility/tstr_auc"] == 0.71
        assert run.summary["privacy/accountant"] == "rdp"
        files = Path(run.dir)
    finally:
        run.finish()
    (schedule,) = (files / "media" / "table" / "privacy").glob("schedule_*.table.json")
    logged = json.loads(schedule.read_text())
    assert logged["columns"] == ["noisy_step", "noise_multiplier", "epsilon"]
    curves = payload["curves"]
    assert [row[0] for row in logged["data"]] == curves["noisy_step"]
    assert [row[1] for row in logged["data"]] == curves["noise_multiplier"]
    assert [row[2] for row in logged["data"]] == pytest.approx(curves["epsilon"])
    assert list((files / "media" / "images" / "samples").glob("images_*.png"))


def test_a_wandb_failure_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class WandbLogger:  # the name log_run_record looks for
        @property
        def experiment(self) -> Any:
            raise RuntimeError("wandb service died")

    ledger, _ = _ledger()
    run_dir = _write_run_dir(tmp_path / "run", ledger)
    with caplog.at_level(logging.WARNING, logger="dpshare.loggers"):
        assert dp_loggers.log_run_record([WandbLogger()], run_dir) is False  # type: ignore[list-item]
    assert "wandb service died" in caplog.text
    assert dp_loggers.log_run_record([], run_dir) is False  # no W&B logger: nothing to do
    assert json.loads((run_dir / records.METRICS_FILE).read_text())["utility/tstr_auc"] == 0.71


# ------------------------------------------------------------------------------- end to end


def test_tiny_run_logs_to_an_offline_wandb_run(
    tmp_path: Path, offline_wandb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import TINY, compose_config
    from dpshare.train import train

    seen: dict[str, Any] = {}
    real_send = dp_loggers.send_payload

    def spy(run: Any, payload: dict[str, Any]) -> None:
        real_send(run, payload)
        seen.update(
            payload=payload,
            group=run.group,
            tags=list(run.tags),
            config=dict(run.config),
            summary_auc=run.summary["utility/tstr_auc"],
            files=Path(run.dir),
        )

    monkeypatch.setattr(dp_loggers, "send_payload", spy)
    run_dir = tmp_path / "run"
    cfg = compose_config(
        [
            *TINY,
            "logger=wandb",
            "privacy=fixed",
            "privacy.target_epsilon=5",
            "experiment_name=wandb_e2e",
            "tags=[smoke,wandb]",
        ],
        run_dir,
    )
    metrics = train(cfg)

    # the record on disk is complete
    on_disk = json.loads((run_dir / records.METRICS_FILE).read_text())
    assert json.loads((run_dir / records.RUN_FILE).read_text())["status"] == "complete"
    for key in ("utility/tstr_auc", "privacy/epsilon_spent", "privacy/noisy_steps"):
        assert key in on_disk
    assert on_disk["privacy/epsilon_spent"] <= 5.0
    # an offline W&B run in the run directory, with group, tags and the resolved config
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert seen["group"] == "wandb_e2e"
    assert sorted(seen["tags"]) == ["smoke", "wandb"]
    assert seen["config"]["experiment_name"] == "wandb_e2e"
    assert seen["config"]["privacy"]["target_epsilon"] == 5
    assert seen["summary_auc"] == pytest.approx(metrics["utility/tstr_auc"])
    # the curves come from this run's ledger and end at the spent epsilon
    curves = seen["payload"]["curves"]
    assert curves["noisy_step"][-1] == on_disk["privacy/noisy_steps"]
    assert curves["epsilon"][-1] == pytest.approx(on_disk["privacy/epsilon_spent"], rel=1e-9)
    assert set(curves["noise_multiplier"]) == {on_disk["privacy/noise_multiplier_min"]}
    assert math.isclose(min(curves["epsilon"]), curves["epsilon"][0])
    # the table preview reached the run's files
    files = seen["files"]
    (preview,) = (files / "media" / "table" / "samples").glob("synthetic_preview_*.table.json")
    assert len(json.loads(preview.read_text())["data"]) == 50
    assert list((files / "media" / "table" / "privacy").glob("schedule_*.table.json"))
