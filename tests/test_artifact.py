"""Saved generators (``dpshare.artifact``, ``python -m dpshare.sample``, ``dpshare.api.load``,
``python -m dpshare.release --sample``): a finished run is loaded without retraining and without
reading real data, reproduces its own table bit for bit, honours a class mix and conditions,
and every bad record is refused with one line, exit status 2 and nothing written.

Four tiny runs are trained once for the module: multidisc_gan under DP (feature condition
``bank``), standard_gan without DP (quantile scaling), dp_wgan under DP on a tiny synthetic
MNIST (EMA generator, MLP critic), and dp_lr (a released classifier)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, compose_config
from dpshare import artifact
from dpshare.api import load
from dpshare.artifact import JSON_FILE, TENSOR_FILE, ArtifactError, load_run
from dpshare.data.mnist import FILES, write_idx
from dpshare.errors import UserInputError
from dpshare.release import CARD_JSON
from dpshare.release import main as release_main
from dpshare.reporting import records
from dpshare.sample import main as sample_main
from dpshare.sample import report_path
from dpshare.train import train_method

# evaluation cut to one utility model: the record is what these tests read
QUICK_EVAL = [
    "eval.models=[logistic_regression]",
    "eval.primary_model=logistic_regression",
    "eval.trtr=false",
    "eval.fidelity=[]",
    "eval.attacks=[]",
    "torch_threads=1",
]
MD_DP = [
    *TINY,
    *QUICK_EVAL,
    "method=multidisc_gan",
    "method.head_hidden=32",
    "scale.max_epochs=1",
    "method.condition_columns=[bank]",
    "privacy=fixed",
    "privacy.target_epsilon=1.0",
    "privacy.target_delta=1e-4",
]
# non-private, with marginal correction in its own table: the train marginals it read (listed
# in the ledger as refine_marginals) are saved, so the loaded run reproduces that table
MD_NON_PRIVATE = [
    *TINY,
    *QUICK_EVAL,
    "method=multidisc_gan",
    "method.head_hidden=32",
    "scale.max_epochs=1",
    "method.refine.match_marginals=true",
    "privacy=none",
]
SG_NON_PRIVATE = [
    *TINY,
    *QUICK_EVAL,
    "scale.max_epochs=1",
    "method.continuous_mode=quantile",
    "privacy=none",
]
DP_LR = [
    "scale=smoke",
    "scale.max_records=2500",
    "scale.max_epochs=1",
    "method=dp_lr",
    "method.batch_size=200",
    "trainer.log_every_n_steps=1",
    *QUICK_EVAL,
    "privacy=none",
]


def _mnist_overrides(root: Path) -> list[str]:
    return [
        "dataset=mnist",
        f"dataset.root={root}",
        "dataset.verify_checksums=false",
        "method=dp_wgan",
        "scale=smoke",
        "scale.max_epochs=1",
        "method.batch_size=50",
        "method.latent_dim=16",
        "method.generator_channels=8",
        "method.n_critic=2",
        "method.critic=mlp",
        "method.critic_hidden=[32,16]",
        "method.loss=logistic",
        "method.weight_clip=null",
        "method.optimizer=adam",
        "method.generator_ema=0.9",
        "trainer.log_every_n_steps=1",
        "eval=mnist",
        *QUICK_EVAL,
        "privacy=fixed",
        "privacy.target_epsilon=8.0",
        "privacy.target_delta=1e-4",
        "privacy.max_grad_norm=5",
    ]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Same thread count for the fitted and the loaded method (float32 sums depend on it), and
    fast small layers on a busy 2-core machine; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(overrides: list[str], run_dir: Path) -> tuple[Path, Any]:
    _, method = train_method(compose_config(overrides, run_dir))
    torch.set_num_threads(1)
    return run_dir, method


@pytest.fixture(scope="module")
def md_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    return _train(MD_DP, tmp_path_factory.mktemp("artifact") / "md")


@pytest.fixture(scope="module")
def md_np_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    return _train(MD_NON_PRIVATE, tmp_path_factory.mktemp("artifact") / "md_np")


@pytest.fixture(scope="module")
def sg_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    return _train(SG_NON_PRIVATE, tmp_path_factory.mktemp("artifact") / "sg")


@pytest.fixture(scope="module")
def wgan_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for role, name in FILES.items():
        n = 300 if role.startswith("train") else 100
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, digit in enumerate(labels):  # one bar per digit
            images[i, 4 + 2 * digit : 6 + 2 * digit, 6:22] = 255
        write_idx(root / name, labels if role.endswith("labels") else images)
    return _train(_mnist_overrides(root), tmp_path_factory.mktemp("artifact") / "wgan")


@pytest.fixture(scope="module")
def dp_lr_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(DP_LR, tmp_path_factory.mktemp("artifact") / "dp_lr")[0]


RUNS = ["md_run", "md_np_run", "sg_run", "wgan_run"]


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def _edit_json(path: Path, edit: Callable[[Any], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _record_digest(run: Path, name: str) -> None:
    """Make run.json record ``name``'s current SHA-256 (as a run of that content would)."""
    digest = records.file_sha256(run / name)
    _edit_json(run / records.RUN_FILE, lambda r: r["artifact_sha256"].__setitem__(name, digest))


