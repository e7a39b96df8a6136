"""Peer synthesizers (smartnoise-synth behind ``method=mst | aim | dpctgan | patectgan``,
docs/peers.md): each composes; each fits a tiny table into a complete record, in the original
schema, whose ledger holds the library's own (external) release, and which the report and the
release gate read; the gate refuses a run whose library spent more than the target; a missing
extra is one line naming the install command.

The tiny table is 600 simulated bank_sim transactions, five of their columns, through
``dataset=table``; the fits read three of them (a category, a heavy-tailed duration with missing
values, the label). DP-CTGAN and PATE-CTGAN fit it in seconds (the fast suite); MST and AIM
spend 15-25 s each compiling JAX kernels (one per marginal shape), so their fits are in the slow
suite (``make test-slow``). Tests that fit need the extra (``make install-peers``) and are
skipped without it."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from conftest import compose_config
from dpshare.data.bank_sim import bank_names, simulate_bank_transactions
from dpshare.errors import UserInputError
from dpshare.models import METHODS
from dpshare.models.peers import MissingExtraError, PeerEncoding
from dpshare.privacy import BudgetExceededError, LedgerEntry, PrivacyLedger
from dpshare.privacy.accounting import compose_epsilon
from dpshare.privacy.ledger import EXTERNAL, compose_entries
from dpshare.release import CARD_JSON
from dpshare.release import main as release_main
from dpshare.report import deduplicate, load_records, peers_report
from dpshare.reporting import records
from dpshare.train import _privacy_setup, load_data, train

PEERS = ("mst", "aim", "dpctgan", "patectgan")
needs_library = pytest.mark.skipif(
    importlib.util.find_spec("snsynth") is None,
    reason="the peers extra is not installed (make install-peers)",
)

COLUMNS = ["bank", "amount", "hours_since_prev", "txn_count_24h", "is_high_risk"]
DOMAIN = {
    "bank": {"categories": bank_names(5)},
    "amount": {"bounds": [0, 100000]},
    "hours_since_prev": {"bounds": [0, 4320]},
    "txn_count_24h": {"bounds": [0, 50]},
    "is_high_risk": {"categories": [0, 1]},
}
# the fits read three of them (MST and AIM compile a JAX kernel per marginal shape, and every
# column pair adds some): coarse bins, few AIM rounds, one DP-CTGAN epoch, small CTGAN batches
FIT_COLUMNS = ["bank", "hours_since_prev", "is_high_risk"]
FAST = {
    "mst": ["method.bins=4"],
    "aim": ["method.bins=4", "method.rounds=3"],
    "dpctgan": ["method.batch_size=100", "method.epochs=1"],
    "patectgan": ["method.batch_size=100"],
}
EVAL = [
    "eval.models=[logistic_regression]",
    "eval.primary_model=logistic_regression",
    "eval.trtr=false",
    "eval.fidelity=[marginals]",
    "eval.attacks=[copies,mia_dcr]",
    "eval.attack_targets=50",
    "torch_threads=1",
]
TARGET = 1.0


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("peers") / "tiny.csv"
    simulate_bank_transactions(n_transactions=600, seed=3)[COLUMNS].to_csv(path, index=False)
    return path


def _config(
    method: str,
    table: Path,
    run_dir: Path | None,
    *extra: str,
    columns: list[str] = COLUMNS,
) -> DictConfig:
    dropped = [c for c in COLUMNS if c not in columns]
    cfg = compose_config(
        [
            "dataset=table",
            f"dataset.path={table}",
            f"dataset.drop_columns=[{','.join(dropped)}]",
            "dataset.target=is_high_risk",
            "dataset.positive_label=1",
            "scale=smoke",
            "scale.max_epochs=1",
            f"method={method}",
            "privacy=fixed",
            f"privacy.target_epsilon={TARGET}",
            "privacy.target_delta=1e-4",
            *EVAL,
            *FAST[method],
            *extra,
        ],
        run_dir,
    )
    cfg.dataset.public_domain = {k: v for k, v in DOMAIN.items() if k in columns}
    return cfg


def _fit_all(methods: tuple[str, ...], root: Path, table: Path) -> dict[str, Path]:
    runs = {}
    for method in methods:
        runs[method] = root / method
        cfg = _config(
            method, table, runs[method], "experiment_name=peers_bank_sim", columns=FIT_COLUMNS
        )
        train(cfg)
    return runs


@pytest.fixture(scope="module")
def ctgan_runs(tiny_table: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny DP-CTGAN and one tiny PATE-CTGAN run (seconds each), for the module."""
    return _fit_all(("dpctgan", "patectgan"), tmp_path_factory.mktemp("ctgan_runs"), tiny_table)


