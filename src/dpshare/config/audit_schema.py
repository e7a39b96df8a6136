"""Dataclass schema of ``conf/audit.yaml``, the config of ``python -m dpshare.audit``.

``conf/audit.yaml`` starts its defaults list with ``audit_schema``, so OmegaConf validates it
against :class:`AuditConfig`: a misspelt key or a wrong type fails at composition. Registration
happens in :func:`register_audit_config`, called by the entry point, never at import time.

Privacy keys use Opacus's words (``noise_multiplier``, ``max_grad_norm``, ``sample_rate``,
``target_delta``). Range checks (e.g. ``sample_rate`` in (0, 1]) are done by the audit itself,
which raises :class:`dpshare.errors.UserInputError` naming the key and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

AUDIT_SCHEMA_NAME = "audit_schema"


@dataclass
class AuditConfig:
    """One empirical audit of DP-SGD (Steinke, Nasr & Jagielski 2023, one training run).

    Mechanism (what is audited): DP-SGD with Poisson sampling, per-sample clipping to
    ``max_grad_norm`` and Gaussian noise of std ``noise_multiplier * max_grad_norm``;
    ``noise_multiplier = 0`` switches the noise off (not private; theoretical epsilon = inf).
    """

    # --- the DP-SGD mechanism (Opacus names)
    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    sample_rate: float = 0.02  # Poisson sampling probability of each record per step
    epochs: int | None = 10  # steps = epochs * round(1 / sample_rate); ignored if steps is set
    steps: int | None = None  # exact number of noisy steps; overrides epochs
    target_delta: float = 1e-5  # delta of both the theoretical and the empirical epsilon
    learning_rate: float = 1.0
    # --- the task: non-canary records (a Gaussian-mixture binary classification problem)
    n_train: int = 1000
    n_features: int = 10
    # --- the audit
    n_canaries: int = 1000  # m; each included independently with probability 1/2
    canary_norm: float = 10.0  # distance of each canary from the data (input-space canaries)
    k_positive: int = 100  # guess "included" for the k_positive highest scores
    k_negative: int = 100  # guess "excluded" for the k_negative lowest scores
    confidence: float = 0.95  # 1 - beta of the lower bound
    claimed_epsilon: float | None = None  # None: check the accountant's (theoretical) epsilon
    seed: int = 0
    # where audit.json goes; conf/audit.yaml sets Hydra's run dir
    output_dir: str = MISSING


def register_audit_config() -> None:
    """Store :class:`AuditConfig` in Hydra's ConfigStore as ``audit_schema`` (idempotent)."""
    ConfigStore.instance().store(name=AUDIT_SCHEMA_NAME, node=AuditConfig)
