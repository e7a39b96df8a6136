"""Noise controllers: decide the DP-SGD noise multiplier (sigma) and clipping bound (C) for the
NEXT noisy steps from monitored signals.

A controller is a small state machine. Every ``monitor_every`` noisy steps the training loop
calls :meth:`NoiseController.observe` with the signals it measured, then applies
``controller.noise_multiplier`` and ``controller.max_grad_norm`` to Opacus's ``DPOptimizer`` (as
Opacus's noise schedulers do). Controllers:

- ``fixed`` (:class:`FixedController`): one sigma and one C for the whole run (Abadi et al. 2016).
- ``pid`` (:class:`PIDController`): Deng 2026, Sec. 3.3 and 3.5: a PID loop on a sliding-window
  mean of a quality score built from discriminator accuracy, Frechet distance and validation
  utility; noise starts high and goes down as quality rises past the setpoint.
- ``wgan_feedback`` (:class:`WGANFeedbackController`): Tao 2020, Sec. 2.4: compare successive
  generated results G1, G2 (same fixed latent vectors); once they are similar enough for
  ``patience`` checks, lower sigma (and optionally C) one notch; raise it back when they diverge.

What a controller does NOT do (docs/controllers.md):

- **Accounting.** A controller never knows epsilon. The ledger composes, step by step, whichever
  sigmas were actually used, and refuses a step that would exceed the target. The plan calibrates
  ``sigma_min`` so that every planned step fits even at the floor.
- **Reading real data.** Signals are computed by the caller (``dpshare.models.monitor``), either
  through a DP mechanism charged to the ledger, on a split the config declares public, or on
  synthetic data only. A controller's decisions are post-processing of those signals and cost no
  further privacy.

Units: sigma is Opacus's ``noise_multiplier`` (noise std / clipping bound, dimensionless); C is
``max_grad_norm`` (an L2 norm of a per-sample gradient). This module is pure (numpy only; no
torch, Lightning or wandb; STYLE.md rule 2).
"""

from __future__ import annotations

import abc
import inspect
import math
from collections import deque
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from dpshare.errors import UserInputError
from dpshare.registry import Registry

__all__ = [
    "CONTROLLERS",
    "QUALITY_SIGNALS",
    "FixedController",
    "NoiseController",
    "PIDController",
    "WGANFeedbackController",
    "generated_similarity",
    "make_controller",
    "signal_quality",
]

CONTROLLERS: Registry[type[NoiseController]] = Registry("controller")


# ------------------------------------------------------------------------------------ helpers


