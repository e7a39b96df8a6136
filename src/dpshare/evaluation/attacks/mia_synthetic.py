"""Membership inference against a released synthetic table: distance, density ratio, shadow.

Threat model (all three attacks): the attacker holds the released synthetic table
(``ctx.synthetic``: ``mia_dcr`` searches all of it, the density and shadow attacks fit on at most
``max_synthetic`` records of it, default 20 000, drawn with ``ctx.seed``) and a population sample
``ctx.reference`` disjoint from the records scored; she never sees the generator or retrains it.
Every record is compared in one numeric view, a :class:`~dpshare.evaluation.features.TableEncoder`
fitted on the reference population over ALL columns, the target label included (standardised
numeric columns, one-hot categories; Euclidean distance in that view). A higher score means
"member"; each attack returns :func:`~dpshare.evaluation.attacks.base.membership_summary` (``auc``,
``tpr_at_fpr_1pct``, ``tpr_at_fpr_0p1pct``, ``success_rate``, ``advantage``, ``n_members``,
``n_non_members``). Like every empirical attack, a success shows how much leaks at least, never an
upper bound.

* ``mia_dcr``: distance to the closest synthetic record (DCR), the baseline of the synthetic-data
  MIA literature (e.g. Chen et al. 2020, "GAN-Leaks", full black-box attack; Stadler et al.
  2022, "Synthetic data: anonymisation groundhog day"). Score = ``-min_s ||x - s||``.
* ``mia_domias``: DOMIAS (van Breugel et al. 2023, "Membership inference attacks against
  synthetic data through overfitting detection", AISTATS): a generator that overfits puts more
  synthetic density on its training records than the population has there, so the score is
  ``log p_synth(x) - log p_ref(x)``. The paper estimates both densities with a BNAF flow or a
  Gaussian KDE; we use the KDE (a BNAF would be a hand-written normalising flow to train and
  tune per dataset). As in the reference code (``scipy.stats.gaussian_kde``), each set gets its
  own Gaussian kernel with covariance ``n^(-2/(d+4))`` times that set's covariance (Scott's
  rule): the synthetic density follows the synthetic spread, so a mode-collapsed generator is
  estimated at its own scale. A KDE needs few dimensions, so the encoding is first reduced by a
  PCA fitted on the reference encoding and whitened on it, ``min(pca_dim, encoded dims)``
  components (``pca_dim`` default 10), leaving out components with less than 1e-6 of the
  reference variance (e.g. the redundant direction of a one-hot block). A ridge of 1e-6 (in
  whitened reference units) keeps a singular synthetic covariance (a constant column) usable.
  We chose the KDE over a Gaussian mixture because a mixture's few smooth components cannot
  follow the local excess density of a record that was copied, which is what DOMIAS detects.
  Scott's rule smooths for the global shape, so the attack's power grows with the number of
  continuous dimensions: against a generator that copies its 1000 training records, a table
  with two Gaussian numeric columns (plus a category and a label) gives AUC ~0.6 only, with six
  ~0.89 (``tests/test_attacks_synthetic.py``); ``mia_dcr`` detects both at AUC 1.
* ``mia_shadow``: a shadow-model attack in the spirit of Shokri et al. 2017 ("Membership
  inference attacks against machine learning models") as adapted to synthetic data by Stadler
  et al. 2022. The evaluation never trains generators (a project boundary), so the attacker's
  shadow generator is a cheap SURROGATE: a smoothed bootstrap that resamples its training set
  and adds Gaussian noise of ``shadow_noise`` (default 0.1) in every encoded feature (standard
  deviations for numeric columns, one-hot units for categories). ``n_shadows`` times (default
  4) the reference population is split at random into shadow-in and shadow-out halves; the
  surrogate makes as many records from shadow-in as the (capped) target synthetic table has.
  Each shadow-in (label 1) and shadow-out (label 0) record is described by the log of its
  distance to the closest surrogate record and the log of its mean distance to the ``k = 5``
  closest; a logistic regression (on standardised features) learns membership from them. The
  same features computed against the TARGET synthetic table score the members and
  non-members; score = the classifier's member probability. The surrogate differs from the
  target generator, so this attack tests whether the target leaks the way a noisy copier
  does: its success is evidence of copying-like leakage, its failure no proof of safety.
  Logistic regression on log distances is monotone in them, so an exact copy (distance 0,
  never seen among the surrogate's noisy records) is extrapolated to "member" rather than
  put in an arbitrary tree leaf.

Parameters (``eval.attack_params.<name>``): ``max_synthetic`` (all three), ``pca_dim``
(``mia_domias``), ``n_shadows``, ``shadow_noise`` (``mia_shadow``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular
from scipy.special import logsumexp
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dpshare.errors import UserInputError
from dpshare.evaluation.attacks.base import AttackContext, membership_summary, register_attack
from dpshare.evaluation.attacks.mia_model import require_reference
from dpshare.evaluation.features import TableEncoder, sample_rows

DEFAULT_MAX_SYNTHETIC = 20_000
MIN_COMPONENT_VARIANCE = 1e-6  # mia_domias: PCA components below this share of variance dropped
KDE_RIDGE = 1e-6  # mia_domias: added to each set's covariance (whitened reference units)
SHADOW_K = 5  # mia_shadow: neighbours in the mean-distance feature
DISTANCE_FLOOR = 1e-6  # mia_shadow: log(distance + floor) stays finite for exact copies
KDE_CHUNK = 128  # mia_domias: query points per block of the pairwise-distance matrix


def require_synthetic(ctx: AttackContext) -> pd.DataFrame:
    """The released synthetic table; a ``ValueError`` when the artifact is not one."""
    if ctx.synthetic is None:
        raise ValueError(
            "this attack needs a released synthetic table (ctx.synthetic); it is None for a "
            "model artifact"
        )
    if len(ctx.synthetic) == 0:
        raise UserInputError("the released synthetic table is empty")
    return ctx.synthetic


def capped_synthetic(
    ctx: AttackContext, default_cap: int | None = DEFAULT_MAX_SYNTHETIC
) -> pd.DataFrame:
    """At most ``max_synthetic`` (default ``default_cap``; None = all) synthetic records,
    drawn with ``ctx.seed``."""
    synthetic = require_synthetic(ctx)
    value = ctx.params.get("max_synthetic", default_cap)
    if value is None:
        return synthetic
    cap = int(value)
    if cap < 1:
        raise UserInputError(f"max_synthetic must be >= 1, got {cap}")
    return sample_rows(synthetic, cap, seed=ctx.seed)


def encoded_views(
    ctx: AttackContext, default_cap: int | None = DEFAULT_MAX_SYNTHETIC
) -> tuple[TableEncoder, np.ndarray, np.ndarray, np.ndarray]:
    """The reference-fitted encoder and the encoded (capped) synthetic table, members and
    non-members. Checks the reference is non-empty and the synthetic table exists first."""
    require_reference(ctx)
    synthetic = capped_synthetic(ctx, default_cap)
    if len(ctx.members) == 0 or len(ctx.non_members) == 0:
        raise ValueError("a membership game needs at least one member and one non-member")
    encoder = ctx.encoder()
    return (
        encoder,
        encoder.transform(synthetic),
        encoder.transform(ctx.members),
        encoder.transform(ctx.non_members),
    )


def nearest_distances(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distances from each query to its ``k`` closest rows of ``data`` (ascending),
    shape ``(len(queries), k)``; ``k`` is capped at ``len(data)``."""
    k = min(k, len(data))
    return NearestNeighbors(n_neighbors=k).fit(data).kneighbors(queries)[0]


