"""Slow tests (`make test-slow`): every experiment at full smoke scale, and a DP epsilon sweep as a
Hydra multirun. Minutes on a 2-core CPU; not part of `make test`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import CONF_DIR, PYTHON, compose_config, subprocess_env
from dpshare.train import train

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("privacy", ["none", "fixed"])
def test_experiment_runs_at_smoke_scale(experiment: str, privacy: str, tmp_path: Path) -> None:
    cfg = compose_config(
        [f"experiment={experiment}", "scale=smoke", f"privacy={privacy}"], tmp_path / "run"
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["utility/tstr_auc"] <= 1.0
    if privacy == "fixed":
        assert metrics["privacy/epsilon_spent"] <= cfg.privacy.target_epsilon
        assert metrics["privacy/noisy_steps"] == metrics["privacy/planned_steps"]
    else:
        assert metrics["privacy/epsilon_spent"] == float("inf")


@pytest.mark.slow
def test_epsilon_sweep_multirun(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            PYTHON,
            "-m",
            "dpshare.train",
            "-m",
            "scale=smoke",
            "scale.max_epochs=5",
            "privacy=fixed",
            "privacy.target_epsilon=0.5,4.0",
            f"output_root={tmp_path}",
        ],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    runs = sorted(tmp_path.glob("multiruns/*/*/*/metrics.json"))
    assert len(runs) == 2
    spent = sorted(json.loads(p.read_text())["privacy/epsilon_spent"] for p in runs)
    assert 0.45 < spent[0] <= 0.5 and 3.9 < spent[1] <= 4.0
