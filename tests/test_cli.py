"""The command line: clear errors for unknown names, and 2-point multiruns on both launchers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, TINY, subprocess_env


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "dpshare.train", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_unknown_dataset_fails_listing_valid_datasets(tmp_path: Path) -> None:
    out = _run(["dataset=nonexistent"], tmp_path, timeout=120)
    assert out.returncode != 0
    assert "Could not find 'dataset/nonexistent'" in out.stderr
    assert "Available options in 'dataset'" in out.stderr
    assert "bank_sim" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_value_fails_with_one_clear_line(tmp_path: Path) -> None:
    out = _run([*TINY, "method.batch_size=999999", f"output_root={tmp_path}"], tmp_path, 300)
    assert out.returncode == 2
    assert "error: method.batch_size=999999 is larger than the real train split" in out.stderr
    assert "Traceback" not in out.stderr


# the basic launcher runs the same code path in one process: slow target only (suite time)
@pytest.mark.parametrize("launcher", [pytest.param("basic", marks=pytest.mark.slow), "joblib"])
def test_two_point_multirun(tmp_path: Path, launcher: str) -> None:
    args = [
        "-m",
        *TINY,
        "scale.max_epochs=1",
        "seed=0,1",
        f"output_root={tmp_path}",
        f"hydra/launcher={launcher}",
    ]
    if launcher == "joblib":
        args.append("hydra.launcher.n_jobs=2")
    out = _run(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics_files = sorted(tmp_path.glob("multiruns/*/*/*/metrics.json"))
    assert len(metrics_files) == 2, out.stdout + out.stderr[-2000:]
    seeds = set()
    for path in metrics_files:
        metrics = json.loads(path.read_text())
        assert 0.0 <= metrics["utility/trtr_auc"] <= 1.0
        config = (path.parent / ".hydra" / "config.yaml").read_text()
        seeds.add(next(ln for ln in config.splitlines() if ln.startswith("seed:")))
        # Hydra keeps interpolations in its copy; the record's own copy is fully resolved
        resolved = (path.parent / "config_resolved.yaml").read_text()
        assert "${" in config and "${" not in resolved
        assert f"run_dir: {path.parent}" in resolved
    assert seeds == {"seed: 0", "seed: 1"}
