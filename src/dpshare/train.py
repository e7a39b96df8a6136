"""Entry point: ``python -m dpshare.train [hydra overrides]``.

``main`` only composes the config and calls :func:`train`, a plain function that builds
everything from the config, trains, samples, evaluates, writes the run record and returns the
metrics dict (lightning-hydra-template's shape), so tests call ``train(cfg)`` directly.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from dpshare.config import register_configs
from dpshare.data.base import split_records
from dpshare.data.datamodule import TabularDataModule
from dpshare.data.datasets import DATASETS
from dpshare.errors import UserInputError
from dpshare.evaluation import evaluate_utility
from dpshare.loggers import build_loggers, finish_loggers, log_summary
from dpshare.models import METHODS
from dpshare.privacy import PrivacyLedger
from dpshare.registry import UnknownNameError
from dpshare.reporting import records

log = logging.getLogger("dpshare.train")

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _quiet_libraries() -> None:
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one configuration end to end and return its metrics (also in ``metrics.json``)."""
    _quiet_libraries()
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    hydra_cfg = run_dir / ".hydra" / "config.yaml"
    if not hydra_cfg.exists():  # called outside a Hydra app (tests, notebooks)
        text = OmegaConf.to_yaml(cfg, resolve=True)
        records._atomic(hydra_cfg, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    started = time.time()
    run_info: dict[str, Any] = {
        "status": "running",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "experiment_name": cfg.experiment_name,
        "dataset": cfg.dataset.name,
        "method": cfg.method.name,
        "privacy": cfg.privacy.name,
        "scale": cfg.scale.name,
        "seed": cfg.seed,
        "tags": list(cfg.tags),
        "command": " ".join(sys.argv),
        "environment": records.environment(),
    }
    records.write_json(run_dir / records.RUN_FILE, run_info)
    stale = run_dir / records.METRICS_FILE
    stale.unlink(missing_ok=True)  # metrics.json marks completion; never keep an old one

    loggers: list[Any] = []
    status = "failed"
    try:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        t0 = time.perf_counter()
        data = DATASETS.get(cfg.dataset.name)(cfg.dataset, max_records=cfg.scale.max_records)
        splits = split_records(
            data,
            val_fraction=cfg.dataset.val_fraction,
            test_fraction=cfg.dataset.test_fraction,
            split_seed=cfg.dataset.split_seed,
            stratify=cfg.dataset.stratify,
        )
        data_seconds = time.perf_counter() - t0
        log.info("data: %s; splits %s", data.description, splits.sizes())

        ledger = PrivacyLedger()
        datamodule = TabularDataModule(
            data,
            splits.train,
            batch_size=cfg.method.batch_size,
            continuous_mode=cfg.method.continuous_mode,
            ledger=ledger,
            seed=cfg.seed,
        )
        method = METHODS.get(cfg.method.name)(cfg.method, datamodule)
        loggers = build_loggers(cfg, run_dir)
        trainer = pl.Trainer(
            **OmegaConf.to_container(cfg.trainer, resolve=True),
            logger=loggers or False,
            default_root_dir=str(run_dir),
            enable_checkpointing=False,
        )
        t0 = time.perf_counter()
        method.fit(trainer)
        fit_seconds = time.perf_counter() - t0

        t0 = time.perf_counter()
        n_synthetic = cfg.method.sample_size or datamodule.n_train
        synthetic = method.sample(n_synthetic, seed=cfg.seed)
        sample_seconds = time.perf_counter() - t0
        records.write_table(synthetic, run_dir, csv=cfg.save_synthetic_csv)
        records.write_torch(run_dir / records.MODEL_FILE, method.state_dict())

        t0 = time.perf_counter()
        metrics: dict[str, Any] = evaluate_utility(
            synthetic=synthetic,
            real_train=splits.train,
            real_test=splits.test,
            target=data.target,
            positive_label=data.positive_label,
            models=list(cfg.eval.models),
            primary_model=cfg.eval.primary_model,
            trtr=cfg.eval.trtr,
            max_train_rows=cfg.eval.max_train_rows,
            seed=cfg.eval.seed,
        )
        eval_seconds = time.perf_counter() - t0

        epsilon = ledger.epsilon_spent()
        target = data.target
        metrics.update(
            {
                "data/n_train": len(splits.train),
                "data/n_validation": len(splits.validation),
                "data/n_test": len(splits.test),
                "data/n_synthetic": len(synthetic),
                "data/n_features": len(data.feature_columns),
                "data/encoded_dim": datamodule.transformer.output_dim,
                "data/positive_rate_train": float(
                    (splits.train[target] == data.positive_label).mean()
                ),
                "data/positive_rate_synthetic": float(
                    (synthetic[target] == data.positive_label).mean()
                ),
                "privacy/is_dp": int(ledger.is_private),
                "privacy/epsilon_spent": epsilon,
                "privacy/non_private_accesses": len(ledger.non_private_entries),
                "train/discriminator_steps": getattr(method.module, "discriminator_updates", 0),
                "train/generator_steps": getattr(method.module, "generator_updates", 0),
                "runtime/data_seconds": data_seconds,
                "runtime/fit_seconds": fit_seconds,
                "runtime/sample_seconds": sample_seconds,
                "runtime/eval_seconds": eval_seconds,
                "runtime/total_seconds": time.time() - started,
            }
        )
        records.write_json(run_dir / records.LEDGER_FILE, ledger.to_dict())
        log_summary(loggers, metrics)
        records.write_json(run_dir / records.METRICS_FILE, metrics)  # last: marks completion
        status = "success"
        run_info.update(status="complete", finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        records.write_json(run_dir / records.RUN_FILE, run_info)
        return metrics
    except BaseException as exc:
        run_info.update(
            status="failed",
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(limit=20),
        )
        records.write_json(run_dir / records.RUN_FILE, run_info)
        raise
    finally:
        finish_loggers(loggers, status)


def summarize(metrics: dict[str, Any], run_dir: Path) -> str:
    def fmt(key: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{value:.3f}"

    return (
        f"run record: {run_dir}\n"
        f"  TSTR AUC {fmt('utility/tstr_auc')} | TRTR AUC {fmt('utility/trtr_auc')} | "
        f"TSTR F1 {fmt('utility/tstr_f1')} | TRTR F1 {fmt('utility/trtr_f1')} | "
        f"epsilon spent {metrics.get('privacy/epsilon_spent')} | "
        f"fit {metrics.get('runtime/fit_seconds', 0):.1f} s"
    )


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> dict[str, Any]:
    try:
        metrics = train(cfg)
    except (UserInputError, UnknownNameError) as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(summarize(metrics, Path(cfg.run_dir)))
    return metrics


def main() -> None:
    """Console script ``dpshare-train``."""
    register_configs()
    _hydra_main()


if __name__ == "__main__":
    main()
