"""Dataclass schemas for the Hydra config groups.

Each YAML option in ``conf/<group>/`` starts its defaults list with
``/schema/<group>/<name>@_here_``,
so OmegaConf validates it against the dataclass below: a misspelt key or a value of the wrong type
fails at composition time with a message naming the key, not mid-run.

Schemas are stored under ``schema/<group>`` (not ``<group>``) so that they never show up as
selectable options of the group itself. Registration happens in :func:`register_configs`, called by
the entry points before Hydra composes, never at import time.

Config keys equal the constructor/function arguments they feed (STYLE.md, rule 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# --------------------------------------------------------------------------------------- dataset


@dataclass
class DatasetConfig:
    """Fields every dataset shares: its registry name and how the real records are split.

    The test split is held out for evaluation only; no generator, controller or model-selection
    step ever sees it.
    """

    name: str = MISSING
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    stratify: bool = True


@dataclass
class BankSimConfig(DatasetConfig):
    """The embedded cross-bank transaction simulator (docs/bank_sim.md)."""

    name: str = "bank_sim"
    n_transactions: int = 120_000
    n_banks: int = 5
    high_risk_rate: float = 0.03
    label_noise: float = 0.02
    days: int = 180
    start: str = "2025-01-01"
    seed: int = 0


# ---------------------------------------------------------------------------------------- method


@dataclass
class StandardGANConfig:
    """A label-conditioned GAN with one discriminator (Goodfellow et al. 2014; Mirza & Osindero
    2014), mixed-type outputs as in CTGAN (Xu et al. 2019): the Deng 2026 "standard GAN"
    baseline."""

    name: str = "standard_gan"
    latent_dim: int = 64
    generator_dims: list[int] = field(default_factory=lambda: [256, 256])
    discriminator_dims: list[int] = field(default_factory=lambda: [256, 256])
    dropout: float = 0.25
    batch_size: int = 500
    generator_lr: float = 2e-4
    discriminator_lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    weight_decay: float = 1e-6
    discriminator_steps: int = 1
    gumbel_tau: float = 0.2
    condition_on_label: bool = True
    continuous_mode: str = "standard"
    sample_size: int | None = None  # synthetic rows; None = size of the real train split


# --------------------------------------------------------------------------------------- privacy


@dataclass
class PrivacyConfig:
    """``none``: no differential privacy; every access to real records is still listed in the
    run's privacy ledger, and the run is marked non-private (epsilon = infinity)."""

    name: str = "none"


# ------------------------------------------------------------------------------------------ eval


@dataclass
class EvalConfig:
    """Train-on-synthetic / train-on-real utility on the held-out real test split."""

    name: str = "default"
    models: list[str] = field(
        default_factory=lambda: ["logistic_regression", "hist_gradient_boosting"]
    )
    primary_model: str = "hist_gradient_boosting"
    trtr: bool = True
    max_train_rows: int | None = None  # subsample TSTR/TRTR training tables (None = all rows)
    seed: int = 0


# --------------------------------------------------------------------------------------- trainer


@dataclass
class TrainerConfig:
    """Arguments of ``pytorch_lightning.Trainer`` (same names)."""

    accelerator: str = "cpu"
    devices: Any = 1
    max_epochs: int = 1
    precision: str = "32-true"
    deterministic: bool = True
    log_every_n_steps: int = 10
    enable_progress_bar: bool = False
    enable_model_summary: bool = False


# ---------------------------------------------------------------------------------------- logger


@dataclass
class LoggerConfig:
    """CSV logs always go to ``<run_dir>/csv``; W&B is added when ``wandb`` is true."""

    name: str = "csv"
    csv: bool = True
    wandb: bool = False
    wandb_project: str = "dpshare"
    wandb_entity: str | None = None
    # "offline" unless the user sets WANDB_MODE (or passes logger.wandb_mode=online)
    wandb_mode: str | None = None
    wandb_group: str | None = None
    wandb_tags: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- scale


@dataclass
class ScaleConfig:
    """How big a run is. ``smoke``: minutes on a 2-core CPU (CI, first contact). ``paper``: the
    papers' sizes (Deng 2026 Table 2: 100,000+ transaction records)."""

    name: str = MISSING
    max_records: int | None = None  # cap on real records drawn from the dataset (None = all)
    max_epochs: int = MISSING
    eval_max_train_rows: int | None = None


# ------------------------------------------------------------------------------------------ root


@dataclass
class RootConfig:
    """Top-level keys; the groups are validated by their own schemas."""

    dataset: Any = MISSING
    method: Any = MISSING
    privacy: Any = MISSING
    eval: Any = MISSING
    trainer: Any = MISSING
    logger: Any = MISSING
    scale: Any = MISSING
    experiment_name: str = "default"
    tags: list[str] = field(default_factory=list)
    seed: int = 0
    run_dir: str = MISSING
    output_root: str = "outputs"
    save_synthetic_csv: bool = True


_GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {"bank_sim": BankSimConfig},
    "method": {"standard_gan": StandardGANConfig},
    "privacy": {"none": PrivacyConfig},
    "eval": {"default": EvalConfig},
    "trainer": {"default": TrainerConfig},
    "logger": {"default": LoggerConfig},
    "scale": {"default": ScaleConfig},
}


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="root_schema", node=RootConfig)
    for group, options in _GROUP_SCHEMAS.items():
        for name, node in options.items():
            cs.store(group=f"schema/{group}", name=name, node=node)
