"""``method=multidisc_gan``: the Deng 2026 framework (Sec. 3.1-3.5), under DP when asked.

* A conditional generator: the label and optional feature conditions (categorical columns) enter
  at the input and again before the output layer (Sec. 3.4); mixed-type heads as in
  :class:`~dpshare.models.networks.ConditionalGenerator`; for datasets with per-record windows
  (MIMIC-III) a recurrent (GRU) head emits a fixed-length window per row.
* A discriminator *cluster* (Sec. 3.2, 3.5): a shared low-level trunk and specialised heads,
  each with its own optimizer (parameter group), trained in parallel; their outputs are fused by
  weights: ``statistical`` (global distribution properties), ``semantic`` (consistency of the
  row with its conditions: a projection discriminator), ``temporal`` (patterns over the window),
  and ``plain`` (a single ordinary head: the "single discriminator" ablation).
* Controllable generation (Sec. 3.4): a target class mix, feature conditions, and
  post-generation refinement (condition filtering, marginal correction) that reads no real record
  beyond statistics already released and charged (:meth:`MultiDiscGAN.sample`).

DP design (docs/multidisc_gan.md): the whole cluster (trunk and every head) is ONE Opacus
GradSampleModule, and one discriminator update is ONE clipped, noised step of the fused
per-sample loss over the concatenated real + generated batch. Each record's gradient, over all
heads and the shared trunk together, is clipped to ``max_grad_norm`` and one Gaussian noise draw
is added, so each update is one sampled-Gaussian step charged once to the ledger. The heads keep
their own optimizer state and learning rate as parameter groups of that one DP optimizer; the
shared trunk is never updated outside it. (Separate DP optimizers per head, each clipping a
trunk they share, would either let the trunk see unclipped gradients or charge the same batch
once per head.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn import functional as F

from dpshare.data.datamodule import TabularDataModule
from dpshare.data.transformer import OutputSpan
from dpshare.errors import UserInputError
from dpshare.models.checks import check_finite_loss, check_finite_weights, check_learning_rates
from dpshare.models.dp import PrivateTraining, generator_step_context, make_optimizer, wrap_module
from dpshare.models.mean_embedding import MeanEmbeddingTarget
from dpshare.models.networks import ConditionalGenerator, GeneratorEMA
from dpshare.models.registry import METHODS
from dpshare.models.standard_gan import StandardGAN, _class_mix_to_probs

log = logging.getLogger(__name__)

# the learning rates a divergence message suggests lowering
_LR_KEYS = ("discriminator_lr", "generator_lr")

HEADS = ("plain", "statistical", "semantic", "temporal")
FUSIONS = ("fixed", "loss_scale")


# ------------------------------------------------------------------------------ discriminators


def _mlp(in_dim: int, dims: Sequence[int], dropout: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for width in dims:
        layers += [nn.Linear(in_dim, width), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
        in_dim = width
    return nn.Sequential(*layers), in_dim


class PlainHead(nn.Module):
    """One ordinary discriminator output on the trunk features (the single-discriminator
    ablation: trunk + plain head is the standard GAN's discriminator)."""

    def __init__(self, trunk_dim: int) -> None:
        super().__init__()
        self.out = nn.Linear(trunk_dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h).squeeze(1)


class StatisticalHead(nn.Module):
    """Critic of global distribution properties: mean, variance and distribution shape.

    Input per row: the trunk features, the row ``x``, its squares ``x**2`` (first and second
    moments) and fixed random Fourier features ``phi(x) = sqrt(2/D) cos(x W + b)``,
    ``W ~ N(0, 1/bandwidth^2)`` (Rahimi & Recht 2007). A linear function of ``phi`` is the witness
    function of an MMD with a Gaussian kernel (Gretton et al. 2012), so this head pushes the
    generator to match the kernel mean embedding of the data (its shape), and the ``x``, ``x**2``
    terms push means and variances.

    Why this is DP: every output is a function of ONE row; no statistic over a batch of real
    records enters a forward pass (batch moments or BatchNorm would let one record's data reach
    every other row's gradient and break per-sample clipping). The head is trained by the same
    clipped, noised step as the rest of the cluster. ``W`` and ``b`` are drawn from a seed, not
    from data. (The alternative the brief mentions, a DP-MERF-style release of the real mean
    embedding, is not implemented.)
    """

    def __init__(
        self,
        *,
        input_dim: int,
        trunk_dim: int,
        n_features: int,
        bandwidth: float,
        hidden: int,
        seed: int,
    ) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("W", torch.randn(input_dim, n_features, generator=g) / bandwidth)
        self.register_buffer("b", torch.rand(n_features, generator=g) * 2 * math.pi)
        self.scale = math.sqrt(2.0 / n_features)
        self.net = nn.Sequential(
            nn.Linear(trunk_dim + n_features + 2 * input_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        phi = self.scale * torch.cos(x @ self.W + self.b)
        return self.net(torch.cat([h, phi, x, x * x], dim=1)).squeeze(1)


class SemanticHead(nn.Module):
    """Consistency of a row with its conditions: a projection discriminator (Miyato & Koyama
    2018), ``psi(h) + <E c, h>``, with ``c`` the label one-hot and feature conditions."""

    def __init__(self, *, trunk_dim: int, condition_dim: int, hidden: int) -> None:
        super().__init__()
        self.psi = nn.Sequential(
            nn.Linear(trunk_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)
        )
        self.embed = nn.Linear(condition_dim, trunk_dim, bias=False)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.psi(h).squeeze(1) + (self.embed(c) * h).sum(dim=1)


class TemporalHead(nn.Module):
    """Patterns over a record's window ``(T, V)``: two temporal convolutions written as Linear
    layers over sliding windows (``unfold``), mean- and max-pooled over time, joined with the
    trunk features (which carry the conditions). Linear layers only, so every
    ``grad_sample_mode`` (bk, ghost, hooks, functorch) computes its per-sample gradients."""

    def __init__(
        self, *, n_vars: int, window: int, kernel: int, channels: int, trunk_dim: int
    ) -> None:
        super().__init__()
        self.k1 = max(1, min(kernel, window))
        self.k2 = max(1, min(kernel, window - self.k1 + 1))
        self.conv1 = nn.Linear(n_vars * self.k1, channels)
        self.conv2 = nn.Linear(channels * self.k2, channels)
        self.act = nn.LeakyReLU(0.2)
        self.out = nn.Linear(2 * channels + trunk_dim, 1)

    @staticmethod
    def _windows(s: torch.Tensor, k: int) -> torch.Tensor:
        # (n, T, C) -> (n, T - k + 1, C * k): each time step with its k - 1 successors
        n, _, _ = s.shape
        w = s.unfold(1, k, 1)  # (n, L, C, k)
        return w.reshape(n, w.shape[1], -1)

    def forward(self, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        a = self.act(self.conv1(self._windows(s, self.k1)))
        a = self.act(self.conv2(self._windows(a, self.k2)))
        pooled = torch.cat([a.mean(dim=1), a.amax(dim=1), h], dim=1)
        return self.out(pooled).squeeze(1)


class DiscriminatorCluster(nn.Module):
    """A shared low-level trunk over ``[x, c]`` and one head per entry of ``heads``; returns
    one logit per head, shape ``(n, len(heads))``, in the order of ``heads``.

    ``shared_trunk=False`` gives every head its own copy of the trunk (the no-sharing ablation).
    """

    def __init__(
        self,
        *,
        heads: Sequence[str],
        input_dim: int,
        condition_dim: int,
        trunk_dims: Sequence[int],
        head_hidden: int,
        dropout: float,
        shared_trunk: bool,
        rff_features: int,
        rff_bandwidth: float,
        sequence_shape: tuple[int, int] | None,
        temporal_kernel: int,
        temporal_channels: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.head_names = list(heads)
        self.shared_trunk = shared_trunk
        in_dim = input_dim + condition_dim
        if shared_trunk:
            self.trunk, trunk_dim = _mlp(in_dim, trunk_dims, dropout)
        else:
            trunks = {}
            for name in self.head_names:
                trunks[name], trunk_dim = _mlp(in_dim, trunk_dims, dropout)
            self.trunks = nn.ModuleDict(trunks)
        made: dict[str, nn.Module] = {}
        for name in self.head_names:
            if name == "plain":
                made[name] = PlainHead(trunk_dim)
            elif name == "statistical":
                made[name] = StatisticalHead(
                    input_dim=input_dim,
                    trunk_dim=trunk_dim,
                    n_features=rff_features,
                    bandwidth=rff_bandwidth,
                    hidden=head_hidden,
                    seed=seed,
                )
            elif name == "semantic":
                if condition_dim == 0:
                    raise UserInputError(
                        "the semantic head judges rows against their conditions, and there are "
                        "none: set method.condition_on_label=true or method.condition_columns"
                    )
                made[name] = SemanticHead(
                    trunk_dim=trunk_dim, condition_dim=condition_dim, hidden=head_hidden
                )
            elif name == "temporal":
                if sequence_shape is None:
                    raise UserInputError("the temporal head needs a dataset with sequences")
                window, n_vars = sequence_shape
                made[name] = TemporalHead(
                    n_vars=n_vars,
                    window=window,
                    kernel=temporal_kernel,
                    channels=temporal_channels,
                    trunk_dim=trunk_dim,
                )
            else:
                raise UserInputError(f"unknown discriminator head {name!r}; choose from {HEADS}")
        self.heads = nn.ModuleDict(made)

    def head_parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimizer: ``trunk`` (when shared) and one group per head (its own
        trunk included when not shared)."""
        groups: dict[str, list[nn.Parameter]] = {}
        if self.shared_trunk:
            groups["trunk"] = list(self.trunk.parameters())
        for name in self.head_names:
            params = list(self.heads[name].parameters())
            if not self.shared_trunk:
                params = list(self.trunks[name].parameters()) + params
            groups[name] = params
        return groups

    def forward(
        self, x: torch.Tensor, c: torch.Tensor | None, s: torch.Tensor | None = None
    ) -> torch.Tensor:
        inp = x if c is None else torch.cat([x, c], dim=1)
        shared = self.trunk(inp) if self.shared_trunk else None
        outs = []
        for name in self.head_names:
            h = shared if shared is not None else self.trunks[name](inp)
            head = self.heads[name]
            if name == "statistical":
                outs.append(head(x, h))
            elif name == "semantic":
                outs.append(head(h, c))
            elif name == "temporal":
                outs.append(head(s, h))
            else:
                outs.append(head(h))
        return torch.stack(outs, dim=1)


# ----------------------------------------------------------------------------------- generator


class SequenceGenerator(ConditionalGenerator):
    """:class:`ConditionalGenerator` plus, when ``sequence_shape=(T, V)`` is given, a GRU head
    that emits a window in [-1, 1] from the same hidden state (so a row and its window are
    generated jointly), driven by per-step noise."""

    def __init__(
        self,
        *,
        sequence_shape: tuple[int, int] | None,
        sequence_hidden: int,
        sequence_noise_dim: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sequence_shape = sequence_shape
        self.sequence_noise_dim = sequence_noise_dim
        if sequence_shape is not None:
            _, n_vars = sequence_shape
            hidden_in = self.head.in_features
            self.seq_init = nn.Linear(hidden_in, sequence_hidden)
            self.gru = nn.GRU(sequence_noise_dim, sequence_hidden, batch_first=True)
            self.seq_out = nn.Linear(sequence_hidden, n_vars)

    def forward_all(
        self, z: torch.Tensor, condition: torch.Tensor | None, step_noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = z if condition is None else torch.cat([z, condition], dim=1)
        h = self.body(h)
        if condition is not None:
            h = torch.cat([h, condition], dim=1)
        raw = self.head(h)
        if self.sequence_shape is None or step_noise is None:
            return raw, None
        h0 = torch.tanh(self.seq_init(h)).unsqueeze(0)
        out, _ = self.gru(step_noise, h0)
        return raw, torch.tanh(self.seq_out(out))


# ---------------------------------------------------------------------------- LightningModule


class MultiDiscGANModule(GeneratorEMA, MeanEmbeddingTarget, pl.LightningModule):
    """Generator + discriminator cluster (manual optimization; see the module docstring)."""

    def __init__(
        self,
        *,
        spans: Sequence[OutputSpan],
        class_prior: Sequence[float],
        condition_spans: Sequence[OutputSpan],
        condition_priors: Sequence[Sequence[float]],
        heads: Sequence[str],
        fusion: str,
        fusion_weights: Mapping[str, float],
        fusion_ema: float,
        shared_trunk: bool,
        latent_dim: int,
        generator_dims: Sequence[int],
        discriminator_dims: Sequence[int],
        head_hidden: int,
        dropout: float,
        generator_lr: float,
        discriminator_lr: float,
        head_lr: Mapping[str, float],
        betas: Sequence[float],
        weight_decay: float,
        discriminator_steps: int,
        gumbel_tau: float,
        condition_on_label: bool,
        condition_loss_weight: float,
        rff_features: int,
        rff_bandwidth: float,
        sequence_shape: tuple[int, int] | None,
        temporal_kernel: int,
        temporal_channels: int,
        sequence_hidden: int,
        sequence_noise_dim: int,
        log_epsilon_every: int,
        seed: int,
        private: PrivateTraining | None = None,
        generator_ema: float | None = None,
        mean_embedding_weight: float = 0.0,
        mean_embedding_features: int = 256,
        mean_embedding_bandwidth: float = 1.0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        if discriminator_steps < 1:
            raise UserInputError(
                f"method.discriminator_steps must be >= 1, got {discriminator_steps}"
            )
        if fusion not in FUSIONS:
            raise UserInputError(f"method.fusion must be one of {FUSIONS}, got {fusion!r}")
        unknown = sorted(set(fusion_weights) - set(heads))
        if unknown:
            raise UserInputError(
                f"method.fusion_weights names heads {unknown} that are not active; active "
                f"heads: {list(heads)}"
            )
        base = np.array([float(fusion_weights.get(h, 1.0)) for h in heads])
        if (base < 0).any() or base.sum() <= 0:
            raise UserInputError(
                f"method.fusion_weights must be >= 0 and not all 0, got {dict(fusion_weights)}"
            )
        unknown_lr = sorted(set(head_lr) - {*heads, "trunk"})
        if unknown_lr:
            raise UserInputError(f"method.head_lr names {unknown_lr}; valid: {['trunk', *heads]}")
        check_learning_rates(
            generator_lr=generator_lr,
            discriminator_lr=discriminator_lr,
            **{f"head_lr.{k}": v for k, v in head_lr.items()},
        )
        self.heads = list(heads)
        self.fusion = fusion
        self.fusion_ema = float(fusion_ema)
        self.register_buffer(
            "base_weights", torch.as_tensor(base / base.sum(), dtype=torch.float32)
        )
        self.register_buffer("loss_ema", torch.ones(len(self.heads)))
        self.n_classes = len(class_prior)
        self.condition_on_label = condition_on_label
        self.condition_spans = list(condition_spans)
        self.condition_loss_weight = float(condition_loss_weight)
        label_dim = self.n_classes if condition_on_label else 0
        self.condition_dim = label_dim + sum(sp.end - sp.start for sp in self.condition_spans)
        self.latent_dim = latent_dim
        self.sequence_shape = sequence_shape
        self.generator = SequenceGenerator(
            latent_dim=latent_dim,
            condition_dim=self.condition_dim,
            hidden_dims=generator_dims,
            spans=spans,
            sequence_shape=sequence_shape if "temporal" in self.heads else None,
            sequence_hidden=sequence_hidden,
            sequence_noise_dim=sequence_noise_dim,
        )
        self.init_generator_ema(generator_ema)
        cluster = DiscriminatorCluster(
            heads=self.heads,
            input_dim=self.generator.output_dim,
            condition_dim=self.condition_dim,
            trunk_dims=discriminator_dims,
            head_hidden=head_hidden,
            dropout=dropout,
            shared_trunk=shared_trunk,
            rff_features=rff_features,
            rff_bandwidth=rff_bandwidth,
            sequence_shape=sequence_shape,
            temporal_kernel=temporal_kernel,
            temporal_channels=temporal_channels,
            seed=seed,
        )
        self.param_groups = cluster.head_parameter_groups()
        self.private = private
        self.discriminator = cluster if private is None else wrap_module(cluster, private.settings)
        self.register_buffer("class_prior", torch.as_tensor(class_prior, dtype=torch.float32))
        for i, prior in enumerate(condition_priors):
            self.register_buffer(
                f"condition_prior_{i}", torch.as_tensor(prior, dtype=torch.float32)
            )
        self.categorical_spans = [sp for sp in spans if sp.kind == "categorical"]
        self.generator_lr = generator_lr
        self.discriminator_lr = discriminator_lr
        self.head_lr = dict(head_lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.weight_decay = weight_decay
        self.discriminator_steps = discriminator_steps
        self.gumbel_tau = gumbel_tau
        self.log_epsilon_every = int(log_epsilon_every)
        self.discriminator_updates = 0
        self.generator_updates = 0
        self.real_sequences: torch.Tensor | None = None  # set by the method (monitor signals)
        # the statistical discriminator's global comparison: a released mean embedding
        self.init_mean_embedding(
            weight=mean_embedding_weight,
            n_features=mean_embedding_features,
            bandwidth=mean_embedding_bandwidth,
            seed=seed,
        )

    # ------------------------------------------------------------------------------ helpers
    def fusion_weights(self) -> torch.Tensor:
        """Current per-head weights (sum 1). ``loss_scale`` divides each base weight by the
        running mean of that head's GENERATOR loss (computed on generated rows only, so it is
        post-processing of the DP discriminator and costs no privacy)."""
        if self.fusion == "fixed":
            return self.base_weights
        w = self.base_weights / self.loss_ema.clamp_min(1e-3)
        return w / w.sum()

    def sample_conditions(
        self,
        n: int,
        *,
        class_probs: torch.Tensor | None = None,
        condition_probs: Sequence[torch.Tensor | None] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Label indices and one index per feature-condition span, drawn from the (released)
        priors unless other probabilities are given."""
        p = self.class_prior if class_probs is None else class_probs
        labels = torch.multinomial(p, n, replacement=True, generator=generator)
        picks = []
        for i in range(len(self.condition_spans)):
            q = None if condition_probs is None else condition_probs[i]
            q = getattr(self, f"condition_prior_{i}") if q is None else q
            picks.append(torch.multinomial(q, n, replacement=True, generator=generator))
        return labels, picks

    def condition_vector(
        self, labels: torch.Tensor, picks: Sequence[torch.Tensor]
    ) -> torch.Tensor | None:
        parts = []
        if self.condition_on_label:
            parts.append(F.one_hot(labels, self.n_classes).float())
        for span, idx in zip(self.condition_spans, picks, strict=True):
            parts.append(F.one_hot(idx, span.end - span.start).float())
        return torch.cat(parts, dim=1) if parts else None

    def real_condition_vector(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """Conditions of real rows: their label and their own encoded condition columns (a
        function of the row itself, so per-sample clipping still bounds its influence)."""
        parts = []
        if self.condition_on_label:
            parts.append(F.one_hot(labels, self.n_classes).float())
        for span in self.condition_spans:
            parts.append(x[:, span.start : span.end])
        return torch.cat(parts, dim=1) if parts else None

    def generate(
        self,
        labels: torch.Tensor,
        picks: Sequence[torch.Tensor],
        *,
        hard: bool,
        generator: torch.Generator | None = None,
        gumbel_generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """(activated rows, window or None, condition vector, raw head outputs); the noise from
        ``generator``, the Gumbel noise of categorical spans from ``gumbel_generator``
        (``None``: torch's global generator)."""
        n = len(labels)
        net = self.sampling_generator()
        z = torch.randn(n, self.latent_dim, device=labels.device, generator=generator)
        step_noise = None
        if net.sequence_shape is not None:
            window = net.sequence_shape[0]
            step_noise = torch.randn(
                n,
                window,
                net.sequence_noise_dim,
                device=labels.device,
                generator=generator,
            )
        c = self.condition_vector(labels, picks)
        raw, seq = net.forward_all(z, c, step_noise)
        x = net.activate(raw, tau=self.gumbel_tau, hard=hard, generator=gumbel_generator)
        return x, seq, c, raw

    def mode_coverage(self, x: torch.Tensor) -> float:
        """Share of the categories of all categorical columns that appear in ``x`` (generated
        rows, argmax per span): a mode-collapse indicator that reads no real record."""
        if not self.categorical_spans:
            return 1.0
        covered = total = 0
        for span in self.categorical_spans:
            width = span.end - span.start
            covered += int(torch.unique(x[:, span.start : span.end].argmax(dim=1)).numel())
            total += width
        return covered / total

    # ------------------------------------------------- what the signal monitor calls
    def monitor_sample(
        self, n: int, *, generator: torch.Generator | None, hard: bool
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[Any, ...]]:
        labels, picks = self.sample_conditions(n, generator=generator)
        x, s, c, _ = self.generate(labels, picks, hard=hard, generator=generator)
        return x, labels, (x, c, s)

    def monitor_real_inputs(
        self, x: torch.Tensor, y: torch.Tensor, positions: torch.Tensor | None
    ) -> tuple[Any, ...]:
        s = None
        if "temporal" in self.heads:
            if positions is None or self.real_sequences is None:
                raise UserInputError(
                    "the disc_accuracy signal on the public validation split cannot score the "
                    "temporal head (the split carries no windows); use "
                    "privacy.signal_source=train (charged) or other signals"
                )
            s = self.real_sequences[positions]
        return (x, self.real_condition_vector(x, y), s)

    def monitor_score(self, inputs: tuple[Any, ...]) -> torch.Tensor:
        """The cluster's fused logit: the fusion-weighted mean of the heads' logits."""
        return (self.discriminator(*inputs) * self.fusion_weights()).sum(dim=1)

    # ----------------------------------------------------------------------------- training
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        opt_g = torch.optim.Adam(
            self.generator.parameters(),
            lr=self.generator_lr,
            betas=self.betas,
            weight_decay=self.weight_decay,
        )
        groups = [
            {
                "params": params,
                "lr": float(self.head_lr.get(name, self.discriminator_lr)),
                "name": name,
            }
            for name, params in self.param_groups.items()
        ]
        if self.private is None:
            # Non-private: one Adam per head (and one for the shared trunk), stepped together.
            opts = [
                torch.optim.Adam(
                    g["params"], lr=g["lr"], betas=self.betas, weight_decay=self.weight_decay
                )
                for g in groups
            ]
            return [opt_g, *opts]
        # DP: the heads' optimizers are parameter groups of ONE DP optimizer (module docstring).
        adam = torch.optim.Adam(groups, betas=self.betas, weight_decay=self.weight_decay)
        opt_d = make_optimizer(
            adam, self.private.settings, noise_generator=self.private.noise_generator
        )
        self.private.attach(optimizer=opt_d, module=self.discriminator)
        return [opt_g, opt_d]

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        x_real, y_real = batch[0], batch[1]
        s_real = batch[2] if len(batch) > 2 else None
        opt_g, *opt_ds = self.optimizers()
        private = self.private
        if private is not None and not private.may_step():
            self.trainer.should_stop = True  # hard stop at the target epsilon
            return
        n_fake = private.settings.expected_batch_size if private is not None else len(x_real)
        self._discriminator_step(opt_ds, x_real, y_real, s_real, n_fake)
        if private is not None:
            private.after_step(self, step=self.discriminator_updates)
            if self.log_epsilon_every and self.discriminator_updates % self.log_epsilon_every == 0:
                self.log("privacy/epsilon_spent", float(private.ledger.epsilon_spent()))
        if (batch_idx + 1) % self.discriminator_steps == 0:
            self._generator_step(opt_g, n_fake, x_real.device)

    def _fused(self, per_head: torch.Tensor) -> torch.Tensor:
        return (per_head * self.fusion_weights()).sum(dim=-1)

    def _discriminator_step(
        self,
        opt_ds: Sequence[Any],
        x_real: torch.Tensor,
        y_real: torch.Tensor,
        s_real: torch.Tensor | None,
        n_fake: int,
    ) -> None:
        """ONE step of every head on real and generated records together: the fused per-sample
        loss over the concatenated batch; under DP one clipped, noised step, charged once."""
        y_fake, picks = self.sample_conditions(n_fake)
        y_fake = y_fake.to(x_real.device)
        with torch.no_grad():
            x_fake, s_fake, c_fake, _ = self.generate(y_fake, picks, hard=False)
        x = torch.cat([x_real, x_fake])
        c_real = self.real_condition_vector(x_real, y_real)
        c = None if c_real is None else torch.cat([c_real, c_fake])
        s = None
        if "temporal" in self.heads:
            assert s_real is not None and s_fake is not None
            s = torch.cat([s_real, s_fake])
        targets = torch.cat([torch.ones(len(x_real)), torch.zeros(n_fake)]).to(x.device)
        for opt in opt_ds:
            opt.zero_grad(set_to_none=True)
        logits = self.discriminator(x, c, s)  # (N, H)
        per_head = F.binary_cross_entropy_with_logits(
            logits, targets[:, None].expand_as(logits), reduction="none"
        )
        per_sample = self._fused(per_head)
        if self.private is None:
            loss = per_sample.mean()
            self._check_loss(loss, "discriminator", self.discriminator_updates + 1)
            self.manual_backward(loss)
        else:
            dp_loss = self.private.mean_loss(per_sample)
            if isinstance(dp_loss, torch.Tensor):
                self.manual_backward(dp_loss)
            else:  # ghost clipping (two passes) or book-keeping (one pass, clipped sum)
                dp_loss.backward()
        for opt in opt_ds:
            opt.step()
        self.discriminator_updates += 1
        if self.private is not None:  # the released weights, not a loss of real records
            check_finite_weights(
                self.discriminator,
                what="discriminator cluster",
                update=self.discriminator_updates,
                lr_keys=_LR_KEYS,
                private=True,
            )
        n_real = len(x_real)
        fake_logits = logits[n_real:].detach()
        metrics: dict[str, Any] = {
            "train/mode_coverage": torch.as_tensor(self.mode_coverage(x_fake)),
        }
        for i, name in enumerate(self.heads):
            metrics[f"train/d_accuracy_fake/{name}"] = (fake_logits[:, i] < 0).float().mean()
            metrics[f"train/fusion_weight/{name}"] = self.fusion_weights()[i]
        if self.private is None:
            # Under DP, statistics of the real half would be releases outside the accountant.
            real_logits = logits[:n_real].detach()
            metrics["train/d_loss"] = per_sample.detach().mean()
            for i, name in enumerate(self.heads):
                metrics[f"train/d_loss/{name}"] = per_head[:, i].detach().mean()
                metrics[f"train/d_accuracy/{name}"] = 0.5 * (
                    (real_logits[:, i] > 0).float().mean() + (fake_logits[:, i] < 0).float().mean()
                )
        else:
            metrics["privacy/noise_multiplier"] = torch.as_tensor(
                float(self.private.stepper.optimizer.noise_multiplier)  # type: ignore[union-attr]
            )
        self.log_dict(metrics, on_step=True, on_epoch=True, prog_bar=False)

    def _check_loss(self, loss: torch.Tensor, what: str, update: int) -> None:
        check_finite_loss(
            loss, what=what, update=update, lr_keys=_LR_KEYS, private=self.private is not None
        )

    def _generator_step(self, opt_g: Any, n_fake: int, device: torch.device) -> None:
        """Post-processing of the DP cluster: reads no real record."""
        with generator_step_context(self.discriminator):
            y_gen, picks = self.sample_conditions(n_fake)
            y_gen = y_gen.to(device)
            x_gen, s_gen, c_gen, raw = self.generate(y_gen, picks, hard=False)
            logits = self.discriminator(x_gen, c_gen, s_gen)
            per_head = F.binary_cross_entropy_with_logits(
                logits, torch.ones_like(logits), reduction="none"
            ).mean(dim=0)  # (H,)
            g_loss = self._fused(per_head)
            cond_loss = torch.zeros((), device=device)
            for span, idx in zip(self.condition_spans, picks, strict=True):
                # CTGAN's conditional loss: the generated column must carry the condition.
                cond_loss = cond_loss + F.cross_entropy(
                    raw[:, span.start : span.end], idx.to(device)
                )
            total = g_loss + self.condition_loss_weight * cond_loss
            me_loss = self.mean_embedding_loss(x_gen, y_gen)
            if me_loss is not None:
                # squared MMD to the released label-conditional mean embedding (DP-MERF)
                total = total + self.mean_embedding_weight * me_loss
            self._check_loss(total, "generator", self.generator_updates + 1)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(total)
            opt_g.step()
        self.update_ema()
        with torch.no_grad():
            m = self.fusion_ema
            self.loss_ema.mul_(m).add_((1 - m) * per_head.detach())
        self.generator_updates += 1
        metrics = {"train/g_loss": g_loss.detach()}
        for i, name in enumerate(self.heads):
            metrics[f"train/g_loss/{name}"] = per_head[i].detach()
        if self.condition_spans:
            metrics["train/condition_loss"] = cond_loss.detach()
        if me_loss is not None:
            metrics["train/mean_embedding_loss"] = me_loss.detach()
        self.log_dict(metrics, on_step=True, on_epoch=True)


# ------------------------------------------------------------------------------------- method


@METHODS.register("multidisc_gan")
class MultiDiscGAN(StandardGAN):
    """The Deng 2026 framework as a method: fit, then controllable sampling."""

    name = "multidisc_gan"
    ledger_module = "discriminator_cluster"
    ledger_purpose = (
        "DP-SGD on the whole discriminator cluster (shared trunk and every head): per-sample "
        "clipping of the fused loss over real and generated records, Gaussian noise, one step "
        "per update"
    )

    def prepare_datamodule(self, datamodule: TabularDataModule) -> None:
        self.heads = resolve_heads(
            self.cfg.heads, has_sequences=datamodule.data.sequences is not None
        )
        datamodule.use_sequences = "temporal" in self.heads
        self.synthetic_sequences: np.ndarray | None = None

    def build_module(self, cfg: Any, datamodule: TabularDataModule) -> pl.LightningModule:
        dm = datamodule
        self.condition_spans = _condition_spans(dm, list(cfg.condition_columns))
        priors = [
            _condition_prior(dm, col, sp)
            for col, sp in zip(cfg.condition_columns, self.condition_spans, strict=True)
        ]
        seq_shape = None
        if dm.s_train is not None:
            seq_shape = (int(dm.s_train.shape[1]), int(dm.s_train.shape[2]))
        log.info("multidisc_gan heads: %s (shared trunk: %s)", self.heads, cfg.shared_trunk)
        module = self._make_module(cfg, dm, priors=priors, sequence_shape=seq_shape)
        module.real_sequences = dm.s_train
        return module

    def sampling_state(self) -> dict[str, Any]:
        """Heads, window shape and the condition priors the generator draws conditions from
        (the transformer's DP release, or in a non-private run the train split, listed in the
        ledger as ``condition_marginals``), as the module holds them (float32)."""
        module = self.module
        priors = [
            getattr(module, f"condition_prior_{i}").tolist()
            for i in range(len(self.condition_spans))
        ]
        shape = module.sequence_shape
        state: dict[str, Any] = {
            "heads": list(self.heads),
            "sequence_shape": None if shape is None else [int(v) for v in shape],
            "condition_priors": priors,
            "released_marginals": None,
        }
        dm = self.datamodule
        read = any(e.module == "refine_marginals" for e in dm.ledger.entries)
        if dm.transformer.release is None and read:
            # a non-private run whose sampling already read (and listed) the train marginals;
            # otherwise they were never read, and a loaded run refuses match_marginals
            cols = _marginal_columns(dm, exclude=set(self.cfg.condition_columns))
            state["released_marginals"] = _train_marginals(dm.train_frame, cols)
        return state

    def restore_sampling(self, state: Mapping[str, Any]) -> None:
        self.heads = [str(h) for h in state["heads"]]
        self.synthetic_sequences = None
        dm = self.datamodule
        dm.released_marginals = state.get("released_marginals")
        self.condition_spans = _condition_spans(dm, list(self.cfg.condition_columns))
        shape = state["sequence_shape"]
        self.module = self._make_module(
            self.cfg,
            dm,
            priors=[list(p) for p in state["condition_priors"]],
            sequence_shape=None if shape is None else (int(shape[0]), int(shape[1])),
        )

    def _make_module(
        self,
        cfg: Any,
        dm: Any,
        *,
        priors: Sequence[Sequence[float]],
        sequence_shape: tuple[int, int] | None,
    ) -> MultiDiscGANModule:
        seq_shape = sequence_shape
        return MultiDiscGANModule(
            spans=dm.output_spans,
            class_prior=dm.class_prior.tolist(),
            condition_spans=self.condition_spans,
            condition_priors=priors,
            heads=self.heads,
            fusion=cfg.fusion,
            fusion_weights=_number_map(cfg.fusion_weights, "method.fusion_weights"),
            fusion_ema=cfg.fusion_ema,
            shared_trunk=cfg.shared_trunk,
            latent_dim=cfg.latent_dim,
            generator_dims=list(cfg.generator_dims),
            discriminator_dims=list(cfg.discriminator_dims),
            head_hidden=cfg.head_hidden,
            dropout=cfg.dropout,
            generator_lr=cfg.generator_lr,
            discriminator_lr=cfg.discriminator_lr,
            head_lr=_number_map(cfg.head_lr, "method.head_lr"),
            betas=list(cfg.betas),
            weight_decay=cfg.weight_decay,
            discriminator_steps=cfg.discriminator_steps,
            gumbel_tau=cfg.gumbel_tau,
            condition_on_label=cfg.condition_on_label,
            condition_loss_weight=cfg.condition_loss_weight,
            rff_features=cfg.rff_features,
            rff_bandwidth=cfg.rff_bandwidth,
            sequence_shape=seq_shape,
            temporal_kernel=cfg.temporal_kernel,
            temporal_channels=cfg.temporal_channels,
            sequence_hidden=cfg.sequence_hidden,
            sequence_noise_dim=cfg.sequence_noise_dim,
            log_epsilon_every=cfg.log_epsilon_every,
            seed=int(dm.seed),
            private=self.private,
            generator_ema=cfg.generator_ema,
            mean_embedding_weight=float(cfg.mean_embedding_weight),
            mean_embedding_features=int(cfg.mean_embedding_features),
            mean_embedding_bandwidth=float(cfg.mean_embedding_bandwidth),
        )

    def fit(self, trainer: pl.Trainer) -> None:
        super().fit(trainer)
        self.datamodule.ledger.update_parameters(
            self.ledger_entry,
            heads=list(self.heads),
            shared_trunk=bool(self.cfg.shared_trunk),
            head_steps={h: self.module.discriminator_updates for h in self.heads},
            fusion=self.cfg.fusion,
        )

    # --------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        seed: int,
        class_mix: Mapping[Any, float] | None = None,
        conditions: Mapping[str, Any] | None = None,
        refine: Mapping[str, Any] | None = None,
    ) -> pd.DataFrame:
        """``n`` synthetic rows in the released schema (the window of each row, when the model
        has a temporal head, in :attr:`synthetic_sequences`).

        Args:
            class_mix: class value -> share (normalised), e.g. ``{1: 0.3, 0: 0.7}``; default:
                the (released) class distribution of the train split.
            conditions: column -> value for ``condition_columns`` (fixed in every row).
            refine: post-processing, defaults from ``method.refine``: ``filter_conditions``
                (drop rows whose decoded condition columns differ from ``conditions``),
                ``match_marginals`` (resample to the released category frequencies of the
                feature columns; only without ``class_mix``), ``oversample`` (pool size / n).
                Reads no real record: the marginals are the transformer's DP release (or, in a
                non-private run, the train split, listed in the ledger).
        """
        if n < 1:
            raise UserInputError(f"number of synthetic rows must be >= 1, got {n}")
        opts = {**_as_dict(self.cfg.refine), **dict(refine or {})}
        unknown = sorted(set(opts) - {"filter_conditions", "match_marginals", "oversample"})
        if unknown:
            raise UserInputError(f"unknown refine option(s) {unknown}")
        oversample = float(opts.get("oversample", 3.0))
        if oversample < 1:
            raise UserInputError(f"refine.oversample must be >= 1, got {oversample}")
        module = self.module
        module.eval()
        class_probs = None
        if class_mix:
            class_probs = _class_mix_to_probs(class_mix, self.datamodule.classes)
        condition_probs = self._condition_probs(conditions or {})
        generator = torch.Generator().manual_seed(seed)
        match = bool(opts.get("match_marginals", False))
        if match and class_mix:
            log.warning(
                "refine.match_marginals is skipped with a class_mix: the released "
                "marginals are those of the original class mix"
            )
            match = False
        filtering = bool(opts.get("filter_conditions", True)) and bool(conditions)
        want = int(math.ceil(n * oversample)) if match else n
        frames: list[pd.DataFrame] = []
        seqs: list[np.ndarray] = []
        have = 0
        for _ in range(50):
            batch_n = (
                max(want - have, 1)
                if not filtering
                else int(math.ceil(max(want - have, 1) * oversample))
            )
            frame, seq = self._generate_frame(batch_n, class_probs, condition_probs, generator)
            if filtering:
                keep = np.ones(len(frame), dtype=bool)
                for col, value in (conditions or {}).items():
                    keep &= (frame[col] == value).to_numpy()
                frame = frame[keep]
                seq = None if seq is None else seq[keep]
            frames.append(frame)
            if seq is not None:
                seqs.append(seq)
            have += len(frame)
            if have >= want:
                break
        else:
            raise UserInputError(
                f"refine.filter_conditions kept {have} of the rows after 50 rounds, fewer than "
                f"{want}: the generator rarely produces {dict(conditions or {})}; train longer, "
                "or set refine.filter_conditions=false"
            )
        out = pd.concat(frames, ignore_index=True)
        seq_all = np.concatenate(seqs) if seqs else None
        idx = self._marginal_resample(out, n, seed) if match else np.arange(n)
        module.train()
        self.synthetic_sequences = (
            None if seq_all is None else self.datamodule.decode_sequences(seq_all[idx])
        )
        return out.iloc[idx].reset_index(drop=True)

    def artifacts(self) -> dict[str, np.ndarray]:
        if self.synthetic_sequences is None:
            return {}
        return {"synthetic_sequences": self.synthetic_sequences}

    def _generate_frame(
        self,
        n: int,
        class_probs: torch.Tensor | None,
        condition_probs: list[torch.Tensor | None],
        generator: torch.Generator,
    ) -> tuple[pd.DataFrame, np.ndarray | None]:
        xs, ys, ss = [], [], []
        module = self.module
        for start in range(0, n, 10_000):
            size = min(10_000, n - start)
            labels, picks = module.sample_conditions(
                size, class_probs=class_probs, condition_probs=condition_probs, generator=generator
            )
            x, s, _, _ = module.generate(
                labels, picks, hard=True, generator=generator, gumbel_generator=generator
            )
            xs.append(x.cpu().numpy())
            ys.append(labels.cpu().numpy())
            if s is not None:
                ss.append(s.cpu().numpy())
        frame = self.datamodule.decode(np.concatenate(xs), np.concatenate(ys))
        return frame, (np.concatenate(ss) if ss else None)

    def _condition_probs(self, conditions: Mapping[str, Any]) -> list[torch.Tensor | None]:
        cols = list(self.cfg.condition_columns)
        unknown = [c for c in conditions if c not in cols]
        if unknown:
            raise UserInputError(
                f"conditions name column(s) {unknown} the generator is not conditioned on; "
                f"method.condition_columns is {cols}"
            )
        probs: list[torch.Tensor | None] = []
        for col, span in zip(cols, self.condition_spans, strict=True):
            if col not in conditions:
                probs.append(None)
                continue
            values = _span_values(self.datamodule, span)
            matches = [i for i, v in enumerate(values) if _same(v, conditions[col])]
            if not matches:
                raise UserInputError(
                    f"condition {col}={conditions[col]!r} is not a category of {col}; "
                    f"categories: {values}"
                )
            p = torch.zeros(len(values))
            p[matches[0]] = 1.0
            probs.append(p)
        return probs

    def _marginal_resample(self, pool: pd.DataFrame, n: int, seed: int) -> np.ndarray:
        """Indices of ``n`` pool rows drawn without replacement with raking weights, so that
        each categorical feature's frequencies approach the released ones (iterative
        proportional fitting, 10 sweeps)."""
        targets = _released_marginals(self.datamodule, exclude=set(self.cfg.condition_columns))
        w = np.ones(len(pool))
        for _ in range(10):
            for col, freq in targets.items():
                values = pool[col].astype(object).to_numpy()
                current = pd.Series(w).groupby(pd.Series(values).astype(str)).sum() / w.sum()
                ratio = {
                    k: (freq.get(k, 0.0) / current[k]) if current.get(k, 0) > 0 else 1.0
                    for k in current.index
                }
                w = w * pd.Series(values).astype(str).map(ratio).to_numpy(dtype=float)
                w = np.clip(w, 1e-6, None)
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(len(pool), size=n, replace=False, p=w / w.sum()))


def resolve_heads(heads: Any, *, has_sequences: bool) -> list[str]:
    """``null`` -> statistical + semantic (+ temporal when the dataset has sequences)."""
    if heads is None:
        return ["statistical", "semantic", *(["temporal"] if has_sequences else [])]
    names = [str(h) for h in heads]
    if not names:
        raise UserInputError("method.heads is empty; name at least one of " + ", ".join(HEADS))
    bad = [h for h in names if h not in HEADS]
    if bad or len(set(names)) != len(names):
        raise UserInputError(f"method.heads={names}: each of {list(HEADS)} at most once")
    if "temporal" in names and not has_sequences:
        raise UserInputError(
            "method.heads includes 'temporal' but this dataset has no per-record windows; drop "
            "it (heads=null chooses automatically) or use dataset=mimic3"
        )
    return names


def _as_dict(node: Any) -> dict[str, Any]:
    if node is None:
        return {}
    try:
        from omegaconf import OmegaConf

        return dict(OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]
    except ValueError:
        return dict(node)


def _same(a: Any, b: Any) -> bool:
    return a == b or str(a) == str(b)


def _condition_spans(dm: TabularDataModule, columns: Sequence[str]) -> list[OutputSpan]:
    spans = []
    for col in columns:
        if col == dm.data.target:
            raise UserInputError(
                f"method.condition_columns names the target {col!r}; the label is conditioned "
                "on by method.condition_on_label"
            )
        found = [sp for sp in dm.output_spans if sp.column == col and sp.kind == "categorical"]
        if not found:
            cats = sorted(
                {
                    sp.source_column
                    for sp in dm.output_spans
                    if sp.kind == "categorical" and sp.column == sp.source_column
                }
            )
            raise UserInputError(
                f"method.condition_columns: {col!r} is not a categorical column; categorical "
                f"columns: {cats}"
            )
        spans.append(found[0])
    return spans


def _span_values(dm: TabularDataModule, span: OutputSpan) -> list[Any]:
    """The decoded value of each slot of a categorical span (post-processing of the fitted
    transformer: decodes one-hot rows, reads no record)."""
    width = span.end - span.start
    x = np.zeros((width, dm.transformer.output_dim), dtype=np.float32)
    x[np.arange(width), span.start + np.arange(width)] = 1.0
    decoded = dm.transformer.inverse_transform(x)[span.source_column]
    return [None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in decoded]


def _condition_prior(dm: TabularDataModule, column: str, span: OutputSpan) -> list[float]:
    """Frequencies of a condition column's slots for sampling generated rows' conditions: the
    transformer's DP release when there is one (already charged), else the train split (a
    non-private read, listed in the ledger)."""
    width = span.end - span.start
    release = dm.transformer.release
    if release is not None:
        freq = release.category_frequencies(column)
        values = _span_values(dm, span)
        p = np.array(
            [
                next((f for k, f in freq.items() if v is not None and _same(k, v)), 0.0)
                for v in values
            ]
        )
    else:
        p = dm.x_train[:, span.start : span.end].double().mean(dim=0).numpy()
        dm.ledger.record_non_private(
            module="condition_marginals",
            purpose=f"frequencies of condition column {column!r} on the train split",
            records=dm.n_train,
        )
    p = np.clip(p, 0.0, None)
    if p.sum() <= 0:
        p = np.ones(width)
    return (p / p.sum()).tolist()


def _released_marginals(dm: TabularDataModule, *, exclude: set[str]) -> dict[str, dict[str, float]]:
    """Category frequencies of every categorical feature: the DP release, or (non-private run)
    the train split, listed in the ledger."""
    cols = _marginal_columns(dm, exclude=exclude)
    release = dm.transformer.release
    out: dict[str, dict[str, float]] = {}
    if release is not None:
        for col in cols:
            try:
                out[col] = {str(k): float(v) for k, v in release.category_frequencies(col).items()}
            except UserInputError:
                continue
        return out
    if dm.train_frame is None:  # a saved run (dpshare.artifact): no real record to read
        return dm.saved_marginals(cols)  # type: ignore[no-any-return,attr-defined]
    out = _train_marginals(dm.train_frame, cols)
    dm.ledger.record_non_private(
        module="refine_marginals",
        purpose="category frequencies of the train split for marginal correction",
        records=dm.n_train,
    )
    return out


def _marginal_columns(dm: Any, *, exclude: set[str]) -> list[str]:
    """The categorical feature columns whose frequencies ``match_marginals`` targets."""
    kinds = {
        sp.source_column
        for sp in dm.output_spans
        if sp.kind == "categorical" and sp.column == sp.source_column
    }
    return [c for c in dm.data.feature_columns if c in kinds and c not in exclude]


def _train_marginals(train: pd.DataFrame, cols: Sequence[str]) -> dict[str, dict[str, float]]:
    """Category frequencies (values as strings) of ``cols`` on the train split: a raw read."""
    out: dict[str, dict[str, float]] = {}
    for col in cols:
        vc = train[col].astype(object).astype(str).value_counts(normalize=True)
        out[col] = {str(k): float(v) for k, v in vc.items()}
    return out


def _number_map(value: Any, key: str) -> dict[str, float]:
    """A ``name -> number`` config mapping (``None`` = empty), with an error that names the key."""
    if value is None:
        return {}
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value)
    if not isinstance(value, Mapping):
        raise UserInputError(f"{key} must be a mapping like {{semantic: 1.0}}, got {value!r}")
    out: dict[str, float] = {}
    for name, number in value.items():
        try:
            out[str(name)] = float(number)
        except (TypeError, ValueError):
            raise UserInputError(f"{key}.{name} must be a number, got {number!r}") from None
        if not math.isfinite(out[str(name)]):
            raise UserInputError(f"{key}.{name} must be finite, got {number!r}")
    return out
