"""How the tests compare floating-point results.

Rule: never assert a float32 value with a fixed absolute tolerance far from 1. Either

* compute both sides in float64 and compare with :func:`assert_close_f64` (a relative tolerance
  of 1e-9 of the largest magnitude: double rounding is ~1e-16, so only a real difference fails), or
* where the code under test only runs in float32, bound the rounding of a sum by the textbook
  worst case, ``|fl(sum x_i) - sum x_i| <= (n - 1) u sum |x_i|`` with ``u = 2**-24``
  (:func:`float32_sum_tolerance`), so the tolerance follows the magnitudes instead of a guess.

Both fail on a real error (a clip factor off by 0.1 %, a missing term) whatever the thread count,
the BLAS kernel or the tests that ran before.
"""

from __future__ import annotations

import torch

FLOAT32_UNIT_ROUNDOFF = 2.0**-24


def assert_close_f64(expected: torch.Tensor, got: torch.Tensor, rel: float = 1e-9) -> None:
    """``got`` equals ``expected`` (both float64) within ``rel`` times the largest magnitude."""
    assert expected.dtype == got.dtype == torch.float64, (expected.dtype, got.dtype)
    scale = max(float(expected.abs().max()), 1.0) if expected.numel() else 1.0
    err = float((expected - got).abs().max()) if expected.numel() else 0.0
    assert err <= rel * scale, f"max |difference| {err:.3g} at magnitude {scale:.3g} (rel {rel})"


def float32_sum_tolerance(terms: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Elementwise worst-case rounding of a float32 sum of ``terms`` along ``dim``: one rounding
    per product that formed a term plus ``n - 1`` per addition, i.e. ``(n + 1) u sum |x_i|``."""
    n = terms.shape[dim]
    return (n + 1) * FLOAT32_UNIT_ROUNDOFF * terms.double().abs().sum(dim)


def assert_float32_sum(got: torch.Tensor, terms: torch.Tensor, dim: int = 0) -> None:
    """``got`` (float32) is the sum of ``terms`` along ``dim`` up to float32 rounding."""
    exact = terms.double().sum(dim)
    err = (got.double() - exact).abs()
    tol = float32_sum_tolerance(terms, dim)
    worst = float((err - tol).max())
    assert worst <= 0.0, f"max |difference| {float(err.max()):.3g} beyond float32 rounding"


def float32_atol(*magnitudes: object, ulps: int = 8) -> float:
    """Absolute tolerance for a value that passed through a float32 encoding: ``ulps`` units of
    float32 rounding at the largest magnitude among ``magnitudes`` (arrays or numbers)."""
    import numpy as np

    largest = max(float(np.nanmax(np.abs(np.asarray(m, dtype=np.float64)))) for m in magnitudes)
    return ulps * FLOAT32_UNIT_ROUNDOFF * max(largest, 1.0)
