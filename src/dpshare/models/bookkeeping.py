"""Book-keeping DP-SGD (``privacy.grad_sample_mode=bk``): per-sample clipping in ONE backward.

Bu, Wang, Zha & Karypis, "Differentially private optimization on large model at small cost"
(ICML 2023), "book-keeping" (BK): every trainable layer keeps its input activation ``a`` and the
gradient ``g`` of the loss with respect to its output from the ONE ordinary backward pass.
From ``(a, g)`` alone each layer gives (1) every record's squared gradient norm and (2), once
the clip factors ``c_i = min(1, C / ||grad_i||)`` are known, the clipped sum
``sum_i c_i grad_i``. Autograd is run with detached parameters, so the ordinary (unclipped)
weight gradients are never computed: the extra cost over a non-private step is the per-sample
norms and one weighted sum per layer.

Why hand-written: Opacus 1.6 offers per-sample gradients (``hooks``/``functorch``: every layer's
per-sample gradients PLUS the ordinary weight gradients autograd still computes) and ghost
clipping (per-sample norms from one backward, then a SECOND backward of the re-weighted loss).
Neither library we use implements book-keeping; the authors' ``fastDP`` is not a maintained
PyPI package and patches torch modules globally. The clipped sum produced here is handed to
Opacus's own :class:`~opacus.optimizers.DPOptimizerFastGradientClipping`, which adds the
Gaussian noise, scales and steps; accounting is unchanged (one sampled-Gaussian step).
``tests/test_bookkeeping.py`` checks the clipped sums against Opacus ``hooks`` on every layer
type and on the project's discriminators.

Per layer (``B`` records, ``T`` positions of a sequence or image, ``d`` in, ``p`` out):

* ``Linear`` on ``(B, d)``: ``||grad_i||^2 = ||g_i||^2 ||a_i||^2`` (exact, no instantiation);
  on ``(B, T, d)``: the per-sample gradients ``g_i^T a_i`` (as many multiply-adds as the
  ordinary weight gradient, and the clipped sum is then a weighted sum over ``B``), or, when
  that ``(B, p, d)`` tensor would exceed ``INSTANTIATE_BYTES`` and ``T^2 (d + p) < T d p``, the
  ghost norm ``<a_i a_i^T, g_i g_i^T>`` ("mixed ghost clipping", Bu et al. 2022).
* ``Conv2d`` (``groups=1``, zero padding): the same on the ``unfold``-ed input.
* ``Embedding``: the gradient of record ``i`` lands on the rows of its indices; for one index
  per record its norm is ``||g_i||``; for several, the ghost norm with an index-equality mask.
* ``GroupNorm`` / ``LayerNorm`` (affine): per-sample gradients are ``(g * x_hat)`` and ``g``
  summed over the positions, with ``x_hat`` recomputed from ``a``.

Any other layer with trainable parameters (BatchNorm, GRU, ...) is refused when the module is
wrapped: choose ``hooks`` or ``ghost`` for it. A layer may run only once per forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from dpshare.errors import UserInputError

SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv2d,
    nn.Embedding,
    nn.GroupNorm,
    nn.LayerNorm,
)

# Largest per-layer per-sample gradient tensor built; above it, ghost norms (module docstring).
INSTANTIATE_BYTES = 256 * 2**20

# (per-sample squared norms (B,), function from clip factors (B,) to {parameter: clipped sum})
_LayerWork = tuple[torch.Tensor, Callable[[torch.Tensor], dict[torch.Tensor, torch.Tensor]]]


def _check_layer(name: str, layer: nn.Module) -> None:
    kind = type(layer).__name__
    if not isinstance(layer, SUPPORTED_LAYERS):
        raise UserInputError(
            f"privacy.grad_sample_mode=bk cannot clip layer {name!r} ({kind}): book-keeping "
            f"supports {[t.__name__ for t in SUPPORTED_LAYERS]}; use grad_sample_mode=hooks "
            "or ghost for this model"
        )
    if isinstance(layer, nn.Conv2d) and (
        layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str)
    ):
        raise UserInputError(
            f"privacy.grad_sample_mode=bk supports Conv2d with groups=1, zero padding and "
            f"numeric padding; layer {name!r} has groups={layer.groups}, "
            f"padding_mode={layer.padding_mode!r}, padding={layer.padding!r}: use hooks"
        )
    if isinstance(layer, nn.Embedding) and (
        layer.max_norm is not None or layer.scale_grad_by_freq or layer.sparse
    ):
        raise UserInputError(
            f"privacy.grad_sample_mode=bk supports plain Embedding layers; {name!r} sets "
            "max_norm, scale_grad_by_freq or sparse: use hooks"
        )


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    # per-row squared L2 norm; linalg.vector_norm avoids the temporary of x.pow(2)
    return torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1).square()


def _trainable(param: torch.Tensor | None) -> bool:
    return param is not None and param.requires_grad


def _matrix_work(
    a: torch.Tensor, g: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> _LayerWork:
    """A layer whose weight gradient of record ``i`` is ``g_i^T a_i`` (``a``: (B, T, d) or
    (B, d); ``g``: (B, T, p) or (B, p)) and bias gradient ``sum_t g_i``."""
    n = g.shape[0]
    if a.dim() == 2:
        a, g = a[:, None, :], g[:, None, :]
    positions, d, p = a.shape[1], a.shape[2], g.shape[2]
    norms = torch.zeros(n, dtype=g.dtype, device=g.device)
    per_sample: torch.Tensor | None = None
    if _trainable(weight):
        if positions == 1:
            norms = norms + g[:, 0].pow(2).sum(1) * a[:, 0].pow(2).sum(1)
        elif n * d * p * g.element_size() > INSTANTIATE_BYTES and positions * (d + p) < d * p:
            # ghost norm: no (B, p, d) tensor (then the clipped sum costs one more matmul)
            aa = torch.bmm(a, a.transpose(1, 2))
            gg = torch.bmm(g, g.transpose(1, 2))
            norms = norms + (aa * gg).sum(dim=(1, 2))
        else:
            per_sample = torch.bmm(g.transpose(1, 2), a)  # (B, p, d)
            norms = norms + _sq_norms(per_sample)
    bias_sample = g.sum(dim=1) if _trainable(bias) else None
    if bias_sample is not None:
        norms = norms + bias_sample.pow(2).sum(1)

    def clipped(c: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
        out: dict[torch.Tensor, torch.Tensor] = {}
        if _trainable(weight):
            if per_sample is not None:
                w = torch.einsum("b,bpd->pd", c, per_sample)
            else:
                w = (g * c[:, None, None]).reshape(-1, p).t() @ a.reshape(-1, d)
            out[weight] = w.reshape(weight.shape)
        if bias is not None and bias_sample is not None:
            out[bias] = c @ bias_sample
        return out

    return norms, clipped


def _linear(layer: nn.Linear, a: torch.Tensor, g: torch.Tensor) -> _LayerWork:
    n = a.shape[0]
    if a.dim() > 2:
        a, g = a.reshape(n, -1, a.shape[-1]), g.reshape(n, -1, g.shape[-1])
    return _matrix_work(a, g, layer.weight, layer.bias)


def _conv2d(layer: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> _LayerWork:
    n = a.shape[0]
    padding = layer.padding
    assert not isinstance(padding, str)  # refused in _check_layer
    cols = F.unfold(
        a, layer.kernel_size, dilation=layer.dilation, padding=padding, stride=layer.stride
    )  # (B, Cin * kh * kw, L)
    g = g.reshape(n, g.shape[1], -1)  # (B, Cout, L)
    return _matrix_work(cols.transpose(1, 2), g.transpose(1, 2), layer.weight, layer.bias)


def _embedding(layer: nn.Embedding, idx: torch.Tensor, g: torch.Tensor) -> _LayerWork:
    n, width = g.shape[0], g.shape[-1]
    idx = idx.reshape(n, -1)
    g = g.reshape(n, -1, width)
    if layer.padding_idx is not None:  # the padding row never receives a gradient
        g = g * (idx != layer.padding_idx)[:, :, None].to(g.dtype)
    if idx.shape[1] == 1:
        norms = g[:, 0].pow(2).sum(1)
    else:
        same = (idx[:, :, None] == idx[:, None, :]).to(g.dtype)
        norms = (same * torch.bmm(g, g.transpose(1, 2))).sum(dim=(1, 2))
    weight = layer.weight

    def clipped(c: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
        out = torch.zeros_like(weight)
        out.index_add_(0, idx.reshape(-1), (g * c[:, None, None]).reshape(-1, width))
        return {weight: out}

    return norms, clipped


def _affine_norm(
    weight: torch.Tensor | None, bias: torch.Tensor | None, x_hat: torch.Tensor, g: torch.Tensor
) -> _LayerWork:
    """Per-sample gradients of an elementwise affine ``x_hat * weight + bias`` whose parameter
    shape is ``param_shape``: sums of ``g * x_hat`` and ``g`` over the other positions."""
    n = g.shape[0]
    samples: dict[torch.Tensor, torch.Tensor] = {}
    for param, value in ((weight, g * x_hat), (bias, g)):
        if param is not None and _trainable(param):
            samples[param] = value.reshape(n, -1, param.numel()).sum(1)  # (B, numel)
    norms = torch.zeros(n, dtype=g.dtype, device=g.device)
    for value in samples.values():
        norms = norms + value.pow(2).sum(1)

    def clipped(c: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
        return {p: (c @ v).reshape(p.shape) for p, v in samples.items()}

    return norms, clipped


def _group_norm(layer: nn.GroupNorm, a: torch.Tensor, g: torch.Tensor) -> _LayerWork:
    x_hat = F.group_norm(a, layer.num_groups, eps=layer.eps)
    n, channels = a.shape[0], a.shape[1]
    # per channel: move C last so that the reshape in _affine_norm groups by channel
    x_hat = x_hat.reshape(n, channels, -1).transpose(1, 2)
    g = g.reshape(n, channels, -1).transpose(1, 2)
    return _affine_norm(layer.weight, layer.bias, x_hat, g)


def _layer_norm(layer: nn.LayerNorm, a: torch.Tensor, g: torch.Tensor) -> _LayerWork:
    x_hat = F.layer_norm(a, layer.normalized_shape, eps=layer.eps)
    return _affine_norm(layer.weight, layer.bias, x_hat, g)


_WORK: dict[type[nn.Module], Callable[[Any, torch.Tensor, torch.Tensor], _LayerWork]] = {
    nn.Linear: _linear,
    nn.Conv2d: _conv2d,
    nn.Embedding: _embedding,
    nn.GroupNorm: _group_norm,
    nn.LayerNorm: _layer_norm,
}


class BookKeepingModule(nn.Module):
    """Wraps a module so that :meth:`clip_and_sum` can turn one backward pass into the clipped
    per-sample gradient sum (module docstring). ``_module`` is the wrapped module, as in
    Opacus's ``GradSampleModule``, so state dicts have the same keys in every mode."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self._module = module
        self._layers: list[tuple[str, nn.Module]] = []
        for name, layer in module.named_modules():
            if not any(p.requires_grad for p in layer.parameters(recurse=False)):
                continue
            _check_layer(name, layer)
            self._layers.append((name, layer))
            layer.register_forward_hook(self._forward_hook)
        self._names = {id(layer): name for name, layer in self._layers}
        self._activations: dict[int, torch.Tensor] = {}
        self._output_grads: dict[int, torch.Tensor] = {}
        self.hooks_enabled = True

    # Opacus-compatible switches (used while the generator backpropagates through us)
    def disable_hooks(self) -> None:
        self.hooks_enabled = False

    def enable_hooks(self) -> None:
        self.hooks_enabled = True

    def _capturing(self) -> bool:
        return self.hooks_enabled and self.training and torch.is_grad_enabled()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self._activations.clear()
        self._output_grads.clear()
        if not self._capturing():
            return self._module(*args, **kwargs)
        # Detached parameters: autograd computes activation gradients only; the weight
        # gradients are formed (clipped) from the captured activations in clip_and_sum.
        detached = {name: p.detach() for name, p in self._module.named_parameters()}
        return functional_call(self._module, detached, args, kwargs, strict=False)

    def _forward_hook(self, layer: nn.Module, inputs: tuple[Any, ...], output: Any) -> Any:
        if not self._capturing():
            return None
        key = id(layer)
        if key in self._activations:
            raise UserInputError(
                f"privacy.grad_sample_mode=bk: layer {self._names[key]!r} ran twice in one "
                "forward pass; book-keeping needs one call per layer: use hooks or ghost"
            )
        self._activations[key] = inputs[0].detach()
        if not output.requires_grad:  # first layer, or an embedding of integer labels
            output = output.detach().requires_grad_(True)

        def keep(grad: torch.Tensor) -> None:
            self._output_grads[key] = grad.detach()

        output.register_hook(keep)
        return output

    def clip_and_sum(self, *, max_grad_norm: float, loss_scale: float) -> torch.Tensor:
        """After ``backward()``: set every trainable parameter's ``.grad`` to the sum over the
        batch of its per-sample gradients, each record's whole gradient clipped to
        ``max_grad_norm``. ``loss_scale`` turns the captured gradients of the reduced loss into
        gradients of each record's own loss (the batch size for a mean). Returns the
        per-sample norms before clipping."""
        work: list[_LayerWork] = []
        n: int | None = None
        for _, layer in self._layers:
            key = id(layer)
            if key not in self._activations or key not in self._output_grads:
                continue  # not used in this forward (or its output did not reach the loss)
            a = self._activations[key]
            g = self._output_grads[key] * loss_scale
            work.append(_WORK[type(layer)](layer, a, g))
            n = g.shape[0]
        if n is None:
            raise RuntimeError("clip_and_sum() needs a forward and backward pass first")
        norms = torch.zeros(n, dtype=work[0][0].dtype, device=work[0][0].device)
        for layer_norms, _ in work:
            norms = norms + layer_norms
        norms = norms.sqrt()
        # Opacus's clip factor (opacus.optimizers.optimizer.DPOptimizer.clip_and_accumulate)
        factors = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        grads: dict[torch.Tensor, torch.Tensor] = {}
        for _, clipped in work:
            grads.update(clipped(factors))
        for p in self._module.parameters():
            if p.requires_grad:
                p.grad = grads[p].detach() if p in grads else torch.zeros_like(p)
        self._activations.clear()
        self._output_grads.clear()
        return norms


class BookKeepingLoss:
    """The mean of a per-sample loss whose ``backward()`` runs ONE backward pass and leaves the
    clipped per-sample gradient sum in ``.grad`` (the counterpart of Opacus's
    ``DPTensorFastGradientClipping``; the optimizer is a ``DPOptimizerFastGradientClipping``)."""

    def __init__(self, module: BookKeepingModule, optimizer: Any, per_sample: torch.Tensor):
        self.module = module
        self.optimizer = optimizer
        self.per_sample = per_sample

    def detach(self) -> torch.Tensor:
        return self.per_sample.detach().mean()

    def item(self) -> float:
        return float(self.detach())

    def backward(self) -> None:
        self.per_sample.mean().backward()
        self.module.clip_and_sum(
            max_grad_norm=float(self.optimizer.max_grad_norm),
            loss_scale=float(self.per_sample.shape[0]),
        )
