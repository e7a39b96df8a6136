"""What every privacy attack shares: the threat-model context, the registry and the scoring.

Roles of the real records (all drawn by :func:`build_context`, never by an attack):

* ``members``: records of the real TRAIN split (what the artifact was fitted on): the targets
  whose membership should be hidden.
* ``non_members``: as many records of the held-out real TEST split. The test split is only
  scored here, never used to choose a model, a threshold or a generator (the threshold-free
  metrics below need no choice).
* ``reference``: the attacker's population sample, disjoint from both: the dataset's reference
  split when ``dataset.reference_fraction > 0``, else the validation split. DOMIAS, shadow models
  and the attribute attack's training data come from here, as in the published threat models.

An attack receives the released artifact: ``synthetic`` (a table in the original schema) or
``predict_proba`` (a released classifier: DP-LR, FedAvg, or the TSTR model trained on the
synthetic table), and returns flat numbers; the runner prefixes ``attack/<name>/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from dpshare.evaluation.features import TableEncoder, sample_rows
from dpshare.evaluation.metrics import MetricInfo, register_metric
from dpshare.registry import Registry

PredictProba = Callable[[pd.DataFrame], np.ndarray]


@dataclass
class AttackContext:
    """Everything an attacker may use, plus the evaluator's ground truth (members/non-members).

    ``predict_proba`` takes feature columns (no target) and returns class probabilities in the
    order of ``model_classes``.
    """

    members: pd.DataFrame
    non_members: pd.DataFrame
    reference: pd.DataFrame
    target: str
    positive_label: Any
    synthetic: pd.DataFrame | None = None
    predict_proba: PredictProba | None = None
    model_classes: np.ndarray | None = None
    model_label: str = ""  # which model predict_proba is: "released", "tstr_logreg"...
    # The attacker's stand-in for the target model's training procedure (shadow models, LiRA):
    # fit on a table with the target column, return its predict_proba (same class order as
    # ``model_classes``). Documented per method in docs/evaluation.md.
    shadow_factory: Callable[[pd.DataFrame], PredictProba] | None = None
    # The whole real train split (``members`` is a sample of it): only for evaluator-side
    # counts over every training record (exact/near copies), never handed to an attacker.
    train: pd.DataFrame | None = None
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)  # eval.attack_params.<name>

    def encoder(self, *, drop: tuple[str, ...] = ()) -> TableEncoder:
        """A feature encoder fitted on the attacker's reference population."""
        return TableEncoder(drop=drop).fit(self.reference)


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack. ``artifact`` says what it needs: a synthetic table, a released
    model, or either. ``threat_model`` is one or two sentences for reports and docs."""

    name: str
    run: Callable[[AttackContext], dict[str, float | None]]
    artifact: Literal["synthetic", "model"]
    threat_model: str


ATTACKS: Registry[AttackSpec] = Registry("attack")


def register_attack(
    name: str, *, artifact: Literal["synthetic", "model"], threat_model: str
) -> Callable[[Callable[[AttackContext], dict[str, float | None]]], Any]:
    """Decorator: ``@register_attack("mia_dcr", artifact="synthetic", threat_model="...")``."""

    def decorator(fn: Callable[[AttackContext], dict[str, float | None]]) -> Any:
        ATTACKS.register(name)(AttackSpec(name, fn, artifact, threat_model))
        return fn

    return decorator


def matched_targets(
    train: pd.DataFrame, test: pd.DataFrame, target: str, n_targets: int, *, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` member and ``n`` non-member targets with identical label counts.

    Independent draws give the two sides different label mixes by chance (30 +- 5 positives per
    1,000 at a 3% rate), and with a rare label that alone moves an attribute attack's success
    rate by a few points, which the main/control comparison would misread as a leak. Each label
    gets its share of ``n`` in the train split (largest remainder), capped by what both splits
    hold, and a shortfall goes to the labels with room left; so ``n`` targets per side unless the
    splits' label counts make that impossible (then fewer, still equal on both sides). Without a
    label column the draws are plain random samples.
    """
    n = int(min(n_targets, len(train), len(test)))
    if target not in train.columns or target not in test.columns or n <= 0:
        return sample_rows(train, n, seed=seed), sample_rows(test, n, seed=seed + 1)
    shares = train[target].value_counts(normalize=True, dropna=False)
    groups = {
        label: (
            train[train[target] == label] if label == label else train[train[target].isna()],
            test[test[target] == label] if label == label else test[test[target].isna()],
        )
        for label in shares.index
    }
    capacity = pd.Series({label: min(len(a), len(b)) for label, (a, b) in groups.items()})
    raw = shares * n
    counts = np.minimum(np.floor(raw).astype(int), capacity)
    # the rounding remainder, and what a label short in one split cannot take, goes to the
    # labels with room left, largest remainder / share first
    order = list((raw - np.floor(raw)).sort_values(ascending=False).index)
    order += [label for label in shares.index if label not in order]
    while counts.sum() < n and (capacity > counts).any():
        for label in order:
            if counts.sum() >= n:
                break
            if counts[label] < capacity[label]:
                counts[label] += 1
    members, non_members = [], []
    for i, (label, count) in enumerate(counts.items()):
        if count == 0:
            continue
        in_train, in_test = groups[label]
        members.append(in_train.sample(n=int(count), random_state=seed + 2 * i))
        non_members.append(in_test.sample(n=int(count), random_state=seed + 2 * i + 1))
    if not members:
        return sample_rows(train, n, seed=seed), sample_rows(test, n, seed=seed + 1)
    # shuffle so no attack sees the rows grouped by label
    rng = np.random.default_rng(seed)
    m, u = pd.concat(members), pd.concat(non_members)
    return m.iloc[rng.permutation(len(m))], u.iloc[rng.permutation(len(u))]


