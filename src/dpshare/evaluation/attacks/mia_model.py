"""Membership inference against a released classifier (DP-LR, FedAvg, or the TSTR model).

Threat model (both attacks): black-box query access to the released model's class
probabilities (``ctx.predict_proba``), the attacker's population sample ``ctx.reference``
(disjoint from the members and non-members scored), and, for LiRA, knowledge of the training
procedure, approximated by ``ctx.shadow_factory``. For DP-LR and FedAvg that stand-in is a
non-private scikit-learn model of the same family; for the TSTR model it is the same downstream
model class trained directly on real reference records, not through a generator. In the offline
setting every shadow model is OUT for every target, so no target record ever reaches a shadow;
the stand-in is an approximation of the true procedure (it leaves out DP noise, federated
averaging or the generator). Like every empirical attack, its success shows how much leaks at
least (a better-informed attacker may do better), never an upper bound on the leakage.

* ``mia_loss`` (Yeom et al. 2018, "Privacy risk in machine learning"): score = minus the
  cross-entropy loss of the true label, ``log p_y`` with ``p_y`` clipped to ``[1e-12, 1]``.
  Members tend to have lower loss than non-members when the model overfits.
* ``mia_lira``: the OFFLINE likelihood-ratio attack of Carlini et al. 2022 ("Membership
  inference attacks from first principles", Sec. 4, offline variant). ``n_shadows`` shadow
  models (``eval.attack_params.mia_lira.n_shadows``, default 8) are fitted by
  ``ctx.shadow_factory`` on random subsets of the reference population (half of it by default,
  ``shadow_train_size`` to override, e.g. with the target's training-set size when the attacker
  knows it); every target is OUT of every shadow's training data. For each target the
  logit-scaled confidence ``phi = log(p_y / (1 - p_y))`` (``p_y`` clipped to
  ``[1e-6, 1 - 1e-6]``) under every shadow gives a Gaussian ``N(mu_out, sigma_out^2)``;
  ``sigma_out`` is one global value by default (``global_variance: true``, the paper's choice
  for few shadow models): the pooled standard deviation of every target's shadow ``phi`` around
  its own mean (the reference code takes the standard deviation of all shadow scores; the pooled
  one leaves out the spread between targets' means). With ``global_variance: false`` each target
  gets its own standard deviation. Score = ``log Phi((phi_target - mu_out) / sigma_out)`` with
  ``phi_target`` the confidence under the released model (``scipy.stats.norm.logcdf``): the
  one-sided test that the released model is more confident on the target than models that did
  not train on it (higher = member). The paper also averages over input augmentations; tabular
  records have none.

Both return :func:`~dpshare.evaluation.attacks.base.membership_summary` (``auc``,
``tpr_at_fpr_1pct``, ``tpr_at_fpr_0p1pct``, ``success_rate``, ``advantage``, ``n_members``,
``n_non_members``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from dpshare.errors import UserInputError
from dpshare.evaluation.attacks.base import (
    AttackContext,
    PredictProba,
    membership_summary,
    register_attack,
)

LOSS_PROBA_FLOOR = 1e-12  # mia_loss: log(p_y) stays finite
LIRA_PROBA_CLIP = 1e-6  # mia_lira: p_y clipped to [1e-6, 1 - 1e-6] before the logit (Carlini 2022)
MIN_SIGMA = 1e-6  # mia_lira: floor on sigma_out so identical shadow scores stay finite


def require_model(ctx: AttackContext) -> PredictProba:
    """The released model's ``predict_proba``; a ``ValueError`` when the artifact is not a model."""
    if ctx.predict_proba is None:
        raise ValueError(
            "this attack needs a released model (ctx.predict_proba); it is None for a "
            "synthetic-data artifact"
        )
    return ctx.predict_proba


def require_reference(ctx: AttackContext) -> pd.DataFrame:
    """The attacker's population sample; a :class:`UserInputError` when it is empty."""
    if len(ctx.reference) == 0:
        raise UserInputError(
            "the attacker's reference population is empty: set dataset.reference_fraction > 0 "
            "or keep a validation split"
        )
    return ctx.reference


def model_classes(ctx: AttackContext, n_columns: int) -> np.ndarray:
    """Class labels in ``predict_proba`` column order: ``ctx.model_classes``, else the sorted
    labels of the reference population (scikit-learn's ``classes_`` convention)."""
    if ctx.model_classes is not None:
        classes = np.asarray(ctx.model_classes)
    else:
        classes = np.sort(ctx.reference[ctx.target].dropna().unique())
    if len(classes) != n_columns:
        raise ValueError(
            f"predict_proba returned {n_columns} column(s) but there are {len(classes)} "
            f"class label(s) {list(classes)}; pass model_classes in predict_proba's column order"
        )
    return classes