# ------------------------------------------------------------------------ the artifact


@pytest.mark.parametrize("which", RUNS)
def test_every_generator_run_saves_a_verified_artifact_without_pickle(
    which: str, request: pytest.FixtureRequest
) -> None:
    run_dir, method = request.getfixturevalue(which)
    run = json.loads((run_dir / records.RUN_FILE).read_text())
    for name in (JSON_FILE, TENSOR_FILE):
        assert run["artifact_sha256"][name] == records.file_sha256(run_dir / name)
    document = json.loads((run_dir / JSON_FILE).read_text())
    assert document["format"] == artifact.FORMAT and document["version"] == artifact.VERSION
    assert document["method"] == method.name
    # plain tensors only: weights_only=True reads them, and they are the released generator's
    saved = torch.load(run_dir / TENSOR_FILE, map_location="cpu", weights_only=True)
    released = method.state_dict()["generator"]
    assert set(saved) == {"generator"} and set(saved["generator"]) == set(released)
    assert all(torch.equal(saved["generator"][k], v) for k, v in released.items())
    # where the saved statistics were charged
    ledger = json.loads((run_dir / records.LEDGER_FILE).read_text())
    provenance = document["provenance"]
    assert provenance["differentially_private"] == ledger["differentially_private"]
    assert set(provenance["ledger_modules"]) == {e["module"] for e in ledger["entries"]}
    expected_fit = {
        "md_run": "dp_release",
        "md_np_run": "raw",
        "sg_run": "raw",
        "wgan_run": "public_bounds",
    }
    assert document["transformer"]["fit"] == expected_fit[which]
    # train marginals are saved only by a non-private run that read (and listed) them
    marginals = document["sampling_state"].get("released_marginals")
    assert (marginals is not None) == (which == "md_np_run")
    if marginals is not None:
        assert "refine_marginals" in provenance["ledger_modules"]
        train = method.datamodule.train_frame
        bank = train["bank"].astype(str).value_counts(normalize=True)
        assert marginals["bank"] == pytest.approx(bank.to_dict())


@pytest.mark.parametrize("which", RUNS)
def test_load_then_sample_reproduces_the_run_bit_for_bit(
    which: str, request: pytest.FixtureRequest
) -> None:
    run_dir, method = request.getfixturevalue(which)
    loaded = load_run(run_dir)
    # the run's own table, from the saved generator alone
    fit = loaded.fit_sample
    again = loaded.method.sample(fit["n"], seed=fit["seed"], **fit["options"])
    pd.testing.assert_frame_equal(again, pd.read_parquet(run_dir / records.SYNTHETIC_FILE))
    # any seed: the loaded and the in-process method draw the same rows
    for seed in (0, 7):
        pd.testing.assert_frame_equal(
            loaded.method.sample(300, seed=seed), method.sample(300, seed=seed)
        )
    # the public API gives the same run object as fit, with the recorded metrics
    run = load(run_dir)
    assert run.metrics == json.loads((run_dir / records.METRICS_FILE).read_text())
    pd.testing.assert_frame_equal(run.sample(50, seed=3), method.sample(50, seed=3))


