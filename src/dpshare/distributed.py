"""One run on several devices (Lightning DDP): what is supported, what is refused, and why.

Supported: a NON-private run (``privacy=none``) started as ONE run (``python -m dpshare.train
trainer=ddp ...``, no ``-m``), or started by a cluster that creates one process per device itself
(SLURM tasks, torchrun). Lightning's DDP launcher then re-executes the command line once per extra
device; every process trains its share of each batch, gradients are averaged, and only the rank-0
process samples, evaluates and writes the run record.

Refused before any training (docs/launchers.md):

- DP-SGD on more than one device. Correct DP-SGD under data parallelism needs Opacus's
  distributed pieces (per-rank Poisson sampling of a shard, ``DistributedDPOptimizer``: clipped
  sums all-reduced, noise added ONCE per step, by one rank) and one accountant step per global
  step; Lightning's DDP wrapper and ghost clipping's two backward passes do not fit that, and a
  noise controller would have to broadcast its decisions. Until that is built and tested, a DP run
  on several devices could print an epsilon it did not spend, so it stops.
- Several devices inside a Hydra multirun (``-m``) when Lightning would start the extra processes
  itself: it re-executes ``sys.argv``, so each extra process would launch the whole sweep again.
- Strategies whose processes do not return to the caller's state (``ddp_spawn``, ``ddp_fork``,
  ``ddp_notebook``: the step counters the run record reports stay in the children) and non-DDP
  strategies (FSDP, DeepSpeed: untested here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers import _SubprocessScriptLauncher

from dpshare.errors import UserInputError

DP_MULTI_DEVICE = (
    "DP-SGD across several devices is not supported yet: run with trainer.devices=1 (and "
    "trainer.strategy=auto); {what}. Correct DP-SGD on several devices needs Opacus's "
    "distributed optimizer (noise added once per step across processes, each step accounted "
    "once), which dpshare does not wire into Lightning's DDP yet (docs/launchers.md). "
    "Non-private runs (privacy=none) can use several devices."
)


def requested_devices(devices: Any) -> int | None:
    """How many devices ``trainer.devices`` asks for, when the config says so explicitly
    (``2``, ``"2"``, ``[0, 1]``, ``"0,1"``); None for ``"auto"`` or ``-1`` (decided by the
    machine; :func:`check_trainer` decides once the Trainer knows)."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return devices if devices >= 0 else None
    if isinstance(devices, str):
        text = devices.strip()
        if "," in text:
            return len([part for part in text.split(",") if part.strip()])
        try:
            count = int(text)
        except ValueError:
            return None
        return count if count >= 0 else None
    if isinstance(devices, Sequence) or hasattr(devices, "__len__"):
        return len(devices)
    return None


def check_config(trainer_cfg: Any, *, private: bool) -> None:
    """At the start of a run, before any data is read: refuse DP-SGD when the config asks for
    more than one device (or node) explicitly."""
    if not private:
        return
    devices = requested_devices(trainer_cfg.get("devices", 1))
    nodes = int(trainer_cfg.get("num_nodes", 1))
    if (devices is not None and devices > 1) or nodes > 1:
        raise UserInputError(
            DP_MULTI_DEVICE.format(
                what=f"got trainer.devices={trainer_cfg.get('devices')!r}"
                + (f", trainer.num_nodes={nodes}" if nodes > 1 else "")
            )
        )


def check_trainer(trainer: pl.Trainer, *, private: bool, seed: int) -> None:
    """Before ``fit``: refuse what the module docstring lists, then give each process its own
    random stream (``seed + global rank``), so the generated half of a discriminator batch
    differs between processes instead of being drawn identically by all of them. DDP copies
    rank 0's weights to every process when it wraps the model, so the models stay identical."""
    world_size = trainer.world_size
    if world_size <= 1:
        return
    if private:
        raise UserInputError(
            DP_MULTI_DEVICE.format(what=f"the trainer would run {world_size} processes")
        )
    strategy = trainer.strategy
    launcher = strategy.launcher
    if not isinstance(strategy, DDPStrategy) or not (
        launcher is None or isinstance(launcher, _SubprocessScriptLauncher)
    ):
        raise UserInputError(
            f"trainer.strategy={type(strategy).__name__} on {world_size} devices is not "
            "supported: use trainer=ddp (strategy ddp_find_unused_parameters_true); spawned or "
            "forked processes (ddp_spawn, ddp_fork, ddp_notebook) keep the step counters the "
            "run record needs, and FSDP/DeepSpeed are untested (docs/launchers.md)"
        )
    environment = strategy.cluster_environment
    self_launched = environment is not None and not environment.creates_processes_externally
    if self_launched and not _hydra_single_run():
        raise UserInputError(
            f"{world_size} devices with Lightning starting the extra processes itself works only "
            "for ONE run started from the command line (python -m dpshare.train trainer=ddp "
            "..., without -m): Lightning re-executes the command line once per extra device, "
            "so inside a multirun every extra process would launch the whole sweep again. "
            "Sweep with trainer.devices=1, or on SLURM start one task per device "
            "(hydra.launcher.tasks_per_node=<devices>; docs/launchers.md)"
        )
    torch.manual_seed(seed + trainer.global_rank)


def _hydra_single_run() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN
