"""The statistical discriminator's released target: a DP mean embedding of the real rows.

A per-row discriminator cannot see a *missing* mode: when the generator stops producing, say,
low-risk rows with a non-zero cross-bank count, no generated row is judged wrong, and the
generator is free to code the class with that one column (docs/bank_sim.md, "The 0.68
outcome"). A statistic over many rows sees it. Under DP-SGD no statistic over a batch of real
rows may enter a discriminator's forward pass (it would break per-sample clipping), so the
global comparison is made against ONE Gaussian release of the real rows' label-conditional mean
embedding, as in DP-MERF (Harder et al. 2021, "DP-MERF: Differentially private mean embeddings
with random features for practical privacy-preserving data generation"):

* each encoded row ``x`` (the generator's output space) with label ``y`` is mapped to
  ``v(x, y) = f(x) (x) e_y``, where ``f(x)`` is ``[cos(x W), sin(x W)] / sqrt(2 D)`` (random
  Fourier features of a Gaussian kernel, Rahimi & Recht 2007; ``W`` drawn from a seed, never
  from data) next to the row's first and second moments ``[x, x**2] / sqrt(4 d)``, and clipped
  to L2 norm 1;
* the release is ``S = sum_i v(x_i, y_i) + N(0, sigma^2 I)``: adding or removing one record
  moves the sum by at most 1 in L2, so it is one Gaussian mechanism with sensitivity 1, charged
  to the ledger (``privacy.release_noise_multiplier``, like the transformer's statistics) and
  planned before DP-SGD's sigma is calibrated (``dpshare.privacy.plan``);
* the generator adds ``weight * || mean_j v(G(z_j, y_j), y_j) - S / n ||^2`` (the squared MMD
  of DP-MERF, with the label-conditional kernel) to its loss: post-processing of the release.

Why by hand: DP-MERF has no maintained package (the authors' research code is not on PyPI) and
the embedding is a few lines of tensor algebra; the accounting is the ledger's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from dpshare.errors import UserInputError


class RowEmbedding(nn.Module):
    """``x -> f(x)``, L2 norm <= 1 per row (see the module docstring)."""

    def __init__(self, *, input_dim: int, n_features: int, bandwidth: float, seed: int) -> None:
        super().__init__()
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
        g = torch.Generator().manual_seed(int(seed))
        self.W: torch.Tensor
        self.register_buffer("W", torch.randn(input_dim, n_features, generator=g) / bandwidth)
        self.rff_scale = 1.0 / math.sqrt(2 * n_features)
        self.moment_scale = 1.0 / math.sqrt(4 * input_dim)
        self.dim = 2 * n_features + 2 * input_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = x @ self.W
        f = torch.cat(
            [
                self.rff_scale * torch.cos(proj),
                self.rff_scale * torch.sin(proj),
                self.moment_scale * x,
                self.moment_scale * x * x,
            ],
            dim=1,
        )
        # each block has norm <= 1/sqrt(2) for |x| <= 1; the clip makes the bound hold for any x
        norm = f.norm(dim=1, keepdim=True).clamp_min(1.0)
        return f / norm


def labelled_mean(
    embed: RowEmbedding, x: torch.Tensor, y: torch.Tensor, n_classes: int
) -> torch.Tensor:
    """``mean_i f(x_i) (x) e_{y_i}``, shape ``(n_classes, embed.dim)`` (differentiable in x)."""
    f = embed(x)
    onehot = torch.nn.functional.one_hot(y.long(), n_classes).to(f.dtype)
    return onehot.T @ f / len(x)


@torch.no_grad()
def release_mean_embedding(
    embed: RowEmbedding,
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    *,
    noise_multiplier: float | None,
    rng: np.random.Generator,
    chunk: int = 65536,
) -> torch.Tensor:
    """The release ``(sum_i f(x_i) (x) e_{y_i} + N(0, sigma^2 I)) / n``, in float64 then cast to
    float32; ``noise_multiplier=None`` adds no noise (a non-private run, listed as a raw read by
    the caller). The noise comes from ``rng`` (the plan's release stream, so a resumed run makes
    the SAME release)."""
    total = torch.zeros(n_classes, embed.dim, dtype=torch.float64)
    for start in range(0, len(x), chunk):
        xs = x[start : start + chunk].float()
        ys = y[start : start + chunk]
        f = embed(xs).double()
        onehot = torch.nn.functional.one_hot(ys.long(), n_classes).double()
        total += onehot.T @ f
    if noise_multiplier is not None:
        total += torch.from_numpy(rng.normal(0.0, float(noise_multiplier), tuple(total.shape)))
    return (total / len(x)).float()


class MeanEmbeddingTarget:
    """Mixin for a GAN LightningModule with a ``generator`` (``method.mean_embedding_weight``):
    the released target buffer and the generator's extra loss. The buffer is filled by
    :func:`release_target` from ONE charged release before training, and saved with the
    weights (a released statistic), so a run loaded for sampling needs no new release."""

    generator: nn.Module
    n_classes: int

    def init_mean_embedding(
        self, *, weight: float, n_features: int, bandwidth: float, seed: int
    ) -> None:
        """Call after ``self.generator`` and ``self.n_classes`` are set."""
        if not (math.isfinite(weight) and weight >= 0):
            raise UserInputError(
                f"method.mean_embedding_weight must be a number >= 0 (0 = off), got {weight}"
            )
        if weight > 0 and n_features < 1:
            raise UserInputError(f"method.mean_embedding_features must be >= 1, got {n_features}")
        if weight > 0 and not (math.isfinite(bandwidth) and bandwidth > 0):
            raise UserInputError(f"method.mean_embedding_bandwidth must be > 0, got {bandwidth}")
        self.mean_embedding_weight = float(weight)
        self.mean_embedding: RowEmbedding | None = None
        if self.mean_embedding_weight > 0:
            self.mean_embedding = RowEmbedding(
                input_dim=int(self.generator.output_dim),  # type: ignore[arg-type]
                n_features=int(n_features),
                bandwidth=float(bandwidth),
                seed=int(seed) + 7919,  # not the statistical head's random features
            )
            self.register_buffer(  # type: ignore[attr-defined]
                "mean_embedding_target", torch.zeros(self.n_classes, self.mean_embedding.dim)
            )

    def mean_embedding_loss(self, x_gen: torch.Tensor, y_gen: torch.Tensor) -> torch.Tensor | None:
        """``|| mean_j v(x_j, y_j) - released ||^2`` (unweighted), or None when off."""
        if self.mean_embedding is None:
            return None
        gap = labelled_mean(self.mean_embedding, x_gen, y_gen, self.n_classes)
        target: torch.Tensor = self.mean_embedding_target  # type: ignore[attr-defined]
        return (gap - target).pow(2).sum()


def planned_releases(method_cfg: Any) -> int:
    """Gaussian releases (sensitivity 1, ``privacy.release_noise_multiplier``) a GAN method
    makes before DP-SGD, for the plan to compose before it calibrates sigma."""
    return int(float(method_cfg.get("mean_embedding_weight", 0.0) or 0.0) > 0)


def release_target(module: Any, dm: Any) -> None:
    """Fill ``module.mean_embedding_target`` from the datamodule's encoded train split: one
    Gaussian release (sensitivity 1) charged to the ledger; in a non-private run (no plan) the
    exact embedding, listed as a raw read."""
    embed = getattr(module, "mean_embedding", None)
    if embed is None:  # off, or a module without the option
        return
    target: torch.Tensor = module.mean_embedding_target  # type: ignore[attr-defined]
    plan = dm.plan
    purpose = (
        "label-conditional mean embedding of the encoded train rows (random Fourier features "
        "and first/second moments, each row clipped to norm 1): a target the generator "
        "matches (DP-MERF)"
    )
    sigma = None if plan is None else float(plan.release_noise_multiplier)
    released = release_mean_embedding(
        embed,
        dm.x_train,
        dm.y_train,
        module.n_classes,
        noise_multiplier=sigma,
        rng=np.random.default_rng(0) if plan is None else plan.release_rng(3),
    )
    target.copy_(released)
    if sigma is None:
        dm.ledger.record_non_private(
            module="mean_embedding",
            purpose=purpose,
            records=len(dm.x_train),
            n_coordinates=int(target.numel()),
        )
    else:
        dm.ledger.record_gaussian(
            module="mean_embedding",
            purpose=purpose,
            records=len(dm.x_train),
            noise_multiplier=sigma,
            l2_sensitivity=1.0,
            n_coordinates=int(target.numel()),
        )
