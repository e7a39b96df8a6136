"""``method=dp_lr``: a classifier of the target trained with DP-SGD (Opacus) on the encoded real
train split; the released artifact is the model (Deng 2026's "DP logistic regression" baseline).

The features are the run's reversible encoding (the
:class:`~dpshare.data.transformer.TabularTransformer`, fitted as a DP release under DP, so
encoding a test row is post-processing). ``hidden_dims: []``
is logistic regression (softmax over the classes); a non-empty list gives an MLP.

DP: Poisson-sampled real batches, per-sample clipping of the cross-entropy gradient to
``privacy.max_grad_norm``, Gaussian noise; each step is charged to the ledger entry
``classifier`` by the same :class:`~dpshare.models.dp.DPStepper` as the GAN discriminators, and
training stops before a step would pass the target epsilon. No class frequencies are released
(a classifier does not need them). Only ``privacy=none`` and ``privacy=fixed`` apply: the PID
and WGAN-feedback controllers read GAN signals.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F

from dpshare.checkpoint import resume_fit_kwargs
from dpshare.data.datamodule import TabularDataModule
from dpshare.errors import UserInputError
from dpshare.models.base import ReleasedModelMethod
from dpshare.models.checks import check_finite_loss, check_finite_weights, check_trained
from dpshare.models.dp import PrivateTraining, make_optimizer, wrap_module
from dpshare.models.registry import METHODS
from dpshare.models.standard_gan import private_training
from dpshare.privacy.plan import PrivacyPlan

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")


def classifier_network(in_dim: int, hidden_dims: Sequence[int], n_classes: int) -> nn.Sequential:
    """Linear softmax model (``hidden_dims=[]``) or an MLP; Linear + ReLU only, so every Opacus
    grad_sample_mode handles it."""
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers += [nn.Linear(in_dim, int(width)), nn.ReLU()]
        in_dim = int(width)
    layers.append(nn.Linear(in_dim, n_classes))
    return nn.Sequential(*layers)


def make_base_optimizer(
    name: str, params: Any, *, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise UserInputError(f"method.optimizer must be one of {OPTIMIZERS}, got {name!r}")


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of :func:`classifier_network`, DP-SGD when ``private`` is given
    (manual optimization, so the hard budget stop is checked before every noisy step)."""

    def __init__(
        self,
        *,
        in_dim: int,
        n_classes: int,
        hidden_dims: Sequence[int],
        optimizer: str,
        lr: float,
        momentum: float,
        weight_decay: float,
        private: PrivateTraining | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        if optimizer not in OPTIMIZERS:
            raise UserInputError(f"method.optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if not lr > 0:
            raise UserInputError(f"method.lr must be > 0, got {lr}")
        net = classifier_network(in_dim, hidden_dims, n_classes)
        self.private = private
        self.net = net if private is None else wrap_module(net, private.settings)
        self.optimizer_name = optimizer
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.updates = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        base = make_base_optimizer(
            self.optimizer_name,
            self.net.parameters(),
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )
        if self.private is None:
            return base
        opt = make_optimizer(
            base,
            self.private.settings,
            noise_generator=self.private.noise_generator,
            real_only=True,
        )
        self.private.attach(optimizer=opt, module=self.net)
        return opt

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        opt = self.optimizers()
        private = self.private
        if private is not None and not private.may_step():
            self.trainer.should_stop = True  # hard stop at the target epsilon
            return
        opt.zero_grad(set_to_none=True)
        per_sample = F.cross_entropy(self.net(x), y, reduction="none")
        if private is None:
            if len(x) == 0:
                return
            loss = per_sample.mean()
            check_finite_loss(
                loss, what="classifier", update=self.updates + 1, lr_keys=["lr"], private=False
            )
            self.manual_backward(loss)
        else:
            dp_loss = private.mean_loss(per_sample)
            if isinstance(dp_loss, torch.Tensor):
                self.manual_backward(dp_loss)
            else:  # ghost clipping (two passes) or book-keeping (one pass, clipped sum)
                dp_loss.backward()
        opt.step()
        self.updates += 1
        if private is not None:  # the released weights, not a loss of real records
            check_finite_weights(
                self.net, what="classifier", update=self.updates, lr_keys=["lr"], private=True
            )
        if private is None:
            self.log("train/loss", per_sample.detach().mean(), on_step=True, on_epoch=True)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> np.ndarray:
        was_training = self.training
        self.eval()
        proba = torch.softmax(self.net(x), dim=1).cpu().numpy()
        self.train(was_training)
        return proba


def _encode(datamodule: TabularDataModule, frame: pd.DataFrame) -> torch.Tensor:
    """Rows in the released schema -> the run's encoding (post-processing of its release)."""
    missing = [c for c in datamodule.data.feature_columns if c not in frame.columns]
    if missing:
        raise UserInputError(f"rows to classify lack feature column(s) {missing}")
    return torch.from_numpy(
        datamodule.transformer.transform(frame[datamodule.data.feature_columns])
    )


@METHODS.register("dp_lr")
class DPLogisticRegression(ReleasedModelMethod):
    """DP-SGD logistic regression (or MLP) on the real train split; releases the model."""

    name = "dp_lr"
    ledger_module = "classifier"
    ledger_purpose = (
        "DP-SGD on the classifier: Poisson-sampled real batches, per-sample clipping of the "
        "cross-entropy gradient, Gaussian noise; one charge per step"
    )

    def __init__(
        self, cfg: Any, datamodule: TabularDataModule, *, plan: PrivacyPlan | None = None
    ) -> None:
        if plan is not None and plan.name != "fixed":
            raise UserInputError(
                f"method={self.name} trains with privacy=none or privacy=fixed; "
                f"privacy={plan.name} steers a GAN's noise from GAN signals"
            )
        self.cfg = cfg
        self.datamodule = datamodule
        self.plan = plan
        datamodule.needs_class_prior = False
        datamodule.setup()
        self.classes = datamodule.classes
        self.private = (
            None
            if plan is None
            else private_training(
                plan, datamodule, module=self.ledger_module, purpose=self.ledger_purpose
            )
        )
        self.module = ClassifierModule(
            in_dim=datamodule.transformer.output_dim,
            n_classes=len(self.classes),
            hidden_dims=list(cfg.hidden_dims),
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            private=self.private,
        )

    def fit(self, trainer: pl.Trainer) -> None:
        # resume=<run dir>: continue from its checkpoint (weights_only load; dpshare.checkpoint)
        trainer.fit(self.module, datamodule=self.datamodule, **resume_fit_kwargs(self))
        check_trained(
            self.module.updates,
            length=f"trainer.max_epochs={trainer.max_epochs}",
            plan=self.plan,
            budget_stopped=self.private is not None and self.private.budget_stopped,
            target_epsilon=self.datamodule.ledger.target_epsilon,
        )
        ledger = self.datamodule.ledger
        if self.private is None:
            ledger.record_non_private(
                module=self.ledger_module,
                purpose="non-private SGD on real batches (no clipping, no noise)",
                records=self.datamodule.n_train,
                steps=self.module.updates,
                batch_size=self.datamodule.batch_size,
            )
            return
        stepper = self.private._require_stepper()
        ledger.update_parameters(
            self.private.entry,
            noisy_steps=stepper.noisy_steps,
            stopped_by_budget=self.private.budget_stopped,
        )

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.module.predict_proba(_encode(self.datamodule, frame))

    def state_dict(self) -> dict[str, Any]:
        net = self.module.net
        inner = getattr(net, "_module", net)
        return {"classifier": inner.state_dict(), "classes": self.classes.tolist()}
