"""Entry point: ``python -m dpshare.audit [hydra overrides]`` — an empirical audit of DP-SGD.

One training run, ``n_canaries`` canaries each included independently with probability 1/2
(Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run", NeurIPS 2023). After
training, every canary gets a loss-based membership score; the auditor guesses "in" for the
``k_positive`` highest scores and "out" for the ``k_negative`` lowest, and the number of correct
guesses becomes an empirical *lower* bound on epsilon at ``confidence``
(:mod:`dpshare.privacy.audit`). It is printed beside the accountant's *upper* bound (Opacus
``RDPAccountant``) and, when given, the ``claimed_epsilon``; a lower bound above the claim is a
violation: the claim is false.

What is audited is the DP-SGD mechanism (Poisson sampling, per-sample clipping, Gaussian noise),
so the non-canary records are a generated two-Gaussian classification task and the model is a
logistic regression. Canaries are input-space points at distance ``canary_norm`` from the data,
each along its own axis orthogonal to the data (and to the other canaries), with a random label:
the model can fit a canary only if it trained on it, and canaries do not interfere with each
other, so the audit is sensitive (easy to detect when noise is off) and cheap.

``main`` only composes the config and calls :func:`run_audit`, a plain function that tests call
directly; it returns the record written to ``<output_dir>/audit.json``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dpshare.config.audit_schema import register_audit_config
from dpshare.errors import UserInputError
from dpshare.privacy.audit import AuditResult, audit_one_run
from dpshare.reporting import records

log = logging.getLogger("dpshare.audit")

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
AUDIT_FILE = "audit.json"
SCORE = "calibrated_loss"  # loss at the data origin minus loss at the canary (higher = "in")


# --------------------------------------------------------------------------------- validation


def check_config(cfg: Any) -> int:
    """Raise :class:`UserInputError` naming the key and the fix; return the number of steps."""

    def fail(message: str) -> None:
        raise UserInputError(message)

    sigma = float(cfg.noise_multiplier)
    if not (sigma >= 0 and math.isfinite(sigma)):
        fail(f"noise_multiplier={cfg.noise_multiplier} must be >= 0 (0 switches the noise off)")
    if not float(cfg.max_grad_norm) > 0:
        fail(f"max_grad_norm={cfg.max_grad_norm} must be > 0 (the per-sample clipping norm)")
    if not 0 < float(cfg.sample_rate) <= 1:
        fail(f"sample_rate={cfg.sample_rate} must lie in (0, 1] (Poisson sampling probability)")
    if not 0 < float(cfg.target_delta) < 1:
        fail(f"target_delta={cfg.target_delta} must lie in (0, 1), e.g. 1e-5")
    if not float(cfg.learning_rate) > 0:
        fail(f"learning_rate={cfg.learning_rate} must be > 0")
    if cfg.n_train < 1:
        fail(f"n_train={cfg.n_train} must be >= 1")
    if cfg.n_features < 1:
        fail(f"n_features={cfg.n_features} must be >= 1")
    if cfg.n_canaries < 1:
        fail(f"n_canaries={cfg.n_canaries} must be >= 1 (e.g. 1000)")
    if not float(cfg.canary_norm) > 0:
        fail(f"canary_norm={cfg.canary_norm} must be > 0")
    if cfg.k_positive < 0 or cfg.k_negative < 0 or cfg.k_positive + cfg.k_negative < 1:
        fail(
            f"k_positive={cfg.k_positive}, k_negative={cfg.k_negative}: both must be >= 0 and "
            "at least one guess is needed"
        )
    if cfg.k_positive + cfg.k_negative > cfg.n_canaries:
        fail(
            f"k_positive + k_negative = {cfg.k_positive + cfg.k_negative} exceeds "
            f"n_canaries={cfg.n_canaries}; lower the guesses or raise n_canaries"
        )
    if not 0 < float(cfg.confidence) < 1:
        fail(f"confidence={cfg.confidence} must lie in (0, 1), e.g. 0.95")
    if cfg.claimed_epsilon is not None and not float(cfg.claimed_epsilon) >= 0:
        fail(f"claimed_epsilon={cfg.claimed_epsilon} must be >= 0 (or null)")
    if cfg.steps is not None:
        if cfg.steps < 1:
            fail(f"steps={cfg.steps} must be >= 1 (or null to use epochs)")
        return int(cfg.steps)
    if cfg.epochs is None or cfg.epochs < 1:
        fail(f"epochs={cfg.epochs} must be >= 1, or set steps")
    return int(cfg.epochs) * max(1, round(1.0 / float(cfg.sample_rate)))


# ------------------------------------------------------------------------------- task, canaries


@dataclass(frozen=True)
class CanaryTask:
    """Non-canary records plus ``m`` canaries; ``included[j]`` says whether canary j trains.

    Inputs have ``n_features + n_canaries`` columns: the data lives in the first
    ``n_features``; canary j is ``canary_norm * e_{n_features + j}`` with a random label.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    canary_x: np.ndarray
    canary_y: np.ndarray
    included: np.ndarray

    @property
    def input_dim(self) -> int:
        return int(self.train_x.shape[1])

    def training_set(self) -> tuple[np.ndarray, np.ndarray]:
        """Non-canary records followed by the included canaries."""
        x = np.concatenate([self.train_x, self.canary_x[self.included]])
        y = np.concatenate([self.train_y, self.canary_y[self.included]])
        return x, y