def test_class_mix_and_conditions_are_honoured_after_loading(md_run: tuple[Path, Any]) -> None:
    run_dir, method = md_run
    run = load(run_dir)
    mixed = run.sample(4000, seed=1, class_mix={1: 0.3, 0: 0.7})
    assert (mixed["is_high_risk"] == 1).mean() == pytest.approx(0.3, abs=0.03)
    pd.testing.assert_frame_equal(mixed, method.sample(4000, seed=1, class_mix={1: 0.3, 0: 0.7}))
    fixed = run.sample(200, seed=2, conditions={"bank": "bank_B"})
    assert len(fixed) == 200 and (fixed["bank"].astype(str) == "bank_B").all()
    pd.testing.assert_frame_equal(fixed, method.sample(200, seed=2, conditions={"bank": "bank_B"}))
    # marginal correction from the DP transformer release, as in the fitted run
    refine = {"match_marginals": True, "oversample": 2.0}
    pd.testing.assert_frame_equal(
        run.sample(300, seed=4, refine=refine), method.sample(300, seed=4, refine=refine)
    )
    with pytest.raises(UserInputError, match="not a category"):
        run.sample(10, seed=0, conditions={"bank": "no_such_bank"})


def test_loading_and_sampling_read_no_real_data_and_leave_the_ledger(
    md_run: tuple[Path, Any], sg_run: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dpshare.train
    from dpshare.data.datasets import DATASETS

    def no_real_data(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a loaded run read real data")

    monkeypatch.setattr(DATASETS, "get", no_real_data)
    monkeypatch.setattr(dpshare.train, "load_data", no_real_data)
    run_dir, _ = md_run
    before = records.file_sha256(run_dir / records.LEDGER_FILE)
    method = load(run_dir).method
    dm = method.datamodule
    assert dm.train_frame is None and dm.x_train is None and len(dm.data.frame) == 0
    method.sample(500, seed=0, class_mix={1: 0.5, 0: 0.5})
    assert records.file_sha256(run_dir / records.LEDGER_FILE) == before
    with pytest.raises(RuntimeError, match="reads no real record"):
        dm.ledger  # noqa: B018  (nothing can be charged)
    # a non-private run never released marginals for match_marginals: refused, not read
    with pytest.raises(ArtifactError, match="match_marginals"):
        load(sg_run[0]).method.datamodule.saved_marginals(["bank"])


# ------------------------------------------------------------------------------ the CLI


def _sampled(run_dir: Path, out: Path, *flags: str) -> dict[str, Any]:
    assert sample_main([str(run_dir), "--out", str(out), *flags]) == 0
    return json.loads(report_path(out).read_text())


def _refused(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    with pytest.raises(SystemExit) as exc:
        sample_main([str(run_dir), "--out", str(out_dir / "rows.parquet"), *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not list(out_dir.iterdir())  # nothing written, not even a temporary file
    return err


def test_cli_writes_the_original_schema_and_says_epsilon_is_unchanged(
    md_run: tuple[Path, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, _ = md_run
    ledger_before = records.file_sha256(run_dir / records.LEDGER_FILE)
    out = tmp_path / "rows.parquet"
    report = _sampled(run_dir, out, "--n", "3000", "--class-mix", "{1: 0.3, 0: 0.7}")
    assert "epsilon spent" in capsys.readouterr().out
    frame = pd.read_parquet(out)
    schema = json.loads((run_dir / records.SCHEMA_FILE).read_text())
    assert list(frame.columns) == schema["columns"]
    assert {c: str(t) for c, t in frame.dtypes.items()} == schema["dtypes"]
    assert len(frame) == report["n_rows"] == 3000
    assert report["positive_rate"] == pytest.approx((frame["is_high_risk"] == 1).mean())
    assert report["positive_rate"] == pytest.approx(0.3, abs=0.03)
    assert report["class_mix"] == {"1": 0.3, "0": 0.7} and report["seed"] == 0
    metrics = json.loads((run_dir / records.METRICS_FILE).read_text())
    privacy = report["privacy"]
    assert privacy["epsilon_spent"] == privacy["epsilon_spent_before_sampling"]
    assert privacy["epsilon_spent"] == pytest.approx(metrics["privacy/epsilon_spent"])
    assert privacy["ledger_unchanged"] and privacy["cost_of_this_sample"] == 0
    assert "post-processing" in privacy["statement"]
    assert records.file_sha256(run_dir / records.LEDGER_FILE) == ledger_before
    assert report["output"]["sha256"] == records.file_sha256(out)
    # the same rows as the API with the same seed; CSV with the same values
    pd.testing.assert_frame_equal(
        frame, load(run_dir).sample(3000, seed=0, class_mix={1: 0.3, 0: 0.7})
    )
    csv = tmp_path / "rows.csv"
    _sampled(run_dir, csv, "--n", "3000", "--class-mix", "{'1': 0.3, '0': 0.7}")
    pd.testing.assert_frame_equal(pd.read_csv(csv), pd.read_csv(_as_csv(frame, tmp_path)))
    conditioned = tmp_path / "bank_b.parquet"
    _sampled(run_dir, conditioned, "--n", "100", "--conditions", "{bank: bank_B}", "--seed", "5")
    assert (pd.read_parquet(conditioned)["bank"].astype(str) == "bank_B").all()


def _as_csv(frame: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "expected.csv"
    frame.to_csv(path, index=False)
    return path


def _tamper_weights(run: Path) -> None:
    saved = torch.load(run / TENSOR_FILE, weights_only=True)
    name = next(k for k, v in saved["generator"].items() if v.is_floating_point())
    saved["generator"][name] = saved["generator"][name] + 1.0
    torch.save(saved, run / TENSOR_FILE)


def _older_version(run: Path) -> None:
    _edit_json(run / JSON_FILE, lambda d: d.__setitem__("version", 0))
    _record_digest(run, JSON_FILE)  # as recorded by the dpshare that wrote version 0


def _before_artifacts(run: Path) -> None:
    for name in (JSON_FILE, TENSOR_FILE):
        (run / name).unlink()
    _edit_json(
        run / records.RUN_FILE,
        lambda r: r.__setitem__("artifact_sha256", {"synthetic.parquet": "0" * 64}),
    )


BAD_RECORDS: dict[str, tuple[Callable[[Path], None], str]] = {
    "running": (
        lambda run: _edit_json(
            run / records.RUN_FILE, lambda r: r.__setitem__("status", "running")
        ),
        "is not complete (run.json status 'running')",
    ),
    "no_metrics": (
        lambda run: (run / records.METRICS_FILE).unlink(),
        "is not complete (no metrics.json",
    ),
    "older_version": (_older_version, "is artifact version 0, and this dpshare reads version 1"),
    "before_artifacts": (_before_artifacts, "recorded before dpshare saved generators"),
    "tampered_weights": (_tamper_weights, "generator.pt in"),
    "tampered_json": (
        lambda run: _edit_json(
            run / JSON_FILE, lambda d: d["data"].__setitem__("class_prior", [0.5, 0.5])
        ),
        "generator.json in",
    ),
    "no_hash_recorded": (
        lambda run: _edit_json(run / records.RUN_FILE, lambda r: r.pop("artifact_sha256")),
        "records no sha256 for generator.json",
    ),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_a_bad_record_is_one_line_exit_2_nothing_written(
    case: str,
    md_run: tuple[Path, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tamper, message = BAD_RECORDS[case]
    run = _copy(md_run[0], tmp_path)
    tamper(run)
    err = _refused(run, tmp_path, capsys, "--n", "10")
    assert message in err
    if case.startswith("tampered"):
        assert "changed after the run" in err
    with pytest.raises(ArtifactError):
        load(run)


def test_a_released_classifier_cannot_be_sampled(
    dp_lr_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not (dp_lr_run / JSON_FILE).exists()
    err = _refused(dp_lr_run, tmp_path, capsys, "--n", "10")
    assert "(method dp_lr) released a classifier (model.pt), not a generator" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--n", "0"], "--n must be a whole number >= 1"),
        (["--n", "5", "--class-mix", "{7: 1.0}"], "class_mix names unknown classes [7]"),
        (["--n", "5", "--class-mix", "[0.3]"], "--class-mix '[0.3]' is not a non-empty mapping"),
        (["--n", "5", "--class-mix", "{1: -1}"], "must be a number >= 0"),
        (["--n", "5", "--conditions", "{channel: x}"], "not conditioned on"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(
    md_run: tuple[Path, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    assert message in _refused(md_run[0], tmp_path, capsys, *flags)


def test_bad_output_paths_and_other_methods_options(
    md_run: tuple[Path, Any],
    sg_run: tuple[Path, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def refused(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as exc:
            sample_main(argv)
        assert exc.value.code == 2
        return capsys.readouterr().err

    run_dir = md_run[0]
    assert "ending in .csv or .parquet" in refused([str(run_dir), "--n", "5", "--out", "x.txt"])
    inside = run_dir / "more.parquet"
    assert "inside the run directory" in refused([str(run_dir), "--n", "5", "--out", str(inside)])
    assert not inside.exists()
    out = tmp_path / "rows.parquet"
    out.write_text("keep")
    assert "pass --force" in refused([str(run_dir), "--n", "5", "--out", str(out)])
    assert out.read_text() == "keep"
    err = refused([str(sg_run[0]), "--n", "5", "--conditions", "{bank: bank_B}", "--out", "y.csv"])
    assert "need a multidisc_gan run" in err
    assert "no run directory" in refused([str(tmp_path / "none"), "--n", "5", "--out", "z.csv"])


# ------------------------------------------------------------------------- release gate


def test_the_release_gate_releases_a_fresh_sample_of_a_dp_run(
    md_run: tuple[Path, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, method = md_run
    out = tmp_path / "release"
    flags = ["--sample", "800", "--seed", "3", "--class-mix", "{1: 0.3, 0: 0.7}"]
    assert release_main([str(run_dir), "--out", str(out), *flags]) == 0
    card = json.loads((out / CARD_JSON).read_text())
    frame = pd.read_parquet(out / "synthetic.parquet")
    pd.testing.assert_frame_equal(frame, method.sample(800, seed=3, class_mix={1: 0.3, 0: 0.7}))
    assert card["n_rows"] == 800 and card["sample"]["seed"] == 3
    assert card["sample"]["class_mix"] == {"1": 0.3, "0": 0.7}
    assert "post-processing" in card["sample"]["statement"]
    metrics = json.loads((run_dir / records.METRICS_FILE).read_text())
    assert card["privacy"]["epsilon_spent"] == pytest.approx(metrics["privacy/epsilon_spent"])
    assert card["copies"]["source"].startswith("recomputed")
    assert [c["name"] for c in card["checks"]][-2:] == ["synthetic_table", "exact_copies"]
    assert "freshly sampled" in card["checks"][-2]["detail"]
    assert "Freshly sampled" in (out / "report_card.md").read_text()


def test_the_release_gate_refuses_a_tampered_artifact_and_stray_options(
    md_run: tuple[Path, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(md_run[0], tmp_path)
    _tamper_weights(run)
    out = tmp_path / "release"
    with pytest.raises(SystemExit) as exc:
        release_main([str(run), "--out", str(out), "--sample", "100"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: release refused: generator.pt in") and err.count("\n") == 1
    assert not out.exists()
    with pytest.raises(SystemExit):
        release_main([str(run), "--out", str(out), "--seed", "4"])
    assert "only applies with --sample N" in capsys.readouterr().err
    assert not out.exists()
