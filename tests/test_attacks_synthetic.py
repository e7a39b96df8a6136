"""Membership inference on synthetic tables (DCR, DOMIAS, shadow) and the copy metrics, on
generators with a known answer: one that copies its training data (every attack wins, DCR 0)
and one that draws fresh records from the population (every attack at chance)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dpshare.errors import UserInputError
from dpshare.evaluation import attacks
from dpshare.evaluation.attacks.base import AttackContext, build_context, matched_targets
from dpshare.evaluation.attacks.copies import exact_copy_share
from dpshare.evaluation.metrics import metric_info

TARGET = "label"
N_TRAIN = 1000  # members: (nearly) the whole train split, label-matched to test records
MIA_ATTACKS = ("mia_dcr", "mia_domias", "mia_shadow")
CHANCE_TOLERANCE = 0.07  # ~5 standard errors of a chance AUC with 1000 + 1000 records


def _population(n: int, rng: np.random.Generator, *, n_numeric: int = 6) -> pd.DataFrame:
    """Correlated Gaussian numeric columns, a 3-level category and a logistic binary label."""
    x = rng.normal(size=(n, n_numeric))
    x[:, 1] = 0.6 * x[:, 0] + 0.8 * x[:, 1]
    category = np.where(
        x[:, 0] + rng.normal(scale=0.5, size=n) > 0.5,
        "high",
        np.where(x[:, 1] < -0.5, "low", "mid"),
    )
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-(x[:, 0] - x[:, 1])))).astype(int)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(n_numeric)])
    frame["category"] = category
    frame[TARGET] = label
    return frame


def _splits(seed: int, *, n_numeric: int = 6) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    # a larger test split, so the label-matched non-members can number N_TRAIN
    sizes = {"train": N_TRAIN, "test": 2 * N_TRAIN, "reference": 2000, "independent": N_TRAIN}
    return {name: _population(n, rng, n_numeric=n_numeric) for name, n in sizes.items()}


def _context(splits: dict[str, pd.DataFrame], synthetic: pd.DataFrame | None) -> AttackContext:
    return build_context(
        train=splits["train"],
        test=splits["test"],
        reference=splits["reference"],
        target=TARGET,
        positive_label=1,
        n_targets=N_TRAIN,
        seed=0,
        synthetic=synthetic,
    )


def _run(name: str, ctx: AttackContext) -> dict[str, float | None]:
    return attacks.ATTACKS.get(name).run(ctx)


@pytest.fixture(scope="module")
def splits() -> dict[str, pd.DataFrame]:
    return _splits(0)


@pytest.fixture(scope="module")
def copy_results(splits: dict[str, pd.DataFrame]) -> dict[str, dict[str, float | None]]:
    """Every attack against a generator whose output IS its training data."""
    ctx = _context(splits, splits["train"].copy())
    return {name: _run(name, ctx) for name in (*MIA_ATTACKS, "copies")}


@pytest.fixture(scope="module")
def independent_results(splits: dict[str, pd.DataFrame]) -> dict[str, dict[str, float | None]]:
    """Every attack against fresh draws from the population (never saw the members)."""
    ctx = _context(splits, splits["independent"])
    return {name: _run(name, ctx) for name in (*MIA_ATTACKS, "copies")}


def test_members_and_non_members_are_balanced_and_label_matched(
    splits: dict[str, pd.DataFrame],
) -> None:
    ctx = _context(splits, splits["train"])
    assert len(ctx.members) == len(ctx.non_members) == N_TRAIN
    assert ctx.members.index.isin(splits["train"].index).all()
    assert ctx.non_members.index.isin(splits["test"].index).all()
    assert ctx.members.index.is_unique and ctx.non_members.index.is_unique
    pd.testing.assert_series_equal(
        ctx.members[TARGET].value_counts().sort_index(),
        ctx.non_members[TARGET].value_counts().sort_index(),
    )
    assert ctx.train is splits["train"]  # copies are counted against the whole train split


def test_matched_targets_follow_the_train_label_shares() -> None:
    """A 3% label keeps its share on both sides instead of varying by chance (30 +- 5 per
    1,000), so an attribute attack's main and control see the same label mix."""
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"x": rng.normal(size=20_000), TARGET: rng.random(20_000) < 0.03})
    test = pd.DataFrame({"x": rng.normal(size=5_000), TARGET: rng.random(5_000) < 0.03})
    for seed in range(3):
        members, non_members = matched_targets(train, test, TARGET, 1000, seed=seed)
        assert len(members) == len(non_members) == 1000
        expected = round(1000 * train[TARGET].mean())
        assert members[TARGET].sum() == non_members[TARGET].sum() == expected
        # shuffled: the positives are not one block at the start or the end
        assert 0 < np.argmax(members[TARGET].to_numpy()) < 1000 - expected
    without_label = matched_targets(train.drop(columns=TARGET), test, TARGET, 50, seed=0)
    assert [len(f) for f in without_label] == [50, 50]


