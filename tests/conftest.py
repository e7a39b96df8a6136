"""Shared fixtures: compose the real Hydra config, shrunk to seconds on a CPU."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

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


# DP noise in tests: a DP run's noise comes from OS entropy unless privacy.noise_seed is set, so a
# test that asserts a number after DP training would pass or fail by chance. compose_config seeds
# it with TEST_NOISE_SEED unless the test names privacy.noise_seed itself (privacy.noise_seed=null:
# OS entropy on purpose, e.g. to check the secret release seed of a checkpoint).
TEST_NOISE_SEED = 20261206


def compose_config(overrides: list[str], run_dir: Path | None = None) -> DictConfig:
    register_configs()
    extra = [f"run_dir={run_dir}"] if run_dir is not None else ["run_dir=unused"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, *extra])
    names_seed = any(o.lstrip("+~").startswith("privacy.noise_seed") for o in overrides)
    if not names_seed and "noise_seed" in cfg.privacy and cfg.privacy.noise_seed is None:
        with open_dict(cfg):
            cfg.privacy.noise_seed = TEST_NOISE_SEED
    return cfg


@pytest.fixture(autouse=True)
def deterministic_state():
    """Every test starts from the same global state, whatever ran before it or in what order
    (pytest -p randomly, one file alone): seeded torch / numpy / random generators; and leaves
    the process as it found it: torch's thread count and deterministic-algorithms flag (a
    Lightning Trainer(deterministic=True) or train(torch_threads=1) would otherwise leak into
    every later test and change float32 summation order there)."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> DictConfig:
    return compose_config(TINY, tmp_path / "run")


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("WANDB_MODE", "offline")
    return env


PYTHON = sys.executable
