"""Shared fixtures: compose the real Hydra config, shrunk to seconds on a CPU."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dpshare.config import register_configs

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"

# A run that takes seconds: ~2,500 simulated transactions, 2 epochs.
TINY = [
    "scale=smoke",
    "scale.max_records=2500",
    "scale.max_epochs=2",
    "method.batch_size=200",
    "method.generator_dims=[64]",
    "method.discriminator_dims=[64]",
    "trainer.log_every_n_steps=1",
]


def compose_config(overrides: list[str], run_dir: Path | None = None) -> DictConfig:
    register_configs()
    extra = [f"run_dir={run_dir}"] if run_dir is not None else ["run_dir=unused"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[*overrides, *extra])


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> DictConfig:
    return compose_config(TINY, tmp_path / "run")


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("WANDB_MODE", "offline")
    return env


PYTHON = sys.executable