def class_probabilities(
    ctx: AttackContext, predict_proba: PredictProba, features: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """``predict_proba(features)`` as a checked float array (rows x classes) and the class
    labels of its columns."""
    proba = np.asarray(predict_proba(features), dtype=float)
    if proba.ndim != 2 or proba.shape[0] != len(features):
        raise ValueError(
            f"predict_proba returned shape {proba.shape} for {len(features)} record(s); "
            "expected (records, classes)"
        )
    if not np.isfinite(proba).all():
        raise ValueError("predict_proba returned NaN or infinity")
    return proba, model_classes(ctx, proba.shape[1])


def true_label_probability(
    ctx: AttackContext, predict_proba: PredictProba, frame: pd.DataFrame
) -> np.ndarray:
    """``p_y``: the probability a model gives each record's own label (0 for a label the model
    does not know). ``frame`` holds the target column; the model sees the other columns."""
    if ctx.target not in frame.columns:
        raise UserInputError(f"the attack's records lack the target column {ctx.target!r}")
    proba, classes = class_probabilities(ctx, predict_proba, frame.drop(columns=[ctx.target]))
    column = pd.Index(classes).get_indexer(frame[ctx.target].to_numpy())
    rows = np.arange(len(frame))
    return np.where(column >= 0, proba[rows, np.maximum(column, 0)], 0.0)


def _logit_confidence(
    ctx: AttackContext, predict_proba: PredictProba, frame: pd.DataFrame
) -> np.ndarray:
    """Carlini et al.'s logit scaling ``log(p_y / (1 - p_y))`` of the true-label probability."""
    p = np.clip(
        true_label_probability(ctx, predict_proba, frame), LIRA_PROBA_CLIP, 1 - LIRA_PROBA_CLIP
    )
    return np.log(p) - np.log1p(-p)


@register_attack(
    "mia_loss",
    artifact="model",
    threat_model=(
        "Black-box query access to the released model's class probabilities; the attacker "
        "scores a candidate record by the model's loss on its true label (Yeom et al. 2018)."
    ),
)
def mia_loss(ctx: AttackContext) -> dict[str, float | None]:
    """Loss-threshold membership inference: score = ``log p_y`` (minus the cross-entropy)."""
    predict_proba = require_model(ctx)

    def score(frame: pd.DataFrame) -> np.ndarray:
        p = true_label_probability(ctx, predict_proba, frame)
        return np.log(np.clip(p, LOSS_PROBA_FLOOR, 1.0))

    return membership_summary(score(ctx.members), score(ctx.non_members))


@register_attack(
    "mia_lira",
    artifact="model",
    threat_model=(
        "Black-box query access to the released model's class probabilities, a population "
        "sample disjoint from the training data, and the training procedure approximated by "
        "shadow models (offline LiRA, Carlini et al. 2022)."
    ),
)
def mia_lira(ctx: AttackContext) -> dict[str, float | None]:
    """Offline LiRA: the released model's confidence on a target, compared with the Gaussian
    of shadow models that never saw it (see the module docstring for every choice)."""
    predict_proba = require_model(ctx)
    reference = require_reference(ctx)
    if ctx.shadow_factory is None:
        raise ValueError(
            "mia_lira needs ctx.shadow_factory (the attacker's stand-in for the target model's "
            "training procedure); none was given for this artifact"
        )
    n_shadows = int(ctx.params.get("n_shadows", 8))
    if n_shadows < 2:
        raise UserInputError(f"mia_lira needs n_shadows >= 2 to estimate a spread, got {n_shadows}")
    global_variance = bool(ctx.params.get("global_variance", True))
    shadow_size = ctx.params.get("shadow_train_size")
    shadow_size = len(reference) // 2 if shadow_size is None else int(shadow_size)
    if not 1 <= shadow_size <= len(reference):
        raise UserInputError(
            f"mia_lira: shadow_train_size must be in [1, {len(reference)}] (the reference "
            f"population's size), got {shadow_size}"
        )

    targets = pd.concat([ctx.members, ctx.non_members], ignore_index=True)
    phi_target = _logit_confidence(ctx, predict_proba, targets)
    rng = np.random.default_rng(ctx.seed)
    phi_out = np.empty((n_shadows, len(targets)))
    for s in range(n_shadows):
        rows = rng.choice(len(reference), size=shadow_size, replace=False)
        shadow = ctx.shadow_factory(reference.iloc[np.sort(rows)])
        phi_out[s] = _logit_confidence(ctx, shadow, targets)

    mu_out = phi_out.mean(axis=0)
    if global_variance:
        residuals = phi_out - mu_out
        pooled = np.sqrt((residuals**2).sum() / (residuals.size - len(targets)))
        sigma_out = np.full(len(targets), pooled)
    else:
        sigma_out = phi_out.std(axis=0, ddof=1)
    sigma_out = np.maximum(sigma_out, MIN_SIGMA)
    score = norm.logcdf(phi_target, loc=mu_out, scale=sigma_out)
    n = len(ctx.members)
    return membership_summary(score[:n], score[n:])
