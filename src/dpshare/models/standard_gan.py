"""``method=standard_gan``: a label-conditioned GAN with one discriminator.

Goodfellow et al. (2014) non-saturating loss; label conditioning as in Mirza & Osindero (2014);
mixed-type heads (linear for continuous, Gumbel-softmax for categorical) as in CTGAN (Xu et al.
2019). This is Deng 2026's "standard GAN" baseline.

Label conditions for generated rows are drawn from the class distribution of the train split (an
access to real records, listed in the ledger by the DataModule), never from the labels of the real
batch, so the generator step reads no real record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from dpshare.checkpoint import resume_fit_kwargs
from dpshare.data.datamodule import TabularDataModule
from dpshare.data.transformer import OutputSpan
from dpshare.errors import UserInputError
from dpshare.models.base import SyntheticDataMethod
from dpshare.models.checks import (
    check_finite_loss,
    check_finite_weights,
    check_learning_rates,
    check_trained,
)
from dpshare.models.dp import (
    DPSettings,
    PrivateTraining,
    generator_step_context,
    make_optimizer,
    noise_generator,
    wrap_module,
)
from dpshare.models.mean_embedding import MeanEmbeddingTarget, planned_releases, release_target
from dpshare.models.monitor import SignalMonitor
from dpshare.models.networks import ConditionalGenerator, GeneratorEMA, MLPDiscriminator
from dpshare.models.registry import METHODS
from dpshare.privacy.controllers import make_controller
from dpshare.privacy.plan import PrivacyPlan

# the learning rates a divergence message suggests lowering
_LR_KEYS = ("discriminator_lr", "generator_lr")


class ConditionalGAN(GeneratorEMA, MeanEmbeddingTarget, pl.LightningModule):
    """Generator + one discriminator, each with its own Adam optimizer (manual optimization)."""

    def __init__(
        self,
        *,
        spans: Sequence[OutputSpan],
        class_prior: Sequence[float],
        latent_dim: int,
        generator_dims: Sequence[int],
        discriminator_dims: Sequence[int],
        dropout: float,
        generator_lr: float,
        discriminator_lr: float,
        betas: Sequence[float],
        weight_decay: float,
        discriminator_steps: int,
        gumbel_tau: float,
        condition_on_label: bool,
        private: PrivateTraining | None = None,
        generator_ema: float | None = None,
        mean_embedding_weight: float = 0.0,
        mean_embedding_features: int = 256,
        mean_embedding_bandwidth: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        if discriminator_steps < 1:
            raise UserInputError(
                f"method.discriminator_steps must be >= 1, got {discriminator_steps}"
            )
        check_learning_rates(generator_lr=generator_lr, discriminator_lr=discriminator_lr)
        self.n_classes = len(class_prior)
        self.condition_dim = self.n_classes if condition_on_label else 0
        self.latent_dim = latent_dim
        self.generator = ConditionalGenerator(
            latent_dim=latent_dim,
            condition_dim=self.condition_dim,
            hidden_dims=generator_dims,
            spans=spans,
        )
        self.init_generator_ema(generator_ema)
        self.init_mean_embedding(
            weight=mean_embedding_weight,
            n_features=mean_embedding_features,
            bandwidth=mean_embedding_bandwidth,
            seed=seed,
        )
        discriminator = MLPDiscriminator(
            input_dim=self.generator.output_dim,
            condition_dim=self.condition_dim,
            hidden_dims=discriminator_dims,
            dropout=dropout,
        )
        # Under DP only the discriminator (the one module that reads real records) is wrapped.
        self.private = private
        self.discriminator = (
            discriminator if private is None else wrap_module(discriminator, private.settings)
        )
        self.register_buffer("class_prior", torch.as_tensor(class_prior, dtype=torch.float32))
        self.generator_lr = generator_lr
        self.discriminator_lr = discriminator_lr
        self.betas = (float(betas[0]), float(betas[1]))
        self.weight_decay = weight_decay
        self.discriminator_steps = discriminator_steps
        self.gumbel_tau = gumbel_tau
        self.discriminator_updates = 0
        self.generator_updates = 0

    # ------------------------------------------------------------------------------ helpers
    def condition(self, labels: torch.Tensor) -> torch.Tensor | None:
        if self.condition_dim == 0:
            return None
        return F.one_hot(labels, self.n_classes).float()

    def sample_labels(
        self, n: int, probs: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        p = self.class_prior if probs is None else probs
        return torch.multinomial(p, n, replacement=True, generator=generator)

    def generate(
        self,
        labels: torch.Tensor,
        *,
        hard: bool,
        generator: torch.Generator | None = None,
        gumbel_generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Activated rows for ``labels``: ``z`` from ``generator``, the Gumbel noise of the
        categorical spans from ``gumbel_generator`` (``None``: torch's global generator)."""
        z = torch.randn(len(labels), self.latent_dim, device=labels.device, generator=generator)
        net = self.sampling_generator()
        raw = net(z, self.condition(labels))
        return net.activate(raw, tau=self.gumbel_tau, hard=hard, generator=gumbel_generator)

    # ------------------------------------------------- what the signal monitor calls
    def monitor_sample(
        self, n: int, *, generator: torch.Generator | None, hard: bool
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[Any, ...]]:
        labels = self.sample_labels(n, generator=generator)
        x = self.generate(labels, hard=hard, generator=generator)
        return x, labels, (x, self.condition(labels))

    def monitor_real_inputs(
        self, x: torch.Tensor, y: torch.Tensor, positions: torch.Tensor | None
    ) -> tuple[Any, ...]:
        return (x, self.condition(y))

    def monitor_score(self, inputs: tuple[Any, ...]) -> torch.Tensor:
        return self.discriminator(*inputs)

    # ----------------------------------------------------------------------------- training
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        opt_g = torch.optim.Adam(
            self.generator.parameters(),
            lr=self.generator_lr,
            betas=self.betas,
            weight_decay=self.weight_decay,
        )
        opt_d: torch.optim.Optimizer = torch.optim.Adam(
            self.discriminator.parameters(),
            lr=self.discriminator_lr,
            betas=self.betas,
            weight_decay=self.weight_decay,
        )
        if self.private is not None:
            opt_d = make_optimizer(
                opt_d, self.private.settings, noise_generator=self.private.noise_generator
            )
            self.private.attach(optimizer=opt_d, module=self.discriminator)
        return [opt_g, opt_d]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x_real, y_real = batch
        opt_g, opt_d = self.optimizers()
        private = self.private
        if private is not None and not private.may_step():
            # Hard stop: the next noisy step would push the ledger past the target epsilon.
            self.trainer.should_stop = True
            return
        n_real = x_real.size(0)
        # Under DP the generated half has a fixed, data-independent size (Poisson batches vary).
        n_fake = private.settings.expected_batch_size if private is not None else n_real
        self._discriminator_step(opt_d, x_real, y_real, n_fake)
        if private is not None:
            private.after_step(self, step=self.discriminator_updates)

        # Generator: post-processing of the discriminator, reads no real record.
        if (batch_idx + 1) % self.discriminator_steps == 0:
            with generator_step_context(self.discriminator):
                y_gen = self.sample_labels(n_fake).to(x_real.device)
                x_gen = self.generate(y_gen, hard=False)
                logits = self.discriminator(x_gen, self.condition(y_gen))
                g_loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
                total = g_loss
                # squared MMD to a released mean embedding (DP-MERF; method.mean_embedding_weight)
                me_loss = self.mean_embedding_loss(x_gen, y_gen)
                if me_loss is not None:
                    total = g_loss + self.mean_embedding_weight * me_loss
                self._check_loss(total, "generator", self.generator_updates + 1)
                opt_g.zero_grad(set_to_none=True)
                self.manual_backward(total)
                opt_g.step()
            self.update_ema()
            self.generator_updates += 1
            self.log("train/g_loss", g_loss.detach(), on_step=True, on_epoch=True)
            if me_loss is not None:
                self.log("train/mean_embedding_loss", me_loss.detach(), on_step=True, on_epoch=True)

    def _discriminator_step(
        self, opt_d: Any, x_real: torch.Tensor, y_real: torch.Tensor, n_fake: int
    ) -> None:
        """ONE optimizer step on real and generated records together (one mean loss over the
        concatenated batch): under DP, one clipped and noised step, charged once."""
        y_fake = self.sample_labels(n_fake).to(x_real.device)
        with torch.no_grad():
            x_fake = self.generate(y_fake, hard=False)
        x = torch.cat([x_real, x_fake])
        labels = torch.cat([y_real, y_fake])
        targets = torch.cat([torch.ones(len(x_real)), torch.zeros(n_fake)]).to(x.device)
        opt_d.zero_grad(set_to_none=True)
        logits = self.discriminator(x, self.condition(labels))
        if self.private is None:
            d_loss = F.binary_cross_entropy_with_logits(logits, targets)
            self._check_loss(d_loss, "discriminator", self.discriminator_updates + 1)
            self.manual_backward(d_loss)
        else:
            d_loss = self.private.loss(logits, targets)
            if isinstance(d_loss, torch.Tensor):
                self.manual_backward(d_loss)
            else:  # ghost clipping (two passes) or book-keeping (one pass, clipped sum)
                d_loss.backward()
        opt_d.step()
        self.discriminator_updates += 1
        if self.private is not None:  # the released weights, not a loss of real records
            check_finite_weights(
                self.discriminator,
                what="discriminator",
                update=self.discriminator_updates,
                lr_keys=_LR_KEYS,
                private=True,
            )
        fake_logits = logits[len(x_real) :].detach()
        metrics = {"train/d_accuracy_fake": (fake_logits < 0).float().mean()}
        if self.private is None:
            # Under DP these would be releases computed on real records outside the
            # accountant, so they are only logged for non-private runs.
            real_logits = logits[: len(x_real)].detach()
            metrics["train/d_loss"] = d_loss.detach()
            metrics["train/d_accuracy"] = 0.5 * (
                (real_logits > 0).float().mean() + metrics["train/d_accuracy_fake"]
            )
        else:
            metrics["privacy/noise_multiplier"] = torch.as_tensor(
                self.private.stepper.optimizer.noise_multiplier
            )
        self.log_dict(metrics, on_step=True, on_epoch=True, prog_bar=False)

    def _check_loss(self, loss: torch.Tensor, what: str, update: int) -> None:
        check_finite_loss(
            loss, what=what, update=update, lr_keys=_LR_KEYS, private=self.private is not None
        )


