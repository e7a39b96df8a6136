"""Slow tests (`make test-slow`): every experiment at full smoke scale, and a DP epsilon sweep as a
Hydra multirun. Minutes on a 2-core CPU; not part of `make test`."""

from __future__ import annotations

import json
import math
import os
import subprocess
from importlib.util import find_spec
from pathlib import Path

import pytest

from conftest import CONF_DIR, PYTHON, compose_config, subprocess_env
from dpshare.models import METHODS
from dpshare.report import expected_grid
from dpshare.train import train

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_at_smoke_scale(experiment: str, tmp_path: Path) -> None:
    """Each experiment at its own settings (its method, dataset and privacy protocol) at the
    first point of its sweep, end to end at smoke scale. Experiments fix a privacy
    protocol (the sweep is over epsilon, sigma or delta), so none runs with privacy=none: the
    non-private references are experiments of their own (bank_sim_standard_gan,
    mnist_dpgan_nonprivate)."""
    if experiment == "deng2026_medical" and not os.environ.get("MIMIC3_ROOT"):
        pytest.skip("needs the full MIMIC-III (MIMIC3_ROOT); the demo has 34 train records")
    # the sweep supplies what the base config leaves open (epsilon, sigma): its first point
    grid = expected_grid(experiment, "smoke")
    point = [f"{key}={values[0]}" for key, values in grid.items() if key != "seed"]
    cfg = compose_config([f"experiment={experiment}", "scale=smoke", *point], tmp_path / "run")
    peer = getattr(METHODS.get(cfg.method.name), "external_accounting", False)
    if peer and not find_spec("snsynth"):
        pytest.skip("the peers extra is not installed (make install-peers)")
    metrics = train(cfg)
    auc = metrics.get("utility/downstream_auc")
    assert auc is not None and 0.0 <= auc <= 1.0
    spent = metrics["privacy/epsilon_spent"]
    if cfg.privacy.name == "none":
        assert spent == float("inf")
        return
    target = cfg.privacy.get("target_epsilon")
    assert math.isfinite(spent) and spent > 0
    if target is not None:
        assert spent <= target * (1 + 1e-9)
    if "privacy/planned_steps" in metrics and not metrics.get("privacy/budget_capped"):
        assert metrics["privacy/noisy_steps"] == metrics["privacy/planned_steps"]


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
