"""The DP boundary of a GAN: Opacus wrappers for the modules that read real records.

Only a discriminator reads real records, so only discriminators are wrapped (GradSampleModule +
DPOptimizer). The generator is trained through a frozen discriminator and is post-processing of
its DP outputs; it never sits inside a DP optimizer.

One discriminator update = ONE clipped, noised step over a batch that concatenates the
Poisson-sampled real records and a data-independent batch of generated records. Adding or removing
one real record changes the sum of clipped per-sample gradients by at most ``max_grad_norm``, so
each update is one sampled-Gaussian step, charged once (Opacus's DCGAN example steps separately on
real and fake batches and is charged twice: opacus issue #418).

:class:`DPStepper` drives an optimizer's noisy steps: the privacy ledger is asked before each step
(hard stop at the target epsilon) and charged from the optimizer's own step hook, so the number of
accounted steps is the number of noisy steps actually taken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from opacus import GradSampleModule
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import (
    DPLossFastGradientClipping,
    DPTensorFastGradientClipping,
)
from torch import nn
from torch.nn import functional as F

from dpshare.errors import UserInputError
from dpshare.models.bookkeeping import BookKeepingLoss, BookKeepingModule
from dpshare.privacy.ledger import LedgerEntry, PrivacyLedger

GRAD_SAMPLE_MODES = ("bk", "hooks", "functorch", "ghost")
# Modes whose optimizer receives an already clipped sum in ``.grad`` (no per-sample gradients).
_CLIPPED_SUM_MODES = ("bk", "ghost")


@dataclass(frozen=True)
class DPSettings:
    """Resolved DP-SGD settings for one discriminator (keyword names as in Opacus).

    Attributes:
        noise_multiplier: initial sigma (noise std / max_grad_norm).
        max_grad_norm: initial per-sample clipping bound C.
        sample_rate: Poisson sampling rate q of real records per step.
        expected_batch_size: q * n, the expected real batch size.
        grad_sample_mode: ``bk`` (book-keeping: clipped sums from ONE backward pass,
            :mod:`dpshare.models.bookkeeping`, the default) | ``hooks`` | ``functorch`` |
            ``ghost`` (Opacus's fast gradient clipping: two backward passes). All use
            loss_reduction "mean".
        poisson_sampling: False = fixed-size shuffled batches (accounting then approximate).
    """

    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    expected_batch_size: int
    grad_sample_mode: str = "bk"
    poisson_sampling: bool = True

    def __post_init__(self) -> None:
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise UserInputError(
                f"privacy.grad_sample_mode={self.grad_sample_mode!r}; choose one of "
                f"{list(GRAD_SAMPLE_MODES)}"
            )
        if not self.noise_multiplier >= 0:
            raise UserInputError(
                f"privacy.noise_multiplier must be >= 0, got {self.noise_multiplier}"
            )
        if not self.max_grad_norm > 0:
            raise UserInputError(f"privacy.max_grad_norm must be > 0, got {self.max_grad_norm}")


def wrap_module(module: nn.Module, settings: DPSettings) -> nn.Module:
    """A module that computes per-sample gradients (or per-sample norms, for ghost clipping and
    book-keeping)."""
    if settings.grad_sample_mode == "bk":
        return BookKeepingModule(module)
    if settings.grad_sample_mode == "ghost":
        return GradSampleModuleFastGradientClipping(
            module,
            batch_first=True,
            loss_reduction="mean",
            max_grad_norm=settings.max_grad_norm,
            use_ghost_clipping=True,
        )
    return GradSampleModule(
        module,
        batch_first=True,
        loss_reduction="mean",
        force_functorch=settings.grad_sample_mode == "functorch",
    )


def make_optimizer(
    optimizer: torch.optim.Optimizer,
    settings: DPSettings,
    *,
    noise_generator: torch.Generator | None = None,
    real_only: bool = False,
) -> DPOptimizer:
    # A GAN's loss is a mean over the concatenated (real + generated) batch, whose expected size
    # is twice the expected real batch size; a classifier (``real_only``) averages real rows only.
    cls = (
        DPOptimizerFastGradientClipping
        if settings.grad_sample_mode in _CLIPPED_SUM_MODES
        else DPOptimizer
    )
    factor = 1 if real_only else 2
    return cls(
        optimizer,
        noise_multiplier=settings.noise_multiplier,
        max_grad_norm=settings.max_grad_norm,
        expected_batch_size=factor * settings.expected_batch_size,
        loss_reduction="mean",
        generator=noise_generator,
    )


def noise_generator(noise_seed: int | None) -> torch.Generator:
    """The DP optimizer's noise generator: OS entropy unless ``noise_seed`` is set (tests), so
    the noise cannot be regenerated from a saved config."""
    generator = torch.Generator()
    if noise_seed is None:
        generator.seed()
    else:
        generator.manual_seed(noise_seed)
    return generator


class DPStepper:
    """Noisy steps of one DP optimizer, asked to and charged to the privacy ledger.

    ``may_step()`` is the hard stop: False when one more step at the current noise multiplier
    would push the ledger's total past the target epsilon. The optimizer's step hook (called by
    Opacus after noise is added, once per real step) charges the ledger, so skipped or refused
    steps are never charged and every noisy step is.
    """

    def __init__(
        self,
        *,
        optimizer: DPOptimizer,
        module: nn.Module,
        ledger: PrivacyLedger,
        entry: LedgerEntry,
    ) -> None:
        self.optimizer = optimizer
        self.module = module
        self.ledger = ledger
        self.entry = entry
        self.noisy_steps = 0
        self.clip_history: list[list[float]] = [[0, float(optimizer.max_grad_norm)]]
        optimizer.attach_step_hook(self._on_noisy_step)

    def _on_noisy_step(self, optimizer: Any) -> None:
        self.ledger.step(self.entry, float(optimizer.noise_multiplier))
        self.noisy_steps += 1

    def may_step(self) -> bool:
        return self.ledger.allows([(self.entry, float(self.optimizer.noise_multiplier))])

    def set_noise(self, *, noise_multiplier: float, max_grad_norm: float) -> None:
        """Apply a controller's decision for the next steps (as Opacus's noise schedulers do)."""
        self.optimizer.noise_multiplier = float(noise_multiplier)
        if float(max_grad_norm) != self.clip_history[-1][1]:
            self.clip_history.append([self.noisy_steps, float(max_grad_norm)])
        self.optimizer.max_grad_norm = float(max_grad_norm)
        if isinstance(self.module, GradSampleModuleFastGradientClipping):
            self.module.max_grad_norm = float(max_grad_norm)

    def loss(
        self, logits: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor | DPLossFastGradientClipping | BookKeepingLoss:
        """Mean binary cross-entropy; under ghost clipping Opacus's two-pass loss wrapper, under
        book-keeping its one-pass wrapper."""
        if isinstance(self.module, BookKeepingModule):
            per_sample = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            return BookKeepingLoss(self.module, self.optimizer, per_sample)
        criterion = nn.BCEWithLogitsLoss(reduction="mean")
        if isinstance(self.module, GradSampleModuleFastGradientClipping):
            dp_loss = DPLossFastGradientClipping(
                self.module, self.optimizer, criterion, loss_reduction="mean"
            )
            return dp_loss(logits, targets)
        return criterion(logits, targets)

    def mean_loss(
        self, per_sample: torch.Tensor
    ) -> torch.Tensor | DPTensorFastGradientClipping | BookKeepingLoss:
        """The mean of a per-sample loss vector (e.g. a fused loss over several discriminator
        heads); under ghost clipping wrapped so that ``backward()`` runs Opacus's two passes,
        under book-keeping so that it leaves the clipped sum in ``.grad``."""
        if isinstance(self.module, BookKeepingModule):
            return BookKeepingLoss(self.module, self.optimizer, per_sample)
        if isinstance(self.module, GradSampleModuleFastGradientClipping):
            return DPTensorFastGradientClipping(
                self.module, self.optimizer, per_sample, loss_reduction="mean"
            )
        return per_sample.mean()


def generator_step_context(module: nn.Module) -> _HooksOff:
    """Per-sample hooks off and parameters frozen while the generator backpropagates through
    the discriminator: its per-sample gradients would be useless, and with Poisson sampling
    Opacus raises "not compatible with grad accumulation"."""
    return _HooksOff(module)


class _HooksOff:
    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __enter__(self) -> None:
        self.module.requires_grad_(False)
        # GradSampleModule and Opacus's fast-gradient-clipping module share no base class
        # with these methods, hence the duck typing.
        disable = getattr(self.module, "disable_hooks", None)
        if callable(disable):
            disable()

    def __exit__(self, *exc: object) -> None:
        enable = getattr(self.module, "enable_hooks", None)
        if callable(enable):
            enable()
        self.module.requires_grad_(True)


class PrivateTraining:
    """What a GAN LightningModule needs to train its discriminator under DP: settings, the
    ledger entry its noisy steps are charged to, and (optionally) a noise controller fed by a
    signal monitor every ``monitor_every`` noisy steps."""

    def __init__(
        self,
        *,
        settings: DPSettings,
        ledger: PrivacyLedger,
        entry: LedgerEntry,
        controller: Any = None,
        monitor: Callable[[Any], dict[str, float]] | None = None,
        monitor_every: int = 50,
        noise_generator: torch.Generator | None = None,
    ) -> None:
        self.settings = settings
        self.noise_generator = noise_generator
        self.ledger = ledger
        self.entry = entry
        self.controller = controller
        self.monitor = monitor
        self.monitor_every = monitor_every
        self.stepper: DPStepper | None = None
        self.budget_stopped = False

    def attach(self, *, optimizer: DPOptimizer, module: nn.Module) -> None:
        self.stepper = DPStepper(
            optimizer=optimizer, module=module, ledger=self.ledger, entry=self.entry
        )

    def _require_stepper(self) -> DPStepper:
        if self.stepper is None:
            raise RuntimeError("PrivateTraining.attach() must run before training")
        return self.stepper

    def may_step(self) -> bool:
        allowed = self._require_stepper().may_step()
        if not allowed:
            self.budget_stopped = True
        return allowed

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> Any:
        return self._require_stepper().loss(logits, targets)

    def mean_loss(self, per_sample: torch.Tensor) -> Any:
        return self._require_stepper().mean_loss(per_sample)

    def after_step(self, module: Any, *, step: int) -> None:
        """Every ``monitor_every`` noisy steps: signals -> controller -> new sigma and C."""
        if self.controller is None or self.monitor is None or step % self.monitor_every:
            return
        signals = self.monitor(module)
        self.controller.observe(step, signals)
        self._require_stepper().set_noise(
            noise_multiplier=self.controller.noise_multiplier,
            max_grad_norm=self.controller.max_grad_norm,
        )
