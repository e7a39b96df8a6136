"""DP mechanisms for the signals a noise controller monitors (pure numpy).

A controller that reads real records is itself a mechanism on real records (neither Deng 2026 nor
Tao 2020 accounts for this). Each function here returns the noisy value together with the
mechanism's parameters, and the caller charges it to the privacy ledger:

- :func:`noisy_count`: a count over a Poisson-sampled batch (per-record sensitivity 1), e.g. how
  many real records the discriminator classifies as real: a sampled Gaussian step.
- :func:`release_moments`: first and second moments of the encoded real rows, each row clipped to
  L2 norm ``clip_norm``; one Gaussian release whose result every later Frechet distance reuses
  for free (post-processing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg


def noisy_count(count: float, *, noise_multiplier: float, rng: np.random.Generator) -> float:
    """``count + N(0, noise_multiplier^2)``: Gaussian mechanism, L2 sensitivity 1."""
    return float(count + rng.normal(0.0, noise_multiplier))


@dataclass(frozen=True)
class NoisyMoments:
    """A DP release of mean and covariance.

    Attributes:
        mean, cov: post-processed estimates (covariance projected onto the PSD cone).
        n_noisy: the noisy record count used as denominator.
        l2_sensitivity: sqrt(3): one record moves the scaled sum, the scaled upper triangle of the
            sum of outer products and the count by at most 1 each (in L2 norm).
        noise_multiplier: noise std / l2_sensitivity.
    """

    mean: np.ndarray
    cov: np.ndarray
    n_noisy: float
    l2_sensitivity: float
    noise_multiplier: float


def release_moments(
    x: np.ndarray, *, clip_norm: float, noise_multiplier: float, rng: np.random.Generator
) -> NoisyMoments:
    """Gaussian release of (sum x, upper triangle of sum x x^T, n) for rows clipped to
    ``clip_norm``; add/remove-one adjacency."""
    if noise_multiplier <= 0 or clip_norm <= 0:
        raise ValueError("release_moments needs noise_multiplier > 0 and clip_norm > 0")
    x = np.asarray(x, dtype=float)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x * np.minimum(1.0, clip_norm / np.maximum(norms, 1e-12)) / clip_norm  # ||row|| <= 1
    d = x.shape[1]
    sensitivity = math.sqrt(3.0)
    std = noise_multiplier * sensitivity
    s1 = x.sum(axis=0) + rng.normal(0.0, std, d)
    s2 = x.T @ x  # ||x x^T||_F = ||x||^2 <= 1, and its upper triangle is no larger
    upper = np.triu_indices(d)
    noisy_upper = s2[upper] + rng.normal(0.0, std, len(upper[0]))
    s2 = np.zeros((d, d))
    s2[upper] = noisy_upper
    s2 = s2 + np.triu(s2, 1).T
    n = max(float(len(x) + rng.normal(0.0, std)), 1.0)
    mean = s1 / n
    cov = s2 / n - np.outer(mean, mean)
    eigval, eigvec = np.linalg.eigh((cov + cov.T) / 2)
    cov = (eigvec * np.clip(eigval, 0.0, None)) @ eigvec.T
    return NoisyMoments(
        mean=mean * clip_norm,
        cov=cov * clip_norm**2,
        n_noisy=n,
        l2_sensitivity=sensitivity,
        noise_multiplier=noise_multiplier,
    )


def frechet_distance(
    mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray
) -> float:
    """Frechet distance between two Gaussians (Dowson & Landau 1982; the formula behind FID):
    ||m1 - m2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)). Units: squared feature units; >= 0."""
    diff = np.asarray(mean1) - np.asarray(mean2)
    covmean = linalg.sqrtm(np.asarray(cov1) @ np.asarray(cov2))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    value = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)