def build_context(
    *,
    train: pd.DataFrame,
    test: pd.DataFrame,
    reference: pd.DataFrame,
    target: str,
    positive_label: Any,
    n_targets: int,
    seed: int,
    synthetic: pd.DataFrame | None = None,
    predict_proba: PredictProba | None = None,
    model_classes: np.ndarray | None = None,
) -> AttackContext:
    """Draw ``n`` members from ``train`` and ``n`` non-members from ``test``, with
    ``n = min(n_targets, len(train), len(test))`` so every membership game is balanced, and
    with the same count of each ``target`` label on both sides (:func:`matched_targets`)."""
    members, non_members = matched_targets(train, test, target, n_targets, seed=seed)
    return AttackContext(
        members=members,
        non_members=non_members,
        reference=reference,
        target=target,
        positive_label=positive_label,
        synthetic=synthetic,
        predict_proba=predict_proba,
        model_classes=model_classes,
        seed=seed,
        train=train,
    )


def membership_summary(
    member_scores: np.ndarray, non_member_scores: np.ndarray
) -> dict[str, float | None]:
    """Threshold-free scores of a membership game (higher score = "member").

    * ``auc``: ROC-AUC (0.5 = chance).
    * ``tpr_at_fpr_1pct`` / ``tpr_at_fpr_0p1pct``: true-positive rate at 1% / 0.1% false-positive
      rate (Carlini et al. 2022, "Membership inference attacks from first principles"), read off
      the ROC curve; ``None`` when there are fewer non-members than that rate resolves
      (100 / 1000).
    * ``success_rate``: accuracy on the balanced game when the attacker calls the top half of
      the scores "member" (no threshold fitted on the evaluation records; 0.5 = chance). This is
      the "attack success rate" column of Deng 2026, made precise.
    * ``advantage``: max over thresholds of TPR - FPR (Yeom et al. 2018), an optimistic bound.
    """
    m = np.asarray(member_scores, dtype=float)
    u = np.asarray(non_member_scores, dtype=float)
    if len(m) == 0 or len(u) == 0:
        raise ValueError("a membership game needs at least one member and one non-member")
    if not (np.isfinite(m).all() and np.isfinite(u).all()):
        raise ValueError("attack scores hold NaN or infinity")
    y = np.r_[np.ones(len(m)), np.zeros(len(u))]
    s = np.r_[m, u]
    fpr, tpr, _ = roc_curve(y, s)

    def tpr_at(rate: float) -> float | None:
        if len(u) < round(1.0 / rate):
            return None
        return float(np.max(tpr[fpr <= rate + 1e-12]))

    # the top half by score is called "member"; records tied at the cut are called "member"
    # with equal probability (expected accuracy), so a constant attack scores exactly 0.5
    k = len(s) // 2
    cut = np.sort(s)[len(s) - k] if k else np.inf
    above = s > cut
    tied = s == cut
    p_call = above.astype(float)
    if tied.any():
        p_call[tied] = (k - above.sum()) / tied.sum()
    success = (p_call[: len(m)].sum() + (1.0 - p_call[len(m) :]).sum()) / len(s)
    return {
        "auc": float(roc_auc_score(y, s)),
        "tpr_at_fpr_1pct": tpr_at(0.01),
        "tpr_at_fpr_0p1pct": tpr_at(0.001),
        "success_rate": float(success),
        "advantage": float(np.max(tpr - fpr)),
        "n_members": float(len(m)),
        "n_non_members": float(len(u)),
    }


for _info in (
    MetricInfo(
        "attack/auc",
        "attack",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "membership inference: ROC-AUC of the attack score, members vs non-members (0.5 = chance)",
    ),
    MetricInfo(
        "attack/tpr_at_fpr_1pct",
        "attack",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "membership inference: true-positive rate at 1% false-positive rate "
        "(Carlini et al. 2022; 0.01 = chance; None with fewer than 100 non-members)",
    ),
    MetricInfo(
        "attack/tpr_at_fpr_0p1pct",
        "attack",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "membership inference: true-positive rate at 0.1% false-positive rate "
        "(0.001 = chance; None with fewer than 1000 non-members)",
    ),
    MetricInfo(
        "attack/success_rate",
        "attack",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "share of correct guesses: membership games call the top half of scores 'member' "
        "(balanced, 0.5 = chance); attribute inference counts correct secrets",
    ),
    MetricInfo(
        "attack/advantage",
        "attack",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "membership inference: max over thresholds of TPR - FPR (Yeom et al. 2018; an "
        "optimistic bound, 0 = chance)",
    ),
    MetricInfo(
        "attack/n_members",
        "attack",
        "none",
        "records",
        None,
        "membership inference: member records (real TRAIN) scored",
    ),
    MetricInfo(
        "attack/model_attacked",
        "attack",
        "none",
        "name",
        None,
        "which model the model attacks queried: 'released' (DP-LR, FedAvg) or "
        "'tstr_<downstream model>' (trained on the synthetic table)",
    ),
    MetricInfo(
        "attack/reference_split",
        "attack",
        "none",
        "name",
        None,
        "the attacker's population sample: the 'reference' split (dataset.reference_fraction "
        "> 0) or, without one, the 'validation' split",
    ),
    MetricInfo(
        "attack/skipped",
        "attack",
        "none",
        "names",
        None,
        "configured attacks that do not apply to this artifact (comma-separated)",
    ),
    MetricInfo(
        "attack/n_non_members",
        "attack",
        "none",
        "records",
        None,
        "membership inference: non-member records (held-out real TEST) scored",
    ),
):
    register_metric(_info)
