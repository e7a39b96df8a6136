"""Launchers (docs/launchers.md): joblib and submitit multiruns, the SLURM preset, and one run on
several devices with Lightning DDP (non-private only; DP-SGD on several devices is refused).

Fast tests compose the presets, render the SLURM batch script with a stand-in ``sbatch`` and check
the multi-device guards. Slow tests run real 2-point multiruns through ``submitit_local`` and the
default ``joblib`` launcher with two workers, and a 2-process DDP run on the CPU (gloo); on a
2-core CPU each takes 13-26 s.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from conftest import CONF_DIR, PYTHON, TINY, compose_config, subprocess_env
from dpshare import distributed
from dpshare.config import register_configs
from dpshare.errors import UserInputError
from dpshare.reporting import records
from dpshare.train import train

# A 2-point sweep of tiny runs: ~1,400 train records, one epoch, two cheap evaluations.
SWEEP = [
    "scale=smoke",
    "scale.max_records=2000",
    "trainer.max_epochs=1",
    "eval.attacks=[mia_dcr]",
    "eval.fidelity=[prdc]",
    "seed=0,1",
]


def compose_with_hydra(overrides: list[str]) -> DictConfig:
    """The config with its ``hydra`` node (launcher settings), not resolved."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[*overrides, "run_dir=unused"], return_hydra_config=True)


