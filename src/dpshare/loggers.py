"""Experiment loggers: Lightning CSV logs always; Weights & Biases when ``logger.wandb``.

W&B runs offline unless the user sets ``WANDB_MODE`` or ``logger.wandb_mode``: offline needs no
network and no API key; sync later with ``wandb sync``. At the end of a successful run,
:func:`log_run_record` sends the run record (final metrics, noise and epsilon curves, a sample
preview; see :mod:`dpshare.reporting.wandb_log`). The caller must call :func:`finish_loggers`
in a ``finally`` so that multiruns never hang on an open W&B run. See docs/wandb.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger, Logger

log = logging.getLogger("dpshare.loggers")


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


def log_run_record(loggers: list[Logger], run_dir: Path) -> bool:
    """Send the finished run's record in ``run_dir`` to the W&B run, if ``loggers`` has one.

    Call once, after ``metrics.json`` is written and before :func:`finish_loggers`. Never raises:
    a failure is logged as a warning (the record on disk is already complete). Returns whether
    a payload was sent.
    """
    wandb_loggers: list[Any] = [lg for lg in loggers if type(lg).__name__ == "WandbLogger"]
    if not wandb_loggers:
        return False
    try:
        from dpshare.reporting.wandb_log import wandb_payload

        send_payload(wandb_loggers[0].experiment, wandb_payload(run_dir))
    except Exception as exc:
        log.warning(
            "could not log the run record to W&B (%s: %s); the record in %s is complete",
            type(exc).__name__,
            exc,
            run_dir,
        )
        return False
    return True


def send_payload(run: Any, payload: dict[str, Any]) -> None:
    """Log a :func:`~dpshare.reporting.wandb_log.wandb_payload` to an open ``wandb`` run: the
    metrics into the run summary, the rest in one ``run.log`` call (noise and epsilon line
    plots over noisy steps with their table, the image grid or the synthetic-table preview)."""
    import wandb

    run.summary.update(payload["summary"])
    media: dict[str, Any] = {}
    curves = payload.get("curves")
    if curves is not None:
        columns: list[str | int] = ["noisy_step", "noise_multiplier"]
        series = [curves["noisy_step"], curves["noise_multiplier"]]
        if curves.get("epsilon") is not None:
            columns.append("epsilon")
            series.append(curves["epsilon"])
        table = wandb.Table(columns=columns, data=[list(row) for row in zip(*series, strict=True)])
        media["privacy/schedule"] = table
        media["privacy/noise_multiplier_curve"] = wandb.plot.line(
            table,
            "noisy_step",
            "noise_multiplier",
            title=f"noise multiplier per noisy step ({curves['module']})",
        )
        if "epsilon" in columns:
            media["privacy/epsilon_curve"] = wandb.plot.line(
                table,
                "noisy_step",
                "epsilon",
                title=f"epsilon spent (RDP, delta={curves['delta']:g}) after each noisy step",
            )
    if payload.get("image_grid") is not None:
        media["samples/images"] = wandb.Image(
            payload["image_grid"], caption=payload.get("image_caption")
        )
    if payload.get("table_preview") is not None:
        media["samples/synthetic_preview"] = wandb.Table(dataframe=payload["table_preview"])
    if media:
        run.log(media)


def finish_loggers(loggers: list[Logger], status: str = "success") -> None:
    for logger in loggers:
        # finishing a logger must never mask the run's own error
        with contextlib.suppress(Exception):
            logger.finalize(status)
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish(exit_code=0 if status == "success" else 1)