def generated_similarity(batch1: np.ndarray, batch2: np.ndarray) -> float:
    """Similarity of two generated batches G1, G2 (Tao 2020, Sec. 2.4), in [0, 1].

    ``1 / (1 + rms)`` where ``rms = sqrt(mean((G1 - G2) ** 2))`` is the root-mean-square
    difference per element. Both batches must come from the SAME fixed latent vectors (and
    labels), so row ``i`` of G1 and row ``i`` of G2 are the same latent point seen by the
    generator at two moments. 1 means identical outputs (the generator has stopped moving); the
    value falls towards 0 as the outputs move apart. It is symmetric, and the per-element RMS
    makes it independent of batch size and of the number of encoded features.

    Reads synthetic data only, so it costs no privacy. Non-finite entries (a diverged generator)
    give ``nan``, which a controller ignores (and records).

    Raises:
        ValueError: the shapes differ or the batches are empty.
    """
    a = np.asarray(batch1, dtype=np.float64)
    b = np.asarray(batch2, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"generated batches must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("generated batches are empty")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.nan
    with np.errstate(over="ignore"):  # a huge difference overflows to inf: similarity 0
        rms = float(np.sqrt(np.mean(np.square(a - b))))
    return 1.0 / (1.0 + rms)


def _disc_accuracy_quality(accuracy: float, _fd_scale: float) -> float:
    return min(1.0, max(0.0, 1.0 - 2.0 * abs(accuracy - 0.5)))


def _frechet_quality(distance: float, fd_scale: float) -> float:
    return math.exp(-max(distance, 0.0) / fd_scale)


def _val_utility_quality(auc: float, _fd_scale: float) -> float:
    return min(1.0, max(0.0, (auc - 0.5) / 0.5))


QUALITY_SIGNALS: Mapping[str, Callable[[float, float], float]] = {
    # D's accuracy on real vs generated records: 0.5 = D is fooled (good), 0 or 1 = D separates
    # them perfectly (bad). quality = clip(1 - 2 |acc - 0.5|, 0, 1).
    "disc_accuracy": _disc_accuracy_quality,
    # Frechet distance >= 0 between generated and real moments (lower is better).
    # quality = exp(-fd / fd_scale): 1 at fd = 0, 1/e at fd = fd_scale.
    "frechet_distance": _frechet_quality,
    # downstream validation utility, e.g. an AUC in [0, 1] (0.5 = chance).
    # quality = clip((auc - 0.5) / 0.5, 0, 1).
    "val_utility": _val_utility_quality,
}
"""Normalisation of each known Deng 2026 Sec. 3.3 signal to a quality in [0, 1] (1 = best)."""


def signal_quality(name: str, value: float, *, fd_scale: float) -> float:
    """A known signal's quality in [0, 1] (see :data:`QUALITY_SIGNALS`); ``value`` must be
    finite."""
    try:
        normalise = QUALITY_SIGNALS[name]
    except KeyError:
        raise ValueError(
            f"unknown quality signal {name!r}; known signals: {', '.join(sorted(QUALITY_SIGNALS))}"
        ) from None
    return normalise(float(value), fd_scale)


def _as_float(name: str, value: Any) -> float:
    """A signal value as a float (nan and inf pass through; the caller ignores them)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"signal {name!r} must be a real number, got {type(value).__name__}")
    return float(value)


class _Check:
    """Validates constructor arguments; errors name the config key to fix."""

    def __init__(self, prefix: str, top_level: tuple[str, ...] = ()) -> None:
        self.prefix = prefix
        self.top_level = top_level

    def key(self, name: str) -> str:
        return f"privacy.{name}" if name in self.top_level else f"{self.prefix}.{name}"

    def fail(self, name: str, requirement: str, value: Any) -> UserInputError:
        return UserInputError(f"{self.key(name)} must be {requirement}, got {value!r}")

    def number(
        self,
        name: str,
        value: Any,
        *,
        low: float = -math.inf,
        high: float = math.inf,
        low_open: bool = False,
        high_open: bool = False,
    ) -> float:
        if math.isinf(high) and math.isinf(low):
            requirement = "a finite number"
        elif math.isinf(high):
            requirement = f"a finite number {'>' if low_open else '>='} {low:g}"
        else:
            lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
            requirement = f"a number in {lo}{low:g}, {high:g}{hi}"
        if isinstance(value, bool) or not isinstance(value, Real):
            raise self.fail(name, requirement, value)
        x = float(value)
        ok = (
            math.isfinite(x)
            and (x > low if low_open else x >= low)
            and (x < high if high_open else x <= high)
        )
        if not ok:
            raise self.fail(name, requirement, value)
        return x

    def integer(self, name: str, value: Any, *, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise self.fail(name, f"an integer >= {low}", value)
        return int(value)

    def order(self, low_name: str, low: float, high_name: str, high: float) -> None:
        if low > high:
            raise UserInputError(
                f"{self.key(low_name)} ({low:g}) must be <= {self.key(high_name)} ({high:g})"
            )


# ----------------------------------------------------------------------------------- base class


class NoiseController(abc.ABC):
    """Decides sigma and C for the next noisy steps; see the module docstring.

    Subclasses set ``name``, implement :meth:`signals_needed` and :meth:`_update` (the template
    method :meth:`observe` screens the signals and keeps the history).

    Every :meth:`observe` appends one entry to :attr:`history` with at least:

    - ``step``: the step passed to ``observe``;
    - ``noise_multiplier``, ``max_grad_norm``: sigma and C decided for the following steps;
    - ``signal/<name>``: every signal passed, as given (non-finite values kept, they are ignored);
    - ``n_ignored``: how many of the passed signals were ignored (non-finite or not read);

    plus each controller's internals (see its docstring).
    """

    name: ClassVar[str]

    def __init__(self, *, noise_multiplier: float, max_grad_norm: float) -> None:
        self._noise_multiplier = float(noise_multiplier)
        self._max_grad_norm = float(max_grad_norm)
        self._history: list[dict[str, float]] = []
        self._last_step: int | None = None

    @property
    def noise_multiplier(self) -> float:
        """Current sigma (noise std / C) for the next noisy steps."""
        return self._noise_multiplier

    @property
    def max_grad_norm(self) -> float:
        """Current per-sample clipping bound C for the next noisy steps."""
        return self._max_grad_norm

    @property
    def history(self) -> list[dict[str, float]]:
        """One dict per :meth:`observe` call (copies: editing them does not change the state)."""
        return [dict(entry) for entry in self._history]

    @abc.abstractmethod
    def signals_needed(self) -> tuple[str, ...]:
        """Names of the signals this controller reads (others passed to observe are ignored)."""

    def observe(self, step: int, signals: Mapping[str, float]) -> None:
        """Update sigma and C from ``signals`` measured after noisy step ``step``.

        Missing signals are fine (e.g. the first similarity check has no previous batch);
        non-finite values are ignored and recorded, never folded into the state.

        Raises:
            ValueError: ``step`` is negative or not after the previous ``observe``'s step.
            TypeError: a signal value is not a real number (a caller bug, not a bad value).
        """
        if isinstance(step, bool) or not isinstance(step, Integral) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(f"observe() steps must increase: got {step} after {self._last_step}")
        self._last_step = int(step)
        needed = set(self.signals_needed())
        raw = {str(k): _as_float(str(k), v) for k, v in signals.items()}
        usable = {k: v for k, v in raw.items() if k in needed and math.isfinite(v)}
        internals = self._update(usable)
        entry: dict[str, float] = {
            "step": float(step),
            "noise_multiplier": self._noise_multiplier,
            "max_grad_norm": self._max_grad_norm,
            "n_ignored": float(len(raw) - len(usable)),
        }
        entry.update({f"signal/{k}": v for k, v in raw.items()})
        entry.update(internals)
        self._history.append(entry)

    @abc.abstractmethod
    def _update(self, signals: Mapping[str, float]) -> dict[str, float]:
        """Update the state from finite, needed signals; return internals for the history."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(noise_multiplier={self._noise_multiplier:g}, "
            f"max_grad_norm={self._max_grad_norm:g})"
        )