@METHODS.register("standard_gan")
class StandardGAN(SyntheticDataMethod):
    """The method object the training entry point drives: builds the LightningModule from the
    DataModule's encoded layout, fits it, records the discriminator's accesses, samples rows."""

    name = "standard_gan"

    def __init__(
        self, cfg: Any, datamodule: TabularDataModule, *, plan: PrivacyPlan | None = None
    ) -> None:
        self.cfg = cfg
        self.datamodule = datamodule
        self.plan = plan
        self.prepare_datamodule(datamodule)
        datamodule.setup()
        self.private = None if plan is None else self._private_training(plan)
        self.module = self.build_module(cfg, datamodule)
        # a released target of the generator (method.mean_embedding_weight): made once, here,
        # not when a trained run is rebuilt for sampling (its buffer is in the saved weights)
        release_target(self.module, datamodule)

    def prepare_datamodule(self, datamodule: TabularDataModule) -> None:
        """Hook for subclasses: configure the DataModule before it reads the real records."""

    # The DP-SGD ledger entry of the module that reads real records.
    ledger_module = "discriminator"
    ledger_purpose = (
        "DP-SGD: per-sample clipping, Gaussian noise; real and generated records in one "
        "clipped step per update"
    )

    def build_module(self, cfg: Any, datamodule: TabularDataModule) -> pl.LightningModule:
        return ConditionalGAN(
            spans=datamodule.output_spans,
            class_prior=datamodule.class_prior.tolist(),
            latent_dim=cfg.latent_dim,
            generator_dims=list(cfg.generator_dims),
            discriminator_dims=list(cfg.discriminator_dims),
            dropout=cfg.dropout,
            generator_lr=cfg.generator_lr,
            discriminator_lr=cfg.discriminator_lr,
            betas=list(cfg.betas),
            weight_decay=cfg.weight_decay,
            discriminator_steps=cfg.discriminator_steps,
            gumbel_tau=cfg.gumbel_tau,
            condition_on_label=cfg.condition_on_label,
            private=self.private,
            generator_ema=cfg.generator_ema,
            mean_embedding_weight=float(cfg.mean_embedding_weight),
            mean_embedding_features=int(cfg.mean_embedding_features),
            mean_embedding_bandwidth=float(cfg.mean_embedding_bandwidth),
            seed=int(datamodule.seed),
        )

    planned_releases = staticmethod(planned_releases)

    def _private_training(self, plan: PrivacyPlan) -> PrivateTraining:
        return private_training(
            plan, self.datamodule, module=self.ledger_module, purpose=self.ledger_purpose
        )

    def fit(self, trainer: pl.Trainer) -> None:
        # resume=<run dir>: continue from its checkpoint (weights_only load; dpshare.checkpoint)
        trainer.fit(self.module, datamodule=self.datamodule, **resume_fit_kwargs(self))
        check_trained(
            self.module.discriminator_updates,
            length=f"trainer.max_epochs={trainer.max_epochs}",
            plan=self.plan,
            budget_stopped=self.private is not None and self.private.budget_stopped,
            target_epsilon=self.datamodule.ledger.target_epsilon,
        )
        ledger = self.datamodule.ledger
        if self.private is None:
            self.ledger_entry = ledger.record_non_private(
                module=self.ledger_module,
                purpose="non-private SGD on real batches (no clipping, no noise)",
                records=self.datamodule.n_train,
                steps=self.module.discriminator_updates,
                batch_size=self.datamodule.batch_size,
            )
            return
        private = self.private
        self.ledger_entry = private.entry
        stepper = private._require_stepper()
        ledger.update_parameters(
            private.entry,
            noisy_steps=stepper.noisy_steps,
            stopped_by_budget=private.budget_stopped,
            max_grad_norm_history=stepper.clip_history,
        )
        if private.controller is not None:
            ledger.update_parameters(private.entry, controller=private.controller.name)

    def privacy_summary(self) -> dict[str, Any]:
        """Controller trace for the run record (empty for non-private runs)."""
        if self.private is None or self.private.controller is None:
            return {}
        return {"controller_history": self.private.controller.history}

    @torch.no_grad()
    def sample(
        self, n: int, *, seed: int, class_mix: Mapping[Any, float] | None = None
    ) -> pd.DataFrame:
        """``n`` synthetic rows in the released schema. ``class_mix`` maps class values to shares
        (normalised); by default labels follow the train split's class distribution."""
        if n < 1:
            raise UserInputError(f"number of synthetic rows must be >= 1, got {n}")
        module = self.module
        module.eval()
        probs = None
        if class_mix is not None:
            probs = _class_mix_to_probs(class_mix, self.datamodule.classes)
        generator = torch.Generator().manual_seed(seed)
        xs, ys = [], []
        for start in range(0, n, 10_000):
            size = min(10_000, n - start)
            labels = module.sample_labels(size, probs, generator=generator)
            rows = module.generate(
                labels, hard=True, generator=generator, gumbel_generator=generator
            )
            xs.append(rows.cpu().numpy())
            ys.append(labels.cpu().numpy())
        module.train()
        return self.datamodule.decode(np.concatenate(xs), np.concatenate(ys))

    def state_dict(self) -> dict[str, Any]:
        """The released generator (the average when ``method.generator_ema`` is set)."""
        return {"generator": self._released_generator().state_dict()}

    def _released_generator(self) -> torch.nn.Module:
        return self.module.released_generator()

    def snapshot_state(self) -> dict[str, Any]:
        state = self._released_generator().state_dict()
        return {"generator": {k: v.detach().clone() for k, v in state.items()}}

    def load_snapshot_state(self, state: dict[str, Any]) -> None:
        self._released_generator().load_state_dict(state["generator"])

    @classmethod
    def for_sampling(cls, cfg: Any, datamodule: Any, state: Mapping[str, Any]) -> StandardGAN:
        """The sampler of a saved run (:mod:`dpshare.artifact`): the same module as the fitted
        method, built from the saved config and ``datamodule`` (released statistics only), with
        no DP machinery, no ledger and no train split."""
        method = cls.__new__(cls)
        method.cfg = cfg
        method.datamodule = datamodule
        method.plan = None
        method.private = None
        method.restore_sampling(state)
        return method

    def restore_sampling(self, state: Mapping[str, Any]) -> None:
        """Build :attr:`module` for :meth:`for_sampling` (subclasses restore what their
        :meth:`sampling_state` saved)."""
        self.prepare_datamodule(self.datamodule)
        self.module = self.build_module(self.cfg, self.datamodule)


