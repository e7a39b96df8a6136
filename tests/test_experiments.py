"""Paper experiments: every config composes with its sweep, and the report builder turns a fixture
set of run records into every table, flagging missing and failed points as not run."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir

from conftest import CONF_DIR, PYTHON, REPO_ROOT, subprocess_env
from dpshare.config import register_configs
from dpshare.errors import UserInputError
from dpshare.report import (
    build,
    deduplicate,
    expected_grid,
    load_records,
    main,
    plain_config,
    protocol,
    settings_notes,
    tao_report,
)
from dpshare.reproduce import EXPERIMENTS, medical_sweep, sweeps

PAPER_EXPERIMENTS = sorted(
    p.stem for p in (CONF_DIR / "experiment").glob("*.yaml") if p.stem.startswith(("deng", "tao"))
)
REQUIRED = {
    "deng2026_medical",
    "deng2026_financial",
    "deng2026_privacy_attacks",
    "deng2026_noise_stages",
    "tao2020_epsilon",
    "tao2020_sigma",
    "tao2020_delta",
    "tao2020_sigma_delta",
    "tao2020_sigma_epsilon",
    "tao2020_delta_epsilon",
    "tao2020_samples",
}


def _compose(experiment: str, scale: str) -> Any:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            "config",
            overrides=[f"experiment={experiment}", f"scale={scale}", "run_dir=unused"],
            return_hydra_config=True,
        )


# beyond the papers' tables: our DP GAN on MNIST against epsilon and its non-private line, the
# bank_sim AUC-against-epsilon figure, and the two tuning sweeps (validation split only)
EXTRA = {
    "mnist_dpgan_epsilon",
    "mnist_dpgan_nonprivate",
    "bank_sim_epsilon",
    "tune_dpgan_mnist",
    "tune_bank_sim",
    # the peer comparison (docs/peers.md)
    "peers_bank_sim",
    "peers_bank_marketing",
    "peers_diabetes130",
}
SCALES = ("smoke", "cpu", "paper")


def test_every_table_and_figure_has_an_experiment() -> None:
    assert set(PAPER_EXPERIMENTS) == REQUIRED
    assert set(EXPERIMENTS) <= REQUIRED | EXTRA
    assert EXTRA - {"tune_dpgan_mnist", "tune_bank_sim"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", sorted(REQUIRED | EXTRA))
def test_experiment_composes_with_its_sweep_at_every_scale(experiment: str) -> None:
    for scale in SCALES:
        cfg = _compose(experiment, scale)
        assert cfg.experiment_name == experiment
        params = {str(k): str(v) for k, v in cfg.hydra.sweeper.params.items()}
        seeds = params["seed"].split(",")
        if not experiment.startswith("tune_"):
            assert len(seeds) >= (1 if scale == "smoke" else 3)
        assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
        if experiment.startswith("tao2020"):
            assert cfg.dataset.name == "mnist" and cfg.method.name == "dp_wgan"
            assert cfg.method.loss == "wasserstein" and cfg.method.weight_clip == 0.01
            assert cfg.privacy.max_grad_norm == 5.0
            assert cfg.privacy.training_length == "budget"
            assert cfg.privacy.budget_max_epochs == {"smoke": 1, "cpu": 20, "paper": 100}[scale]
            assert cfg.scale.max_records is None or scale == "smoke"  # all 60,000 images
            if scale == "cpu":
                assert cfg.method.critic == "mlp" and cfg.method.batch_size == 1024
        if experiment.startswith("tune_"):
            assert cfg.eval.score_on == "validation" and not cfg.eval.attacks


@pytest.mark.parametrize(
    ("experiment", "key"),
    [
        ("tao2020_epsilon", "privacy.target_epsilon"),
        ("tao2020_delta", "privacy.target_delta"),
        ("tao2020_sigma_epsilon", "privacy.target_epsilon"),
        ("tao2020_sigma_delta", "privacy.target_delta"),
        ("tao2020_delta_epsilon", "privacy.target_epsilon"),
        ("tao2020_delta_epsilon", "privacy.target_delta"),
    ],
)
def test_cpu_snapshots_cover_the_paper_grid(experiment: str, key: str) -> None:
    """At scale=cpu the epsilon / delta points are budget snapshots of one trajectory per sigma
    and seed: together with the run's own target they are exactly the paper's grid, and the run
    targets the point that allows the most steps."""
    assert sorted(expected_grid(experiment, "cpu")[key]) == sorted(
        expected_grid(experiment, "paper")[key]
    )
    cfg = _compose(experiment, "cpu")
    own = str(cfg.hydra.sweeper.params[key]).strip("'")
    top = max(expected_grid(experiment, "paper")[key])
    assert float(own) == top


def test_paper_grids_match_the_papers() -> None:
    sigma = expected_grid("tao2020_sigma", "paper")["privacy.noise_multiplier"]
    assert sigma == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert expected_grid("tao2020_epsilon", "paper")["privacy.target_epsilon"] == [0.5, 2, 4, 8]
    assert expected_grid("tao2020_delta", "smoke")["privacy.target_delta"] == [
        1e-2,
        1e-3,
        1e-4,
        1e-5,
    ]
    grid = expected_grid("tao2020_sigma_epsilon", "paper")
    assert grid["privacy.noise_multiplier"] == [2, 4, 6, 8]
    assert grid["privacy.target_epsilon"] == [0.5, 1, 2, 4]
    assert expected_grid("tao2020_sigma", "cpu")["privacy.noise_multiplier"] == [1, 3, 5, 7, 9]
    methods = expected_grid("deng2026_financial", "smoke")["method"]
    # multidisc_gan_mix: the framework, released plain and with a class mix (a release variant)
    assert {"multidisc_gan_mix", "standard_gan", "dp_lr", "fedavg"} <= set(methods)


def _has_snapshot(cfg: Any, epsilon: float, delta: float) -> bool:
    return any(
        math.isclose(s["target_epsilon"], epsilon) and math.isclose(s["target_delta"], delta)
        for s in cfg.privacy.snapshots
    )


def test_cpu_tao_figures_share_trajectories_of_one_protocol() -> None:
    """At scale=cpu Fig. 3 trains the odd sigmas only, Figs. 5 and 6 no sigma 6, and make
    reproduce skips Fig. 4: those points are budget snapshots of Fig. 5's and Fig. 7's
    trajectories, which must be the same protocol (else the report refuses them and the figures
    lose points) and must hold a snapshot at each borrowed point."""
    own = _compose("tao2020_sigma", "cpu")
    fig5 = _compose("tao2020_sigma_delta", "cpu")
    fig7 = _compose("tao2020_delta_epsilon", "cpu")
    assert _has_snapshot(fig5, 0.5, 1e-5)
    assert fig7.privacy.noise_multiplier == 6
    for delta in (1e-5, 1e-4, 1e-3):  # Fig. 4 and Fig. 5's sigma 6 row; 1e-2 is the target
        assert _has_snapshot(fig7, 0.5, delta)
    for epsilon in (0.5, 1, 2, 4):  # Fig. 6's sigma 6 row at delta 1e-5
        assert _has_snapshot(fig7, epsilon, 1e-5)
    sigma = set(expected_grid("tao2020_sigma", "cpu")["privacy.noise_multiplier"])
    for other in ("tao2020_sigma_delta", "tao2020_sigma_epsilon"):
        assert 6 not in expected_grid(other, "cpu")["privacy.noise_multiplier"]
    sigma |= set(expected_grid("tao2020_sigma_delta", "cpu")["privacy.noise_multiplier"]) | {6}
    assert sigma == set(expected_grid("tao2020_sigma", "paper")["privacy.noise_multiplier"])
    assert "tao2020_delta" not in sweeps("cpu") and "tao2020_delta" in sweeps("paper")
    assert protocol(plain_config(own)) == protocol(plain_config(fig7))

    assert protocol(plain_config(own)) == protocol(plain_config(fig5))
    fig5.method.batch_size = 512  # a change to Fig. 5's protocol alone breaks the borrowing
    assert protocol(plain_config(own)) != protocol(plain_config(fig5))


def test_a_figure_borrows_only_same_protocol_points_it_lacks(tmp_path: Path) -> None:
    """Fig. 3 takes a sigma it has no record of from tao2020_sigma_delta, but only at its fixed
    (epsilon, delta), only for the same protocol, and never over its own record of a seed."""
    fig3 = {"target_epsilon": 0.5, "target_delta": 1e-5}

    def rec(name: str, experiment: str, sigma: float, acc: float, **privacy: Any) -> Path:
        return _record(
            tmp_path,
            name,
            experiment=experiment,
            dataset="mnist",
            method="dp_wgan",
            seed=0,
            privacy={**fig3, "noise_multiplier": sigma, **privacy},
            metrics={"utility/downstream_accuracy": acc, "privacy/epsilon_spent": 0.5},
        )

    rec("own6", "tao2020_sigma", 6.0, 0.30)
    rec("fig5-6", "tao2020_sigma_delta", 6.0, 0.90)  # the same seed: the own record wins
    rec("fig5-4", "tao2020_sigma_delta", 4.0, 0.40)  # borrowed
    rec("fig5-2", "tao2020_sigma_delta", 2.0, 0.50, target_delta=1e-2)  # another delta
    other = rec("fig6-8", "tao2020_sigma_epsilon", 8.0, 0.60)
    config = yaml.safe_load((other / ".hydra" / "config.yaml").read_text(encoding="utf-8"))
    config["privacy"]["max_grad_norm"] = 1.0  # another protocol
    (other / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")

    out = tao_report(deduplicate(load_records(tmp_path)), "smoke", tmp_path / "results")
    table = next(t for t in out.tables if t.id == "fig3_sigma").frame.set_index("sigma")
    assert table.loc[6.0, "ours accuracy (%)"] == "30.00"
    assert table.loc[6.0, "records of"] == "tao2020_sigma"
    assert table.loc[4.0, "ours accuracy (%)"] == "40.00"
    assert table.loc[4.0, "records of"] == "tao2020_sigma_delta"
    assert table.loc[2.0, "status"] == table.loc[8.0, "status"] == "not run"


def test_medical_scenario_needs_mimic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIMIC3_ROOT", raising=False)
    args, note = medical_sweep()
    assert "dataset=diabetes130" in args and "experiment_name=deng2026_medical_standin" in args
    assert "method=multidisc_gan,standard_gan,dp_lr,fedavg_random_clients" in args
    assert "not run on MIMIC-III" in note
    monkeypatch.setenv("MIMIC3_ROOT", "/data/mimic")
    args, note = medical_sweep()
    assert args == ["experiment=deng2026_medical"] and "MIMIC-III" in note


# ------------------------------------------------------------------- report on fixture records


def _record(
    root: Path,
    name: str,
    *,
    experiment: str,
    dataset: str,
    method: str,
    seed: int,
    metrics: dict[str, Any] | None,
    privacy: dict[str, Any],
    error: str | None = None,
    class_mix: dict[int, float] | None = None,
    started: str = "2026-11-23T10:00:00",
) -> Path:
    run_dir = root / experiment / name
    (run_dir / ".hydra").mkdir(parents=True)
    config = {
        "experiment_name": experiment,
        "seed": seed,
        "dataset": {"name": dataset},
        "method": {"name": method, "batch_size": 64, "class_mix": class_mix},
        "privacy": {"name": "fixed", "max_grad_norm": 5.0, **privacy},
        "scale": {"name": "smoke"},
    }
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    run = {"status": "complete" if metrics is not None else "failed", "started_at": started}
    if error:
        run["error"] = error
    (run_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run_dir


def _tao_fixture(root: Path) -> None:
    # Fig. 2: epsilon 0.5, 2, 4 measured (two seeds each), 8 missing; accuracy rises
    for i, eps in enumerate((0.5, 2.0, 4.0)):
        for seed in (0, 1):
            _record(
                root,
                f"e{eps}-{seed}",
                experiment="tao2020_epsilon",
                dataset="mnist",
                method="dp_wgan",
                seed=seed,
                privacy={"target_epsilon": eps, "target_delta": 1e-5, "noise_multiplier": 6.0},
                metrics={
                    "utility/downstream_accuracy": 0.2 + 0.1 * i + 0.01 * seed,
                    "privacy/epsilon_spent": eps * 0.99,
                    "privacy/noisy_steps": 100 * (i + 1),
                    "privacy/budget_steps": 100 * (i + 1),
                    "privacy/budget_capped": 0,
                    "data/n_train": 4599,
                },
            )
    # an older, worse duplicate of one point: the newest complete record wins
    _record(
        root,
        "e0.5-0-old",
        experiment="tao2020_epsilon",
        dataset="mnist",
        method="dp_wgan",
        seed=0,
        privacy={"target_epsilon": 0.5, "target_delta": 1e-5, "noise_multiplier": 6.0},
        metrics={"utility/downstream_accuracy": 0.99},
        started="2026-11-01T10:00:00",
    )
    # Fig. 3: sigma 2 failed (not one step fits), sigma 6 measured
    _record(
        root,
        "s2",
        experiment="tao2020_sigma",
        dataset="mnist",
        method="dp_wgan",
        seed=0,
        privacy={"target_epsilon": 0.5, "target_delta": 1e-5, "noise_multiplier": 2.0},
        metrics=None,
        error="UserInputError: privacy.noise_multiplier=2.0 is too small to take even one step",
    )
    _record(
        root,
        "s6",
        experiment="tao2020_sigma",
        dataset="mnist",
        method="dp_wgan",
        seed=0,
        privacy={"target_epsilon": 0.5, "target_delta": 1e-5, "noise_multiplier": 6.0},
        metrics={"utility/downstream_accuracy": 0.3},
    )


def _deng_fixture(root: Path) -> None:
    scores = {"multidisc_gan": 0.70, "standard_gan": 0.60, "dp_lr": 0.65, "fedavg": 0.62}
    for method, auc in scores.items():
        for seed in (0, 1, 2):
            metrics = {
                "utility/downstream_auc": auc + 0.01 * seed,
                "utility/downstream_accuracy": 0.9,
                "utility/downstream_minority_recall": 0.1,
                "utility/trtr_auc": 0.88,
                "utility/trtr_accuracy": 0.97,
                "privacy/epsilon_spent": 0.999,
            }
            if method in ("multidisc_gan", "standard_gan"):
                metrics |= {
                    "attack/mia_dcr/auc": 0.5 if method == "multidisc_gan" else 0.55,
                    "attack/mia_dcr/success_rate": 0.5,
                    "attack/aia/success_rate": 0.95,
                    "attack/aia/risk": 0.0,
                    "fidelity/fd_encoder": 6.5 if method == "multidisc_gan" else 1.8,
                }
            else:
                metrics |= {"attack/mia_lira/success_rate": 0.51}
            _record(
                root,
                f"{method}-{seed}",
                experiment="deng2026_financial",
                dataset="bank_sim",
                method=method,
                seed=seed,
                privacy={"target_epsilon": 1.0, "target_delta": 1e-5},
                metrics=metrics,
            )


def test_report_builds_every_table_from_records(tmp_path: Path) -> None:
    records_root, results = tmp_path / "outputs", tmp_path / "results"
    _tao_fixture(records_root)
    _deng_fixture(records_root)
    recs = deduplicate(load_records(records_root))
    assert len(recs) == 4 * 3 + 3 * 2 + 2  # the old duplicate is gone
    index = build(records_root, results, scales=("smoke",))
    text = index.read_text(encoding="utf-8")

    tao = results / "tao2020" / "smoke"
    for table in ("fig2_epsilon", "fig3_sigma", "fig4_delta", "fig5_sigma_delta",
                  "fig6_sigma_epsilon", "fig7_delta_epsilon", "claims"):  # fmt: skip
        for suffix in ("md", "csv", "tex"):
            assert (tao / f"{table}.{suffix}").exists(), (table, suffix)
        assert f"tao2020/smoke/{table}.md" in text or table == "claims"
    fig2 = pd.read_csv(tao / "fig2_epsilon.csv")
    assert list(fig2["epsilon"]) == [0.5, 2.0, 4.0, 8.0]
    row = fig2.set_index("epsilon").loc[0.5]
    assert row["paper accuracy (%)"] == pytest.approx(89.43)
    assert row["ours accuracy (%)"].startswith("20.50 ± ")  # seeds 0.20, 0.21, not the old 0.99
    assert row["difference (points)"] == pytest.approx(20.5 - 89.43, abs=0.01)
    assert fig2.set_index("epsilon").loc[8.0, "status"] == "not run"
    fig3 = pd.read_csv(tao / "fig3_sigma.csv").set_index("sigma")
    assert fig3.loc[2.0, "status"].startswith("not run: UserInputError: privacy.noise_multiplier")
    assert fig3.loc[6.0, "status"] == "ok"
    assert (tao / "figures" / "fig2_epsilon.png").stat().st_size > 1000
    tex = (tao / "fig2_epsilon.tex").read_text(encoding="utf-8")
    assert "\\begin{tabular}" in tex and "$\\pm$" in tex

    claims = pd.read_csv(tao / "claims.csv").set_index("id")
    assert claims.loc["tao_fig2_rises", "status"] == "holds"  # 0.205 < 0.305 < 0.405
    assert claims.loc["tao_fig2_level", "status"] == "does not hold"
    assert claims.loc["tao_fig4_falls_with_delta", "status"] == "not run"

    deng = results / "deng2026" / "smoke"
    fin = pd.read_csv(deng / "deng_financial.csv").set_index("method")
    fin_md = (deng / "deng_financial.md").read_text(encoding="utf-8")
    # the paper-vs-ours table under it is a Markdown table of its own, not a bullet
    assert "\n\n| quantity | method | paper | ours |" in fin_md and "- | quantity" not in fin_md
    assert {"proposed", "standard_gan", "dp_lr", "fl", "real data (TRTR)"} <= set(fin.index)
    assert fin.loc["proposed", "AUC"].startswith("0.710 ± ")
    table4 = pd.read_csv(deng / "deng_table4_privacy_attacks.csv")
    financial = table4[table4["scenario"].str.startswith("bank_sim")].set_index("method")
    assert financial.loc["proposed", "MIA success rate (%) paper"] == "10.8"
    assert financial.loc["standard_gan", "MIA success rate (%) paper"] == "(Fill)"
    assert financial.loc["proposed", "MIA success rate (%) ours"].startswith("50.00")
    assert financial.loc["dp_lr", "AIA success rate (%) ours"] == "n/a (no synthetic table)"
    assert financial.loc["proposed", "Model inversion accuracy paper"] == "-"
    medical = table4[~table4["scenario"].str.startswith("bank_sim")]
    assert (medical["MIA success rate (%) ours"] == "not run").all()
    assert "STAND-IN" in medical["scenario"].iloc[0]
    deng_claims = pd.read_csv(deng / "claims.csv").set_index("id")
    assert deng_claims.loc["financial_auc_gan", "status"] == "holds"
    assert deng_claims.loc["financial_auc_fl", "status"] == "holds"
    assert deng_claims.loc["financial_minority", "status"] == "not run"
    assert deng_claims.loc["medical_fd", "status"] == "not run"
    stages = pd.read_csv(deng / "deng_table1_noise_stages.csv")
    assert list(stages["sigma"]) == [4.0, 2.0, 1.0]
    assert "not run on MIMIC-III" in text


def test_report_draws_our_mnist_configuration_and_bank_sim_against_epsilon(
    tmp_path: Path,
) -> None:
    root, results = tmp_path / "outputs", tmp_path / "results"
    for eps, acc in ((1.0, 0.60), (10.0, 0.80)):
        for seed in (0, 1, 2):
            _record(
                root,
                f"ours-{eps}-{seed}",
                experiment="mnist_dpgan_epsilon",
                dataset="mnist",
                method="dp_wgan",
                seed=seed,
                privacy={"target_epsilon": eps, "target_delta": 1e-5},
                metrics={
                    "utility/downstream_accuracy": acc + 0.01 * seed,
                    "utility/trtr_accuracy": 0.98,
                    "privacy/epsilon_spent": eps * 0.999,
                    "privacy/noisy_steps": 2940,
                    "privacy/noise_multiplier_mean": 2.0 / eps,
                },
            )
    for method, auc in (("multidisc_gan", 0.70), ("standard_gan", 0.60)):
        for eps in (1.0, 10.0):
            for seed in (0, 1, 2):
                _record(
                    root,
                    f"{method}-{eps}-{seed}",
                    experiment="deng2026_financial" if eps == 1.0 else "bank_sim_epsilon",
                    dataset="bank_sim",
                    method=method,
                    seed=seed,
                    privacy={"target_epsilon": eps, "target_delta": 1e-5},
                    metrics={
                        "utility/downstream_auc": auc + 0.01 * eps + 0.001 * seed,
                        "utility/trtr_auc": 0.88,
                        "privacy/epsilon_spent": eps * 0.999,
                    },
                )
    build(root, results, scales=("smoke",))
    ours = pd.read_csv(results / "tao2020" / "smoke" / "mnist_dpgan_epsilon.csv")
    row = ours.set_index("epsilon").loc[10.0]
    assert row["ours accuracy (%)"].startswith("81.00 ± ") and row["seeds"] == 3
    assert (results / "tao2020" / "smoke" / "figures" / "mnist_accuracy_vs_epsilon.png").exists()
    bank = pd.read_csv(results / "deng2026" / "smoke" / "bank_sim_auc_vs_epsilon.csv")
    proposed = bank[bank["method"] == "proposed"].set_index("epsilon")
    assert proposed.loc[1.0, "TSTR AUC"].startswith("0.711 ± ")
    assert proposed.loc[10.0, "gap to TRTR"] == pytest.approx(0.88 - 0.801, abs=1e-9)
    figure = results / "deng2026" / "smoke" / "figures" / "bank_sim_auc_vs_epsilon.png"
    assert figure.stat().st_size > 1000


def test_report_on_an_empty_records_dir_marks_everything_not_run(tmp_path: Path) -> None:
    (tmp_path / "outputs").mkdir()
    build(tmp_path / "outputs", tmp_path / "results", scales=("smoke",))
    fig2 = pd.read_csv(tmp_path / "results" / "tao2020" / "smoke" / "fig2_epsilon.csv")
    assert (fig2["status"] == "not run").all() and len(fig2) == 4
    claims = pd.read_csv(tmp_path / "results" / "deng2026" / "smoke" / "claims.csv")
    assert (claims["status"] == "not run").all()


def test_report_cli_refuses_a_missing_records_dir(tmp_path: Path) -> None:
    assert main(["--records", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()


def test_claims_judge_with_intervals_and_call_overlaps_inconclusive() -> None:
    from dpshare.report import Record, compare_claim

    def rec(value: float) -> Record:
        return Record(Path("."), {}, {}, {"m": value})

    spec = {"id": "c", "text": "a beats b", "metric": "m", "better": "higher", "a": "a", "b": "b"}
    # a's mean is higher, but the 95% intervals overlap: the data cannot tell
    close = compare_claim(spec, {"a": [rec(0.6), rec(0.5)], "b": [rec(0.55), rec(0.5)]}, "s")
    assert close.status == "inconclusive" and "overlap" in close.evidence
    apart = {"a": [rec(0.70), rec(0.71), rec(0.72)], "b": [rec(0.60), rec(0.61), rec(0.62)]}
    assert compare_claim(spec, apart, "s").status == "holds"
    spec["better"] = "lower"
    assert compare_claim(spec, apart, "s").status == "does not hold"
    # one seed each: no interval, so no verdict
    one = compare_claim(spec, {"a": [rec(0.6)], "b": [rec(0.5)]}, "s")
    assert one.status == "inconclusive" and "one seed" in one.evidence
    assert compare_claim(spec, {"a": [rec(0.6)]}, "s").status == "not run"
    assert math.isinf(Record(Path("."), {}, {}, {"m": "inf"}).metric("m") or 0)


def test_trend_and_level_claims_need_separated_intervals() -> None:
    from dpshare.report import monotone_claim, near_paper_claim
    from dpshare.reporting.stats import summarize

    spec = {"id": "t", "text": "rises", "direction": "increases"}
    rising = [(x, summarize([0.1 * x, 0.1 * x + 0.01, 0.1 * x - 0.01])) for x in (1, 2, 3, 4)]
    assert monotone_claim(spec, rising, "s").status == "holds"
    falling = [(x, s) for x, (_, s) in zip((1, 2, 3, 4), reversed(rising), strict=True)]
    assert monotone_claim(spec, falling, "s").status == "does not hold"
    # means that happen to rise inside wide, overlapping intervals: inconclusive
    noisy = [(x, summarize([0.5 + 0.01 * x, 0.3, 0.7])) for x in (1, 2, 3, 4)]
    assert monotone_claim(spec, noisy, "s").status == "inconclusive"
    flat_one_seed = [(x, summarize([0.1 * x])) for x in (1, 2, 3)]
    assert monotone_claim(spec, flat_one_seed, "s").status == "inconclusive"
    assert monotone_claim(spec, rising[:2], "s").status == "not run"

    level = {"id": "l", "text": "near", "tolerance": 0.05}
    tight = summarize([0.90, 0.905, 0.91])
    assert near_paper_claim(level, [("p", 0.90, tight)], "s").status == "holds"
    assert near_paper_claim(level, [("p", 0.70, tight)], "s").status == "does not hold"
    wide = summarize([0.80, 0.90, 1.0])  # mean on the paper's value, interval past the tolerance
    assert near_paper_claim(level, [("p", 0.90, wide)], "s").status == "inconclusive"


# --------------------------------------------------------------- every experiment as a multirun

TINY_TABULAR = [
    "scale.max_records=2500",
    "scale.max_epochs=1",
    "eval.fidelity=[prdc]",
    "eval.attacks=[mia_dcr]",
    "eval.attack_targets=200",
    "hydra.launcher.n_jobs=1",
]
TINY_MNIST = [
    "scale.max_records=1500",
    "privacy.budget_max_epochs=1",
    "eval.fidelity=[prdc]",
    "eval.attacks=[mia_dcr]",
    "eval.attack_targets=100",
    "hydra.launcher.n_jobs=1",
]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(REQUIRED))
def test_experiment_runs_as_a_multirun(experiment: str, tmp_path: Path) -> None:
    tiny = TINY_MNIST if experiment.startswith("tao2020") else TINY_TABULAR
    extra = ["dataset=bank_sim"] if experiment == "deng2026_medical" else []
    cmd = [
        PYTHON, "-m", "dpshare.train", "-m", f"experiment={experiment}", "scale=smoke",
        *extra, *tiny, f"hydra.sweep.dir={tmp_path}/sweep",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=1800
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "sweep").glob("*/run.json"))
    grid = expected_grid(experiment, "smoke")
    n_points = math.prod(len(v) for k, v in grid.items() if k != "dataset") if grid else 1
    assert len(runs) == n_points
    done = list((tmp_path / "sweep").glob("*/metrics.json"))
    assert len(done) >= 1


def test_compute_table_sums_sweep_walls_from_the_records_clocks(tmp_path: Path) -> None:
    from dpshare.report import compute_table

    root = tmp_path / "outputs"

    def run(name: str, experiment: str, start: str, end: str, fit: float | None) -> Path:
        metrics = None if fit is None else {"runtime/fit_seconds": fit}
        run_dir = _record(
            root, name, experiment=experiment, dataset="mnist", method="dp_wgan", seed=0,
            metrics=metrics, privacy={}, started=f"2026-12-06T{start}+0000",
        )  # fmt: skip
        data = json.loads((run_dir / "run.json").read_text())
        (run_dir / "run.json").write_text(
            json.dumps(data | {"finished_at": f"2026-12-06T{end}+0000"})
        )
        return run_dir

    # one sweep of two parallel runs (10:00-10:20 and 10:05-10:30: a 30 min span, not 45) ...
    run("2026-12-06_10-00-00/0", "tao2020_epsilon", "10:00:00", "10:20:00", 1200.0)
    run("2026-12-06_10-00-00/1", "tao2020_epsilon", "10:05:00", "10:30:00", 1500.0)
    # ... whose budget snapshot is a record of run 0's training: no extra run, no extra fit
    run("2026-12-06_10-00-00/0/snapshots/eps2", "tao2020_epsilon", "10:00:00", "10:20:00", 1200.0)
    # a second invocation that failed after 6 min: its wall counts, it is not a complete run
    run("2026-12-06_11-00-00/0", "tao2020_epsilon", "11:00:00", "11:06:00", None)
    # the main job, a single run
    run("2026-12-06_09-00-00_x", "bank_sim_standard_gan", "09:00:00", "09:12:00", 700.0)
    table = compute_table(load_records(root), "smoke")
    rows = table.frame.set_index("experiment")
    tao = rows.loc["tao2020_epsilon"]
    assert tao["wall (min)"] == 36.0 and tao["fit, summed over runs (min)"] == 45.0
    assert tao["runs complete"] == 2 and tao["runs failed or incomplete"] == 1
    assert rows.loc["bank_sim_standard_gan", "wall (min)"] == 12.0
    assert rows.loc["tao2020_sigma", "wall (min)"] == "not run"
    assert "Total measured: 48.0 min of wall" in table.notes[1]
    assert "tao2020_sigma" in table.notes[3] and "tao2020_epsilon" not in table.notes[3]
    # one pass counts the record each table uses per point: runs 0 and 1 are the same point
    # (seed 0), so the newer one (25 min) counts, not both; the failed run does not count
    assert tao["one pass: job time (min)"] == 25.0
    assert "One pass of `make reproduce` at this scale: 37.0 min of job time" in table.notes[2]
    assert "about 18.5 min of wall" in table.notes[2]
    assert "48.0 min of wall in the sweeps that `make reproduce` runs" in table.notes[1]
    assert rows.loc["tao2020_delta", "in make reproduce"] == "yes"
    # at cpu scale make reproduce leaves Fig. 4 out (its points are Fig. 7's snapshots): it is
    # neither counted in make reproduce's wall nor listed as a sweep make reproduce lacks
    cpu = compute_table(load_records(root), "cpu")
    cpu_rows = cpu.frame.set_index("experiment")
    assert cpu_rows.loc["tao2020_delta", "in make reproduce"] == (
        "no: its points are tao2020_delta_epsilon's snapshots"
    )
    missing = cpu.notes[3].split(": ", 1)[1].rstrip(".").split(", ")
    assert "tao2020_sigma" in missing and "tao2020_delta" not in missing
    assert "deng2026_medical" in missing
    # the medical sweep on its stand-in data set is what make reproduce runs without MIMIC-III
    run("2026-12-06_12-00-00/0", "deng2026_medical_standin", "12:00:00", "12:10:00", 500.0)
    table = compute_table(load_records(root), "smoke")
    rows = table.frame.set_index("experiment")
    assert rows.loc["deng2026_medical_standin", "in make reproduce"].startswith("yes")
    assert "58.0 min of wall in the sweeps that `make reproduce` runs" in table.notes[1]
    assert "deng2026_medical," not in table.notes[3]
    assert "47.0 min of job time" in table.notes[2]


def test_a_scale_build_keeps_the_other_scales_in_the_index(tmp_path: Path) -> None:
    from dpshare.report import _sections_of_other_scales

    results, records_dir = tmp_path / "results", tmp_path / "outputs"
    records_dir.mkdir()
    results.mkdir()
    (results / "README.md").write_text(
        "# Results\n\nold header\n\n## deng2026, smoke scale\n\n| smoke claim |\n\n"
        "## deng2026, cpu scale\n\n| old cpu claim |\n\n## compute, smoke scale\n\n- total\n"
    )
    build(records_dir, results, scales=("cpu",))  # one build: the wiring
    index = (results / "README.md").read_text()
    lines = index.splitlines()
    assert "## deng2026, cpu scale" in lines and "## compute, cpu scale" in lines
    assert "## Other scales, from an earlier build" in lines
    assert "### deng2026, smoke scale" in lines and "| smoke claim |" in lines
    assert "### compute, smoke scale" in lines and "## deng2026, smoke scale" not in lines
    assert "| old cpu claim |" not in lines and "old header" not in lines  # rebuilt, not kept
    # a second cpu build keeps what the first one kept (nested headings), once
    again = _sections_of_other_scales(results / "README.md", ("cpu",))
    assert again.splitlines().count("### deng2026, smoke scale") == 1 and "| smoke claim |" in again
    assert "### compute, smoke scale" in again and "cpu scale" not in again
    assert _sections_of_other_scales(results / "README.md", ("smoke", "cpu", "paper")) == ""


def test_records_of_an_older_default_are_flagged_where_it_matters(tmp_path: Path) -> None:
    bank = {"name": "bank_sim", "n_banks": 5, "days": 180, "start": "2025-01-01"}
    diabetes = {"name": "diabetes130", "public_domain": {"time_in_hospital": {"bounds": [1, 14]}}}
    # (name, experiment, method option, data set, the run's continuous_scale (None: written
    # before the key existed, so it ran linear), its generator_ema, privacy); the current
    # configuration has log and an EMA of 0.999 for the framework, linear and an EMA of 0.99
    # for the standard GAN (chosen on validation, docs/bank_sim.md)
    runs = [
        ("old", "deng2026_financial", "multidisc_gan_mix", bank, None, 0.999, {}),  # flagged
        ("new", "deng2026_financial", "multidisc_gan_mix", bank, "log", 0.999, {}),
        # written before method.mean_embedding_weight existed (it ran 0): flagged
        ("old_me", "deng2026_financial", "multidisc_gan_mix", bank, "log", 0.999, {}),
        ("std", "deng2026_financial", "standard_gan", bank, None, 0.99, {}),  # as now
        ("std_log", "deng2026_financial", "standard_gan", bank, "auto", 0.99, {}),  # flagged
        # a non-private run fits the transformer without DP, where the scale has no effect...
        ("raw", "deng2026_financial", "multidisc_gan_mix", bank, None, 0.999, {"name": "none"}),
        # ... but it samples from the EMA generator like any other: flagged without one
        (
            "raw_live",
            "deng2026_financial",
            "multidisc_gan_mix",
            bank,
            "log",
            None,
            {"name": "none"},
        ),  # fmt: skip
        # diabetes130 declares no column [0, >= 1000]: linear and auto (DP-LR's scale) are one
        # encoding there
        ("med", "deng2026_medical_standin", "dp_lr", diabetes, None, None, {}),
        # the stand-in sweep is experiment=deng2026_medical renamed: compared with that file
        ("med_live", "deng2026_medical_standin", "multidisc_gan", diabetes, "log", None, {}),
        # a tuning run (scored on validation) tries other settings on purpose: never flagged
        ("tune", "tune_bank_sim_ema", "standard_gan", bank, "auto", None, {}),
        # a method option that no longer exists: nothing to compare, no error
        ("gone", "deng2026_financial", "retired_gan", bank, None, None, {}),
    ]
    for seed, (name, experiment, option, dataset, scale, ema, privacy) in enumerate(runs):
        method = "multidisc_gan" if option.startswith("multidisc") else option
        run_dir = _record(tmp_path, name, experiment=experiment, dataset=dataset["name"],
                          method=method, seed=seed, metrics={"utility/downstream_auc": 0.6},
                          privacy={"target_epsilon": 1.0, **privacy})  # fmt: skip
        path = run_dir / ".hydra" / "config.yaml"
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        config["dataset"] = dataset
        if scale is not None:
            config["method"]["continuous_scale"] = scale
        if ema is not None:
            config["method"]["generator_ema"] = ema
        if method == "multidisc_gan" and name != "old_me":
            # the framework's current release weight; "old_me" was written before the key
            config["method"]["mean_embedding_weight"] = 100.0
        if name == "tune":
            config.setdefault("eval", {})["score_on"] = "validation"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        conf = {
            "deng2026_medical_standin": "deng2026_medical",
            "tune_bank_sim_ema": "tune_bank_sim",
        }
        conf = conf.get(experiment, experiment)
        overrides = [f"method={option}", f"seed={seed}", f"experiment={conf}"]
        overrides += [f"experiment_name={experiment}"] if conf != experiment else []
        (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides), "utf-8")
    notes = settings_notes(load_records(tmp_path), "smoke")
    assert sorted(notes) == ["deng2026_financial", "deng2026_medical_standin"]
    assert notes["deng2026_medical_standin"] == [
        "deng2026_medical_standin: 1 record(s) ran with method.generator_ema=null, the current "
        "configuration of their method has 0.999 (records written before the change; rerun "
        "`make reproduce SCALE=smoke ARGS=--only=deng2026_medical` to refresh them)"
    ]
    assert len(notes["deng2026_financial"]) == 4
    text = "\n".join(notes["deng2026_financial"])
    assert (
        "1 record(s) ran with method.mean_embedding_weight=0.0, the current configuration of "
        "their method has 100.0" in text
    )
    assert (
        "1 record(s) ran with method.continuous_scale=linear, the current configuration of "
        "their method has log" in text
    )
    assert "1 record(s) ran with method.continuous_scale=auto, the current configuration" in text
    assert (
        "1 record(s) ran with method.generator_ema=null, the current configuration of their "
        "method has 0.999" in text
    )
    # the notes reach the Deng section of the index
    index = build(tmp_path, tmp_path / "results", scales=("smoke",)).read_text(encoding="utf-8")
    assert (
        "- note: deng2026_financial: 1 record(s) ran with method.continuous_scale=linear" in index
    )


def test_a_run_without_a_result_says_it_is_running_or_stopped(tmp_path: Path) -> None:
    from dpshare.report import _why_not

    run_dir = _record(
        tmp_path,
        "aim",
        experiment="peers_bank_sim",
        dataset="bank_sim",
        method="aim",
        seed=0,
        metrics=None,
        privacy={"target_epsilon": 1.0},
    )
    run = {"status": "running", "started_at": "2026-12-06T15:50:13+0000"}
    (run_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    (rec,) = load_records(tmp_path)
    assert _why_not([rec]) == (
        "not run: no result (started 2026-12-06T15:50:13+0000; still running, or stopped from "
        "outside)"
    )
    # a run whose process on this host is gone (SIGKILL leaves run.json "running") says so
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = {
        "status": "running",
        "started_at": "2026-12-06T15:50:13+0000",
        "pid": dead.pid,
        "host": platform.node(),
    }
    (run_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    (rec,) = load_records(tmp_path)
    assert _why_not([rec]) == (
        f"not run: stopped from outside (its process {dead.pid} on host {platform.node()} is "
        "gone; started 2026-12-06T15:50:13+0000)"
    )
    # the archive keeps what this host saw, so a rebuild elsewhere says the same
    from dpshare.reporting import archive

    archived = tmp_path.with_name(f"{tmp_path.name}-archive")  # not under the records read here
    assert archive.archive_records([(tmp_path, run_dir)], archived) == 1
    assert archive.archive_records([(tmp_path, run_dir)], archived) == 0  # the same bytes
    copy = archived / run_dir.relative_to(tmp_path) / "run.json"
    assert json.loads(copy.read_text(encoding="utf-8"))["process_gone"] is True
    elsewhere = json.loads(copy.read_text(encoding="utf-8")) | {"host": "another-host"}
    copy.write_text(json.dumps(elsewhere), encoding="utf-8")
    (rec,) = load_records(archived)
    assert _why_not([rec]) == (
        f"not run: stopped from outside (its process {dead.pid} on host another-host is gone; "
        "started 2026-12-06T15:50:13+0000)"
    )
    # ... but not while the process lives, nor for a record made on another host
    for pid, host in ((os.getpid(), platform.node()), (dead.pid, "another-host")):
        run |= {"pid": pid, "host": host}
        (run_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
        (rec,) = load_records(tmp_path)
        assert "still running, or stopped from outside" in _why_not([rec])
    # a run stopped by a signal says so, with its start
    run = {"status": "failed", "error": "SIGTERMException: ", "started_at": "2026-12-07T04:30"}
    (run_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    (rec,) = load_records(tmp_path)
    assert _why_not([rec]) == "not run: stopped from outside (SIGTERM; started 2026-12-07T04:30)"
    # a failed run still gives its error
    run = {"status": "failed", "error": "UserInputError: bins must be >= 2\ntrace"}
    (run_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    (rec,) = load_records(tmp_path)
    assert _why_not([rec]) == "not run: UserInputError: bins must be >= 2"


def test_a_peer_point_never_started_gives_its_documented_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """experiments/peers/not_run.yaml explains the points with no record; a record (here a
    failed one) always wins over the note, and a malformed note is a clear error."""
    from dpshare import report

    notes = tmp_path / "experiments" / "peers"
    notes.mkdir(parents=True)
    entry = {
        "experiment": "peers_bank_sim",
        "scale": "smoke",
        "method": "aim",
        "epsilon": [1, 10],
        "reason": "compute:\n  too slow here",
    }
    (notes / "not_run.yaml").write_text(yaml.safe_dump({"not_run": [entry]}), "utf-8")
    monkeypatch.setattr(report, "EXPERIMENTS_DIR", tmp_path / "experiments")
    records_root = tmp_path / "outputs"
    _record(records_root, "aim10", experiment="peers_bank_sim", dataset="bank_sim",
            method="aim", seed=0, metrics=None, privacy={"target_epsilon": 10.0},
            error="UserInputError: rounds must be >= 1")  # fmt: skip
    out = report.peers_report(load_records(records_root), "smoke", tmp_path / "results")
    peers = {t.id: t for t in out.tables}
    assert any("experiments/peers/not_run.yaml" in n for n in peers["peers_bank_sim"].notes)
    assert not any("not_run.yaml" in n for n in peers["peers_bank_marketing"].notes)
    status = peers["peers_bank_sim"].frame.set_index(["method", "epsilon"])["status"]
    assert status[("aim", 1.0)] == "not run: compute: too slow here"
    assert status[("aim", 10.0)] == "not run: UserInputError: rounds must be >= 1"
    assert status[("mst", 1.0)] == "not run"  # no note, no record
    # the notes are per experiment and scale
    assert report.peer_not_run_reasons("peers_bank_sim", "cpu") == {}
    assert report.peer_not_run_reasons("peers_diabetes130", "smoke") == {}
    for bad in ({"not_run": [entry | {"epsilon": "1"}]}, {"not_run": [{"method": "aim"}]}, [1]):
        (notes / "not_run.yaml").write_text(yaml.safe_dump(bad), "utf-8")
        with pytest.raises(UserInputError, match="not_run.yaml"):
            report.peer_not_run_reasons("peers_bank_sim", "smoke")


def test_the_shipped_peer_notes_are_well_formed_and_name_real_points() -> None:
    from dpshare import report

    for experiment in report.PEER_EXPERIMENTS:
        for scale in report.SCALES:
            reasons = report.peer_not_run_reasons(experiment, scale)
            if not reasons:
                continue
            grid = report.expected_grid(experiment, scale)
            methods = {str(m) for m in grid["method"]}
            targets = {float(e) for e in grid["privacy.target_epsilon"]}
            for (method, eps), reason in reasons.items():
                assert method in methods and eps in targets, (experiment, method, eps)
                assert reason and "\n" not in reason


def _at_scale(root: Path, scale: str) -> None:
    for config in root.rglob("config.yaml"):
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        config.write_text(yaml.safe_dump(data | {"scale": {"name": scale}}), encoding="utf-8")


def test_the_record_archive_rebuilds_the_tables_without_the_outputs(tmp_path: Path) -> None:
    """results/records keeps what the report reads of every cpu/paper record: a clean clone (or
    a machine that lost outputs/) rebuilds the same tables from it alone."""
    outputs, results, archived = tmp_path / "outputs", tmp_path / "results", tmp_path / "archive"
    _deng_fixture(outputs)
    _at_scale(outputs, "cpu")
    _tao_fixture(tmp_path / "smoke")  # smoke records are remade in minutes: never archived
    log = outputs / "deng2026_financial" / "multidisc_gan-0" / "csv" / "metrics.csv"
    log.parent.mkdir()
    steps = [{"epoch": 0, "step": s, "train/d_loss_step": 0.1 * s} for s in range(50)]
    epoch = {"epoch": 0, "step": 49, "train/d_accuracy_fake/statistical_epoch": 0.75}
    pd.DataFrame([*steps, epoch]).to_csv(log, index=False)
    build([outputs, tmp_path / "smoke"], results, scales=("smoke", "cpu"), archive_dir=archived)

    run_files = sorted(p.relative_to(archived) for p in archived.rglob("run.json"))
    assert len(run_files) == 4 * 3 and all(p.parts[0] == "deng2026_financial" for p in run_files)
    trimmed = pd.read_csv(archived / log.relative_to(outputs))
    assert list(trimmed.columns) == ["epoch", "step", "train/d_accuracy_fake/statistical_epoch"]
    assert len(trimmed) == 1  # the per-step rows are not archived, the per-epoch one is

    again = tmp_path / "results_from_archive"
    build(tmp_path / "gone", again, scales=("cpu",), archive_dir=archived)
    table = Path("deng2026") / "cpu" / "deng_financial.csv"
    assert (again / table).read_text() == (results / table).read_text()
    assert "0.710 ± " in (again / table).read_text()  # measured rows, not "not run"
    # outputs and archive together: each run is read once
    both = tmp_path / "results_both"
    build(outputs, both, scales=("cpu",), archive_dir=archived)
    assert (both / table).read_text() == (results / table).read_text()
    compute = pd.read_csv(both / "compute" / "cpu" / "compute_cpu.csv").set_index("experiment")
    assert compute.loc["deng2026_financial", "runs complete"] == 4 * 3


def test_a_reused_copy_counts_once_where_its_source_ran(tmp_path: Path) -> None:
    from dpshare.report import compute_table, load_all

    root, archived = tmp_path / "outputs", tmp_path / "archive"
    source = _record(
        archived, "2026-12-06_10-00-00/0", experiment="tao2020_epsilon", dataset="mnist",
        method="dp_wgan", seed=0, metrics={"runtime/fit_seconds": 600.0}, privacy={},
        started="2026-12-06T10:00:00+0000",
    )  # fmt: skip
    info = json.loads((source / "run.json").read_text()) | {
        "finished_at": "2026-12-06T10:10:00+0000"
    }
    (source / "run.json").write_text(json.dumps(info))
    # a resumed sweep a day later reuses it: same clock, said reused_from, in a new sweep dir
    copy = root / "tao2020_epsilon" / "2026-12-07_09-00-00" / "0"
    (copy / ".hydra").mkdir(parents=True)
    for name in ("metrics.json", ".hydra/config.yaml"):
        (copy / name).write_text((source / name).read_text())
    (copy / "run.json").write_text(json.dumps(info | {"reused_from": str(source)}))
    # the resumed sweep's own new point: 09:00-09:05 on the 7th
    _record(
        root, "2026-12-07_09-00-00/1", experiment="tao2020_epsilon", dataset="mnist",
        method="dp_wgan", seed=1, metrics={"runtime/fit_seconds": 300.0}, privacy={},
        started="2026-12-07T09:00:00+0000",
    )  # fmt: skip
    new = root / "tao2020_epsilon" / "2026-12-07_09-00-00" / "1" / "run.json"
    new.write_text(
        json.dumps(json.loads(new.read_text()) | {"finished_at": "2026-12-07T09:05:00+0000"})
    )

    recs = load_all([root, archived])
    assert len(recs) == 2 and all("reused_from" not in r.run for r in recs)
    rows = compute_table(recs, "smoke").frame.set_index("experiment")
    # 10 min where it ran + 5 min of the resumed sweep, not a 23-hour span
    assert rows.loc["tao2020_epsilon", "wall (min)"] == 15.0
    # only the copy (its source's archive not at hand): it still counts in its source's sweep
    alone = compute_table(load_all([root]), "smoke").frame.set_index("experiment")
    assert alone.loc["tao2020_epsilon", "wall (min)"] == 15.0
    assert alone.loc["tao2020_epsilon", "fit, summed over runs (min)"] == 15.0
    # one pass costs the reused point's own run (10 min) plus the new one (5 min)
    assert rows.loc["tao2020_epsilon", "one pass: job time (min)"] == 15.0
    assert alone.loc["tao2020_epsilon", "one pass: job time (min)"] == 15.0


def test_report_cli_reads_the_archive_and_names_a_missing_records_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dpshare.report import main

    monkeypatch.setenv("DPSHARE_OUTPUT", str(tmp_path / "no_outputs"))
    results = tmp_path / "results"
    assert main(["--out", str(results), "--scale", "cpu"]) == 2  # neither outputs nor archive
    assert "no records directory at" in capsys.readouterr().err
    assert main(["--records", str(tmp_path / "typo"), "--out", str(results)]) == 2
    assert "typo" in capsys.readouterr().err
    _deng_fixture(results / "records")  # a clean clone: the committed archive only
    _at_scale(results / "records", "cpu")
    assert main(["--out", str(results), "--scale", "cpu"]) == 0
    table = (results / "deng2026" / "cpu" / "deng_financial.csv").read_text()
    assert "0.710 ± " in table
    index = (results / "README.md").read_text()
    assert "`results/records`" in index and "12 complete" in index
    assert "no_outputs" not in index  # only the records directories that exist are named


def test_reproduce_resumes_from_the_archive_unless_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dpshare.report
    from dpshare import reproduce as rep

    sweeps_run: list[list[str]] = []
    builds: list[Any] = []
    mains: list[list[str]] = []
    monkeypatch.setattr(
        rep, "main_job", lambda overrides, **kw: mains.append(overrides) or ([], "cpu")
    )
    monkeypatch.setattr(
        rep,
        "run_sweep",
        lambda args, **kw: (
            sweeps_run.append(args) or {"experiment": "x", "exit_code": 0, "seconds": 1}
        ),
    )
    monkeypatch.setattr(
        dpshare.report,
        "build",
        lambda *a, **kw: builds.append(kw | {"args": a}) or tmp_path / "README.md",
    )
    results = tmp_path / "results"
    archive_arg = f"reuse_records=['{(results / 'records').resolve()}']"
    rep.reproduce(["scale=cpu"], results_dir=results, output_root=tmp_path / "o",
                  experiments=("deng2026_financial",))  # fmt: skip
    assert archive_arg in sweeps_run[-1] and builds[-1]["archive_dir"] == results / "records"
    assert builds[-1]["args"][2:] == (("cpu",),)  # this scale's tables only
    assert archive_arg in mains[-1] and "skip_completed=always" in mains[-1]  # one run, reused too
    rep.reproduce(["scale=cpu"], results_dir=results, output_root=tmp_path / "o",
                  experiments=("deng2026_financial",), resume=False)  # fmt: skip
    assert not any(a.startswith(("reuse_records=", "skip_completed=")) for a in sweeps_run[-1])
    assert mains[-1] == ["scale=cpu"]


def test_reproduce_plan_counts_the_archived_jobs_of_each_sweep(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from dpshare.reproduce import plan, sweep_points

    args = ["experiment=deng2026_financial", "experiment_name=deng2026_financial"]
    jobs = sweep_points(args, "smoke")
    methods = {j for job in jobs for j in job if j.startswith("method=")}
    assert len(jobs) == 4 and len(methods) == 4  # 4 methods x the smoke scale's one seed
    assert all("seed=5" in job for job in sweep_points([*args, "seed=5"], "smoke"))
    assert len(sweep_points([*args, "seed=5,6"], "smoke")) == 8  # the command line wins
    # one job's record in the archive, as a run of it writes its config
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*jobs[1], "run_dir=/somewhere/else"])
    run = tmp_path / "records" / "multiruns" / "deng2026_financial" / "2026-12-07_10-00-00" / "1"
    run.mkdir(parents=True)
    (run / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (run / "run.json").write_text(json.dumps({"status": "complete"}))
    (run / "metrics.json").write_text("{}")
    rows = plan("smoke", ("deng2026_financial",), archive_dirs=(tmp_path / "records",))
    assert rows == [
        {"sweep": "bank_sim_standard_gan", "jobs": 1, "archived": 0, "to run": 1},
        {"sweep": "deng2026_financial", "jobs": 4, "archived": 1, "to run": 3},
    ]
    # another setting on the command line is another protocol: nothing archived for it
    other = plan(
        "smoke", ("deng2026_financial",), ("eval.seed=7",), archive_dirs=(tmp_path / "records",)
    )
    assert other[1]["archived"] == 0


def test_a_sweep_read_from_outputs_and_archive_is_one_sweep(tmp_path: Path) -> None:
    """The archive mirrors outputs/: a run in both is the live one (the archived copy may be
    from before it finished), and a sweep split between the two counts its wall once."""
    from dpshare.report import compute_table, load_all

    outputs, archived = tmp_path / "outputs", tmp_path / "archive"

    def run(root: Path, job: str, start: str, end: str | None, fit: float | None) -> None:
        metrics = None if fit is None else {"runtime/fit_seconds": fit}
        run_dir = _record(
            root, f"2026-12-07_10-00-00/{job}", experiment="tao2020_epsilon", dataset="mnist",
            method="dp_wgan", seed=int(job), metrics=metrics, privacy={},
            started=f"2026-12-07T{start}+0000",
        )  # fmt: skip
        info = json.loads((run_dir / "run.json").read_text())
        if end is None:
            info["status"] = "running"
        else:
            info["finished_at"] = f"2026-12-07T{end}+0000"
        (run_dir / "run.json").write_text(json.dumps(info))

    run(archived, "0", "10:00:00", "10:20:00", 1200.0)  # archived, no longer in outputs
    run(archived, "1", "10:00:00", None, None)  # archived while it ran ...
    run(outputs, "1", "10:00:00", "10:30:00", 1800.0)  # ... and finished since
    recs = load_all([outputs, archived])
    assert sorted((r.get("seed"), r.complete) for r in recs) == [(0, True), (1, True)]
    rows = compute_table(recs, "smoke").frame.set_index("experiment")
    assert rows.loc["tao2020_epsilon", "wall (min)"] == 30.0  # one sweep: 10:00-10:30
    assert rows.loc["tao2020_epsilon", "runs failed or incomplete"] == 0


def test_only_takes_experiment_files_and_sweep_names_and_refuses_the_rest() -> None:
    from dpshare.reproduce import MEDICAL_STANDIN, only_experiments

    assert only_experiments("tao2020_sigma,deng2026_financial") == (
        "tao2020_sigma",
        "deng2026_financial",
    )
    # the name --plan prints for the medical sweep stands for its experiment file, once
    assert only_experiments(f"{MEDICAL_STANDIN}, deng2026_medical") == ("deng2026_medical",)
    with pytest.raises(UserInputError, match=r"unknown experiment\(s\) \['tao2020_sigmaa'\]"):
        only_experiments("tao2020_sigmaa,tao2020_sigma")
    with pytest.raises(UserInputError, match="choose from"):
        only_experiments(",")


def test_a_peer_record_at_a_retuned_default_is_flagged(tmp_path: Path) -> None:
    """MST's bins and scale were chosen on validation after records at 32 bins on auto were
    written (docs/peers.md): such a record is flagged, one at the current setting is not."""
    bank = {"name": "bank_sim", "n_banks": 5, "days": 180, "start": "2025-01-01"}
    for seed, (name, bins, scale) in enumerate((("old", 32, "auto"), ("new", 16, "log"))):
        run_dir = _record(tmp_path, name, experiment="peers_bank_sim", dataset="bank_sim",
                          method="mst", seed=seed, metrics={"utility/downstream_auc": 0.6},
                          privacy={"target_epsilon": 1.0})  # fmt: skip
        path = run_dir / ".hydra" / "config.yaml"
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        config["dataset"] = bank
        config["method"] |= {"bins": bins, "continuous_scale": scale}
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        overrides = ["method=mst", f"seed={seed}", "experiment=peers_bank_sim"]
        (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides), "utf-8")
    notes = settings_notes(load_records(tmp_path), "smoke")
    assert notes == {
        "peers_bank_sim": [
            "peers_bank_sim: 1 record(s) ran with method.bins=32, the current configuration of "
            "their method has 16 (records written before the change; rerun `make reproduce "
            "SCALE=smoke ARGS=--only=peers_bank_sim` to refresh them)",
            "peers_bank_sim: 1 record(s) ran with method.continuous_scale=auto, the current "
            "configuration of their method has log (records written before the change; rerun "
            "`make reproduce SCALE=smoke ARGS=--only=peers_bank_sim` to refresh them)",
        ]
    }