@pytest.fixture(scope="module")
def marginal_runs(tiny_table: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny MST and one tiny AIM run (JAX compilation: 15-25 s each), for the module."""
    return _fit_all(("mst", "aim"), tmp_path_factory.mktemp("marginal_runs"), tiny_table)


@pytest.fixture
def peer_runs(request: pytest.FixtureRequest) -> dict[str, Path]:
    """The runs a test needs: the CTGAN types always, MST and AIM for the slow tests."""
    runs = dict(request.getfixturevalue("ctgan_runs"))
    if request.node.get_closest_marker("slow") is not None:
        runs.update(request.getfixturevalue("marginal_runs"))
    return runs


# ----------------------------------------------------------------------- configs, no library


@pytest.mark.parametrize("method", PEERS)
def test_every_peer_composes_and_its_schema_catches_typos(method: str) -> None:
    cfg = compose_config([f"method={method}", "privacy=fixed", "scale=smoke"])
    assert cfg.method.name == method
    assert METHODS.get(method).external_accounting
    container = OmegaConf.to_container(cfg.method, resolve=True)
    # the library's encoding unless a validation sweep chose another (docs/peers.md)
    tuned = {"mst": "log"}
    assert isinstance(container, dict)
    assert container["continuous_scale"] == tuned.get(method, "auto")
    if method == "dpctgan":  # the same training length as our GANs at this scale
        assert container["epochs"] == cfg.scale.max_epochs == 20
        assert container["sigma"] is None  # calibrated by the library's own accountant
    with pytest.raises(ConfigCompositionException):
        compose_config([f"method={method}", "method.no_such_key=1"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["privacy=none"], "got privacy=none"),
        (["privacy=pid"], "got privacy=pid"),
        (["privacy=fixed", "privacy.noise_multiplier=2.0"], "privacy.noise_multiplier"),
        (["privacy=fixed", "privacy.target_epsilon=null"], "positive privacy.target_epsilon"),
    ],
)
def test_a_privacy_config_the_library_cannot_honour_is_refused(
    overrides: list[str], message: str
) -> None:
    cfg = compose_config(["method=mst", *overrides])
    with pytest.raises(UserInputError, match=message):
        _privacy_setup(cfg, n_train=1000)


def test_a_peer_gets_the_target_and_no_plan_of_ours() -> None:
    cfg = compose_config(["method=aim", "privacy=fixed", "privacy.target_epsilon=3"])
    ledger, plan = _privacy_setup(cfg, n_train=1000)
    assert plan is None  # no DP-SGD sigma, no class-count or transformer release budgeted
    assert ledger.target_epsilon == 3.0 and ledger.target_delta == 1e-5
    assert ledger.entries == []


@needs_library
def test_aim_rounds_scale_with_the_columns_unless_given(tiny_table: Path) -> None:
    """AIM's compute cap (docs/peers.md): ``rounds_per_column`` x columns when ``rounds`` is
    null; a fixed ``rounds`` wins; below one round per column is refused before any work."""
    from dpshare.data.datamodule import TabularDataModule

    def library_rounds(*overrides: str) -> Any:
        cfg = _config("aim", tiny_table, None, *overrides)
        data, splits = load_data(cfg)
        ledger, plan = _privacy_setup(cfg, n_train=len(splits.train))
        dm = TabularDataModule(data, splits.train, batch_size=1, ledger=ledger, seed=0)
        aim = METHODS.get("aim")(cfg.method, dm, plan=plan)
        assert len(aim.encoding.columns) == len(COLUMNS)
        return aim.library_options()["rounds"]

    assert compose_config(["method=aim"]).method.rounds_per_column == 4  # the chosen default
    assert library_rounds("method.rounds=null") == 4 * len(COLUMNS)
    assert library_rounds("method.rounds=null", "method.rounds_per_column=2.5") == 13  # ceil
    assert library_rounds("method.rounds=7") == 7
    assert library_rounds("method.rounds=null", "method.rounds_per_column=null") is None
    with pytest.raises(UserInputError, match="rounds_per_column=0.5 must be >= 1"):
        library_rounds("method.rounds=null", "method.rounds_per_column=0.5")


def test_a_missing_extra_is_one_line_naming_the_install_command(
    tiny_table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "snsynth", None)  # import snsynth now fails
    cfg = _config("mst", tiny_table, tmp_path / "run", columns=FIT_COLUMNS)
    with pytest.raises(MissingExtraError) as exc:
        train(cfg)
    message = str(exc.value)
    assert "\n" not in message and "make install-peers" in message
    assert "pip install --no-deps smartnoise-synth==1.0.8" in message
    assert exc.value.__cause__ is None and exc.value.__suppress_context__  # no ImportError chain
    run = records.read_json(tmp_path / "run" / records.RUN_FILE)
    assert run["status"] == "failed" and "make install-peers" in run["error"]


@needs_library
def test_dpctgan_without_its_opacus_is_one_line(
    tiny_table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DPSHARE_OPACUS014", str(tmp_path / "empty"))
    with pytest.raises(MissingExtraError, match=r"Opacus 0\.14 .*make install-peers") as exc:
        train(_config("dpctgan", tiny_table, tmp_path / "run", columns=FIT_COLUMNS))
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------- public encoding, no library


@pytest.mark.parametrize("bins", [None, 8])
def test_the_encoding_round_trips_in_the_original_schema(
    tiny_table: Path, bins: int | None
) -> None:
    data, splits = load_data(_config("mst", tiny_table, None))
    real = splits.train
    encoding = PeerEncoding(data, bins=bins, continuous_scale="auto")
    assert [c.name for c in encoding.columns if c.log] == ["amount", "hours_since_prev"]
    encoded = encoding.encode(real)
    assert list(encoded.columns) == encoding.library_names
    if bins is None:  # CTGAN types: a missing indicator per nullable number
        assert "hours_since_prev::missing" in encoded.columns
    decoded = encoding.decode(encoded, np.random.default_rng(0))
    assert list(decoded.columns) == list(real.columns)
    assert decoded.dtypes.to_dict() == real.dtypes.to_dict()
    decoded.index = real.index
    for column in ("bank", "is_high_risk"):
        pd.testing.assert_series_equal(decoded[column], real[column])
    missing = real["hours_since_prev"].isna()
    assert missing.any() and (decoded["hours_since_prev"].isna() == missing).all()
    for column in ("amount", "hours_since_prev", "txn_count_24h"):
        a, b = real[column][~missing].to_numpy(float), decoded[column][~missing].to_numpy(float)
        lo, hi = DOMAIN[column]["bounds"]
        assert ((b >= lo) & (b <= hi)).all()
        if bins is None:  # min-max scaling is exact up to float rounding (ints: rounding)
            assert np.allclose(a, b, rtol=1e-9, atol=0.5 if column == "txn_count_24h" else 1e-6)
        else:  # the same bin on the public (log) scale: decoding inverts the binning
            spec = next(c for c in encoding.columns if c.name == column)
            assert (spec.bin_codes(a, bins) == spec.bin_codes(b, bins)).all()


def test_values_outside_the_declared_categories_are_refused_for_a_non_nullable_column(
    tiny_table: Path,
) -> None:
    data, splits = load_data(_config("mst", tiny_table, None))
    frame = splits.train.copy()
    frame["is_high_risk"] = frame["is_high_risk"].where(frame.index != frame.index[0], 7)
    with pytest.raises(UserInputError, match="outside its declared public categories"):
        PeerEncoding(data, bins=4).encode(frame)


def test_a_text_target_gets_no_missing_code(tiny_table: Path) -> None:
    """bank_marketing's target is text (a dtype that can hold a missing value), but a target is
    never missing: MST released rows without a label when it had a missing code."""
    banks = DOMAIN["bank"]["categories"]
    cfg = _config(
        "mst", tiny_table, None, "dataset.target=bank", f"dataset.positive_label={banks[0]}"
    )
    data, splits = load_data(cfg)
    encoding = PeerEncoding(data, bins=4)
    column = next(c for c in encoding.library_columns() if c["name"] == "bank")
    assert column["n_codes"] == len(banks)
    codes = pd.DataFrame({n: np.full(3, 99) for n in encoding.library_names})
    assert encoding.decode(codes, np.random.default_rng(0))["bank"].notna().all()


def test_an_undeclared_column_is_refused_with_the_fix(tiny_table: Path) -> None:
    cfg = _config("mst", tiny_table, None)
    cfg.dataset.public_domain = {k: v for k, v in DOMAIN.items() if k != "amount"}
    data, _ = load_data(cfg)
    with pytest.raises(UserInputError, match=r"\['amount'\] have none.*drop_columns=\[amount\]"):
        PeerEncoding(data, bins=4)


# ------------------------------------------------------------------- fits, records, the gate


@needs_library
@pytest.mark.parametrize(
    "method",
    [
        "dpctgan",
        "patectgan",
        pytest.param("mst", marks=pytest.mark.slow),
        pytest.param("aim", marks=pytest.mark.slow),
    ],
)
def test_each_peer_leaves_a_complete_record_with_its_external_release(
    method: str, peer_runs: dict[str, Path], tiny_table: Path
) -> None:
    run_dir = peer_runs[method]
    metrics = records.read_json(run_dir / records.METRICS_FILE)
    ledger = records.read_json(run_dir / records.LEDGER_FILE)
    # the synthetic table in the original schema, as many rows as the train split
    synthetic = pd.read_parquet(run_dir / records.SYNTHETIC_FILE)
    data, splits = load_data(_config(method, tiny_table, None, columns=FIT_COLUMNS))
    assert list(synthetic.columns) == list(data.frame.columns) == FIT_COLUMNS
    assert synthetic.dtypes.to_dict() == data.frame.dtypes.to_dict()
    assert len(synthetic) == len(splits.train) == metrics["data/n_synthetic"]
    assert set(synthetic["bank"].dropna()) <= set(DOMAIN["bank"]["categories"])
    assert synthetic["hours_since_prev"].dropna().between(0, 4320).all()
    # one ledger entry: the library's own release, nothing of ours
    (entry,) = ledger["entries"]
    params = entry["parameters"]
    assert entry["mechanism"] == EXTERNAL and entry["module"] == method
    assert entry["records"] == len(splits.train) and entry["differentially_private"]
    assert params["library"] == "smartnoise-synth" and params["version"] == "1.0.8"
    assert params["synthesizer"] == method and params["preprocessor_epsilon"] == 0.0
    assert params["requested_epsilon"] == TARGET and params["delta"] == 1e-4
    assert ledger["epsilon_spent"] == pytest.approx(params["epsilon"], rel=1e-12)
    assert metrics["privacy/epsilon_spent"] == pytest.approx(params["epsilon"], rel=1e-12)
    assert metrics["privacy/is_dp"] == 1 and metrics["privacy/target_epsilon"] == TARGET
    assert metrics[f"privacy/epsilon_by_mechanism/{method}"] == params["epsilon"]
    if method in ("mst", "aim"):  # zCDP: the whole budget, by construction
        assert params["epsilon"] == TARGET and params["rho"] > 0
    elif method == "dpctgan":  # sigma calibrated so that every epoch fits the target
        assert 0.9 * TARGET < params["epsilon"] <= TARGET
        assert params["optimizer_steps"] == params["planned_optimizer_steps"] > 0
        assert params["noise_multiplier_calibrated"] is True
    else:  # PATE-CTGAN stops only once its own accountant has passed the target
        assert TARGET < params["epsilon"] < 1.5 * TARGET and params["student_queries"] > 0
    # the rest of the record: evaluation, runtime, no generator artifact
    assert 0.0 <= metrics["attack/mia_dcr/auc"] <= 1.0 and "attack/copies/dcr_median" in metrics
    assert metrics["runtime/fit_seconds"] > 0 and metrics["runtime/peak_memory_mb"] > 100
    assert metrics["data/encoded_dim"] is None
    assert not (run_dir / "generator.json").exists()


@needs_library
@pytest.mark.parametrize("method", ["dpctgan", pytest.param("mst", marks=pytest.mark.slow)])
def test_the_gate_releases_a_peer_run_within_its_budget(
    method: str,
    peer_runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "release"
    run_dir = peer_runs[method]
    # some synthetic rows equal a real one in all three columns (a bank, a missing duration,
    # the common label): common values, as often against the test split, hence the allowance
    assert release_main([str(run_dir), "--out", str(out), "--max-exact-copy-share", "0.1"]) == 0
    assert "smartnoise-synth 1.0.8's own accounting" in capsys.readouterr().out
    card = json.loads((out / CARD_JSON).read_text())
    privacy = card["privacy"]
    ledger = records.read_json(run_dir / records.LEDGER_FILE)
    assert privacy["differentially_private"] and privacy["epsilon_spent"] <= TARGET
    assert privacy["epsilon_spent"] == ledger["entries"][0]["parameters"]["epsilon"]
    (release,) = privacy["external_releases"]
    assert release["library"] == "smartnoise-synth" and release["synthesizer"] == method
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "synthetic.parquet"), pd.read_parquet(run_dir / "synthetic.parquet")
    )
    assert "own accounting" in (out / "report_card.md").read_text()


def _refused(run_dir: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        release_main([str(run_dir), "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: release refused: ") and err.count("\n") == 1, err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))
    return err


@needs_library
def test_the_gate_refuses_a_recorded_external_epsilon_above_the_target(
    peer_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # PATE-CTGAN's own accountant passed the target (the library stops only after it has)
    err = _refused(peer_runs["patectgan"], tmp_path / "pate", capsys)
    assert "smartnoise-synth 1.0.8 reports epsilon" in err and "exceeds the run's target" in err
    # a DP-CTGAN record whose external epsilon reads 1.5, consistently everywhere: over budget
    run = Path(shutil.copytree(peer_runs["dpctgan"], tmp_path / "dpctgan"))
    ledger_path, metrics_path = run / records.LEDGER_FILE, run / records.METRICS_FILE
    ledger = records.read_json(ledger_path)
    ledger["entries"][0]["parameters"]["epsilon"] = 1.5
    ledger["epsilon_spent"] = 1.5
    records.write_json(ledger_path, ledger)
    metrics = records.read_json(metrics_path)
    metrics["privacy/epsilon_spent"] = 1.5
    records.write_json(metrics_path, metrics)
    err = _refused(run, tmp_path / "out", capsys)
    assert "epsilon spent 1.5" in err and "exceeds the run's target epsilon" in err
    # only the entry changed: the recorded totals no longer add up
    ledger["epsilon_spent"] = metrics["privacy/epsilon_spent"] = 0.9
    records.write_json(ledger_path, ledger)
    records.write_json(metrics_path, metrics)
    assert "is inconsistent" in _refused(run, tmp_path / "out2", capsys)


@needs_library
def test_a_peer_run_cannot_be_resampled_and_says_so(
    peer_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dpshare.sample import main as sample_main

    with pytest.raises(SystemExit) as exc:
        sample_main([str(peer_runs["patectgan"]), "--n", "9", "--out", str(tmp_path / "x.csv")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "method=patectgan cannot be rebuilt from a saved run" in err and err.count("\n") == 1


def _as_experiment(source: Path, dest: Path, dataset: str) -> None:
    """A copy of a run record relabelled as a point of a peers experiment on ``dataset``."""
    shutil.copytree(source, dest)
    for path in (dest / records.RESOLVED_CONFIG_FILE, dest / ".hydra" / "config.yaml"):
        config: dict[str, Any] = yaml.safe_load(path.read_text())
        config["dataset"]["name"] = dataset
        path.write_text(yaml.safe_dump(config))


@needs_library
def test_the_report_builds_the_peer_table_and_figure(
    peer_runs: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "outputs"
    for method, run_dir in peer_runs.items():
        _as_experiment(run_dir, root / "multiruns" / "peers_bank_sim" / method, "bank_sim")
    out = tmp_path / "results" / "peers" / "smoke"
    report = peers_report(deduplicate(load_records(root)), "smoke", out)
    tables = {t.id: t for t in report.tables}
    assert set(tables) == {"peers_bank_sim", "peers_bank_marketing", "peers_diabetes130"}
    tables["peers_bank_sim"].write(out)
    table = pd.read_csv(out / "peers_bank_sim.csv")
    at_target = table[table["epsilon"] == TARGET].set_index("method")
    for method, run_dir in peer_runs.items():
        assert at_target.loc[method, "seeds"] == 1 and at_target.loc[method, "status"] == "ok"
        metrics = records.read_json(run_dir / records.METRICS_FILE)
        assert float(at_target.loc[method, "TSTR AUC"]) == pytest.approx(
            metrics["utility/downstream_auc"], abs=5e-4
        )
        assert float(at_target.loc[method, "fit (s)"]) > 0
        assert float(at_target.loc[method, "peak memory (MiB)"]) > 100
    assert "over target in 1/1" in at_target.loc["patectgan", "epsilon spent (max)"]
    assert float(at_target.loc["dpctgan", "epsilon spent (max)"]) <= TARGET
    # our methods and epsilon 10 are in the grid but have no record here: not run
    assert at_target.loc["multidisc_gan", "status"] == "not run"
    assert (table[table["epsilon"] == 10.0]["status"] == "not run").all()
    assert table["method"].iloc[-1] == "real data (TRTR)" and math.isinf(table["epsilon"].iloc[-1])
    ((caption, figure),) = report.figures
    assert figure == out / "figures" / "peers_auc_vs_epsilon.png" and figure.stat().st_size > 1000
    marketing = tables["peers_bank_marketing"].frame
    assert (marketing["status"] == "not run").all()


def test_a_method_looks_the_same_in_every_panel_of_the_peer_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Panels with different methods (bank_sim has FedAvg and AIM, bank_marketing neither) still
    give one method one colour, line style and x offset: the legend of one panel reads for all."""
    from dpshare import report
    from dpshare.reporting.stats import summarize

    drawn: list[tuple[int, str, dict[str, Any]]] = []

    def record(ax: Any, by_epsilon: Any, metric: str, *, label: str, **style: Any) -> None:
        drawn.append((id(ax), label.split(" ")[0], style))

    monkeypatch.setattr(report, "_errorbar_over_epsilon", record)
    trtr = summarize([])
    panels = [
        ("bank_sim", {m: {} for m in ("multidisc_gan", "aim", "patectgan", "fedavg")}, trtr),
        ("bank_marketing", {m: {} for m in ("patectgan", "dp_lr", "extra_method")}, trtr),
    ]
    figure = report._plot_peers(panels, "smoke", tmp_path)
    assert figure.is_file()
    styles: dict[str, list[dict[str, Any]]] = {}
    for _, method, style in drawn:
        styles.setdefault(method, []).append(style)
    assert styles["patectgan"][0] == styles["patectgan"][1]  # in both panels
    assert styles["patectgan"][0]["ls"] == "--" and styles["dp_lr"][0]["ls"] == "-"
    firsts = [s[0] for s in styles.values()]
    assert len({s["color"] for s in firsts}) == len(firsts)  # no two methods share a colour
    assert len({s["dodge"] for s in firsts}) == len(firsts)  # nor an x offset
    assert len({panel for panel, _, _ in drawn}) == 2


# ------------------------------------------------------------- the external ledger entry


def test_an_external_release_is_the_run_epsilon_and_round_trips() -> None:
    ledger = PrivacyLedger(target_epsilon=1.0, target_delta=1e-5, n_records=10_000)
    entry = ledger.record_external(
        module="mst",
        purpose="fit",
        records=10_000,
        library="smartnoise-synth",
        version="1.0.8",
        epsilon=0.8,
        delta=1e-5,
        rho=0.01,
    )
    assert ledger.is_private and ledger.external_entries == [entry] and not ledger.dp_entries
    assert ledger.epsilon_spent() == 0.8 == ledger.realized_epsilon()
    assert ledger.epsilon_breakdown() == {"mst": 0.8}
    record = ledger.to_dict()
    assert record["epsilon_spent"] == 0.8
    assert record["external_releases"] == [
        {"library": "smartnoise-synth", "version": "1.0.8", "epsilon": 0.8, "delta": 1e-5}
        | {"module": "mst"}
    ]
    rebuilt = [LedgerEntry.from_dict(e) for e in record["entries"]]
    assert compose_entries(rebuilt, delta=1e-5, accountant="rdp") == 0.8
    # nothing of the budget is left for a DP-SGD step of ours after a release of 1.0
    full = PrivacyLedger(target_epsilon=1.0, target_delta=1e-5)
    full.record_external(
        module="aim", purpose="fit", records=10, library="x", version="1", epsilon=1.0, delta=5e-6
    )
    sgd = full.open_dp_sgd(
        module="d", purpose="t", records=10, sample_rate=0.01, poisson_sampling=True
    )
    assert not full.allows([(sgd, 5.0)])
    with pytest.raises(BudgetExceededError):
        full.step(sgd, 5.0)


def test_external_and_gaussian_releases_compose_by_basic_composition() -> None:
    ledger = PrivacyLedger(target_epsilon=None, target_delta=1e-5)
    ledger.record_gaussian(
        module="transformer", purpose="stats", records=100, noise_multiplier=20, l2_sensitivity=1
    )
    alone = ledger.epsilon_spent()
    ledger.record_external(
        module="peer", purpose="fit", records=100, library="x", version="1", epsilon=0.5, delta=4e-6
    )
    rest = compose_epsilon([(20.0, 1.0, 1)], delta=6e-6)  # at the delta the peer left over
    assert ledger.epsilon_spent() == pytest.approx(0.5 + rest, rel=1e-12)
    assert rest > alone  # a smaller delta costs epsilon: composition is not free
    # external deltas beyond the target delta leave nothing to certify the rest with
    ledger.record_external(
        module="peer2",
        purpose="fit",
        records=100,
        library="x",
        version="1",
        epsilon=0.1,
        delta=7e-6,
    )
    assert math.isinf(ledger.epsilon_spent())


def test_an_external_release_over_the_target_is_recorded_not_hidden(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = PrivacyLedger(target_epsilon=1.0, target_delta=1e-5)
    with caplog.at_level("WARNING"):
        ledger.record_external(
            module="patectgan",
            purpose="fit",
            records=10,
            library="smartnoise-synth",
            version="1.0.8",
            epsilon=1.2,
            delta=1e-5,
        )
    assert ledger.epsilon_spent() == 1.2 > ledger.target_epsilon
    assert "the release gate will refuse it" in caplog.text
    for bad in (
        {"epsilon": math.inf, "delta": 1e-5},
        {"epsilon": -1.0, "delta": 1e-5},
        {"epsilon": 1.0, "delta": 1.0},
    ):
        with pytest.raises(ValueError):
            ledger.record_external(
                module="m", purpose="p", records=1, library="x", version="1", **bad
            )
