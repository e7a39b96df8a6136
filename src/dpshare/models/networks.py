"""Building blocks shared by the tabular GANs: a conditional generator with mixed-type output
heads and an MLP discriminator.

Every layer in the discriminator is one Opacus can compute per-sample gradients for (Linear,
LeakyReLU, Dropout; no BatchNorm), so the same class serves the private methods.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from dpshare.data.transformer import OutputSpan
from dpshare.errors import UserInputError


class _Residual(nn.Module):
    """Linear -> BatchNorm -> ReLU, concatenated with its input (as in CTGAN, Xu et al. 2019)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class ConditionalGenerator(nn.Module):
    """Maps noise ``z`` and a condition vector to encoded rows.

    The condition (one-hot label) is concatenated at the input and again before the output layer
    (Deng 2026, Sec. 3.4: conditions at the input and an intermediate layer).

    Args:
        latent_dim: size of ``z``.
        condition_dim: size of the condition vector (0 for an unconditional generator).
        hidden_dims: widths of the residual blocks.
        spans: output layout from the transformer; continuous spans get a linear head,
            categorical spans a (Gumbel-)softmax head.
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        condition_dim: int,
        hidden_dims: Sequence[int],
        spans: Sequence[OutputSpan],
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.condition_dim = condition_dim
        self.spans = list(spans)
        self.output_dim = self.spans[-1].end if self.spans else 0
        blocks: list[nn.Module] = []
        dim = latent_dim + condition_dim
        for width in hidden_dims:
            blocks.append(_Residual(dim, width))
            dim += width
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(dim + condition_dim, self.output_dim)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """Raw head outputs (continuous values and categorical logits), shape (n, output_dim)."""
        h = z if condition is None else torch.cat([z, condition], dim=1)
        h = self.body(h)
        if condition is not None:
            h = torch.cat([h, condition], dim=1)
        return self.head(h)

    def activate(
        self,
        raw: torch.Tensor,
        *,
        tau: float,
        hard: bool,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Per-span activation: identity for continuous spans; Gumbel-softmax for categorical
        spans (``hard=True`` returns one-hot samples, used when sampling synthetic rows).

        ``generator``: draw the Gumbel noise from it, so that sampled rows depend on the
        sampling seed alone (a saved run then reproduces its table, :mod:`dpshare.artifact`);
        ``None`` draws it from torch's global generator (training steps)."""
        parts = []
        for span in self.spans:
            block = raw[:, span.start : span.end]
            if span.kind == "categorical":
                if generator is None:
                    block = F.gumbel_softmax(block, tau=tau, hard=hard, dim=1)
                else:
                    block = _seeded_gumbel_softmax(block, tau=tau, hard=hard, generator=generator)
            parts.append(block)
        return torch.cat(parts, dim=1)


def _seeded_gumbel_softmax(
    logits: torch.Tensor, *, tau: float, hard: bool, generator: torch.Generator
) -> torch.Tensor:
    """``F.gumbel_softmax(logits, tau, hard, dim=1)`` with the Gumbel noise drawn from
    ``generator`` (the same formula: ``-log(Exp(1))`` noise, softmax, straight-through one-hot)."""
    exponential = torch.empty_like(logits).exponential_(generator=generator)
    y_soft = ((logits - exponential.log()) / tau).softmax(dim=1)
    if not hard:
        return y_soft
    index = y_soft.argmax(dim=1, keepdim=True)
    y_hard = torch.zeros_like(logits).scatter_(1, index, 1.0)
    return y_hard - y_soft.detach() + y_soft


class MLPDiscriminator(nn.Module):
    """Scores (row, condition) pairs; higher = more likely real."""

    def __init__(
        self, *, input_dim: int, condition_dim: int, hidden_dims: Sequence[int], dropout: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = input_dim + condition_dim
        for width in hidden_dims:
            layers += [nn.Linear(dim, width), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
            dim = width
        layers.append(nn.Linear(dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        h = x if condition is None else torch.cat([x, condition], dim=1)
        return self.net(h).squeeze(1)


class GeneratorEMA:
    """Mixin for a GAN LightningModule with a ``generator``: an exponential moving average of
    the generator's weights (``method.generator_ema``, a decay in (0, 1); ``None``: off), as in
    Bie et al. 2023 "Private GANs, revisited". The average is post-processing of the generator,
    which is itself post-processing of the DP discriminator: it reads no real record and costs
    no privacy. Training steps use the live generator; sampling (eval mode) and the released
    weights use the average.

    Written by hand rather than with ``torch.optim.swa_utils.AveragedModel``: that wrapper
    prefixes the state dict with ``module.`` and adds ``n_averaged`` (the released
    ``generator.pt`` stays a plain generator's state dict here), and it averages BatchNorm
    buffers where this copies them (the running statistics of the live generator, which the
    averaged weights are sampled with)."""

    generator: nn.Module
    training: bool

    def init_generator_ema(self, decay: float | None) -> None:
        """Call after ``self.generator`` is built."""
        if decay is not None and not 0.0 < float(decay) < 1.0:
            raise UserInputError(
                f"method.generator_ema={decay}: give a decay in (0, 1) (e.g. 0.99), or "
                "null to sample from the trained generator itself"
            )
        self.ema_decay = None if decay is None else float(decay)
        self.generator_ema = copy.deepcopy(self.generator) if self.ema_decay else None
        if self.generator_ema is not None:
            self.generator_ema.requires_grad_(False)

    @torch.no_grad()
    def update_ema(self) -> None:
        """``ema <- decay * ema + (1 - decay) * generator``; BatchNorm statistics copied. Call
        after every generator step."""
        if self.generator_ema is None or self.ema_decay is None:
            return
        for ema_p, p in zip(
            self.generator_ema.parameters(), self.generator.parameters(), strict=True
        ):
            ema_p.lerp_(p, 1.0 - self.ema_decay)
        for ema_b, b in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            ema_b.copy_(b)

    def released_generator(self) -> nn.Module:
        """The weights a run releases: the average when it is kept, else the generator."""
        return self.generator if self.generator_ema is None else self.generator_ema

    def sampling_generator(self) -> nn.Module:
        """The network :meth:`generate` runs: the live generator in train mode (training
        steps), the released one in eval mode (sampling, evaluation)."""
        return self.generator if self.training else self.released_generator()