def make_task(
    *, n_train: int, n_features: int, n_canaries: int, canary_norm: float, seed: int
) -> CanaryTask:
    """Two unit-variance Gaussians at ``+-mu`` (``|mu| = 1``) labelled 1/0, plus canaries."""
    rng = np.random.default_rng(seed)
    dim = n_features + n_canaries
    mu = np.full(n_features, 1.0 / math.sqrt(n_features))
    train_y = rng.integers(0, 2, size=n_train).astype(np.float32)
    train_x = np.zeros((n_train, dim), dtype=np.float32)
    signs = (2.0 * train_y - 1.0)[:, None]
    train_x[:, :n_features] = signs * mu + rng.standard_normal((n_train, n_features))
    canary_x = np.zeros((n_canaries, dim), dtype=np.float32)
    canary_x[np.arange(n_canaries), n_features + np.arange(n_canaries)] = canary_norm
    canary_y = rng.integers(0, 2, size=n_canaries).astype(np.float32)
    included = rng.random(n_canaries) < 0.5
    return CanaryTask(train_x, train_y, canary_x, canary_y, included)


# ------------------------------------------------------------------------------------ DP-SGD


def train_dp_sgd(
    x: np.ndarray,
    y: np.ndarray,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    sample_rate: float,
    steps: int,
    expected_batch_size: int,
    learning_rate: float,
    seed: int,
) -> tuple[torch.nn.Module, Any]:
    """Logistic regression trained by Opacus DP-SGD; returns the model and its RDP accountant.

    A plain torch loop rather than a LightningModule on purpose: this is a measurement
    instrument, and every DP step is visible here in a dozen lines (Poisson batch -> per-sample
    gradients -> clip to ``max_grad_norm`` -> add N(0, (noise_multiplier * max_grad_norm)^2)
    -> divide by ``expected_batch_size`` -> SGD step -> account), with nothing between the
    mechanism and the audit; it also runs in seconds. The accountant is advanced by the
    optimizer's step hook, so it counts the noisy steps actually taken.
    """
    from opacus import GradSampleModule
    from opacus.accountants import RDPAccountant
    from opacus.data_loader import DPDataLoader
    from opacus.optimizers import DPOptimizer

    torch.manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], 1)
    torch.nn.init.zeros_(model.weight)  # canary weights start at exactly 0: no init noise
    torch.nn.init.zeros_(model.bias)
    module = GradSampleModule(model, loss_reduction="mean")
    optimizer = DPOptimizer(
        torch.optim.SGD(module.parameters(), lr=learning_rate),
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        expected_batch_size=expected_batch_size,
        loss_reduction="mean",
        generator=torch.Generator().manual_seed(seed + 1),
    )
    accountant = RDPAccountant()
    optimizer.attach_step_hook(
        lambda _: accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
    )
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = DPDataLoader(
        dataset, sample_rate=sample_rate, generator=torch.Generator().manual_seed(seed + 2)
    )
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="mean")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: thread synchronisation costs more than it saves
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Full backward hook is firing.*")
            taken = 0
            while taken < steps:
                for batch_x, batch_y in loader:
                    optimizer.zero_grad(set_to_none=True)
                    if len(batch_x):
                        loss_fn(module(batch_x).squeeze(-1), batch_y).backward()
                    else:  # empty Poisson batch: the step still adds noise, still accounted
                        for p in module.parameters():
                            p.grad_sample = torch.zeros((0, *p.shape))
                    optimizer.step()
                    taken += 1
                    if taken == steps:
                        break
    finally:
        torch.set_num_threads(threads)
    return model, accountant


def canary_scores(model: torch.nn.Module, canary_x: np.ndarray, canary_y: np.ndarray) -> np.ndarray:
    """Membership score per canary: loss at the origin (no canary feature) minus loss at the
    canary, both with the canary's label. Higher = the model fits the canary = "included".

    Subtracting the reference loss removes the shared bias's effect, which otherwise ranks
    canaries by label rather than by membership (a loss "calibrated" per example).
    """
    with torch.no_grad():
        x = torch.from_numpy(canary_x)
        y = torch.from_numpy(canary_y)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(x).squeeze(-1), y, reduction="none"
        )
        origin = model(torch.zeros_like(x)).squeeze(-1)
        reference = torch.nn.functional.binary_cross_entropy_with_logits(
            origin, y, reduction="none"
        )
    return (reference - loss).double().numpy()


