"""Black-box model inversion (after Fredrikson et al. 2015): reconstruct class-representative
records from a released model and check whether they resemble its training records.

Threat model: black-box query access to the released model's class probabilities (DP-LR,
FedAvg, or the TSTR model trained on a synthetic table) and a population sample
``ctx.reference``. Fredrikson et al. descend the gradient of the model's confidence; released
scikit-learn models expose no gradients, so the attacker runs a seeded black-box search instead:

1. for each class ``c``, start from ``n_candidates`` (default 200) records of the reference
   population (features only);
2. for ``n_rounds`` (default 20) rounds, mutate every candidate in the ORIGINAL column space
   (each column with probability ``mutation_rate``, default ``1 / n_columns``, and at least one
   column): numeric columns get Gaussian noise of ``step_scale`` (default 0.5) reference
   standard deviations, clipped to the reference range and rounded for integer columns (a
   missing value stays missing); other columns (categorical, boolean, datetime) are resampled
   from the reference frequencies. A mutation is kept when the model's probability of ``c``
   rises (a (1+1) hill climb per candidate);
3. the ``top_k`` (default 10) candidates with the highest probability of ``c`` are the
   reconstructions of class ``c``.

Reconstruction accuracy (this module's definition): for one reconstruction ``r`` of class ``c``
and a set ``T`` of real records of class ``c``, the share of attributes of ``r`` (every column
but the class column) that match the best-matching record of ``T``:
``max_{t in T} mean_j match(r_j, t_j)``, where a numeric attribute matches within
``match_tolerance`` (default 0.1) reference standard deviations and any other attribute matches
when equal (missing matches missing). Averaged over all reconstructions of all classes:

* ``reconstruction_accuracy``: ``T`` = the member targets of class ``c`` (real TRAIN records);
* ``reconstruction_accuracy_control``: ``T`` = as many non-member targets of class ``c``
  (held-out real TEST records). Both sets are cut to the same size per class, because the best
  match over a larger set is better by chance alone; a class missing from either set is skipped.
  Reconstructions close to typical population records match both; a model that leaks its
  training records gives main > control;
* ``reconstruction_advantage``: main - control (0 = no evidence of leaked training records);
* ``mean_target_confidence``: the model's mean probability of ``c`` over the reconstructions.

Fredrikson et al. report 0.28 on MIMIC without a precise definition of accuracy; our figure is
an attribute-level match rate against the closest real record, so the two are not comparable
in value, and ours is read against its non-member control, not on its own.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from dpshare.errors import UserInputError
from dpshare.evaluation.attacks.base import AttackContext, register_attack
from dpshare.evaluation.attacks.mia_model import (
    class_probabilities,
    require_model,
    require_reference,
)
from dpshare.evaluation.metrics import MetricInfo, register_metric


def _is_numeric(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


class _SearchSpace:
    """How each feature column is mutated and matched, learned from the reference population."""

    def __init__(self, reference: pd.DataFrame) -> None:
        self.columns = list(reference.columns)
        self.dtypes = reference.dtypes
        self.numeric: dict[str, tuple[float, float, float, bool]] = {}  # std, min, max, integer
        self.categories: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # values, frequencies
        for col in self.columns:
            values = reference[col]
            if _is_numeric(values):
                as_float = values.astype(float)
                std = float(as_float.std()) if as_float.notna().sum() > 1 else 0.0
                self.numeric[col] = (
                    std if np.isfinite(std) else 0.0,
                    float(as_float.min()),
                    float(as_float.max()),
                    bool(pd.api.types.is_integer_dtype(values)),
                )
            else:
                counts = values.value_counts(dropna=False, normalize=True)
                self.categories[col] = (counts.index.to_numpy(dtype=object), counts.to_numpy())

    def arrays(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return {
            col: frame[col].to_numpy(dtype=float if col in self.numeric else object, copy=True)
            for col in self.columns
        }

    def frame(self, arrays: dict[str, np.ndarray]) -> pd.DataFrame:
        """The candidates as a table in the reference schema (what ``predict_proba`` reads)."""
        out = pd.DataFrame(arrays, columns=self.columns)
        for col in self.columns:  # every value came from the reference column or its range
            out[col] = out[col].astype(self.dtypes[col])
        return out

    def mutate(
        self, arrays: dict[str, np.ndarray], *, rate: float, step: float, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        n = len(next(iter(arrays.values())))
        mask = rng.random((n, len(self.columns))) < rate
        mask[np.arange(n), rng.integers(len(self.columns), size=n)] = True  # >= 1 column each
        out = {}
        for j, col in enumerate(self.columns):
            values = arrays[col].copy()
            rows = mask[:, j]
            if col in self.numeric:
                std, low, high, integer = self.numeric[col]
                noise = rng.normal(0.0, step * std, size=int(rows.sum()))
                moved = np.clip(values[rows] + noise, low, high)
                values[rows] = np.round(moved) if integer else moved
            else:
                choices, freq = self.categories[col]
                values[rows] = choices[rng.choice(len(choices), size=int(rows.sum()), p=freq)]
            out[col] = values
        return out

    def match_share(
        self, recon: dict[str, np.ndarray], real: pd.DataFrame, *, tolerance: float
    ) -> np.ndarray:
        """For each reconstruction, the share of attributes matching its best-matching real
        record (the module docstring's reconstruction accuracy)."""
        n_recon = len(next(iter(recon.values())))
        matches = np.zeros((n_recon, len(real)))
        for col in self.columns:
            r = recon[col]
            if col in self.numeric:
                t = real[col].to_numpy(dtype=float)
                with np.errstate(invalid="ignore"):
                    close = np.abs(r[:, None] - t[None, :]) <= tolerance * self.numeric[col][0]
                both_missing = np.isnan(r)[:, None] & np.isnan(t)[None, :]
            else:
                codes, _ = pd.factorize(
                    np.concatenate([r, real[col].to_numpy(dtype=object)]), use_na_sentinel=True
                )
                r_code, t_code = codes[:n_recon, None], codes[None, n_recon:]
                close = (r_code == t_code) & (r_code >= 0)
                both_missing = (r_code < 0) & (t_code < 0)
            matches += close | both_missing
        return (matches / len(self.columns)).max(axis=1)


def _hill_climb(
    space: _SearchSpace,
    start: pd.DataFrame,
    confidence: Callable[[pd.DataFrame], np.ndarray],
    *,
    n_rounds: int,
    rate: float,
    step: float,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A (1+1) hill climb per candidate on ``confidence(frame) -> p_c``."""
    current = space.arrays(start)
    score = confidence(space.frame(current))
    for _ in range(n_rounds):
        proposal = space.mutate(current, rate=rate, step=step, rng=rng)
        new_score = confidence(space.frame(proposal))
        better = new_score > score
        for col in space.columns:
            current[col] = np.where(better, proposal[col], current[col])
        score = np.where(better, new_score, score)
    return current, score


@register_attack(
    "inversion",
    artifact="model",
    threat_model=(
        "Black-box query access to the released model's class probabilities and a population "
        "sample; the attacker searches for inputs the model is most confident about per class "
        "and compares them with training records (after Fredrikson et al. 2015)."
    ),
)
def inversion(ctx: AttackContext) -> dict[str, float | None]:
    """Black-box model inversion scored by reconstruction accuracy on members against
    non-members (see the module docstring for the search and the definition)."""
    predict_proba = require_model(ctx)
    reference = require_reference(ctx)
    n_candidates = int(ctx.params.get("n_candidates", 200))
    n_rounds = int(ctx.params.get("n_rounds", 20))
    top_k = int(ctx.params.get("top_k", 10))
    step = float(ctx.params.get("step_scale", 0.5))
    tolerance = float(ctx.params.get("match_tolerance", 0.1))
    if n_candidates < 1 or top_k < 1 or n_rounds < 0:
        raise UserInputError(
            "inversion needs n_candidates >= 1, top_k >= 1 and n_rounds >= 0, got "
            f"{n_candidates}, {top_k}, {n_rounds}"
        )
    features = [c for c in reference.columns if c != ctx.target]
    if not features:
        raise UserInputError("inversion needs at least one feature column besides the target")
    rate = float(ctx.params.get("mutation_rate", 1.0 / len(features)))
    space = _SearchSpace(reference[features])
    rng = np.random.default_rng(ctx.seed)

    start_rows = rng.choice(
        len(reference), size=n_candidates, replace=n_candidates > len(reference)
    )
    start = reference[features].iloc[start_rows].reset_index(drop=True)
    classes = class_probabilities(ctx, predict_proba, start.iloc[:1])[1]

    main: list[np.ndarray] = []
    control: list[np.ndarray] = []
    confidences: list[np.ndarray] = []
    for j, label in enumerate(classes):
        members = ctx.members[ctx.members[ctx.target] == label]
        non_members = ctx.non_members[ctx.non_members[ctx.target] == label]
        n_real = min(len(members), len(non_members))
        if n_real == 0:
            continue
        if len(members) > n_real:
            members = members.sample(n=n_real, random_state=ctx.seed)
        if len(non_members) > n_real:
            non_members = non_members.sample(n=n_real, random_state=ctx.seed)

        def confidence(frame: pd.DataFrame, column: int = j) -> np.ndarray:
            return class_probabilities(ctx, predict_proba, frame)[0][:, column]

        found, score = _hill_climb(
            space, start, confidence, n_rounds=n_rounds, rate=rate, step=step, rng=rng
        )
        best = np.argsort(-score, kind="stable")[: min(top_k, n_candidates)]
        recon = {col: values[best] for col, values in found.items()}
        main.append(space.match_share(recon, members, tolerance=tolerance))
        control.append(space.match_share(recon, non_members, tolerance=tolerance))
        confidences.append(score[best])

    if not main:
        return {
            "reconstruction_accuracy": None,
            "reconstruction_accuracy_control": None,
            "reconstruction_advantage": None,
            "mean_target_confidence": None,
        }
    accuracy = float(np.concatenate(main).mean())
    accuracy_control = float(np.concatenate(control).mean())
    return {
        "reconstruction_accuracy": accuracy,
        "reconstruction_accuracy_control": accuracy_control,
        "reconstruction_advantage": accuracy - accuracy_control,
        "mean_target_confidence": float(np.concatenate(confidences).mean()),
    }


for _info in (
    MetricInfo(
        "attack/reconstruction_accuracy",
        "attack",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "model inversion: share of attributes of a class-c reconstruction matching its closest "
        "member record of class c, averaged over reconstructions",
    ),
    MetricInfo(
        "attack/reconstruction_accuracy_control",
        "attack",
        "none",
        "fraction",
        (0.0, 1.0),
        "model inversion: the same match share against as many non-member records of class c",
    ),
    MetricInfo(
        "attack/reconstruction_advantage",
        "attack",
        "minimize",
        "fraction",
        (-1.0, 1.0),
        "model inversion: reconstruction accuracy on members minus on non-members "
        "(0 = reconstructions resemble training records no more than held-out ones)",
    ),
    MetricInfo(
        "attack/mean_target_confidence",
        "attack",
        "none",
        "probability",
        (0.0, 1.0),
        "model inversion: the released model's mean probability of class c on its "
        "class-c reconstructions",
    ),
):
    register_metric(_info)