def test_copy_generator_is_caught_by_dcr(copy_results: dict[str, dict[str, float | None]]) -> None:
    dcr = copy_results["mia_dcr"]
    assert dcr["auc"] == pytest.approx(1.0, abs=1e-9)
    assert dcr["tpr_at_fpr_1pct"] == pytest.approx(1.0)
    assert dcr["tpr_at_fpr_0p1pct"] == pytest.approx(1.0)
    assert dcr["success_rate"] == pytest.approx(1.0)
    assert dcr["n_members"] == dcr["n_non_members"] == N_TRAIN


@pytest.mark.parametrize("name", ["mia_domias", "mia_shadow"])
def test_copy_generator_is_caught_by_density_and_shadow_attacks(
    copy_results: dict[str, dict[str, float | None]], name: str
) -> None:
    auc = copy_results[name]["auc"]
    assert auc is not None and auc > 0.8


@pytest.mark.parametrize("name", MIA_ATTACKS)
def test_independent_generator_is_at_chance(
    independent_results: dict[str, dict[str, float | None]], name: str
) -> None:
    result = independent_results[name]
    assert result["auc"] == pytest.approx(0.5, abs=CHANCE_TOLERANCE)
    assert result["success_rate"] == pytest.approx(0.5, abs=CHANCE_TOLERANCE)
    tpr = result["tpr_at_fpr_1pct"]
    assert tpr is not None and tpr < 0.05


def test_copies_of_a_copy_generator(copy_results: dict[str, dict[str, float | None]]) -> None:
    result = copy_results["copies"]
    assert result["exact_copy_share"] == 1.0
    assert result["exact_copy_share_holdout"] == 0.0
    assert result["dcr_median"] == 0.0
    assert result["dcr_holdout_median"] is not None and result["dcr_holdout_median"] > 0.5
    assert result["dcr_share_closer_to_train"] == pytest.approx(1.0)
    assert result["near_copy_share"] == 1.0
    assert result["nndr_median"] == 0.0
    assert result["n_synthetic"] == N_TRAIN


def test_copies_of_an_independent_generator(
    independent_results: dict[str, dict[str, float | None]],
) -> None:
    result = independent_results["copies"]
    assert result["exact_copy_share"] == 0.0
    assert result["dcr_share_closer_to_train"] == pytest.approx(0.5, abs=CHANCE_TOLERANCE)
    dcr, control = result["dcr_median"], result["dcr_holdout_median"]
    assert dcr is not None and control is not None
    assert dcr == pytest.approx(control, rel=0.1)
    # a fresh record is as close to a member as members are to each other: the share below
    # the 5% quantile of member-to-member gaps is about 5%
    assert result["near_copy_share"] == pytest.approx(0.05, abs=0.03)
    nndr = result["nndr_median"]
    assert nndr is not None and 0.5 < nndr < 1.0


def test_half_copy_generator(splits: dict[str, pd.DataFrame]) -> None:
    """500 copied training records + 500 fresh ones: half are exact copies and, of the fresh
    half, about half are closer to the train split: 0.5 + 0.25."""
    synthetic = pd.concat(
        [splits["train"].iloc[:500], splits["independent"].iloc[:500]], ignore_index=True
    )
    result = _run("copies", _context(splits, synthetic))
    assert result["exact_copy_share"] == 0.5
    # the median of 500 zeros and 500 positive distances is half the smallest positive one
    dcr, control = result["dcr_median"], result["dcr_holdout_median"]
    assert dcr is not None and control is not None and dcr < 0.5 * control
    assert result["dcr_share_closer_to_train"] == pytest.approx(0.75, abs=0.05)


def test_max_synthetic_caps_the_records_examined(splits: dict[str, pd.DataFrame]) -> None:
    ctx = _context(splits, splits["train"])
    ctx.params = {"max_synthetic": 200}
    result = _run("copies", ctx)
    assert result["n_synthetic"] == 200
    assert result["exact_copy_share"] == 1.0