def _class_mix_to_probs(class_mix: Mapping[Any, float], classes: np.ndarray) -> torch.Tensor:
    known = {c.item() if hasattr(c, "item") else c for c in classes}
    unknown = [k for k in class_mix if k not in known]
    if unknown:
        raise UserInputError(
            f"class_mix names unknown classes {unknown}; classes are {sorted(known)}"
        )
    shares = np.array(
        [float(class_mix.get(c.item() if hasattr(c, "item") else c, 0.0)) for c in classes]
    )
    if (shares < 0).any() or shares.sum() <= 0:
        raise UserInputError(
            f"class_mix shares must be >= 0 and not all zero, got {dict(class_mix)}"
        )
    return torch.as_tensor(shares / shares.sum(), dtype=torch.float32)


def private_training(
    plan: PrivacyPlan, datamodule: TabularDataModule, *, module: str, purpose: str
) -> PrivateTraining:
    """DP-SGD settings, the ledger entry and (for pid / wgan_feedback) the controller and its
    signal monitor, for the module named ``module`` that reads ``datamodule``'s real records."""
    dm = datamodule
    settings = DPSettings(
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=plan.max_grad_norm,
        sample_rate=plan.sample_rate,
        expected_batch_size=plan.expected_batch_size,
        grad_sample_mode=plan.grad_sample_mode,
        poisson_sampling=plan.poisson_sampling,
    )
    entry = dm.ledger.open_dp_sgd(
        module=module,
        purpose=purpose,
        records=dm.n_train,
        sample_rate=plan.sample_rate,
        poisson_sampling=plan.poisson_sampling,
        max_grad_norm=plan.max_grad_norm,
        expected_batch_size=plan.expected_batch_size,
        grad_sample_mode=plan.grad_sample_mode,
        planned_steps=plan.planned_steps,
        noise_calibrated=plan.calibrated,
        # a controller picks sigma from earlier outputs: account every step at the floor
        adaptive_noise_floor=plan.sigma_min if plan.name != "fixed" else None,
    )
    controller = monitor = None
    if plan.name != "fixed":
        controller = make_controller(
            plan.name,
            noise_multiplier=plan.noise_multiplier,
            max_grad_norm=plan.max_grad_norm,
            sigma_min=plan.sigma_min,
            sigma_max=plan.sigma_max,
            **plan.controller_kwargs,
        )
        monitor = SignalMonitor(
            plan=plan,
            ledger=dm.ledger,
            x_train=dm.x_train,
            y_train=dm.y_train,
            x_public=dm.x_public,
            y_public=dm.y_public,
            seed=dm.seed,
            n_probe=plan.n_probe,
        )
    return PrivateTraining(
        settings=settings,
        ledger=dm.ledger,
        entry=entry,
        controller=controller,
        monitor=monitor,
        monitor_every=plan.monitor_every,
        noise_generator=noise_generator(plan.noise_seed),
    )
