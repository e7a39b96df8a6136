"""Experiment loggers: Lightning CSV logs always; Weights & Biases when ``logger.wandb``.

W&B runs offline unless the user sets ``WANDB_MODE`` or ``logger.wandb_mode``: offline needs no
network and no API key; sync later with ``wandb sync``. The caller must call :func:`finish_loggers`
in a ``finally`` so that multiruns never hang on an open W&B run.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger, Logger


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    loggers: list[Logger] = []
    if cfg.logger.csv:
        loggers.append(CSVLogger(save_dir=str(run_dir), name="csv", version=""))
    if cfg.logger.wandb:
        from pytorch_lightning.loggers import WandbLogger

        mode = cfg.logger.wandb_mode or os.environ.get("WANDB_MODE") or "offline"
        loggers.append(
            WandbLogger(
                project=cfg.logger.wandb_project,
                entity=cfg.logger.wandb_entity,
                group=cfg.logger.wandb_group,
                tags=list(cfg.logger.wandb_tags),
                save_dir=str(run_dir),
                mode=mode,
                config=OmegaConf.to_container(cfg, resolve=True),
            )
        )
    return loggers


def log_summary(loggers: list[Logger], metrics: dict[str, Any]) -> None:
    """Final metrics to every logger (numbers only)."""
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and v == v}
    for logger in loggers:
        logger.log_metrics(numeric)
        logger.save()


def finish_loggers(loggers: list[Logger], status: str = "success") -> None:
    for logger in loggers:
        # finishing a logger must never mask the run's own error
        with contextlib.suppress(Exception):
            logger.finalize(status)
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish(exit_code=0 if status == "success" else 1)
