"""From a ``privacy`` config to a concrete plan: sample rate, planned noisy steps, planned releases,
a (calibrated) noise multiplier or noise range, and the noise controller.

Calibration uses the ACTUAL number of noisy steps the run plans (epochs x Poisson steps per
epoch) and the releases made or planned besides DP-SGD (the transformer's statistics, the
moments a Frechet-distance signal compares to, one noisy count per monitored step). For the
``pid`` and ``wgan_feedback`` controllers the calibrated sigma is the FLOOR of the noise range:
every planned step fits the budget even if the controller sat at ``sigma_min`` throughout, and the
ledger's hard stop guards the rest.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dpshare.errors import UserInputError
from dpshare.privacy.accounting import (
    calibrate_noise_multiplier,
    check_accountant,
    check_delta,
    max_steps_within_budget,
)

SIGNAL_SOURCES = ("dp", "public_validation")
TRAINING_LENGTHS = ("epochs", "budget")
TRANSFORMER_FITS = ("dp", "non_private")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetSnapshot:
    """One more released point of a ``training_length=budget`` run (``privacy.snapshots``): the
    model after ``steps`` noisy steps of the SAME trajectory, which is DP at ``(target_epsilon,
    target_delta)`` on its own (a prefix of DP-SGD is DP-SGD with fewer steps; releasing
    several prefixes together is covered by the longest one's guarantee).

    ``budget_steps``: steps the accountant allows at this point (0: not even one, the point
    fails with that reason); ``steps``: where the model is captured, the budget or the run's
    planned steps, whichever comes first (``capped``: the compute cap came first)."""

    target_epsilon: float
    target_delta: float
    budget_steps: int
    steps: int
    capped: bool

    @property
    def name(self) -> str:
        return f"eps{self.target_epsilon:g}_delta{self.target_delta:g}"


@dataclass
class PrivacyPlan:
    """Everything a training loop needs to run DP-SGD on one discriminator."""

    name: str
    sample_rate: float
    expected_batch_size: int
    steps_per_epoch: int
    planned_steps: int
    noise_multiplier: float  # initial sigma
    max_grad_norm: float  # initial C
    sigma_min: float
    sigma_max: float
    calibrated: bool
    poisson_sampling: bool
    grad_sample_mode: str
    transformer_fit: str
    release_noise_multiplier: float
    signal_source: str
    signal_noise_multiplier: float
    signal_sample_rate: float
    monitor_every: int
    signals: tuple[str, ...]
    n_probe: int = 256
    noise_seed: int | None = None
    planned_history: list[tuple[float, float, int]] = field(default_factory=list)
    controller_kwargs: dict[str, Any] = field(default_factory=dict)
    max_epochs: int = 1  # epochs the trainer runs (trainer.max_epochs, or from the budget)
    training_length: str = "epochs"
    budget_steps: int | None = None  # training_length=budget: noisy steps the accountant allows
    capped: bool = False  # budget_max_epochs stopped training before the budget was spent
    snapshots: list[BudgetSnapshot] = field(default_factory=list)  # privacy.snapshots
    # Secret seed of the releases made before training (transformer statistics, class counts):
    # drawn per run from OS entropy when checkpoints are on, so that a resumed run reproduces
    # the SAME releases instead of making new ones (dpshare.checkpoint). Kept in the checkpoint
    # only, never in a record: with it the releases' noise could be recomputed.
    release_seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        hidden = ("controller_kwargs", "release_seed")
        out = {k: v for k, v in self.__dict__.items() if k not in hidden}
        out["snapshots"] = [dict(s.__dict__) for s in self.snapshots]
        return out

    def release_rng(self, stream: int) -> np.random.Generator:
        """The generator of a pre-training release: ``noise_seed`` (tests) first, else the
        secret :attr:`release_seed`, else OS entropy."""
        if self.noise_seed is None and self.release_seed is not None:
            return np.random.default_rng([self.release_seed, stream])
        return self.noise_rng(stream)

    def release_seed_for(self, stream: int) -> int | None:
        """An integer seed for a pre-training release (None: OS entropy)."""
        if self.noise_seed is not None:
            return self.noise_seed + stream
        if self.release_seed is not None:
            return int(np.random.default_rng([self.release_seed, stream]).integers(2**62))
        return None

    def noise_rng(self, stream: int) -> np.random.Generator:
        """A numpy generator for DP noise: OS entropy unless ``noise_seed`` is set (tests)."""
        if self.noise_seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.noise_seed, stream])


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    return getattr(cfg, key, default) if not isinstance(cfg, dict) else cfg.get(key, default)


def plan_privacy(
    privacy: Any,
    *,
    n_train: int,
    batch_size: int,
    max_epochs: int,
    class_counts_release: bool = True,
    transformer_release: bool = True,
    method_releases: int = 0,
) -> PrivacyPlan:
    """Resolve a ``privacy`` config (``fixed`` | ``pid`` | ``wgan_feedback``) for a train split
    of ``n_train`` records, ``batch_size`` expected real records per step, ``max_epochs``.
    ``class_counts_release=False`` for a method that releases no class counts (a classifier);
    ``transformer_release=False`` for one that scales by public bounds only (``dp_wgan``);
    ``method_releases``: Gaussian releases of sensitivity 1 at ``release_noise_multiplier`` the
    method makes before training (e.g. multidisc_gan's mean embedding)."""
    name = privacy.name
    check_accountant(privacy.accountant)
    delta = check_delta(privacy.target_delta)
    target = privacy.target_epsilon
    if target is not None and not (math.isfinite(target) and target > 0):
        raise UserInputError(
            f"privacy.target_epsilon must be > 0 (or null), got {target}; give a positive "
            "budget (e.g. privacy.target_epsilon=1.0), or privacy=none for a non-private run"
        )
    if privacy.transformer_fit not in TRANSFORMER_FITS:
        raise UserInputError(
            f"privacy.transformer_fit={privacy.transformer_fit!r}; choose one of "
            f"{list(TRANSFORMER_FITS)}"
        )
    if privacy.signal_source not in SIGNAL_SOURCES:
        raise UserInputError(
            f"privacy.signal_source={privacy.signal_source!r}; choose one of {list(SIGNAL_SOURCES)}"
        )
    for key in ("release_noise_multiplier", "signal_noise_multiplier", "max_grad_norm"):
        if not _get(privacy, key) > 0:
            raise UserInputError(
                f"privacy.{key} must be > 0, got {_get(privacy, key)}; set a positive number "
                f"(the default is in conf/privacy/{name}.yaml)"
            )
    if not 0 < privacy.signal_sample_rate <= 1:
        raise UserInputError(
            f"privacy.signal_sample_rate must be in (0, 1], got {privacy.signal_sample_rate}"
        )
    if privacy.monitor_every < 1:
        raise UserInputError(f"privacy.monitor_every must be >= 1, got {privacy.monitor_every}")
    if max_epochs < 1:
        raise UserInputError(f"trainer.max_epochs must be >= 1 under DP, got {max_epochs}")

    sample_rate = batch_size / n_train
    # Opacus's Poisson sampler yields int(1 / q) batches per epoch.
    steps_per_epoch = int(1 / sample_rate) if privacy.poisson_sampling else n_train // batch_size
    planned_steps = max_epochs * steps_per_epoch

    # Gaussian releases of sensitivity 1 (q = 1, one step each): the transformer's statistics
    # and (generators) the class counts, the method's own, and the controller's moments
    weights: dict[str, float] = {}  # the PID controller's signals (privacy=pid)
    if name == "pid":
        weights = {k: float(v) for k, v in dict(privacy.pid.signal_weights).items() if v > 0}
    releases = int(method_releases) + int("frechet_distance" in weights)
    if privacy.transformer_fit == "dp":
        releases += int(transformer_release) + int(class_counts_release)
    release_sigma = _release_noise_multiplier(privacy, target, delta, releases)
    planned: list[tuple[float, float, int]] = [(release_sigma, 1.0, 1)] * releases

    signals: tuple[str, ...] = ()
    controller_kwargs: dict[str, Any] = {}
    if name == "pid":
        settings = privacy.pid
        signals = tuple(weights)
        if "val_utility" in weights and privacy.signal_source != "public_validation":
            raise UserInputError(
                "privacy.pid.signal_weights.val_utility needs privacy.signal_source="
                "public_validation (a downstream AUC on real records has no DP release here); "
                "set its weight to 0 or declare the validation split public"
            )
        if "disc_accuracy" in weights and privacy.signal_source == "dp":
            events = planned_steps // privacy.monitor_every
            if events:
                planned.append(
                    (
                        float(privacy.signal_noise_multiplier),
                        float(privacy.signal_sample_rate),
                        events,
                    )
                )
        controller_kwargs = {
            "kp": settings.kp,
            "ki": settings.ki,
            "kd": settings.kd,
            "window": settings.window,
            "setpoint": settings.setpoint,
            "signal_weights": weights,
            "max_step_change": settings.max_step_change,
            "integral_limit": settings.integral_limit,
            "fd_scale": settings.fd_scale,
        }
    elif name == "wgan_feedback":
        settings = privacy.wgan_feedback
        signals = ("generated_similarity",)
        controller_kwargs = {
            "clip_min": settings.clip_min,
            "clip_max": settings.clip_max,
            "similarity_threshold": settings.similarity_threshold,
            "sigma_factor": settings.sigma_factor,
            "clip_factor": settings.clip_factor,
            "accuracy_weight": settings.accuracy_weight,
            "patience": settings.patience,
        }
    elif name != "fixed":
        raise UserInputError(f"privacy={name!r} is not a DP-SGD strategy")

    training_length = str(_get(privacy, "training_length", "epochs"))
    budget_steps: int | None = None
    capped = False
    if training_length not in TRAINING_LENGTHS:
        raise UserInputError(
            f"privacy.training_length={training_length!r}; choose one of {list(TRAINING_LENGTHS)}"
        )
    if training_length == "budget":
        sigma_fixed = privacy.noise_multiplier if name == "fixed" else None
        if name != "fixed" or sigma_fixed is None or target is None:
            raise UserInputError(
                "privacy.training_length=budget trains as long as the budget allows at a FIXED "
                "sigma: it needs privacy=fixed with both privacy.noise_multiplier and "
                f"privacy.target_epsilon set (got privacy={name}, noise_multiplier="
                f"{privacy.noise_multiplier}, target_epsilon={target})"
            )
        budget_steps = max_steps_within_budget(
            target_epsilon=target,
            target_delta=delta,
            sample_rate=sample_rate,
            noise_multiplier=float(sigma_fixed),
            prior_history=planned,
        )
        if budget_steps < 1:
            raise UserInputError(
                f"privacy.noise_multiplier={sigma_fixed} is too small to take even one step "
                f"within privacy.target_epsilon={target} at delta {delta:g} (sample rate "
                f"{sample_rate:.4g}); raise sigma or epsilon, or use smaller batches"
            )
        max_epochs = math.ceil(budget_steps / steps_per_epoch)
        cap = _get(privacy, "budget_max_epochs")
        if cap is not None:
            if int(cap) < 1:
                raise UserInputError(f"privacy.budget_max_epochs must be >= 1, got {cap}")
            if int(cap) < max_epochs:
                max_epochs, capped = int(cap), True
        planned_steps = min(budget_steps, max_epochs * steps_per_epoch)
    snapshots = _budget_snapshots(
        _get(privacy, "snapshots") or [],
        training_length=training_length,
        delta=delta,
        sample_rate=sample_rate,
        noise_multiplier=privacy.noise_multiplier if name == "fixed" else None,
        prior_history=planned,
        planned_steps=planned_steps,
        main=(target, delta),
    )

    calibrated = False
    if name == "fixed":
        sigma = privacy.noise_multiplier
        if sigma is None:
            if target is None:
                raise UserInputError(
                    "privacy=fixed needs privacy.noise_multiplier or privacy.target_epsilon"
                )
            sigma = calibrate_noise_multiplier(
                target_epsilon=target,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=planned_steps,
                prior_history=planned,
            )
            calibrated = True
        sigma_min = sigma_max = float(sigma)
        initial = float(sigma)
    else:
        sigma_min = settings.sigma_min
        if sigma_min is None:
            if target is None:
                raise UserInputError(
                    f"privacy={name} needs privacy.{name}.sigma_min or privacy.target_epsilon"
                )
            sigma_min = calibrate_noise_multiplier(
                target_epsilon=target,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=planned_steps,
                prior_history=planned,
            )
            calibrated = True
        sigma_max = settings.sigma_max if settings.sigma_max is not None else 2.0 * sigma_min
        if not 0 < sigma_min <= sigma_max:
            raise UserInputError(
                f"privacy.{name}: need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}"
            )
        initial = float(sigma_max)  # noise starts high (Deng 2026 Sec. 3.5; Tao 2020 Sec. 2.4)
    if target is not None and not calibrated and training_length == "epochs":
        # a sigma (floor) the user fixed: the ledger's hard stop ends training at the first step
        # that would pass the budget (a run that can take none fails when it ends, see
        # dpshare.models.checks.check_trained); say so now, before any work
        key = "privacy.noise_multiplier" if name == "fixed" else f"privacy.{name}.sigma_min"
        fit = (
            max_steps_within_budget(
                target_epsilon=target,
                target_delta=delta,
                sample_rate=sample_rate,
                noise_multiplier=float(sigma_min),
                prior_history=planned,
                max_steps=planned_steps,
            )
            if sigma_min > 0
            else 0
        )
        if fit < planned_steps:
            log.warning(
                "%s=%g fits only %d of the %d planned noisy steps within privacy.target_epsilon="
                "%g: training stops %s (raise %s or privacy.target_epsilon, or leave %s null to "
                "calibrate it)",
                key,
                sigma_min,
                fit,
                planned_steps,
                target,
                "early at the budget" if fit else "before its first step and the run fails",
                key,
                key,
            )
    max_grad_norm = float(privacy.max_grad_norm)
    if name == "wgan_feedback":
        max_grad_norm = float(privacy.wgan_feedback.clip_max)
    return PrivacyPlan(
        name=name,
        sample_rate=sample_rate,
        expected_batch_size=int(batch_size),
        steps_per_epoch=steps_per_epoch,
        planned_steps=planned_steps,
        noise_multiplier=initial,
        max_grad_norm=max_grad_norm,
        sigma_min=float(sigma_min),
        sigma_max=float(sigma_max),
        calibrated=calibrated,
        poisson_sampling=bool(privacy.poisson_sampling),
        grad_sample_mode=privacy.grad_sample_mode,
        transformer_fit=privacy.transformer_fit,
        release_noise_multiplier=release_sigma,
        signal_source=privacy.signal_source,
        signal_noise_multiplier=float(privacy.signal_noise_multiplier),
        signal_sample_rate=float(privacy.signal_sample_rate),
        monitor_every=int(privacy.monitor_every),
        signals=signals,
        noise_seed=privacy.noise_seed,
        n_probe=int(privacy.wgan_feedback.n_probe) if name == "wgan_feedback" else 256,
        planned_history=planned,
        controller_kwargs=controller_kwargs,
        max_epochs=int(max_epochs),
        training_length=training_length,
        budget_steps=budget_steps,
        capped=capped,
        snapshots=snapshots,
    )


def _release_noise_multiplier(
    privacy: Any, target: float | None, delta: float, releases: int
) -> float:
    """The noise multiplier of the run's ``releases`` Gaussian releases (sensitivity 1, q = 1):
    ``privacy.release_noise_multiplier``, or with ``privacy.release_budget_share`` = s the
    smallest one at which those releases alone spend at most s * target_epsilon at ``delta``
    (RDP; the joint account with DP-SGD is what the ledger keeps, and DP-SGD's sigma is then
    calibrated for what is left). A fixed multiplier is as noisy at epsilon 10 as at 1; a share
    keeps the statistics' noise in proportion to the budget."""
    fixed = float(privacy.release_noise_multiplier)
    share = _get(privacy, "release_budget_share")
    if share is None:
        return fixed
    share = float(share)
    if not (math.isfinite(share) and 0 < share < 1):
        raise UserInputError(
            f"privacy.release_budget_share must be in (0, 1) (or null for the fixed "
            f"privacy.release_noise_multiplier), got {share}"
        )
    if target is None:
        raise UserInputError(
            "privacy.release_budget_share is a share of privacy.target_epsilon, which is null; "
            "set privacy.target_epsilon, or leave the share null"
        )
    if releases < 1:
        return fixed  # nothing released at it
    return calibrate_noise_multiplier(
        target_epsilon=share * float(target),
        target_delta=delta,
        sample_rate=1.0,
        steps=releases,
    )


def _budget_snapshots(
    specs: Any,
    *,
    training_length: str,
    delta: float,
    sample_rate: float,
    noise_multiplier: float | None,
    prior_history: list[tuple[float, float, int]],
    planned_steps: int,
    main: tuple[float | None, float],
) -> list[BudgetSnapshot]:
    """``privacy.snapshots`` resolved: each point's budget in steps at the run's fixed sigma and
    sample rate, composed with the same pre-training releases as the run itself."""
    specs = list(specs)
    if not specs:
        return []
    if training_length != "budget" or noise_multiplier is None:
        raise UserInputError(
            "privacy.snapshots releases more points of ONE noisy trajectory at a fixed sigma: it "
            "needs privacy=fixed with privacy.training_length=budget and privacy.noise_multiplier "
            "set (or leave privacy.snapshots empty)"
        )
    out: list[BudgetSnapshot] = []
    seen = {(main[0], main[1])}
    for spec in specs:
        if not hasattr(spec, "get") or spec.get("target_epsilon") is None:
            raise UserInputError(
                f"privacy.snapshots entry {spec!r}: give a mapping with target_epsilon (and "
                "optionally target_delta), e.g. {target_epsilon: 0.5, target_delta: 1.0e-5}"
            )
        unknown = sorted(set(spec) - {"target_epsilon", "target_delta"})
        if unknown:
            raise UserInputError(
                f"privacy.snapshots entry {dict(spec)}: unknown key(s) {unknown}; only "
                "target_epsilon and target_delta"
            )
        eps = spec.get("target_epsilon")
        if (
            isinstance(eps, bool)
            or not isinstance(eps, int | float)
            or not (math.isfinite(eps) and eps > 0)
        ):
            raise UserInputError(
                f"privacy.snapshots: target_epsilon must be a finite number > 0, got {eps!r}"
            )
        d = check_delta(spec.get("target_delta", delta))
        if (float(eps), d) in seen:
            continue  # the run itself, or a duplicate
        seen.add((float(eps), d))
        budget = max_steps_within_budget(
            target_epsilon=float(eps),
            target_delta=d,
            sample_rate=sample_rate,
            noise_multiplier=float(noise_multiplier),
            prior_history=prior_history,
        )
        steps = min(budget, planned_steps)
        out.append(
            BudgetSnapshot(
                target_epsilon=float(eps),
                target_delta=d,
                budget_steps=budget,
                steps=steps,
                capped=budget > planned_steps,
            )
        )
    return sorted(out, key=lambda s: (s.steps, s.target_epsilon, s.target_delta))