def launcher_env() -> dict[str, str]:
    env = subprocess_env()
    env.setdefault("OMP_NUM_THREADS", "1")  # jobs run side by side on a small machine
    return env


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    return subprocess.run(
        [PYTHON, "-m", "dpshare.train", *args],
        cwd=cwd,
        env=env or launcher_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def complete_records(sweep_dir: Path) -> list[dict]:
    runs = []
    for metrics_file in sorted(sweep_dir.glob("*/" + records.METRICS_FILE)):
        run = json.loads((metrics_file.parent / records.RUN_FILE).read_text())
        assert run["status"] == "complete"
        runs.append({"run": run, "metrics": json.loads(metrics_file.read_text())})
    return runs


# ------------------------------------------------------------------------------------- presets


def test_slurm_preset_composes_over_submitit_slurm() -> None:
    cfg = compose_with_hydra(["hydra/launcher=slurm", "hydra.launcher.partition=gpu_a100"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert launcher["partition"] == "gpu_a100"
    assert launcher["account"] is None
    assert launcher["gpus_per_node"] == 1 and launcher["tasks_per_node"] == 1
    assert launcher["nodes"] == 1
    assert launcher["timeout_min"] == 240
    assert launcher["cpus_per_task"] == 8 and launcher["mem_gb"] == 32
    assert launcher["array_parallelism"] == 16
    assert launcher["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"


def test_slurm_preset_renders_the_batch_script(tmp_path: Path) -> None:
    """The preset, through the real Hydra plugin and submitit, yields these ``#SBATCH`` lines; a
    stand-in ``sbatch`` keeps the script and refuses the submission (no cluster here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "submitted.sh"
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\ncp "$1" "{script}"\necho "stand-in sbatch: not submitted" >&2\nexit 1\n'
    )
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit checks that srun exists
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    env = launcher_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    sweep_dir = tmp_path / "sweep"
    out = run_cli(
        [
            "-m",
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu_a100",
            "hydra.launcher.account=proj42",
            "scale=smoke",
            "seed=0,1",
            f"output_root={tmp_path}",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert out.returncode != 0 and "stand-in sbatch" in out.stderr, out.stderr[-2000:]
    lines = set(script.read_text().splitlines())
    for flag in (
        "--partition=gpu_a100",
        "--account=proj42",
        "--array=0-1%2",  # two sweep points, at most 16 at a time
        "--nodes=1",
        "--ntasks-per-node=1",
        "--gpus-per-node=1",
        "--cpus-per-task=8",
        "--mem=32GB",
        "--time=240",
        f"--output={sweep_dir}/.submitit/%A_%a/%A_%a_0_log.out",
    ):
        assert f"#SBATCH {flag}" in lines, flag
    assert not list(sweep_dir.glob("*/" + records.METRICS_FILE))  # nothing ran


def test_multiruns_default_to_joblib() -> None:
    launcher = compose_with_hydra([]).hydra.launcher
    assert launcher._target_.endswith("joblib_launcher.JoblibLauncher")
    basic = compose_with_hydra(["hydra/launcher=basic"]).hydra.launcher
    assert basic._target_.endswith("basic_launcher.BasicLauncher")


def test_ddp_trainer_preset_composes() -> None:
    cfg = compose_config(["trainer=ddp", "trainer.accelerator=cpu"])
    assert cfg.trainer.strategy == "ddp_find_unused_parameters_true"
    assert cfg.trainer.devices == 2
    assert compose_config([]).trainer.strategy == "auto"  # one process unless asked


# ------------------------------------------------------------------------ multi-device guards


@pytest.mark.parametrize(
    ("devices", "expected"),
    [(1, 1), (2, 2), ("2", 2), ([0, 1], 2), ("0,1", 2), ("auto", None), (-1, None), ("-1", None)],
)
def test_requested_devices(devices: object, expected: int | None) -> None:
    assert distributed.requested_devices(devices) == expected


def test_dp_on_several_devices_is_refused_before_any_data_is_read(tmp_path: Path) -> None:
    cfg = compose_config(
        [
            *TINY,
            "privacy=fixed",
            "privacy.target_epsilon=1.0",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
        ],
        tmp_path / "run",
    )
    with pytest.raises(UserInputError, match="DP-SGD across several devices is not supported yet"):
        train(cfg)
    run = json.loads((tmp_path / "run" / records.RUN_FILE).read_text())
    assert run["status"] == "failed" and "trainer.devices=1" in run["error"]
    assert not (tmp_path / "run" / records.METRICS_FILE).exists()
    assert not (tmp_path / "run" / records.LEDGER_FILE).exists()


def test_non_private_run_may_ask_for_several_devices() -> None:
    cfg = compose_config(["trainer=ddp", "trainer.accelerator=cpu", "privacy=none"])
    distributed.check_config(cfg.trainer, private=False)  # no error


def _cpu_trainer(devices: int, strategy: str) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_dp_is_refused_when_the_trainer_runs_several_processes() -> None:
    """The backstop for ``devices: auto`` / ``-1``: the built Trainer's world size decides."""
    trainer = _cpu_trainer(2, "ddp_find_unused_parameters_true")
    with pytest.raises(UserInputError, match="DP-SGD across several devices.*2 processes"):
        distributed.check_trainer(trainer, private=True, seed=0)


def test_self_launched_ddp_outside_a_single_hydra_run_is_refused() -> None:
    """Outside ``python -m dpshare.train`` without ``-m`` (here: pytest; likewise a multirun),
    Lightning would re-execute this process's command line once per extra device."""
    trainer = _cpu_trainer(2, "ddp_find_unused_parameters_true")
    with pytest.raises(UserInputError, match="ONE run started from the command line"):
        distributed.check_trainer(trainer, private=False, seed=0)


@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_fork"])
def test_spawned_or_forked_processes_are_refused(strategy: str) -> None:
    trainer = _cpu_trainer(2, strategy)
    with pytest.raises(UserInputError, match="keep the step counters"):
        distributed.check_trainer(trainer, private=False, seed=0)


def test_one_device_passes_every_guard() -> None:
    trainer = _cpu_trainer(1, "auto")
    distributed.check_trainer(trainer, private=True, seed=0)  # no error


# ------------------------------------------------------------------------------ slow: launches


@pytest.mark.slow
def test_submitit_local_multirun(tmp_path: Path) -> None:
    """~25 s on a 2-core CPU (both jobs start at once, each imports the stack)."""
    sweep_dir = tmp_path / "sweep"
    out = run_cli(
        [
            "-m",
            *SWEEP,
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",  # a hung job is killed, not waited on for an hour
            f"output_root={tmp_path}",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in out.stdout
    runs = complete_records(sweep_dir)
    assert sorted(r["run"]["seed"] for r in runs) == [0, 1]
    for r in runs:
        assert 0.0 <= r["metrics"]["utility/tstr_auc"] <= 1.0
    logs = sorted((sweep_dir / ".submitit").glob("*/*_0_log.out"))
    assert len(logs) == 2
    for log in logs:
        assert "Job completed successfully" in log.read_text()
        assert log.with_name(log.name.replace("_log.out", "_log.err")).exists()


@pytest.mark.slow
def test_joblib_multirun(tmp_path: Path) -> None:
    """The default launcher, asked for two workers: ~22 s on a 2-core CPU."""
    sweep_dir = tmp_path / "sweep"
    out = run_cli(
        [
            "-m",
            *SWEEP,
            "hydra.launcher.n_jobs=2",
            f"output_root={tmp_path}",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in out.stdout
    runs = complete_records(sweep_dir)
    assert sorted(r["run"]["seed"] for r in runs) == [0, 1]
    # the same seed gives the same run whatever the launcher (trainer.deterministic on a CPU)
    assert len({r["metrics"]["data/n_train"] for r in runs}) == 1


@pytest.mark.slow
def test_ddp_run_on_two_cpu_processes(tmp_path: Path) -> None:
    """One non-private run, two processes (gloo): ~15 s. Each process trains on its half of
    every epoch, so the number of discriminator steps halves; rank 0 alone writes the record."""
    out = run_cli(
        [
            *TINY,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "privacy=none",
            "eval.attacks=[mia_dcr]",
            "eval.fidelity=[prdc]",
            f"output_root={tmp_path}",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_dirs = [p.parent for p in tmp_path.glob("runs/*/*/" + records.RUN_FILE)]
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]
    assert (run_dir / "train_ddp_process_1.log").exists()  # the second process ran
    assert json.loads((run_dir / records.RUN_FILE).read_text())["status"] == "complete"
    metrics = json.loads((run_dir / records.METRICS_FILE).read_text())
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    n_train, batch = metrics["data/n_train"], cfg.method.batch_size
    per_process = -(-n_train // 2)  # DistributedSampler pads to an equal share
    assert metrics["train/discriminator_steps"] == cfg.trainer.max_epochs * (per_process // batch)
    assert metrics["privacy/is_dp"] == 0
    assert out.stdout.count("run record:") == 1  # only rank 0 evaluates and reports
