"""Exact and near copies of training records in a released synthetic table (DCR, NNDR).

Threat model: anyone holding the synthetic table looks for records that reproduce a real
training record exactly or almost exactly; such a record discloses that person's data outright.
This is not a membership game: the evaluator, who knows the real records, counts copies
against the WHOLE real train split (``ctx.train``). The controlled comparisons use the
equal-size samples ``ctx.members`` (train) and ``ctx.non_members`` (held-out test): a generator
that only learned the population is as close to the held-out records as to the training ones
(the "holdout" comparison of Platzer & Reutterer 2021, "Holdout-based empirical assessment of
mixed-type synthetic data", and of synthcity's DCR metrics).

Exact copies are counted over the whole synthetic table (a hash look-up); the distance metrics
examine at most ``max_synthetic`` synthetic records (default 20 000, drawn with ``ctx.seed``;
``n_synthetic``), an unbiased estimate of the shares. Distances are Euclidean in a
:class:`~dpshare.evaluation.features.TableEncoder` view fitted on the reference population over ALL
columns (standardised numeric, one-hot categories).

Reported (``attack/copies/<key>``):

* ``exact_copy_share``: share of synthetic records equal to some record of the whole train
  split in every original column (floats rounded to 1e-9, missing equals missing): a copier
  scores 1. ``exact_copy_share_members`` / ``exact_copy_share_holdout``: the same against the
  equal-size member and non-member samples; equal values mean the duplicates are common
  population values (e.g. all-categorical records), not memorised ones.
* ``dcr_median``: median distance from a synthetic record to its closest train record (DCR);
  ``dcr_holdout_median``: median distance to the closest non-member (a sample as large as the
  member sample, so it is larger than ``dcr_median`` by set size alone when train is bigger).
* ``dcr_share_closer_to_train``: share of synthetic records closer to their closest member than
  to their closest non-member (equal-size samples), ties counting one half, so a generator that
  never saw the members scores 0.5 in expectation and a copier 1.
* ``near_copy_share``: share of synthetic records whose DCR is below the ``near_quantile``
  (default 0.05) quantile of the train-to-train nearest-neighbour distances (each of at most
  ``max_gap_queries`` (5,000) train records to its closest OTHER train record): closer to a
  training record than real records usually are to each other.
* ``nndr_median``: median nearest-neighbour distance ratio, distance to the closest train
  record over distance to the second closest (in [0, 1]; small = the record singles out one
  training record; 1 when both are 0, a record repeated in the train split).
* ``n_synthetic``: synthetic records examined by the distance metrics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dpshare.errors import UserInputError
from dpshare.evaluation.attacks.base import AttackContext, register_attack
from dpshare.evaluation.attacks.mia_model import require_reference
from dpshare.evaluation.attacks.mia_synthetic import (
    capped_synthetic,
    nearest_distances,
    require_synthetic,
)
from dpshare.evaluation.metrics import MetricInfo, register_metric

EXACT_DECIMALS = 9  # floats are compared after rounding to 1e-9


def row_keys(frame: pd.DataFrame, columns: list[str], numeric: set[str]) -> np.ndarray:
    """One 64-bit hash per row over ``columns``: ``numeric`` columns as floats rounded to 1e-9
    (``-0.0`` folded into ``0.0``), every other column as its string form; missing values hash
    alike."""
    normalised = {}
    for col in columns:
        values = frame[col]
        if col in numeric:
            as_float = pd.to_numeric(values, errors="coerce").astype("float64")
            normalised[col] = as_float.round(EXACT_DECIMALS) + 0.0
        else:
            normalised[col] = values.astype(object).where(values.notna(), "\x00<NA>").astype(str)
    view = pd.DataFrame(normalised, index=frame.index)
    return pd.util.hash_pandas_object(view, index=False).to_numpy()


def exact_copy_share(synthetic: pd.DataFrame, real: pd.DataFrame) -> float:
    """Share of ``synthetic`` rows equal to some ``real`` row in every column of ``real``."""
    columns = list(real.columns)
    numeric = {
        c
        for c in columns
        if pd.api.types.is_numeric_dtype(real[c]) and pd.api.types.is_numeric_dtype(synthetic[c])
    }
    real_keys = row_keys(real, columns, numeric)
    return float(np.isin(row_keys(synthetic, columns, numeric), real_keys).mean())


@register_attack(
    "copies",
    artifact="synthetic",
    threat_model=(
        "Anyone holding the synthetic table finds records that reproduce real training records "
        "exactly or nearly; measured against an equal-size held-out control (DCR, NNDR)."
    ),
)
def copies(ctx: AttackContext) -> dict[str, float | None]:
    """Exact-copy shares, distances to closest record and nearest-neighbour distance ratios of
    the synthetic records, against the members and the held-out control (module docstring)."""
    require_reference(ctx)
    released = require_synthetic(ctx)
    synthetic = capped_synthetic(ctx)
    if len(ctx.members) < 2 or len(ctx.non_members) < 1:
        raise ValueError(
            "copies needs at least 2 member records and 1 non-member record, got "
            f"{len(ctx.members)} and {len(ctx.non_members)}"
        )
    quantile = float(ctx.params.get("near_quantile", 0.05))
    if not 0.0 <= quantile <= 1.0:
        raise UserInputError(f"copies: near_quantile must be in [0, 1], got {quantile}")
    train = ctx.train if ctx.train is not None else ctx.members
    encoder = ctx.encoder()
    x_synthetic = encoder.transform(synthetic)
    x_train = encoder.transform(train)
    x_members = encoder.transform(ctx.members)
    x_holdout = encoder.transform(ctx.non_members)

    to_train = nearest_distances(x_train, x_synthetic, 2)
    dcr = to_train[:, 0]
    dcr_members = nearest_distances(x_members, x_synthetic, 1)[:, 0]
    dcr_holdout = nearest_distances(x_holdout, x_synthetic, 1)[:, 0]
    # each (sampled) train record to its closest OTHER train record: column 0 is the record
    # itself (or a duplicate at distance 0, which gives the same value)
    n_gap = min(len(x_train), int(ctx.params.get("max_gap_queries", 5000)))
    rng = np.random.default_rng(ctx.seed)
    queries = x_train[rng.choice(len(x_train), size=n_gap, replace=False)]
    train_gap = nearest_distances(x_train, queries, 2)[:, 1]
    threshold = float(np.quantile(train_gap, quantile))
    second = to_train[:, 1]
    nndr = np.divide(dcr, second, out=np.ones_like(dcr), where=second > 0)

    columns = list(ctx.members.columns)
    return {
        # exact matches are a hash look-up: counted over the whole released table
        "exact_copy_share": exact_copy_share(released, train[columns]),
        "exact_copy_share_members": exact_copy_share(released, ctx.members),
        "exact_copy_share_holdout": exact_copy_share(released, ctx.non_members[columns]),
        "dcr_median": float(np.median(dcr)),
        "dcr_holdout_median": float(np.median(dcr_holdout)),
        "dcr_share_closer_to_train": float(
            np.mean(dcr_members < dcr_holdout) + 0.5 * np.mean(dcr_members == dcr_holdout)
        ),
        "near_copy_share": float(np.mean(dcr < threshold)),
        "nndr_median": float(np.median(nndr)),
        "n_synthetic": float(len(synthetic)),
    }


for _info in (
    MetricInfo(
        "attack/exact_copy_share",
        "attack",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "copies: share of synthetic records identical to a member (real train) record in every "
        "column (floats rounded to 1e-9)",
    ),
    MetricInfo(
        "attack/exact_copy_share_members",
        "attack",
        "none",
        "fraction",
        (0.0, 1.0),
        "copies: share of synthetic records equal to a record of the member sample "
        "(compare with exact_copy_share_holdout, the same-size control)",
    ),
    MetricInfo(
        "attack/exact_copy_share_holdout",
        "attack",
        "none",
        "fraction",
        (0.0, 1.0),
        "copies: the same share against as many held-out real test records (the control)",
    ),
    MetricInfo(
        "attack/dcr_median",
        "attack",
        "maximize",
        "encoded Euclidean distance",
        (0.0, float("inf")),
        "copies: median distance from a synthetic record to its closest member record (DCR), "
        "in the reference-fitted encoding (standardised numeric, one-hot categories)",
    ),
    MetricInfo(
        "attack/dcr_holdout_median",
        "attack",
        "none",
        "encoded Euclidean distance",
        (0.0, float("inf")),
        "copies: median distance from a synthetic record to its closest held-out record "
        "(the control for dcr_median)",
    ),
    MetricInfo(
        "attack/dcr_share_closer_to_train",
        "attack",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "copies: share of synthetic records closer to a member than to any held-out record "
        "(ties count one half; 0.5 = no more train-like than holdout-like, the ideal)",
    ),
    MetricInfo(
        "attack/near_copy_share",
        "attack",
        "minimize",
        "fraction",
        (0.0, 1.0),
        "copies: share of synthetic records closer to a member than the 5% quantile "
        "(near_quantile) of member-to-member nearest-neighbour distances",
    ),
    MetricInfo(
        "attack/nndr_median",
        "attack",
        "maximize",
        "ratio",
        (0.0, 1.0),
        "copies: median ratio of the distances to the closest and second-closest member "
        "(nearest-neighbour distance ratio; small = singles out one training record)",
    ),
    MetricInfo(
        "attack/n_synthetic",
        "attack",
        "none",
        "records",
        None,
        "synthetic records an attack examined (after the max_synthetic cap)",
    ),
):
    register_metric(_info)
