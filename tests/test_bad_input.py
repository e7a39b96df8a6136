"""Bad input, tried and tested (issue 10): every case ends in ONE clear line that names the problem
and the fix, never a deep traceback, and never a partial result (no ``metrics.json``, no
synthetic table, no model; ``run.json`` says "failed" with the reason). docs/bad_input.md lists
the cases with the first line of each message."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from conftest import CONF_DIR, PYTHON, compose_config, subprocess_env
from dpshare.config import register_configs
from dpshare.errors import NonFiniteLossError, UserInputError
from dpshare.models.checks import check_finite_loss, check_finite_weights, check_learning_rates
from dpshare.preflight import OutputDirCheck
from dpshare.registry import UnknownNameError
from dpshare.reporting import records
from dpshare.train import train
from test_mimic3 import SMALL_VARIABLES, write_tables
from test_mnist import fake_mnist

# A run that fails (or finishes) in about a second: a 300-row table, one epoch, tiny networks,
# one downstream model, no fidelity metrics or attacks.
FAST = [
    "scale=smoke",
    "scale.max_epochs=1",
    "method.batch_size=50",
    "method.generator_dims=[16]",
    "method.discriminator_dims=[16]",
    "eval.models=[logistic_regression]",
    "eval.primary_model=logistic_regression",
    "eval.trtr=false",
    "eval.fidelity=[]",
    "eval.attacks=[]",
    "torch_threads=1",
]
EVAL_ONLY = [o for o in FAST if not o.startswith("method.")]
DP = ["privacy=fixed", "privacy.transformer_fit=non_private"]  # a table declares no public domain
DIVERGE = ["method.discriminator_lr=1e30", "method.generator_lr=1e30"]
PARTIAL = ("metrics.json", "synthetic.parquet", "synthetic.csv", "model.pt", "privacy_ledger.json")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good and bad input files, written once for the module."""
    root = tmp_path_factory.mktemp("bad_input")
    rng = np.random.default_rng(0)
    n = 300
    good = pd.DataFrame(
        {
            "x": rng.normal(size=n).round(3),
            "colour": rng.choice(["red", "blue"], n),
            "label": np.where(rng.random(n) < 0.3, "yes", "no"),
        }
    )
    good.to_csv(root / "good.csv", index=False)
    good.assign(label="yes").to_csv(root / "constant.csv", index=False)
    good.assign(blank=np.nan).to_csv(root / "blank_column.csv", index=False)
    good.assign(x=good["x"].where(good.index != 5, np.inf)).to_csv(root / "inf.csv", index=False)
    (root / "ragged.csv").write_bytes(b"a,b,label\n1,2,x\n3,4,y,5,6\n")
    (root / "binary.csv").write_bytes(bytes(range(256)) * 40)
    (root / "empty.csv").write_bytes(b"")
    (root / "a_file").write_text("not a folder\n")
    write_tables(root / "mimic")
    (root / "mimic" / "LABEVENTS.csv").unlink()
    fake_mnist(root / "mnist", n_train=200, n_test=50)
    return root


def table(root: Path, name: str = "good.csv", target: str = "label") -> list[str]:
    return ["dataset=table", f"dataset.path={root / name}", f"dataset.target={target}", *FAST]


def dp_lr(root: Path) -> list[str]:
    return [*table(root)[:3], *EVAL_ONLY, "method=dp_lr", "method.batch_size=50"]


def dp_wgan(root: Path) -> list[str]:
    return [
        "dataset=mnist",
        f"dataset.root={root / 'mnist'}",
        "dataset.verify_checksums=false",  # generated files, not the official ones
        *EVAL_ONLY,
        "method=dp_wgan",
        "method.batch_size=32",
        "method.generator_channels=4",
        "method.critic_channels=4",
        "method.critic_lr=1e30",
        "method.generator_lr=1e30",
    ]