@register_attack(
    "mia_dcr",
    artifact="synthetic",
    threat_model=(
        "The attacker holds the synthetic table and calls a record a member when a synthetic "
        "record lies close to it (distance to closest record)."
    ),
)
def mia_dcr(ctx: AttackContext) -> dict[str, float | None]:
    """Distance-to-closest-record MIA: score = minus the distance to the closest synthetic
    record in the reference-fitted encoding. The whole synthetic table is searched (only the
    2n targets are queries, so it is cheap): a sample of it would hide copies of the members
    it left out (``max_synthetic`` still caps it when set)."""
    _, synthetic, members, non_members = encoded_views(ctx, default_cap=None)
    n = len(members)
    d = nearest_distances(synthetic, np.r_[members, non_members], 1)[:, 0]
    return membership_summary(-d[:n], -d[n:])


def gaussian_kde_log_density(data: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``log p(points)`` under a Gaussian KDE of ``data`` with Scott's rule as in
    ``scipy.stats.gaussian_kde``: kernel covariance ``n^(-2/(d+4)) (Cov(data) + ridge I)``.

    Evaluated exactly in log space (log-sum-exp over all data points, in blocks of queries).
    """
    n, d = data.shape
    if n < 2:
        raise UserInputError("a kernel density estimate needs at least 2 records")
    factor = n ** (-1.0 / (d + 4))
    covariance = np.atleast_2d(np.cov(data, rowvar=False)) + KDE_RIDGE * np.eye(d)
    chol = np.linalg.cholesky(covariance * factor**2)
    z_data = solve_triangular(chol, data.T, lower=True).T
    z_points = solve_triangular(chol, points.T, lower=True).T
    data_sq = (z_data**2).sum(axis=1)
    out = np.empty(len(points))
    for start in range(0, len(points), KDE_CHUNK):
        block = z_points[start : start + KDE_CHUNK]
        sq = (block**2).sum(axis=1)[:, None] + data_sq[None, :] - 2.0 * block @ z_data.T
        out[start : start + KDE_CHUNK] = logsumexp(-0.5 * np.maximum(sq, 0.0), axis=1)
    log_norm = np.log(n) + 0.5 * d * np.log(2.0 * np.pi) + np.log(np.diag(chol)).sum()
    return out - log_norm


@register_attack(
    "mia_domias",
    artifact="synthetic",
    threat_model=(
        "The attacker holds the synthetic table and a population sample, and calls a record a "
        "member where the synthetic density exceeds the population density (DOMIAS, van "
        "Breugel et al. 2023)."
    ),
)
def mia_domias(ctx: AttackContext) -> dict[str, float | None]:
    """DOMIAS with Gaussian KDEs in a reference-fitted, whitened PCA space: score =
    ``log p_synth(x) - log p_ref(x)`` (see the module docstring for every choice)."""
    encoder, synthetic, members, non_members = encoded_views(ctx)
    reference = encoder.transform(ctx.reference)
    pca_dim = int(ctx.params.get("pca_dim", 10))
    if pca_dim < 1:
        raise UserInputError(f"mia_domias: pca_dim must be >= 1, got {pca_dim}")
    n_components = min(pca_dim, reference.shape[1], len(reference))
    pca = PCA(n_components=n_components, whiten=True, random_state=ctx.seed).fit(reference)
    keep = pca.explained_variance_ratio_ >= MIN_COMPONENT_VARIANCE
    if not keep.any():
        raise UserInputError(
            "mia_domias: the reference population has no spread in the encoded features"
        )

    def project(x: np.ndarray) -> np.ndarray:
        return np.asarray(pca.transform(x), dtype=float)[:, keep]

    targets = project(np.r_[members, non_members])
    score = gaussian_kde_log_density(project(synthetic), targets) - gaussian_kde_log_density(
        project(reference), targets
    )
    n = len(members)
    return membership_summary(score[:n], score[n:])


def _distance_features(synthetic: np.ndarray, records: np.ndarray) -> np.ndarray:
    """Shadow features: log distance to the closest synthetic record and log mean distance to
    the ``SHADOW_K`` closest."""
    d = nearest_distances(synthetic, records, SHADOW_K)
    return np.log(np.c_[d[:, 0], d.mean(axis=1)] + DISTANCE_FLOOR)


@register_attack(
    "mia_shadow",
    artifact="synthetic",
    threat_model=(
        "The attacker holds the synthetic table and a population sample, and trains a "
        "membership classifier on shadow games played against a noisy-copy surrogate "
        "generator fitted on halves of her sample (Stadler et al. 2022 style)."
    ),
)
def mia_shadow(ctx: AttackContext) -> dict[str, float | None]:
    """Shadow-model MIA with a smoothed-bootstrap surrogate generator: score = member
    probability of a logistic regression trained on the shadow games' distance features."""
    encoder, synthetic, members, non_members = encoded_views(ctx)
    reference = encoder.transform(ctx.reference)
    n_shadows = int(ctx.params.get("n_shadows", 4))
    noise = float(ctx.params.get("shadow_noise", 0.1))
    if n_shadows < 1:
        raise UserInputError(f"mia_shadow: n_shadows must be >= 1, got {n_shadows}")
    if noise < 0:
        raise UserInputError(f"mia_shadow: shadow_noise must be >= 0, got {noise}")
    if len(reference) < 4:
        raise UserInputError(
            f"mia_shadow needs at least 4 reference records to split, got {len(reference)}"
        )

    rng = np.random.default_rng(ctx.seed)
    features, labels = [], []
    for _ in range(n_shadows):
        order = rng.permutation(len(reference))
        shadow_in = reference[order[: len(reference) // 2]]
        shadow_out = reference[order[len(reference) // 2 :]]
        rows = rng.integers(0, len(shadow_in), size=len(synthetic))
        surrogate = shadow_in[rows] + rng.normal(scale=noise, size=(len(rows), reference.shape[1]))
        features += [
            _distance_features(surrogate, shadow_in),
            _distance_features(surrogate, shadow_out),
        ]
        labels += [np.ones(len(shadow_in)), np.zeros(len(shadow_out))]

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    classifier.fit(np.concatenate(features), np.concatenate(labels))
    n = len(members)
    target_features = _distance_features(synthetic, np.r_[members, non_members])
    score = classifier.predict_proba(target_features)[:, 1]
    return membership_summary(score[:n], score[n:])