# ------------------------------------------------------------------------------------- fixed


@CONTROLLERS.register("fixed")
class FixedController(NoiseController):
    """One sigma and one C for the whole run (DP-SGD, Abadi et al. 2016). Reads no signal."""

    name: ClassVar[str] = "fixed"

    def __init__(self, *, noise_multiplier: float, max_grad_norm: float) -> None:
        check = _Check("privacy", top_level=("noise_multiplier", "max_grad_norm"))
        super().__init__(
            noise_multiplier=check.number(
                "noise_multiplier", noise_multiplier, low=0.0, low_open=True
            ),
            max_grad_norm=check.number("max_grad_norm", max_grad_norm, low=0.0, low_open=True),
        )

    def signals_needed(self) -> tuple[str, ...]:
        return ()

    def _update(self, signals: Mapping[str, float]) -> dict[str, float]:
        return {}


# --------------------------------------------------------------------------------------- pid


@CONTROLLERS.register("pid")
class PIDController(NoiseController):
    """Deng 2026, Sec. 3.3 and 3.5: PID control of sigma on a sliding window of quality signals.

    Deng 2026 Sec. 3.3: "higher noise intensity is applied" early; "as [...] the generator's
    outputs more closely approximate the real data distribution, the noise intensity is moderately
    reduced"; the strategy "monitors metrics such as Frechet Inception Distance (FID),
    discriminator accuracy, and validation set performance". Sec. 3.5: "a sliding window is used
    to monitor performance fluctuations, and a Proportional-Integral-Derivative (PID) control
    approach is incorporated to smoothly adjust noise levels". The paper gives no formula; ours
    (docs/controllers.md) is, at each ``observe`` with at least one usable signal:

    1. ``q_t`` = weighted mean of the usable signals' qualities (:data:`QUALITY_SIGNALS`; weights
       renormalised over the signals present); append it to a window of the last ``window``.
    2. ``e_t = mean(window) - setpoint`` (positive: quality better than wanted).
    3. ``I_t = clip(I_{t-1} + e_t, -integral_limit, integral_limit)``; the integral is also
       frozen while sigma sits at the bound that ``e_t`` pushes towards (anti-windup).
    4. ``D_t = e_t - e_{t-1}`` (0 at the first usable observation).
    5. ``u_t = kp e_t + ki I_t + kd D_t``; ``sigma <- clip(sigma - clip(u_t, +-max_step_change),
       sigma_min, sigma_max)``: noise goes down while quality is above the setpoint and up when
       it falls below, by at most ``max_step_change`` per update.

    One time unit is one ``observe`` (every ``monitor_every`` noisy steps). An observation
    without a usable signal changes nothing. C is fixed at ``max_grad_norm``.

    History internals: ``quality`` (q_t), ``window_quality``, ``window_size``, ``error``,
    ``integral``, ``p_term``, ``i_term``, ``d_term``, ``control`` (u_t), ``sigma_change``,
    ``quality/<signal>`` per usable signal (nan where no usable signal arrived).
    """

    name: ClassVar[str] = "pid"
    HISTORY_KEYS: ClassVar[tuple[str, ...]] = (
        "quality",
        "window_quality",
        "window_size",
        "error",
        "integral",
        "p_term",
        "i_term",
        "d_term",
        "control",
        "sigma_change",
    )
    DEFAULT_SIGNAL_WEIGHTS: ClassVar[Mapping[str, float]] = MappingProxyType(
        {"disc_accuracy": 1.0, "frechet_distance": 1.0}
    )

    def __init__(
        self,
        *,
        sigma_min: float,
        sigma_max: float,
        max_grad_norm: float,
        noise_multiplier: float | None = None,
        kp: float = 1.0,
        ki: float = 0.1,
        kd: float = 0.05,
        window: int = 5,
        setpoint: float = 0.5,
        signal_weights: Mapping[str, float] | None = None,
        max_step_change: float = 0.25,
        integral_limit: float = 5.0,
        fd_scale: float = 100.0,
    ) -> None:
        check = _Check("privacy.pid", top_level=("noise_multiplier", "max_grad_norm"))
        self.sigma_min = check.number("sigma_min", sigma_min, low=0.0, low_open=True)
        self.sigma_max = check.number("sigma_max", sigma_max, low=0.0, low_open=True)
        check.order("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)
        if noise_multiplier is None:
            noise_multiplier = self.sigma_max  # start high (Deng 2026 Sec. 3.3)
        sigma0 = check.number(
            "noise_multiplier", noise_multiplier, low=self.sigma_min, high=self.sigma_max
        )
        clip = check.number("max_grad_norm", max_grad_norm, low=0.0, low_open=True)
        self.kp = check.number("kp", kp, low=0.0)
        self.ki = check.number("ki", ki, low=0.0)
        self.kd = check.number("kd", kd, low=0.0)
        self.window = check.integer("window", window, low=1)
        self.setpoint = check.number("setpoint", setpoint, low=0.0, high=1.0)
        self.max_step_change = check.number(
            "max_step_change", max_step_change, low=0.0, low_open=True
        )
        self.integral_limit = check.number("integral_limit", integral_limit, low=0.0)
        self.fd_scale = check.number("fd_scale", fd_scale, low=0.0, low_open=True)
        if signal_weights is None:
            signal_weights = self.DEFAULT_SIGNAL_WEIGHTS
        self.signal_weights = self._check_weights(check, signal_weights)
        super().__init__(noise_multiplier=sigma0, max_grad_norm=clip)
        self._qualities: deque[float] = deque(maxlen=self.window)
        self._integral = 0.0
        self._previous_error: float | None = None

    @staticmethod
    def _check_weights(check: _Check, weights: Mapping[str, float]) -> dict[str, float]:
        if not isinstance(weights, Mapping):
            raise check.fail("signal_weights", "a mapping signal -> weight", weights)
        unknown = sorted(set(map(str, weights)) - set(QUALITY_SIGNALS))
        if unknown:
            raise UserInputError(
                f"{check.key('signal_weights')}: unknown signal(s) {unknown}; known signals: "
                f"{', '.join(sorted(QUALITY_SIGNALS))}"
            )
        out = {str(k): check.number(f"signal_weights.{k}", v, low=0.0) for k, v in weights.items()}
        out = {k: v for k, v in out.items() if v > 0}
        if not out:
            raise check.fail("signal_weights", "a mapping with at least one weight > 0", weights)
        return out

    def signals_needed(self) -> tuple[str, ...]:
        return tuple(self.signal_weights)

    def _update(self, signals: Mapping[str, float]) -> dict[str, float]:
        qualities = {k: signal_quality(k, v, fd_scale=self.fd_scale) for k, v in signals.items()}
        out: dict[str, float] = {f"quality/{k}": q for k, q in qualities.items()}
        if not qualities:  # nothing usable: hold sigma, integral and derivative memory
            out.update({k: math.nan for k in self.HISTORY_KEYS})
            out.update(
                integral=self._integral,
                window_size=float(len(self._qualities)),
                window_quality=self._window_quality(),
                control=0.0,
                sigma_change=0.0,
            )
            return out
        total = sum(self.signal_weights[k] for k in qualities)
        quality = sum(self.signal_weights[k] * q for k, q in qualities.items()) / total
        self._qualities.append(quality)
        window_quality = self._window_quality()
        error = window_quality - self.setpoint

        sigma = self._noise_multiplier
        # Anti-windup: clamp the integral, and freeze it while sigma is pinned at the bound the
        # error pushes towards (positive error lowers sigma).
        pinned = (error > 0 and sigma <= self.sigma_min) or (error < 0 and sigma >= self.sigma_max)
        if not pinned:
            self._integral = min(
                self.integral_limit, max(-self.integral_limit, self._integral + error)
            )
        derivative = 0.0 if self._previous_error is None else error - self._previous_error
        self._previous_error = error

        p_term, i_term, d_term = self.kp * error, self.ki * self._integral, self.kd * derivative
        control = p_term + i_term + d_term
        if math.isnan(control):  # only with absurd gains (inf - inf): hold sigma
            control = 0.0
        step = min(self.max_step_change, max(-self.max_step_change, -control))
        new_sigma = min(self.sigma_max, max(self.sigma_min, sigma + step))
        self._noise_multiplier = new_sigma
        out.update(
            quality=quality,
            window_quality=window_quality,
            window_size=float(len(self._qualities)),
            error=error,
            integral=self._integral,
            p_term=p_term,
            i_term=i_term,
            d_term=d_term,
            control=control,
            sigma_change=new_sigma - sigma,
        )
        return out

    def _window_quality(self) -> float:
        return float(np.mean(self._qualities)) if self._qualities else math.nan

    @property
    def integral(self) -> float:
        """The PID integral term's state (clamped to +-integral_limit)."""
        return self._integral


# ----------------------------------------------------------------------------- WGAN feedback


@CONTROLLERS.register("wgan_feedback")
class WGANFeedbackController(NoiseController):
    """Tao 2020, Sec. 2.4: privacy feedback from successive generated results G1, G2.

    Tao 2020 Sec. 2.4: "judge the threshold by comparing the similarity between the generated
    result G1 and the generated result G2, and adjust the relevant parameters of the depth
    differential privacy by combining the evaluation criteria of privacy loss and accuracy."
    The paper names neither the similarity, the threshold, nor the update; ours
    (docs/controllers.md), at each ``observe``:

    1. score = ``generated_similarity`` (see :func:`generated_similarity`), or, when the caller
       also passes ``utility`` in [0, 1] and ``accuracy_weight`` > 0,
       ``(1 - accuracy_weight) * similarity + accuracy_weight * utility``.
    2. score >= ``similarity_threshold``: one more stable check. After ``patience`` consecutive
       stable checks: ``sigma <- max(sigma_min, sigma * sigma_factor)``,
       ``C <- max(clip_min, C * clip_factor)``, and the count restarts (each further notch needs
       another ``patience`` stable checks).
    3. score < ``similarity_threshold`` (the outputs are moving apart): the count restarts and
       sigma and C go back up one notch: ``sigma <- min(sigma_max, sigma / sigma_factor)``,
       ``C <- min(clip_max, C / clip_factor)``.
    4. no usable similarity (first check, or a non-finite value): nothing changes.

    "Privacy loss" enters through the bounds: the controller never knows epsilon; the plan
    calibrates ``sigma_min`` so that every planned step fits the budget even at the floor, and
    the ledger refuses any step beyond it.

    History internals: ``similarity``, ``utility``, ``score`` (nan when absent), ``stable_count``
    (after this check), ``action`` (-1 lowered, +1 raised, 0 unchanged; a notch clipped by the
    bounds still counts).
    """

    name: ClassVar[str] = "wgan_feedback"
    HISTORY_KEYS: ClassVar[tuple[str, ...]] = (
        "similarity",
        "utility",
        "score",
        "stable_count",
        "action",
    )

    def __init__(
        self,
        *,
        sigma_min: float,
        sigma_max: float,
        max_grad_norm: float | None = None,
        noise_multiplier: float | None = None,
        clip_min: float = 0.5,
        clip_max: float = 1.0,
        similarity_threshold: float = 0.9,
        sigma_factor: float = 0.9,
        clip_factor: float = 0.95,
        accuracy_weight: float = 0.0,
        patience: int = 2,
    ) -> None:
        check = _Check("privacy.wgan_feedback", top_level=("noise_multiplier", "max_grad_norm"))
        self.sigma_min = check.number("sigma_min", sigma_min, low=0.0, low_open=True)
        self.sigma_max = check.number("sigma_max", sigma_max, low=0.0, low_open=True)
        check.order("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)
        self.clip_min = check.number("clip_min", clip_min, low=0.0, low_open=True)
        self.clip_max = check.number("clip_max", clip_max, low=0.0, low_open=True)
        check.order("clip_min", self.clip_min, "clip_max", self.clip_max)
        if noise_multiplier is None:
            noise_multiplier = self.sigma_max  # start high: the generator is still moving
        if max_grad_norm is None:
            max_grad_norm = self.clip_max
        sigma0 = check.number(
            "noise_multiplier", noise_multiplier, low=self.sigma_min, high=self.sigma_max
        )
        clip0 = check.number("max_grad_norm", max_grad_norm, low=self.clip_min, high=self.clip_max)
        self.similarity_threshold = check.number(
            "similarity_threshold", similarity_threshold, low=0.0, high=1.0
        )
        self.sigma_factor = check.number(
            "sigma_factor", sigma_factor, low=0.0, high=1.0, low_open=True, high_open=True
        )
        self.clip_factor = check.number(
            "clip_factor", clip_factor, low=0.0, high=1.0, low_open=True
        )
        self.accuracy_weight = check.number("accuracy_weight", accuracy_weight, low=0.0, high=1.0)
        self.patience = check.integer("patience", patience, low=1)
        super().__init__(noise_multiplier=sigma0, max_grad_norm=clip0)
        self._stable_count = 0

    def signals_needed(self) -> tuple[str, ...]:
        if self.accuracy_weight > 0:
            return ("generated_similarity", "utility")
        return ("generated_similarity",)

    def _update(self, signals: Mapping[str, float]) -> dict[str, float]:
        similarity = signals.get("generated_similarity", math.nan)
        utility = signals.get("utility", math.nan)
        out = {"similarity": similarity, "utility": utility, "score": math.nan, "action": 0.0}
        if math.isnan(similarity):  # nothing to compare yet: hold everything
            out["stable_count"] = float(self._stable_count)
            return out
        score = min(1.0, max(0.0, similarity))
        if not math.isnan(utility):
            w = self.accuracy_weight
            score = (1.0 - w) * score + w * min(1.0, max(0.0, utility))
        if score >= self.similarity_threshold:
            self._stable_count += 1
            if self._stable_count >= self.patience:
                self._noise_multiplier = max(
                    self.sigma_min, self._noise_multiplier * self.sigma_factor
                )
                self._max_grad_norm = max(self.clip_min, self._max_grad_norm * self.clip_factor)
                self._stable_count = 0
                out["action"] = -1.0
        else:
            self._stable_count = 0
            self._noise_multiplier = min(self.sigma_max, self._noise_multiplier / self.sigma_factor)
            self._max_grad_norm = min(self.clip_max, self._max_grad_norm / self.clip_factor)
            out["action"] = 1.0
        out.update(score=score, stable_count=float(self._stable_count))
        return out


# ------------------------------------------------------------------------------------ factory


def make_controller(name: str, **kwargs: Any) -> NoiseController:
    """Build the controller registered as ``name`` (``fixed`` | ``pid`` | ``wgan_feedback``)
    with keyword arguments equal to its config keys.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the valid names).
        UserInputError: an argument is unknown to that controller, missing, or invalid.
    """
    cls = CONTROLLERS.get(name)
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise UserInputError(
            f"controller {name!r} got unknown argument(s) {unknown}; it accepts {accepted}"
        )
    missing = [
        p for p in accepted if params[p].default is inspect.Parameter.empty and p not in kwargs
    ]
    if missing:
        raise UserInputError(f"controller {name!r} is missing argument(s) {missing}")
    return cls(**kwargs)
