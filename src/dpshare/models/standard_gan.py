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

from dpshare.data.datamodule import TabularDataModule
from dpshare.data.transformer import OutputSpan
from dpshare.errors import UserInputError
from dpshare.models.base import SyntheticDataMethod
from dpshare.models.networks import ConditionalGenerator, MLPDiscriminator
from dpshare.models.registry import METHODS


class ConditionalGAN(pl.LightningModule):
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
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        if discriminator_steps < 1:
            raise UserInputError(
                f"method.discriminator_steps must be >= 1, got {discriminator_steps}"
            )
        self.n_classes = len(class_prior)
        self.condition_dim = self.n_classes if condition_on_label else 0
        self.latent_dim = latent_dim
        self.generator = ConditionalGenerator(
            latent_dim=latent_dim,
            condition_dim=self.condition_dim,
            hidden_dims=generator_dims,
            spans=spans,
        )
        self.discriminator = MLPDiscriminator(
            input_dim=self.generator.output_dim,
            condition_dim=self.condition_dim,
            hidden_dims=discriminator_dims,
            dropout=dropout,
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
    ) -> torch.Tensor:
        z = torch.randn(len(labels), self.latent_dim, device=labels.device, generator=generator)
        raw = self.generator(z, self.condition(labels))
        return self.generator.activate(raw, tau=self.gumbel_tau, hard=hard)

    # ----------------------------------------------------------------------------- training
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        opt_g = torch.optim.Adam(
            self.generator.parameters(),
            lr=self.generator_lr,
            betas=self.betas,
            weight_decay=self.weight_decay,
        )
        opt_d = torch.optim.Adam(
            self.discriminator.parameters(),
            lr=self.discriminator_lr,
            betas=self.betas,
            weight_decay=self.weight_decay,
        )
        return [opt_g, opt_d]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x_real, y_real = batch
        opt_g, opt_d = self.optimizers()
        n = x_real.size(0)

        # Discriminator: real and fake in one loss, one optimizer step.
        y_fake = self.sample_labels(n).to(x_real.device)
        with torch.no_grad():
            x_fake = self.generate(y_fake, hard=False)
        logits_real = self.discriminator(x_real, self.condition(y_real))
        logits_fake = self.discriminator(x_fake, self.condition(y_fake))
        d_loss = F.binary_cross_entropy_with_logits(
            logits_real, torch.ones_like(logits_real)
        ) + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()
        self.discriminator_updates += 1
        d_accuracy = 0.5 * ((logits_real > 0).float().mean() + (logits_fake < 0).float().mean())
        self.log_dict(
            {"train/d_loss": d_loss.detach(), "train/d_accuracy": d_accuracy},
            on_step=True,
            on_epoch=True,
            prog_bar=False,
        )

        # Generator (post-processing of the discriminator: reads no real record).
        if (batch_idx + 1) % self.discriminator_steps == 0:
            self.discriminator.requires_grad_(False)
            y_gen = self.sample_labels(n).to(x_real.device)
            logits = self.discriminator(self.generate(y_gen, hard=False), self.condition(y_gen))
            g_loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            opt_g.step()
            self.discriminator.requires_grad_(True)
            self.generator_updates += 1
            self.log("train/g_loss", g_loss.detach(), on_step=True, on_epoch=True)


@METHODS.register("standard_gan")
class StandardGAN(SyntheticDataMethod):
    """The method object the training entry point drives: builds the LightningModule from the
    DataModule's encoded layout, fits it, records the discriminator's accesses, samples rows."""

    name = "standard_gan"

    def __init__(self, cfg: Any, datamodule: TabularDataModule) -> None:
        self.cfg = cfg
        self.datamodule = datamodule
        datamodule.setup()
        self.module = ConditionalGAN(
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
        )

    def fit(self, trainer: pl.Trainer) -> None:
        trainer.fit(self.module, datamodule=self.datamodule)
        self.datamodule.ledger.record_non_private(
            module="discriminator",
            purpose="non-private SGD on real batches (no clipping, no noise)",
            records=self.datamodule.n_train,
            steps=self.module.discriminator_updates,
            batch_size=self.datamodule.batch_size,
        )

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
            xs.append(module.generate(labels, hard=True, generator=generator).cpu().numpy())
            ys.append(labels.cpu().numpy())
        module.train()
        return self.datamodule.decode(np.concatenate(xs), np.concatenate(ys))

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.module.generator.state_dict()}


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