def test_exact_copies_are_counted_over_the_whole_release(
    splits: dict[str, pd.DataFrame],
) -> None:
    """A release of 100 copies among 900 fresh records: the distance metrics look at 200
    sampled records, but the exact-copy share is over all 1,000 (a sample could miss them)."""
    synthetic = pd.concat(
        [splits["train"].iloc[:100], splits["independent"].iloc[:900]], ignore_index=True
    )
    ctx = _context(splits, synthetic)
    ctx.params = {"max_synthetic": 200}
    result = _run("copies", ctx)
    assert result["n_synthetic"] == 200
    assert result["exact_copy_share"] == pytest.approx(0.1)


def test_dcr_searches_a_release_larger_than_the_cap(splits: dict[str, pd.DataFrame]) -> None:
    """A copier whose release hides the train split among 24,000 other records (more than the
    20,000 default cap of the density attacks) is still caught by every member."""
    rng = np.random.default_rng(5)
    synthetic = pd.concat([splits["train"], _population(24_000, rng)], ignore_index=True).sample(
        frac=1.0, random_state=0
    )
    result = _run("mia_dcr", _context(splits, synthetic))
    assert result["tpr_at_fpr_1pct"] == pytest.approx(1.0)


def test_domias_is_weak_with_few_continuous_columns() -> None:
    """Documented limitation (module docstring): Scott's-rule KDEs over-smooth an exact
    copier's excess density when only two numeric columns carry it."""
    splits = _splits(0, n_numeric=2)
    auc = _run("mia_domias", _context(splits, splits["train"]))["auc"]
    assert auc is not None and 0.52 < auc < 0.75
    assert _run("mia_dcr", _context(splits, splits["train"]))["auc"] == pytest.approx(1.0)


def test_exact_copy_share_normalises_values() -> None:
    """Floats equal to 1e-9, -0.0 and 0.0, categorical vs object dtype and missing values
    all count as equal; a different value in one column does not."""
    real = pd.DataFrame(
        {"a": [0.0, 1.5, np.nan], "b": pd.Categorical(["x", "y", None]), "c": [1, 2, 3]}
    )
    synthetic = pd.DataFrame(
        {
            "a": [-0.0, 1.5 + 1e-12, np.nan, 1.5],
            "b": ["x", "y", None, "y"],
            "c": [1, 2, 3, 3],
        }
    )
    assert exact_copy_share(synthetic, real) == pytest.approx(0.75)


@pytest.mark.parametrize("name", [*MIA_ATTACKS, "copies"])
def test_every_key_is_a_registered_metric(
    copy_results: dict[str, dict[str, float | None]], name: str
) -> None:
    spec = attacks.ATTACKS.get(name)
    assert spec.artifact == "synthetic"
    assert spec.threat_model
    for key in copy_results[name]:
        info = metric_info(f"attack/{name}/{key}")
        assert info.family == "attack"


def test_directions_of_copy_metrics() -> None:
    assert metric_info("attack/copies/exact_copy_share").direction == "minimize"
    assert metric_info("attack/copies/dcr_median").direction == "maximize"
    assert metric_info("attack/copies/nndr_median").direction == "maximize"
    assert metric_info("attack/copies/dcr_holdout_median").direction == "none"
    assert metric_info("attack/mia_dcr/auc").direction == "minimize"
    assert metric_info("attack/mia_dcr/n_members").direction == "none"


@pytest.mark.parametrize("name", [*MIA_ATTACKS, "copies"])
def test_empty_reference_is_a_user_error(splits: dict[str, pd.DataFrame], name: str) -> None:
    ctx = _context(splits, splits["independent"])
    ctx.reference = splits["reference"].iloc[:0]
    with pytest.raises(UserInputError, match="reference_fraction"):
        _run(name, ctx)


@pytest.mark.parametrize("name", [*MIA_ATTACKS, "copies"])
def test_missing_synthetic_table_is_an_error(splits: dict[str, pd.DataFrame], name: str) -> None:
    with pytest.raises(ValueError, match="synthetic"):
        _run(name, _context(splits, None))


@pytest.mark.parametrize("name", [*MIA_ATTACKS, "copies"])
def test_synthetic_table_lacking_a_column_is_a_user_error(
    splits: dict[str, pd.DataFrame], name: str
) -> None:
    ctx = _context(splits, splits["independent"].drop(columns=["category"]))
    with pytest.raises(UserInputError, match="category"):
        _run(name, ctx)
