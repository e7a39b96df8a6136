"""Cheap guards the training steps share: learning rates that an optimizer accepts, and a stop
with a clear error (:class:`~dpshare.errors.NonFiniteLossError`) when training diverges.

Privacy: under DP the guard never reads a loss of real records (that would be a release outside
the accountant). It checks the weights the noisy step released (post-processing of the DP
output) and the generator's loss, which reads no real record. Non-private runs check the
discriminator's loss directly. Each check is one reduction and one host sync per step (the
weights check: ~50 us for a 100k-parameter discriminator on one CPU thread).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from dpshare.errors import NonFiniteLossError, UserInputError
from dpshare.privacy.plan import PrivacyPlan


def check_learning_rates(**rates: float) -> None:
    """Refuse a learning rate that is not a finite number > 0 (``method.<key>``), before an
    optimizer's own ``ValueError`` deep inside the trainer."""
    for key, lr in rates.items():
        try:
            ok = math.isfinite(float(lr)) and float(lr) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UserInputError(
                f"method.{key}={lr!r}: a learning rate must be a finite number > 0; "
                f"set e.g. method.{key}=2e-4"
            )


def _fix(lr_keys: Sequence[str], private: bool) -> str:
    keys = " and ".join(f"method.{k}" for k in lr_keys)
    fix = f"lower {keys} (e.g. 10x smaller)"
    if private:
        fix += ", or a smaller privacy.max_grad_norm"
    return fix + ", and check the data for extreme values"


def check_finite_loss(
    loss: torch.Tensor, *, what: str, update: int, lr_keys: Sequence[str], private: bool
) -> None:
    """Stop with :class:`NonFiniteLossError` if ``loss`` (a tensor; every element is checked)
    holds NaN or +-inf. ``what`` names the loss, ``update`` the optimizer step about to run."""
    if bool(torch.isfinite(loss.detach()).all()):
        return
    value = loss.detach().float()
    shown = value.item() if value.numel() == 1 else "non-finite entries"
    raise NonFiniteLossError(
        f"training diverged: the {what} loss is {shown} at update {update}; "
        f"the run stopped without a result. Fix: {_fix(lr_keys, private)}"
    )


def check_finite_weights(
    modules: nn.Module | Iterable[nn.Module],
    *,
    what: str,
    update: int,
    lr_keys: Sequence[str],
    private: bool,
) -> None:
    """Stop with :class:`NonFiniteLossError` if a weight of ``modules`` is NaN or +-inf after
    ``update`` (under DP: post-processing of the noisy step's output, so it costs no epsilon)."""
    modules = [modules] if isinstance(modules, nn.Module) else list(modules)
    # One float64 sum per tensor: finite exactly when every weight is (a float32 weight is at
    # most 3.4e38, so no sum of fewer than 1e270 of them overflows float64), and ~5x cheaper
    # on a CPU than isfinite().all().
    sums = [p.detach().sum(dtype=torch.float64) for m in modules for p in m.parameters()]
    if not sums or bool(torch.stack(sums).sum().isfinite()):
        return
    raise NonFiniteLossError(
        f"training diverged: the {what} weights became NaN or infinite at update {update}; "
        f"the run stopped without a result. Fix: {_fix(lr_keys, private)}"
    )


def check_trained(
    updates: int,
    *,
    length: str,
    plan: PrivacyPlan | None = None,
    budget_stopped: bool = False,
    target_epsilon: float | None = None,
) -> None:
    """Refuse to release a model that took no optimizer step (``updates == 0``): a training
    length of zero (``length`` names it, e.g. ``"trainer.max_epochs=0"``), or a privacy budget
    that allowed no noisy step at the plan's (floor) noise multiplier. Its output would be the
    random initial weights, recorded as a complete run."""
    if updates > 0:
        return
    if not budget_stopped:
        raise UserInputError(
            f"training took no step ({length}); give a training length of 1 or more "
            "(scale.max_epochs, or the method's own length setting)"
        )
    sigma = "" if plan is None else f" at noise multiplier {plan.sigma_min:g}"
    key = "privacy.noise_multiplier"
    if plan is not None and plan.name != "fixed":
        key = f"privacy.{plan.name}.sigma_min"
    raise UserInputError(
        f"training took no step: the privacy budget allows not even one noisy step{sigma} "
        f"within privacy.target_epsilon={target_epsilon} (after the releases made before "
        f"training); raise {key} or privacy.target_epsilon, use smaller batches, or leave "
        f"{key} null to calibrate it from the budget"
    )