# (id, overrides from the files' folder, problem regex, fix regex); both must be in the message,
# which must be one line.
Case = tuple[str, Callable[[Path], list[str]], str, str]
CASES: list[Case] = [
    # --- data
    (
        "mnist-root-missing",
        lambda r: ["dataset=mnist", f"dataset.root={r / 'nowhere'}", *EVAL_ONLY],
        r"MNIST folder .*nowhere does not exist",
        r"point dataset\.root \(or the MNIST_ROOT environment variable\)",
    ),
    (
        "table-file-missing",
        lambda r: table(r, "nope.csv"),
        r"data file '.*nope\.csv' does not exist",
        r"set dataset\.path to the file",
    ),
    (
        "mimic-root-missing",
        lambda r: ["dataset=mimic3", f"dataset.root={r / 'nowhere'}", *FAST],
        r"MIMIC-III folder .*nowhere does not exist",
        r"point dataset\.root \(or the MIMIC3_ROOT environment variable\)",
    ),
    (
        "mimic-table-missing",
        lambda r: [
            "dataset=mimic3",
            f"dataset.root={r / 'mimic'}",
            "dataset.cache_dir=null",
            f"dataset.include_variables=[{','.join(SMALL_VARIABLES)}]",
            *FAST,
        ],
        r"MIMIC-III tables missing in .*mimic: LABEVENTS",
        r"set dataset\.root \(or the MIMIC3_ROOT environment variable\)",
    ),
    (
        "csv-ragged-rows",
        lambda r: table(r, "ragged.csv"),
        r"could not parse it as a table .*Expected 3 fields in line 3, saw 5",
        r"check the separator \(dataset\.sep\) and quoting",
    ),
    (
        "csv-binary-garbage",
        lambda r: table(r, "binary.csv"),
        r"this is not a text table \(it holds binary data\)",
        r"give a CSV, TSV, Parquet or zipped CSV file",
    ),
    (
        "csv-empty-file",
        lambda r: table(r, "empty.csv"),
        r"empty\.csv is empty \(0 bytes\)",
        r"point dataset\.path at a table with a header row",
    ),
    (
        "target-missing",
        lambda r: table(r, target="Label"),
        r"dataset\.target names column\(s\) \['Label'\] that the table does not have",
        r"did you mean 'label'",
    ),
    (
        "target-constant",
        lambda r: table(r, "constant.csv"),
        r"target 'label' has a single class \(\['yes'\]\)",
        r"pick another target or map the values with dataset\.target_map",
    ),
    (
        "all-nan-column",
        lambda r: [*table(r, "blank_column.csv"), "dataset.drop_empty_columns=false"],
        r"column\(s\) \['blank'\] have no value in any row",
        r"dataset\.drop_columns=\['blank'\]",
    ),
    (
        "infinite-value",
        lambda r: table(r, "inf.csv"),
        r"column 'x' contains infinite values",
        r"replace them",
    ),
    (
        "max-records-0",
        lambda r: [*table(r), "scale.max_records=0"],
        r"scale\.max_records=0",
        r"give a whole number >= 1",
    ),
    # --- privacy
    (
        "epsilon-0",
        lambda r: [*table(r), *DP, "privacy.target_epsilon=0"],
        r"privacy\.target_epsilon must be > 0 \(or null\), got 0\.0",
        r"e\.g\. privacy\.target_epsilon=1\.0\), or privacy=none",
    ),
    (
        "epsilon-negative",
        lambda r: [*table(r), *DP, "privacy.target_epsilon=-1"],
        r"privacy\.target_epsilon must be > 0 \(or null\), got -1\.0",
        r"e\.g\. privacy\.target_epsilon=1\.0",
    ),
    (
        "delta-1",
        lambda r: [*table(r), *DP, "privacy.target_delta=1"],
        r"privacy\.target_delta must be in \(0, 1\), got 1\.0",
        r"well below 1/n .*e\.g\. privacy\.target_delta=1e-5",
    ),
    (
        "sigma-too-small",
        lambda r: [*table(r), *DP, "privacy.noise_multiplier=0.01"],
        r"training took no step: the privacy budget allows not even one noisy step at noise "
        r"multiplier 0\.01 within privacy\.target_epsilon=1\.0",
        r"raise privacy\.noise_multiplier or privacy\.target_epsilon, use smaller batches, or "
        r"leave privacy\.noise_multiplier null",
    ),
    (
        "sigma-min-too-small-pid",
        lambda r: [*table(r), *DP[1:], "privacy=pid", "privacy.pid.sigma_min=0.01"],
        r"allows not even one noisy step at noise multiplier 0\.01",
        r"raise privacy\.pid\.sigma_min or privacy\.target_epsilon",
    ),
    (
        "sigma-too-small-budget-length",
        lambda r: [
            *table(r),
            *DP,
            "privacy.noise_multiplier=0.01",
            "privacy.training_length=budget",
        ],
        r"privacy\.noise_multiplier=0\.01 is too small to take even one step",
        r"raise sigma or epsilon",
    ),
    (
        "max-grad-norm-negative",
        lambda r: [*table(r), *DP, "privacy.max_grad_norm=-1"],
        r"privacy\.max_grad_norm must be > 0, got -1\.0",
        r"set a positive number \(the default is in conf/privacy/fixed\.yaml\)",
    ),
    (
        "grad-sample-mode-unknown",
        lambda r: [*table(r), *DP, "privacy.grad_sample_mode=nope"],
        r"privacy\.grad_sample_mode='nope'",
        r"choose one of \['bk', 'hooks', 'functorch', 'ghost'\]",
    ),
    # --- method and training
    (
        "batch-size-above-train-split",
        lambda r: [*table(r), "method.batch_size=100000"],
        r"method\.batch_size=100000 is larger than the real train split \(210 records\)",
        r"lower method\.batch_size or use more data",
    ),
    (
        # the range is the fix; train.py could add "lower method.batch_size" (docs/bad_input.md)
        "batch-size-above-train-split-dp",
        lambda r: [*table(r), *DP, "method.batch_size=100000"],
        r"method\.batch_size=100000 must be between 1 and the real train split's size",
        r"\(210 records\); lower method\.batch_size or use more data",
    ),
    (
        "learning-rate-negative",
        lambda r: [*table(r), "method.generator_lr=-1"],
        r"method\.generator_lr=-1\.0: a learning rate must be a finite number > 0",
        r"set e\.g\. method\.generator_lr=2e-4",
    ),
    (
        "zero-epochs",
        lambda r: [*table(r), "scale.max_epochs=0"],
        r"training took no step \(trainer\.max_epochs=0\)",
        r"give a training length of 1 or more \(scale\.max_epochs",
    ),
    (
        "eval-model-unknown",
        lambda r: [*table(r), "eval.models=[nope]"],
        r"unknown downstream model 'nope'",
        r"valid downstream models: cnn, hist_gradient_boosting, logistic_regression",
    ),
    # --- divergence: NaN / inf during training (NonFiniteLossError)
    (
        "nan-standard-gan",
        lambda r: [*table(r), *DIVERGE],
        r"training diverged: the (generator|discriminator) loss is (nan|inf)",
        r"lower method\.discriminator_lr and method\.generator_lr",
    ),
    (
        "nan-standard-gan-dp",
        lambda r: [*table(r), *DP, *DIVERGE],
        r"training diverged: the (generator loss|discriminator weights)",
        r"lower method\.discriminator_lr .*or a smaller privacy\.max_grad_norm",
    ),
    (
        "nan-multidisc-gan",
        lambda r: [*table(r), "method=multidisc_gan", *FAST[2:5], *DIVERGE],
        r"training diverged: the (generator|discriminator) loss is (nan|inf)",
        r"lower method\.discriminator_lr and method\.generator_lr",
    ),
    (
        "nan-dp-lr",
        lambda r: [*dp_lr(r), "method.lr=1e38"],
        r"training diverged: the classifier loss is (nan|inf)",
        r"lower method\.lr",
    ),
    (
        "nan-dp-lr-dp",
        lambda r: [*dp_lr(r), *DP, "method.lr=1e38", "privacy.max_grad_norm=1e10"],
        r"training diverged: the classifier weights became NaN or infinite at update 1",
        r"lower method\.lr .*or a smaller privacy\.max_grad_norm",
    ),
    (
        "nan-dp-wgan",
        dp_wgan,
        r"training diverged: the (generator's output holds \d+ NaN|\w+ loss is)",
        r"lower the method's learning rates|lower method\.critic_lr",
    ),
]


