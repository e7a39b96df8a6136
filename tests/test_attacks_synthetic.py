"""Membership inference on synthetic tables (DCR, DOMIAS, shadow) and the copy metrics, on
generators with a known answer: one that copies its training data (every attack wins, DCR 0)
and one that draws fresh records from the population (every attack at chance)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dpshare.errors import UserInputError
from dpshare.evaluation import attacks
from dpshare.evaluation.attacks.base import AttackContext, build_context
from dpshare.evaluation.attacks.copies import exact_copy_share
from dpshare.evaluation.metrics import metric_info

TARGET = "label"
N_TRAIN = 1000  # members = the whole train split (n_targets >= N_TRAIN = len(test))
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
    sizes = {"train": N_TRAIN, "test": N_TRAIN, "reference": 2000, "independent": N_TRAIN}
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


def test_members_are_the_whole_train_split(splits: dict[str, pd.DataFrame]) -> None:
    ctx = _context(splits, splits["train"])
    assert len(ctx.members) == len(ctx.non_members) == N_TRAIN
    assert ctx.members.index.equals(splits["train"].index)


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
