"""Summaries over seeds and the fidelity/attack table rebuilt from run records."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpshare.reporting.stats import summarize
from dpshare.reporting.summary import RunRecord, evaluation_table, write_comparison


def test_t_interval_matches_the_textbook_value() -> None:
    # 3 seeds, mean 0.2, sd 0.1: half-width t_{0.975, 2} * 0.1 / sqrt(3) = 4.3027 * 0.057735
    summary = summarize([0.1, 0.2, 0.3])
    assert summary.mean == pytest.approx(0.2)
    assert summary.sd == pytest.approx(0.1)
    assert summary.ci == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    assert summary.low < 0.2 < summary.high
    assert summary.text() == "0.200 ± 0.248"
    # a wider level gives a wider interval
    assert summarize([0.1, 0.2, 0.3], level=0.99).ci > summary.ci


def test_summaries_of_degenerate_inputs() -> None:
    one = summarize([0.7])
    assert one.mean == 0.7 and math.isnan(one.ci) and one.text() == "0.700"
    none = summarize([None, float("nan")])
    assert none.n == 0 and none.text() == "n/a"
    missing = summarize([0.5, None, 0.7])  # a run that did not report the metric is left out
    assert missing.n == 2 and missing.mean == pytest.approx(0.6)
    assert summarize([1.0, float("inf")]).text() == "inf"
    with pytest.raises(ValueError, match="level"):
        summarize([1.0, 2.0], level=1.5)


def _record(tmp: Path, method: str, seed: int, metrics: dict[str, float | None]) -> RunRecord:
    cfg = {
        "dataset": {"name": "bank_sim"},
        "method": {"name": method},
        "privacy": {"name": "fixed", "target_epsilon": 1.0},
        "seed": seed,
    }
    base = {"privacy/epsilon_spent": 0.99, "utility/downstream_auc": 0.6 + 0.01 * seed}
    return RunRecord(tmp / f"{method}-{seed}", cfg, {**base, **metrics}, {}, {})


def test_evaluation_table_groups_seeds_and_skips_absent_metrics(tmp_path: Path) -> None:
    runs = [
        _record(tmp_path, "standard_gan", s, {"attack/mia_dcr/auc": auc, "fidelity/fd_raw": fd})
        for s, (auc, fd) in enumerate([(0.50, 2.0), (0.52, 3.0), (0.54, 4.0)])
    ] + [_record(tmp_path, "dp_lr", 0, {"attack/mia_lira/auc": 0.51})]
    table = evaluation_table(runs)
    gan = table[table["method"] == "standard_gan"].iloc[0]
    assert gan["seeds"] == 3
    assert gan["attack/mia_dcr/auc"] == pytest.approx(0.52)
    assert gan["attack/mia_dcr/auc_ci95"] == pytest.approx(summarize([0.5, 0.52, 0.54]).ci)
    assert gan["fidelity/fd_raw"] == pytest.approx(3.0)
    assert np.isnan(gan["attack/mia_lira/auc"])  # not reported by these runs
    lr = table[table["method"] == "dp_lr"].iloc[0]
    assert lr["attack/mia_lira/auc"] == pytest.approx(0.51) and np.isnan(lr["fidelity/fd_raw"])
    assert "attack/aia/risk" not in table.columns  # no run reported it

    paths = write_comparison(runs, tmp_path / "out", title="t")
    assert {p.name for p in paths} == {
        "comparison.md",
        "comparison.csv",
        "evaluation.md",
        "evaluation.csv",
    }
    text = (tmp_path / "out" / "evaluation.md").read_text(encoding="utf-8")
    assert "| attack/mia_dcr/auc ↓ | 0.520 ± 0.050 | n/a |" in text
    assert "| fidelity/fd_raw ↓ | 3.000 ± 2.484 | n/a |" in text
    comparison = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert {"auc", "auc_sd", "auc_ci95"} <= set(comparison.columns)


def test_no_evaluation_table_without_fidelity_or_attack_metrics(tmp_path: Path) -> None:
    runs = [_record(tmp_path, "dp_lr", s, {}) for s in (0, 1)]
    assert evaluation_table(runs).empty
    paths = write_comparison(runs, tmp_path / "out", title="t")
    assert {p.name for p in paths} == {"comparison.md", "comparison.csv"}


def test_methods_at_one_epsilon_are_drawn_side_by_side() -> None:
    """The AUC-vs-epsilon figures spread the lines around each epsilon (a log axis), so that
    several methods at epsilon 1 do not draw their intervals on top of each other."""
    from dpshare.report import _dodge

    for n in (1, 2, 5, 8):
        factors = [_dodge(i, n) for i in range(n)]
        assert len(set(factors)) == n  # every line its own x
        assert math.prod(factors) == pytest.approx(1.0, rel=1e-12)  # centred on the epsilon
        assert min(factors) > 1 / 1.2 and max(factors) < 1.2  # still read as that epsilon
    assert _dodge(0, 1) == 1.0
