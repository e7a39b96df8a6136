"""Book-keeping DP-SGD (``grad_sample_mode=bk``): its clipped per-sample gradient sums equal the
sums built from per-sample gradients computed one record at a time, on every supported layer
type and both norm paths, and equal Opacus's ``hooks`` sums on the project's discriminators."""

from __future__ import annotations

import copy

import pytest
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from torch import nn

from dpshare.errors import UserInputError
from dpshare.models import bookkeeping
from dpshare.models.bookkeeping import BookKeepingLoss, BookKeepingModule
from dpshare.models.dp_wgan import ImageCritic
from dpshare.models.multidisc import DiscriminatorCluster
from numerics import assert_close_f64


# Every comparison below runs in float64 (models and inputs in double): the clipped sums hold
# values up to ~50, where float32 summation-order rounding (thread count, BLAS kernel) reached
# 2.7e-5 on a fresh clone and a fixed float32 tolerance was a coin toss. In double the two
# computations agree to ~1e-13 relative, so 1e-9 of the largest magnitude (numerics.py) passes on
# any machine, while a clip factor off by 0.1 % or a missing clamp fails (checked by breaking
# bookkeeping.clip_and_sum on purpose).
def assert_same_sums(expected: list, got: list, rel: float = 1e-9) -> None:
    for e, g in zip(expected, got, strict=True):
        assert_close_f64(e, g, rel=rel)


