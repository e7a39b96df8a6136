"""Python API: compose a run's config, train it (writing the usual run record), then draw more
synthetic rows from the fitted method, e.g. with a different class mix or feature conditions.

    from dpshare.api import fit
    run = fit("dataset=bank_sim", "method=multidisc_gan", "privacy=pid",
              "privacy.target_epsilon=1.0", "scale=smoke")
    run.metrics["privacy/epsilon_spent"]
    rows = run.sample(10_000, class_mix={1: 0.3, 0: 0.7})

Sampling is post-processing of the released generator (and of statistics already charged to
the run's ledger), so it spends no further privacy. A finished run can be loaded again later,
without retraining and without reading any real record (the saved generator artifact,
:mod:`dpshare.artifact`; docs/sampling.md):

    from dpshare.api import load
    run = load("outputs/runs/default/<run>")
    rows = run.sample(50_000, seed=1, class_mix={1: 0.3, 0: 0.7})
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dpshare.artifact import load_run
from dpshare.config import register_configs
from dpshare.models.base import SyntheticDataMethod
from dpshare.reporting import records
from dpshare.train import CONF_DIR, train_method

__all__ = ["FittedRun", "compose_config", "fit", "load"]


def compose_config(
    overrides: Sequence[str] = (), *, run_dir: str | Path | None = None
) -> DictConfig:
    """The run config for Hydra-style ``overrides`` (``"key=value"`` strings), as
    ``python -m dpshare.train <overrides>`` would compose it. Without ``run_dir`` the record goes
    to ``<output_root>/runs/<experiment_name>/<time>_<dataset>_<method>_<privacy>/``."""
    register_configs()
    overrides = [str(o) for o in overrides]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        if run_dir is None:
            probe = compose("config", overrides=[*overrides, "run_dir=unused"])
            stamp = records.run_stamp()
            name = f"{stamp}_{probe.dataset.name}_{probe.method.name}_{probe.privacy.name}"
            run_dir = Path(probe.output_root) / "runs" / probe.experiment_name / name
        return compose("config", overrides=[*overrides, f"run_dir={run_dir}"])


@dataclass
class FittedRun:
    """A trained method with its metrics and the directory of its run record (from
    :func:`fit`, or loaded from disk by :func:`load`)."""

    method: SyntheticDataMethod
    metrics: dict[str, Any]
    run_dir: Path

    def sample(self, n: int, *, seed: int = 0, **options: Any) -> pd.DataFrame:
        """``n`` more synthetic rows in the released schema; ``options`` go to the method's
        ``sample`` (``class_mix``, and for ``multidisc_gan`` also ``conditions`` and
        ``refine``; docs/multidisc_gan.md)."""
        return self.method.sample(n, seed=seed, **options)


def fit(*overrides: str, run_dir: str | Path | None = None) -> FittedRun:
    """Train one configuration (same overrides as the command line) and keep the fitted method."""
    cfg = compose_config(overrides, run_dir=run_dir)
    metrics, method = train_method(cfg)
    return FittedRun(method=method, metrics=metrics, run_dir=Path(cfg.run_dir))


def load(run_dir: str | Path) -> FittedRun:
    """The run in ``run_dir`` (a finished ``standard_gan``, ``multidisc_gan`` or ``dp_wgan``
    run) as :func:`fit` returned it: ``.sample(n, seed=..., class_mix=..., conditions=...)``
    draws rows in the original schema, and ``.metrics`` is its ``metrics.json``.

    Nothing is retrained and no real record is read: the method is rebuilt from the run's
    generator artifact (``generator.json`` + ``generator.pt``, checked against the SHA-256 in
    ``run.json``; :mod:`dpshare.artifact`), so sampling costs no privacy and the ledger is
    unchanged. The same seed gives the same rows as the in-process run on the same CPU settings.
    Raises :class:`dpshare.artifact.ArtifactError` (a
    :class:`~dpshare.errors.UserInputError`) for a run it cannot load."""
    loaded = load_run(run_dir)
    return FittedRun(method=loaded.method, metrics=loaded.metrics, run_dir=loaded.run_dir)
