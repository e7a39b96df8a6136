"""``method=dp_wgan``: Tao 2020, a differentially private WGAN on MNIST (docs/dp_wgan.md).

Tao et al. 2020 ("Differential privacy protection method for deep learning based on WGAN
feedback", J. USTC 50(8)) train a Wasserstein GAN (Arjovsky et al. 2017) with DP-SGD (their
Algorithm 2.1 = Abadi et al. 2016: per-sample clipping to C, Gaussian noise, moments
accountant), C = 5, on MNIST, and retune the privacy parameters from the similarity of
successive generated results (Sec. 2.4; ``privacy=wgan_feedback``). The paper gives no
architecture; ours:

* **Conditional generation**: ONE class-conditional generator (not one generator per digit).
  ``z ~ N(0, I)`` (``latent_dim``) concatenated with a learned label embedding -> dense to
  ``2c x 7 x 7`` -> ConvTranspose 4/2 to ``c x 14 x 14`` -> ConvTranspose 4/2 to ``1 x 28 x 28``,
  ``tanh`` (DCGAN-style, BatchNorm + ReLU inside; the generator reads no real record, so its
  BatchNorm is harmless). Labels of generated images are drawn from the class distribution of
  the train split (a Gaussian release under DP, charged to the ledger by the DataModule).
* **Critic**: conv 4/2 (``c``) - LeakyReLU - conv 4/2 (``2c``) - norm - LeakyReLU - flatten, a
  linear output plus a projection of the label (Miyato & Koyama 2018):
  ``D(x, y) = w . h(x) + <E y, h(x)>``. No BatchNorm: it mixes records of a batch and breaks
  per-sample clipping; ``critic_norm`` is ``group`` (GroupNorm, 8 groups), ``layer`` (GroupNorm
  with one group = LayerNorm over C, H, W) or ``none``.
* **Images**: the 784 encoded pixel columns are scaled to [-1, 1] by the PUBLIC pixel bounds
  [0, 255] (``TabularTransformer.fit_public``: no statistic read, none released; the ledger
  lists it with 0 records read) and reshaped to ``1 x 28 x 28`` (row-major, ``px_{28 r + c}``).

DP design (what is protected: one MNIST image with its label, add/remove adjacency):

* Only the critic reads real records, so only the critic is an Opacus GradSampleModule in a
  DPOptimizer. One critic update = ONE clipped, noised step over the concatenation of a
  Poisson-sampled real batch and a data-independent batch of ``expected_batch_size`` generated
  images, with per-sample loss ``-D(x, y)`` for a real row and ``+D(x, y)`` for a generated row
  (mean over the concatenated batch: half the WGAN critic loss when the halves are equal).
  Removing a real record removes one clipped per-sample gradient, so each update is one
  sampled-Gaussian step, charged once to the ledger (``critic`` entry) by the optimizer's step
  hook (:class:`~dpshare.models.dp.PrivateTraining`).
* Lipschitz constraint by **weight clipping** (Arjovsky et al. 2017): after each DP step every
  critic parameter is clamped to ``[-weight_clip, weight_clip]``. The clamp reads only the
  (already DP) parameters: post-processing, no privacy cost.
* A **gradient penalty** (Gulrajani et al. 2017) reads real records through ``grad_x D`` at
  interpolates of real and generated images, OUTSIDE per-sample clipping here; it is offered
  for non-private runs only and refused under DP (:class:`~dpshare.errors.UserInputError`).
* ``n_critic`` critic steps (each its own Poisson batch, each charged) per generator step; the
  generator step is post-processing of the DP critic (hooks off, critic frozen).
* The clipping bound C is ``privacy.max_grad_norm`` (Tao 2020: C = 5; set it on the command line,
  the suite-wide default stays 1). Under ``privacy=wgan_feedback`` C follows the controller
  within ``[privacy.wgan_feedback.clip_min, clip_max]`` (the plan starts at ``clip_max``), so
  Tao's C = 5 there is ``clip_min=clip_max=5``.

Clipping modes: ``bk`` (the suite default, :mod:`dpshare.models.bookkeeping`) forms the
per-sample norms and the clipped sum of every critic layer (Conv2d, GroupNorm, Linear,
Embedding) from one backward pass; ``hooks`` and ``functorch`` compute Opacus per-sample
gradients of every layer; ``ghost`` uses Opacus ghost norms for the Linear and Embedding layers,
per-sample gradients for the others and a second backward; all four are tested.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F

from dpshare.data.datamodule import TabularDataModule
from dpshare.errors import UserInputError
from dpshare.models.checks import check_finite_loss, check_finite_weights
from dpshare.models.dp import PrivateTraining, generator_step_context, make_optimizer, wrap_module
from dpshare.models.networks import GeneratorEMA
from dpshare.models.registry import METHODS
from dpshare.models.standard_gan import StandardGAN

log = logging.getLogger(__name__)

IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
CRITIC_NORMS = ("group", "layer", "none")
CRITICS = ("conv", "mlp")
OPTIMIZERS = ("rmsprop", "adam", "sgd")
# wasserstein: Tao 2020 / Arjovsky et al. 2017 (critic -D(real) + D(fake), generator -D(fake));
# logistic: the non-saturating GAN loss (critic softplus(-D(real)) + softplus(D(fake)),
# generator softplus(-D(fake))) that Bie et al. 2023 train their DP-GANs with
LOSSES = ("wasserstein", "logistic")


# the learning rates a divergence message suggests lowering
_LR_KEYS = ("critic_lr", "generator_lr")


# ---------------------------------------------------------------------------------- networks


class ImageGenerator(nn.Module):
    """Class-conditional DCGAN-style generator: ``(z, label) -> 1 x 28 x 28`` in [-1, 1]."""

    def __init__(
        self, *, latent_dim: int, n_classes: int, embedding_dim: int, channels: int
    ) -> None:
        super().__init__()
        c = channels
        self.embed = nn.Embedding(n_classes, embedding_dim)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim + embedding_dim, 2 * c * 7 * 7),
            nn.BatchNorm1d(2 * c * 7 * 7),
            nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),  # 7 -> 14
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # 14 -> 28
            nn.Tanh(),
        )
        self.channels = c

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(labels)], dim=1))
        return self.deconv(h.view(-1, 2 * self.channels, 7, 7))


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class ImageCritic(nn.Module):
    """Convolutional WGAN critic with a label projection; no BatchNorm (module docstring).

    Input: flattened images ``(n, 784)`` in [-1, 1] and label indices ``(n,)``; output: one
    unbounded score per image (higher = more "real")."""

    def __init__(self, *, n_classes: int, channels: int, norm: str) -> None:
        super().__init__()
        if norm not in CRITIC_NORMS:
            raise UserInputError(
                f"method.critic_norm={norm!r}; choose one of {list(CRITIC_NORMS)} (BatchNorm "
                "is not offered: it mixes the records of a batch, so one record's data would "
                "reach every other record's gradient and per-sample clipping would not bound it)"
            )
        c = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1),  # 28 -> 14
            nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),  # 14 -> 7
            _norm(norm, 2 * c),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        width = 2 * c * 7 * 7
        self.out = nn.Linear(width, 1)
        self.embed = nn.Embedding(n_classes, width)  # projection discriminator

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(x.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE))
        return self.out(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)


# ---------------------------------------------------------------------------- LightningModule


class ImageMLPCritic(nn.Module):
    """A fully connected critic with the same label projection as :class:`ImageCritic`:
    ``784 -> hidden[0] -> ... -> hidden[-1]`` (LeakyReLU 0.2), ``D(x, y) = w . h(x) + <E y,
    h(x)>``. Per-sample clipping of a Linear layer costs ~one extra product per record (its
    per-sample norm is ``||a|| ||g||``), so a DP step is ~10x cheaper on a CPU than the conv
    critic's (benchmarks/README.md); it is the critic of the ``scale=cpu`` recipe."""

    def __init__(self, *, n_classes: int, hidden: list[int]) -> None:
        super().__init__()
        widths = [int(h) for h in hidden]
        if not widths or any(h < 1 for h in widths):
            raise UserInputError(
                f"method.critic_hidden={list(hidden)}: give one or more positive layer widths, "
                "e.g. [512, 256]"
            )
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip([N_PIXELS, *widths[:-1]], widths, strict=True):
            layers += [nn.Linear(fan_in, fan_out), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(widths[-1], 1)
        self.embed = nn.Embedding(n_classes, widths[-1])  # projection discriminator

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(x.reshape(-1, N_PIXELS))
        return self.out(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)


def build_critic(
    kind: str, *, n_classes: int, channels: int, norm: str, hidden: list[int]
) -> nn.Module:
    """The critic named by ``method.critic``."""
    if kind == "conv":
        return ImageCritic(n_classes=n_classes, channels=channels, norm=norm)
    if kind == "mlp":
        return ImageMLPCritic(n_classes=n_classes, hidden=hidden)
    raise UserInputError(f"method.critic={kind!r}; choose one of {list(CRITICS)}")


class DPWGANModule(GeneratorEMA, pl.LightningModule):
    """Conditional generator + critic, manual optimization (see the module docstring).

    The critic is stored as ``self.discriminator`` (the name the shared DP machinery, the
    signal monitor and the run record use); ``discriminator_updates`` counts critic steps.
    """

    def __init__(
        self,
        *,
        class_prior: list[float],
        latent_dim: int,
        embedding_dim: int,
        generator_channels: int,
        critic_channels: int,
        critic_norm: str,
        optimizer: str,
        generator_lr: float,
        critic_lr: float,
        betas: list[float],
        n_critic: int,
        weight_clip: float | None,
        gradient_penalty: float,
        private: PrivateTraining | None = None,
        critic: str = "conv",
        critic_hidden: list[int] | None = None,
        loss: str = "wasserstein",
        generator_ema: float | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        if loss not in LOSSES:
            raise UserInputError(f"method.loss={loss!r}; choose one of {list(LOSSES)}")
        if n_critic < 1:
            raise UserInputError(f"method.n_critic must be >= 1, got {n_critic}")
        if optimizer not in OPTIMIZERS:
            raise UserInputError(f"method.optimizer={optimizer!r}; choose one of {OPTIMIZERS}")
        if weight_clip is not None and not weight_clip > 0:
            raise UserInputError(f"method.weight_clip must be > 0 or null, got {weight_clip}")
        if gradient_penalty < 0:
            raise UserInputError(f"method.gradient_penalty must be >= 0, got {gradient_penalty}")
        if private is not None and gradient_penalty > 0:
            raise UserInputError(refuse_gradient_penalty_message(gradient_penalty))
        if loss == "wasserstein" and weight_clip is None and gradient_penalty == 0:
            raise UserInputError(
                "a WGAN critic needs a Lipschitz constraint: set method.weight_clip (e.g. 0.01) "
                "or, without DP, method.gradient_penalty (e.g. 10)"
            )
        for key, lr in (("generator_lr", generator_lr), ("critic_lr", critic_lr)):
            if not lr > 0:
                raise UserInputError(f"method.{key} must be > 0, got {lr}")
        self.n_classes = len(class_prior)
        self.latent_dim = latent_dim
        self.generator = ImageGenerator(
            latent_dim=latent_dim,
            n_classes=self.n_classes,
            embedding_dim=embedding_dim,
            channels=generator_channels,
        )
        critic_net = build_critic(
            critic,
            n_classes=self.n_classes,
            channels=critic_channels,
            norm=critic_norm,
            hidden=[512, 256] if critic_hidden is None else list(critic_hidden),
        )
        self.loss_name = loss
        # the released generator: an exponential moving average of the trained one's weights
        # (post-processing of the DP training, no privacy cost); sampling in eval mode uses it
        self.init_generator_ema(generator_ema)
        critic = critic_net
        self.private = private
        self.discriminator = critic if private is None else wrap_module(critic, private.settings)
        self.register_buffer("class_prior", torch.as_tensor(class_prior, dtype=torch.float32))
        self.optimizer_name = optimizer
        self.generator_lr = float(generator_lr)
        self.critic_lr = float(critic_lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.n_critic = int(n_critic)
        self.weight_clip = None if weight_clip is None else float(weight_clip)
        self.gradient_penalty = float(gradient_penalty)
        self.discriminator_updates = 0
        self.generator_updates = 0

    # ------------------------------------------------------------------------------ helpers
    def sample_labels(
        self, n: int, probs: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        p = self.class_prior if probs is None else probs
        return torch.multinomial(p, n, replacement=True, generator=generator)

    def generate(
        self,
        labels: torch.Tensor,
        *,
        hard: bool = True,
        generator: torch.Generator | None = None,
        gumbel_generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Generated images for ``labels``, flattened to ``(n, 784)`` in [-1, 1] (the encoded
        pixel columns). ``hard`` and ``gumbel_generator`` are accepted for the shared sampling
        code (pixels have no discrete part)."""
        z = torch.randn(len(labels), self.latent_dim, device=labels.device, generator=generator)
        return self.sampling_generator()(z, labels).flatten(1)

    def critic_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    @torch.no_grad()
    def clip_weights(self) -> None:
        """Weight clipping (Arjovsky et al. 2017): post-processing of the DP critic."""
        if self.weight_clip is None:
            return
        for p in self.critic_parameters():
            p.clamp_(-self.weight_clip, self.weight_clip)

    # ------------------------------------------------- what the signal monitor calls
    def monitor_sample(
        self, n: int, *, generator: torch.Generator | None, hard: bool
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[Any, ...]]:
        labels = self.sample_labels(n, generator=generator)
        x = self.generate(labels, generator=generator)
        return x, labels, (x, labels)

    def monitor_real_inputs(
        self, x: torch.Tensor, y: torch.Tensor, positions: torch.Tensor | None
    ) -> tuple[Any, ...]:
        return (x, y)

    def monitor_score(self, inputs: tuple[Any, ...]) -> torch.Tensor:
        """Critic scores (unbounded; ``> 0`` is read as "real" by the ``disc_accuracy`` signal,
        a coarse reading for a WGAN critic, whose scores have no fixed midpoint)."""
        return self.discriminator(*inputs)

    # ----------------------------------------------------------------------------- training
    def _make(self, params: Any, lr: float) -> torch.optim.Optimizer:
        if self.optimizer_name == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr)
        if self.optimizer_name == "adam":
            return torch.optim.Adam(params, lr=lr, betas=self.betas)
        return torch.optim.SGD(params, lr=lr)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        opt_g = self._make(self.generator.parameters(), self.generator_lr)
        opt_c = self._make(self.discriminator.parameters(), self.critic_lr)
        if self.private is not None:
            opt_c = make_optimizer(
                opt_c, self.private.settings, noise_generator=self.private.noise_generator
            )
            self.private.attach(optimizer=opt_c, module=self.discriminator)
        return [opt_g, opt_c]

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x_real, y_real = batch[0], batch[1]
        opt_g, opt_c = self.optimizers()
        private = self.private
        if private is not None and not private.may_step():
            self.trainer.should_stop = True  # hard stop: the next step would pass the target
            return
        n_fake = private.settings.expected_batch_size if private is not None else len(x_real)
        self._critic_step(opt_c, x_real, y_real, n_fake)
        if private is not None:
            private.after_step(self, step=self.discriminator_updates)
        if self.discriminator_updates % self.n_critic == 0:
            self._generator_step(opt_g, n_fake, x_real.device)

    def _critic_step(
        self, opt_c: Any, x_real: torch.Tensor, y_real: torch.Tensor, n_fake: int
    ) -> None:
        """ONE step on real and generated images together; under DP one clipped, noised step,
        charged once. Per-sample loss: ``-D`` for real rows, ``+D`` for generated rows."""
        y_fake = self.sample_labels(n_fake).to(x_real.device)
        with torch.no_grad():
            x_fake = self.generate(y_fake)
        n_real = len(x_real)
        x = torch.cat([x_real, x_fake])
        labels = torch.cat([y_real, y_fake])
        sign = torch.cat([-torch.ones(n_real), torch.ones(n_fake)]).to(x.device)
        opt_c.zero_grad(set_to_none=True)
        scores = self.discriminator(x, labels)
        # per record: wasserstein -D(real) / +D(fake); logistic softplus(-D(real)) /
        # softplus(D(fake)) (binary cross-entropy with real = 1); clipped per record under DP
        per_sample = sign * scores if self.loss_name == "wasserstein" else F.softplus(sign * scores)
        if self.private is None:
            loss = per_sample.mean()
            if self.gradient_penalty > 0:
                loss = loss + self.gradient_penalty * self._gradient_penalty(
                    x_real, y_real, x_fake, y_fake
                )
            self._check_loss(loss, "critic", self.discriminator_updates + 1)
            self.manual_backward(loss)
        else:
            dp_loss = self.private.mean_loss(per_sample)
            if isinstance(dp_loss, torch.Tensor):
                self.manual_backward(dp_loss)
            else:  # ghost clipping (two passes) or book-keeping (one pass, clipped sum)
                dp_loss.backward()
        opt_c.step()
        self.clip_weights()
        self.discriminator_updates += 1
        if self.private is not None:  # the released weights, not a loss of real records
            check_finite_weights(
                self.discriminator,
                what="critic",
                update=self.discriminator_updates,
                lr_keys=_LR_KEYS,
                private=True,
            )
        fake_scores = scores[n_real:].detach()
        metrics: dict[str, Any] = {"train/critic_fake_score": fake_scores.mean()}
        if self.private is None:
            # Statistics of the real half would be releases outside the accountant under DP.
            real_scores = scores[:n_real].detach()
            metrics["train/wasserstein_estimate"] = real_scores.mean() - fake_scores.mean()
        else:
            stepper = self.private.stepper
            assert stepper is not None
            metrics["privacy/noise_multiplier"] = torch.as_tensor(
                float(stepper.optimizer.noise_multiplier)
            )
            metrics["privacy/max_grad_norm"] = torch.as_tensor(
                float(stepper.optimizer.max_grad_norm)
            )
        self.log_dict(metrics, on_step=True, on_epoch=True, prog_bar=False)

    def _gradient_penalty(
        self,
        x_real: torch.Tensor,
        y_real: torch.Tensor,
        x_fake: torch.Tensor,
        y_fake: torch.Tensor,
    ) -> torch.Tensor:
        """WGAN-GP (Gulrajani et al. 2017), non-private runs only: ``E (||grad_x D(x_hat)|| -
        1)^2`` at random interpolates of real and generated images (real labels)."""
        n = min(len(x_real), len(x_fake))
        if n == 0:
            return torch.zeros((), device=x_real.device)
        eps = torch.rand(n, 1, device=x_real.device)
        x_hat = (eps * x_real[:n] + (1 - eps) * x_fake[:n]).requires_grad_(True)
        scores = self.discriminator(x_hat, y_real[:n])
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
        return ((grad.norm(2, dim=1) - 1.0) ** 2).mean()

    def _check_loss(self, loss: torch.Tensor, what: str, update: int) -> None:
        check_finite_loss(
            loss, what=what, update=update, lr_keys=_LR_KEYS, private=self.private is not None
        )

    def _generator_step(self, opt_g: Any, n_fake: int, device: torch.device) -> None:
        """Post-processing of the DP critic: reads no real record."""
        with generator_step_context(self.discriminator):
            y_gen = self.sample_labels(n_fake).to(device)
            scores = self.discriminator(self.generate(y_gen), y_gen)
            g_loss = (
                -scores.mean() if self.loss_name == "wasserstein" else F.softplus(-scores).mean()
            )
            self._check_loss(g_loss, "generator", self.generator_updates + 1)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            opt_g.step()
        self.update_ema()
        self.generator_updates += 1
        self.log("train/g_loss", g_loss.detach(), on_step=True, on_epoch=True)


def refuse_gradient_penalty_message(weight: float) -> str:
    return (
        f"method.gradient_penalty={weight} under DP: the penalty reads real records through "
        "grad_x D at interpolates of real and generated images, outside per-sample clipping, "
        "so it would leak unaccounted. Use weight clipping (method.weight_clip, post-processing "
        "of the DP critic) and method.gradient_penalty=0, or privacy=none"
    )


# ------------------------------------------------------------------------------------- method


@METHODS.register("dp_wgan")
class DPWGAN(StandardGAN):
    """Tao 2020's DP-WGAN as a method: conditional image generator, DP critic, samples in the
    released MNIST schema (784 uint8 pixel columns + ``label``)."""

    name = "dp_wgan"
    # pixels are scaled by their public bounds: the privacy plan budgets no transformer release
    releases_transformer_stats = False
    ledger_module = "critic"
    ledger_purpose = (
        "DP-SGD on the WGAN critic: per-sample clipping of -D(real) / +D(generated) over the "
        "concatenated batch, Gaussian noise, one step per critic update; weight clipping after "
        "each step is post-processing"
    )

    def prepare_datamodule(self, datamodule: TabularDataModule) -> None:
        cfg = self.cfg
        if self.plan is not None and float(cfg.gradient_penalty) > 0:
            raise UserInputError(refuse_gradient_penalty_message(float(cfg.gradient_penalty)))
        features = datamodule.data.feature_columns
        if len(features) != N_PIXELS:
            raise UserInputError(
                f"method=dp_wgan generates 1x{IMAGE_SIDE}x{IMAGE_SIDE} images from {N_PIXELS} "
                f"pixel columns; dataset {datamodule.data.name!r} has {len(features)} feature "
                "columns (use dataset=mnist)"
            )
        # pixels -> [-1, 1] by the public bounds [0, 255]: no statistic read, none released
        datamodule.public_scaling = True

    def build_module(self, cfg: Any, datamodule: TabularDataModule) -> pl.LightningModule:
        dm = datamodule
        if dm.transformer.output_dim != N_PIXELS:
            raise UserInputError(
                f"method=dp_wgan needs {N_PIXELS} encoded pixel columns, the transformer made "
                f"{dm.transformer.output_dim}"
            )
        return DPWGANModule(
            class_prior=dm.class_prior.tolist(),
            latent_dim=cfg.latent_dim,
            embedding_dim=cfg.embedding_dim,
            generator_channels=cfg.generator_channels,
            critic_channels=cfg.critic_channels,
            critic_norm=cfg.critic_norm,
            optimizer=cfg.optimizer,
            generator_lr=cfg.generator_lr,
            critic_lr=cfg.critic_lr,
            betas=list(cfg.betas),
            n_critic=cfg.n_critic,
            weight_clip=cfg.weight_clip,
            gradient_penalty=cfg.gradient_penalty,
            private=self.private,
            critic=cfg.critic,
            critic_hidden=list(cfg.critic_hidden),
            loss=cfg.loss,
            generator_ema=cfg.generator_ema,
        )

    def fit(self, trainer: pl.Trainer) -> None:
        super().fit(trainer)
        self.datamodule.ledger.update_parameters(
            self.ledger_entry,
            critic_steps=self.module.discriminator_updates,
            generator_steps=self.module.generator_updates,
            n_critic=int(self.cfg.n_critic),
            weight_clip=self.cfg.weight_clip,
            gradient_penalty=float(self.cfg.gradient_penalty),
        )

    @torch.no_grad()
    def sample_images(
        self, n: int, *, seed: int, class_mix: Mapping[Any, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(images, labels)``: ``n`` generated images as uint8 ``(n, 1, 28, 28)`` and their
        labels (class values), the same draws as :meth:`sample` with the same seed."""
        frame = self.sample(n, seed=seed, class_mix=class_mix)
        return frame_to_images(frame, self.datamodule.data.feature_columns), frame[
            self.datamodule.data.target
        ].to_numpy()

    def artifacts(self) -> dict[str, np.ndarray]:
        """A preview released with the table: 10 generated images per class, uint8
        ``(10 * n_classes, 1, 28, 28)``, class by class (post-processing)."""
        classes = self.datamodule.classes
        module = self.module
        was_training = module.training
        module.eval()
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            labels = torch.arange(len(classes)).repeat_interleave(10)
            x = module.generate(labels, generator=generator).cpu().numpy()
        module.train(was_training)
        frame = self.datamodule.decode(x, labels.numpy())
        return {
            "synthetic_images_preview": frame_to_images(frame, self.datamodule.data.feature_columns)
        }


def frame_to_images(frame: Any, pixel_columns: list[str]) -> np.ndarray:
    """Rows of a table in the MNIST schema -> uint8 images ``(n, 1, 28, 28)`` (row-major)."""
    pixels = frame[list(pixel_columns)].to_numpy(dtype=np.uint8)
    return pixels.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)


__all__ = [
    "DPWGAN",
    "DPWGANModule",
    "ImageCritic",
    "ImageGenerator",
    "ImageMLPCritic",
    "build_critic",
    "frame_to_images",
]