def _reference(module: nn.Module, inputs: tuple, weights: torch.Tensor, clip: float) -> list:
    """sum_i min(1, C / ||grad_i||) grad_i with grad_i from record i alone (the definition)."""
    params = [p for p in module.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    for i in range(len(weights)):
        module.zero_grad()
        out = module(*(x[i : i + 1] for x in inputs))
        (weights[i] * out.sum()).backward()
        grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        total = [t + factor * g for t, g in zip(total, grads, strict=True)]
    return total


def _bookkeeping(module: nn.Module, inputs: tuple, weights: torch.Tensor, clip: float) -> list:
    wrapped = BookKeepingModule(module)
    opt = DPOptimizerFastGradientClipping(
        torch.optim.SGD(wrapped.parameters(), lr=0.0),
        noise_multiplier=0.0,
        max_grad_norm=clip,
        expected_batch_size=1,
    )
    opt.zero_grad()
    out = wrapped(*inputs)
    BookKeepingLoss(wrapped, opt, weights * out).backward()
    return [p.grad.clone() for p in module.parameters() if p.requires_grad]


class _Sequence(nn.Module):
    """Embedding of several indices per record (with a padding row) -> Linear on (B, T, d) ->
    LayerNorm -> Conv2d over the (T, width) map -> GroupNorm -> a strided Conv2d with few
    positions -> Linear head. The second Linear and Conv2d have T (d + p) < d p, so the
    ``ghost`` parametrisation takes the ghost-norm path on them."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(9, 12, padding_idx=0)
        self.mix = nn.Linear(12, 16)
        self.norm = nn.LayerNorm(16)
        self.conv = nn.Conv2d(1, 4, 3, stride=1, padding=1)
        self.group = nn.GroupNorm(2, 4)
        self.conv2 = nn.Conv2d(4, 32, 3, stride=3)  # (5, 16) -> (1, 5)
        self.head = nn.Linear(32 * 5, 1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.norm(torch.tanh(self.mix(self.embed(idx))))  # (B, 5, 16)
        h = torch.relu(self.group(self.conv(h[:, None])))  # (B, 4, 5, 16)
        h = torch.tanh(self.conv2(h))  # (B, 32, 1, 5)
        return self.head(h.flatten(1)).squeeze(1)


class _Frozen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 7)
        self.b = nn.Linear(7, 1)
        self.a.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x))).squeeze(1)


def _cases() -> dict:
    torch.manual_seed(0)
    return {
        "sequence": (_Sequence, (torch.randint(0, 9, (12, 5)),)),
        "critic": (
            lambda: ImageCritic(n_classes=10, channels=8, norm="group"),
            (torch.randn(12, 784, dtype=torch.float64), torch.randint(0, 10, (12,))),
        ),
        "frozen": (_Frozen, (torch.randn(12, 5, dtype=torch.float64) * 4,)),
    }


@pytest.mark.parametrize("clip", [0.05, 1e6])  # every record clipped / none clipped
@pytest.mark.parametrize("path", ["instantiate", "ghost"])
@pytest.mark.parametrize("case", ["sequence", "critic", "frozen"])
def test_clipped_sum_equals_the_per_record_definition(
    case: str, path: str, clip: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "ghost":  # force ghost norms wherever they apply (Conv2d, Linear on sequences)
        monkeypatch.setattr(bookkeeping, "INSTANTIATE_BYTES", 0)
    make, inputs = _cases()[case]
    torch.manual_seed(1)
    model = make().double()
    twin = copy.deepcopy(model)
    weights = torch.linspace(-1.0, 1.0, len(inputs[0]), dtype=torch.float64)
    expected = _reference(model, inputs, weights, clip)
    got = _bookkeeping(twin, inputs, weights, clip)
    assert_same_sums(expected, got)


def test_ghost_path_is_taken_when_the_per_sample_tensor_is_too_big(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    real_bmm = torch.bmm

    def spy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(real_bmm(a, b).shape))
        return real_bmm(a, b)

    layer = nn.Linear(30, 40)
    a, g = torch.randn(4, 3, 30), torch.randn(4, 3, 40)
    monkeypatch.setattr(torch, "bmm", spy)
    bookkeeping._linear(layer, a, g)
    assert calls == [(4, 40, 30)]  # instantiated per-sample gradients
    calls.clear()
    monkeypatch.setattr(bookkeeping, "INSTANTIATE_BYTES", 0)
    bookkeeping._linear(layer, a, g)
    assert calls == [(4, 3, 3), (4, 3, 3)]  # Gram matrices of a and g only


def _opacus_hooks_sum(module: nn.Module, inputs: tuple, weights: torch.Tensor, clip: float):
    wrapped = GradSampleModule(module, loss_reduction="mean")
    opt = DPOptimizer(
        torch.optim.SGD(wrapped.parameters(), lr=0.0),
        noise_multiplier=0.0,
        max_grad_norm=clip,
        expected_batch_size=1,
    )
    opt.zero_grad()
    (weights * wrapped(*inputs)).mean().backward()
    opt.clip_and_accumulate()
    return [p.summed_grad.clone() for p in module.parameters()]


def test_equals_opacus_hooks_on_the_temporal_discriminator_cluster() -> None:
    torch.manual_seed(0)
    cluster = DiscriminatorCluster(
        heads=["statistical", "semantic", "temporal"],
        input_dim=7,
        condition_dim=3,
        trunk_dims=[16, 16],
        head_hidden=8,
        dropout=0.0,
        shared_trunk=True,
        rff_features=10,
        rff_bandwidth=1.0,
        sequence_shape=(6, 2),
        temporal_kernel=3,
        temporal_channels=4,
        seed=0,
    ).double()
    twin = copy.deepcopy(cluster)
    n = 16
    f64 = torch.float64
    x = torch.randn(n, 7, dtype=f64)
    c = nn.functional.one_hot(torch.arange(n) % 3, 3).to(f64)
    s = torch.randn(n, 6, 2, dtype=f64)
    weights = torch.randn(n, 3, dtype=f64)

    class Fused(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x, c, s):  # type: ignore[no-untyped-def]
            return self.inner(x, c, s)

    expected = _opacus_hooks_sum(Fused(cluster), (x, c, s), weights, 0.3)
    wrapped = BookKeepingModule(Fused(twin))
    opt = DPOptimizerFastGradientClipping(
        torch.optim.SGD(wrapped.parameters(), lr=0.0),
        noise_multiplier=0.0,
        max_grad_norm=0.3,
        expected_batch_size=1,
    )
    BookKeepingLoss(wrapped, opt, (weights * wrapped(x, c, s)).sum(1)).backward()
    got = [p.grad for p in twin.parameters()]
    # Opacus (loss_reduction="mean") clips per-sample gradients of the mean loss, i.e. norms
    # n = 16 times smaller than ours, so the clip factor's +1e-6 stabiliser, C / (norm + 1e-6),
    # shifts the two factors by up to ~1e-6 / norm relative (measured 7e-8): that, not rounding,
    # sets this tolerance. A clip factor off by 0.1 % still fails it by 10x.
    assert_same_sums(expected, got, rel=1e-5)


def test_unsupported_layers_are_refused_with_the_alternative() -> None:
    with pytest.raises(UserInputError, match="BatchNorm1d.*hooks or ghost"):
        BookKeepingModule(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))
    with pytest.raises(UserInputError, match="groups=2"):
        BookKeepingModule(nn.Conv2d(4, 4, 3, groups=2))


def test_a_layer_called_twice_in_one_forward_is_refused() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.fc(x)).sum(1)

    wrapped = BookKeepingModule(Twice())
    with pytest.raises(UserInputError, match="ran twice"):
        wrapped(torch.randn(2, 3))


def test_hooks_off_and_no_grad_forwards_capture_nothing() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    wrapped = BookKeepingModule(model)
    x = torch.randn(5, 3)
    with torch.no_grad():
        wrapped(x)
    assert not wrapped._activations
    wrapped.disable_hooks()
    wrapped.requires_grad_(False)
    x_gen = torch.randn(5, 3, requires_grad=True)
    wrapped(x_gen).sum().backward()  # a generator step: gradients reach the input only
    assert x_gen.grad is not None and not wrapped._activations
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(RuntimeError, match="forward and backward"):
        wrapped.clip_and_sum(max_grad_norm=1.0, loss_scale=1.0)