def theoretical_epsilon(accountant: Any, *, noise_multiplier: float, delta: float) -> float:
    """The accountant's epsilon at ``delta``; ``inf`` without noise (not a DP mechanism)."""
    if noise_multiplier == 0:
        return math.inf
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Oo]ptimal order.*")
        return float(accountant.get_epsilon(delta=delta))


# -------------------------------------------------------------------------------------- audit


def run_audit(cfg: Any) -> dict[str, Any]:
    """Train once with canaries, audit, write ``<output_dir>/audit.json`` and return its dict."""
    started = time.perf_counter()
    if not isinstance(cfg, DictConfig):  # an AuditConfig (or a dict) from Python code
        cfg = OmegaConf.structured(cfg) if not isinstance(cfg, dict) else OmegaConf.create(cfg)
    steps = check_config(cfg)
    task = make_task(
        n_train=int(cfg.n_train),
        n_features=int(cfg.n_features),
        n_canaries=int(cfg.n_canaries),
        canary_norm=float(cfg.canary_norm),
        seed=int(cfg.seed),
    )
    x, y = task.training_set()
    # a public constant (never the realised dataset size, which depends on the canaries drawn)
    expected_batch_size = max(1, round(float(cfg.sample_rate) * (cfg.n_train + cfg.n_canaries / 2)))
    t0 = time.perf_counter()
    model, accountant = train_dp_sgd(
        x,
        y,
        noise_multiplier=float(cfg.noise_multiplier),
        max_grad_norm=float(cfg.max_grad_norm),
        sample_rate=float(cfg.sample_rate),
        steps=steps,
        expected_batch_size=expected_batch_size,
        learning_rate=float(cfg.learning_rate),
        seed=int(cfg.seed),
    )
    train_seconds = time.perf_counter() - t0
    steps_accounted = sum(int(run[2]) for run in accountant.history)
    scores = canary_scores(model, task.canary_x, task.canary_y)
    epsilon = theoretical_epsilon(
        accountant, noise_multiplier=float(cfg.noise_multiplier), delta=float(cfg.target_delta)
    )
    config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(config, dict)
    parameters = {
        **{str(k): v for k, v in config.items() if k != "output_dir"},
        "steps_taken": steps_accounted,
        "expected_batch_size": expected_batch_size,
        "model": "logistic_regression",
        "canaries": "input-space, one orthogonal axis each, random label",
        "score": SCORE,
    }
    result: AuditResult = audit_one_run(
        scores,
        task.included,
        k_positive=int(cfg.k_positive),
        k_negative=int(cfg.k_negative),
        delta=float(cfg.target_delta),
        confidence=float(cfg.confidence),
        theoretical_epsilon=epsilon,
        claimed_epsilon=cfg.claimed_epsilon,
        seed=[int(cfg.seed), 1],  # tie-breaking: a numpy stream apart from make_task's
        parameters=parameters,
    )
    record = result.to_dict()
    record["runtime"] = {
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - started,
    }
    record["versions"] = _versions()
    output = Path(cfg.output_dir) / AUDIT_FILE
    records.write_json(output, record)
    record["path"] = str(output)
    log.info("audit record: %s", output)
    return record


def _versions() -> dict[str, str]:
    import opacus
    import scipy

    import dpshare

    return {
        "dpshare": dpshare.__version__,
        "torch": torch.__version__,
        "opacus": opacus.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }


def summarize(record: dict[str, Any]) -> str:
    """``empirical epsilon lower bound X (95% conf) vs theoretical epsilon Y ...`` (one line)."""

    def fmt(value: Any) -> str:
        return "inf" if value is None or math.isinf(float(value)) else f"{float(value):.3f}"

    line = (
        f"empirical epsilon lower bound {fmt(record['epsilon_lower_bound'])} "
        f"({record['confidence']:.0%} conf) vs theoretical epsilon "
        f"{fmt(record['theoretical_epsilon'])} (delta={record['delta']:g})"
    )
    if record["claimed_epsilon"] is not None:
        line += f"; claimed epsilon {fmt(record['claimed_epsilon'])}"
    counts = record["counts"]
    line += (
        f"; {counts['n_correct']}/{counts['n_guesses']} guesses correct"
        f"; violation: {'YES' if record['violation'] else 'no'}"
    )
    return line


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="audit")
def _hydra_main(cfg: DictConfig) -> dict[str, Any]:
    try:
        record = run_audit(cfg)
    except UserInputError as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(summarize(record))
    print(f"audit record: {record['path']}")
    return record


def main() -> None:
    """``python -m dpshare.audit``."""
    register_audit_config()
    _hydra_main()


if __name__ == "__main__":
    main()