def _run(overrides: list[str], run_dir: Path) -> str:
    """``train`` on a config that must fail; returns the message after checking the record."""
    cfg = compose_config(overrides, run_dir)
    with pytest.raises((UserInputError, UnknownNameError)) as info:
        train(cfg)
    message = str(info.value)
    left = sorted(p.name for p in run_dir.iterdir() if p.name in PARTIAL)
    assert not left, f"partial result files left behind: {left}"
    run = json.loads((run_dir / records.RUN_FILE).read_text())
    assert run["status"] == "failed"
    assert run["error"] == f"{type(info.value).__name__}: {message}"
    return message


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_with_one_clear_line_and_no_result(
    case: Case, files: Path, tmp_path: Path
) -> None:
    name, overrides, problem, fix = case
    message = _run(overrides(files), tmp_path / "run")
    assert "\n" not in message, message
    assert _search(problem, message), f"{name}: problem not named in: {message}"
    assert _search(fix, message), f"{name}: no fix in: {message}"
    if name.startswith("nan-"):
        assert "the run stopped without a result" in message or "output holds" in message


def _search(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


def test_run_dir_under_a_file_is_a_clear_error(files: Path) -> None:
    # a chmod'ed folder does not stop root; a path under a regular file stops everyone
    cfg = compose_config(table(files), files / "a_file" / "run")
    with pytest.raises(UserInputError, match=r"cannot write the run record to .*a_file is a file"):
        train(cfg)


def test_prepare_run_dir_names_the_blocking_file_and_the_fix(files: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as info:
        records.prepare_run_dir(files / "a_file" / "run")
    message = str(info.value)
    assert f"{files / 'a_file'} is a file, not a folder" in message
    assert "run_dir=..." in message and "output_root=..." in message
    assert records.prepare_run_dir(tmp_path / "a" / "b").is_dir()


@pytest.mark.parametrize("mode", ["run", "multirun"])
def test_output_root_under_a_file_is_refused_before_hydra_creates_it(
    files: Path, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the CLI does once conf/config.yaml lists the callback (docs/bad_input.md): Hydra's
    own mkdir would otherwise fail with a NotADirectoryError traceback."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config", overrides=[f"output_root={files / 'a_file'}"], return_hydra_config=True
        )
    callback = OutputDirCheck()
    with pytest.raises(SystemExit) as info:
        (callback.on_run_start if mode == "run" else callback.on_multirun_start)(config=cfg)
    assert info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: cannot write the run record to ")
    assert f"{files / 'a_file'} is a file, not a folder" in line and "output_root=..." in line


def test_delta_at_least_one_over_n_warns_logs_and_is_recorded(
    files: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = [*table(files), *DP, "privacy.target_delta=0.01", f"output_root={tmp_path}"]
    cfg = compose_config(overrides, tmp_path / "run")
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match=r">= 1/n"):
        metrics = train(cfg)
    logged = [r.getMessage() for r in caplog.records if r.name == "dpshare.privacy.ledger"]
    assert any("privacy.target_delta=0.01 >= 1/n = 0.00476" in m for m in logged), logged
    assert any("use delta well below 1/n (e.g. 4.8e-04)" in m for m in logged)
    assert metrics["privacy/delta_ge_1_over_n"] == 1
    ledger = json.loads((tmp_path / "run" / records.LEDGER_FILE).read_text())
    assert ledger["delta_ge_1_over_n"] is True


def test_sigma_that_fits_fewer_steps_than_planned_warns(caplog: pytest.LogCaptureFixture) -> None:
    from dpshare.privacy.plan import plan_privacy

    cfg = compose_config(["privacy=fixed", "privacy.noise_multiplier=3.0"])
    with caplog.at_level(logging.WARNING, logger="dpshare.privacy.plan"):
        plan = plan_privacy(cfg.privacy, n_train=1000, batch_size=100, max_epochs=50)
    assert plan.planned_steps == 500
    assert "fits only" in caplog.text and "of the 500 planned noisy steps" in caplog.text


# ------------------------------------------------------------ composition (Hydra, in-process)

COMPOSE_CASES = [
    ("method=nope", r"Could not find 'method/nope'", r"Available options in 'method'"),
    ("dataset=nope", r"Could not find 'dataset/nope'", r"Available options in 'dataset'"),
    ("privacy.foo=1", r"Could not override 'privacy\.foo'", r"Key 'foo' not in"),
    (
        "privacy.target_epsilon=abc",
        r"privacy\.target_epsilon=abc",
        r"Value 'abc' of type 'str' could not be converted to Float",
    ),
]


@pytest.mark.parametrize(("override", "problem", "detail"), COMPOSE_CASES)
def test_composition_errors_name_the_key(override: str, problem: str, detail: str) -> None:
    with pytest.raises((HydraException, OmegaConfBaseException)) as info:
        compose_config(["privacy=fixed", override])
    text = f"{info.value}\n{info.value.__cause__ or ''}"
    assert _search(problem, text) and _search(detail, text), text


# --------------------------------------------------------------------- the checks themselves


def test_finite_checks() -> None:
    one, nan = torch.tensor(1.0), torch.tensor(float("nan"))
    check_finite_loss(one, what="d", update=1, lr_keys=["lr"], private=False)
    with pytest.raises(NonFiniteLossError, match=r"the d loss is nan at update 3.*method\.lr"):
        check_finite_loss(nan, what="d", update=3, lr_keys=["lr"], private=False)
    with pytest.raises(NonFiniteLossError, match="non-finite entries"):
        check_finite_loss(
            torch.stack([one, nan]), what="d", update=1, lr_keys=["lr"], private=False
        )
    net = torch.nn.Linear(2, 1)
    check_finite_weights(net, what="d", update=1, lr_keys=["lr"], private=True)
    with torch.no_grad():
        net.bias.fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match="privacy.max_grad_norm"):
        check_finite_weights([net], what="d", update=1, lr_keys=["lr"], private=True)
    assert issubclass(NonFiniteLossError, UserInputError)  # the CLI prints it and exits 2
    for bad in (0.0, -1.0, float("nan"), float("inf"), "abc"):
        with pytest.raises(UserInputError, match="a learning rate must be a finite number > 0"):
            check_learning_rates(lr=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the command line


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "dpshare.train", *args, f"output_root={cwd}"],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_cli_missing_data_file(tmp_path: Path) -> None:
    out = _cli(table(tmp_path, "nope.csv"), tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    (line,) = _error_lines(out.stderr)
    assert "does not exist" in line and "set dataset.path to the file" in line
    (run_json,) = tmp_path.glob("runs/*/*/run.json")
    assert json.loads(run_json.read_text())["status"] == "failed"
    assert not list(tmp_path.glob("runs/*/*/metrics.json"))


def test_cli_nan_during_training(tmp_path: Path, files: Path) -> None:
    out = _cli([*table(files), *DIVERGE], tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    (line,) = _error_lines(out.stderr)
    assert line.startswith("error: training diverged: the ") and "Fix: lower method." in line
    (run_json,) = tmp_path.glob("runs/*/*/run.json")
    run = json.loads(run_json.read_text())
    assert run["status"] == "failed" and run["error"].startswith("NonFiniteLossError: ")
    assert not [p for p in run_json.parent.iterdir() if p.name in PARTIAL]


def test_cli_non_numeric_override(tmp_path: Path) -> None:
    """Hydra refuses it while composing, before dpshare runs: exit 1 (Hydra's), no traceback,
    the key and the bad value named; no run directory is created."""
    out = _cli(["privacy=fixed", "privacy.target_epsilon=abc", "scale=smoke"], tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "Error merging override privacy.target_epsilon=abc" in out.stderr
    assert "Value 'abc' of type 'str' could not be converted to Float" in out.stderr
    assert not (tmp_path / "runs").exists()
