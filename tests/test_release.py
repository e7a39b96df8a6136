"""``python -m dpshare.release``: a checked run becomes a release; every failed check refuses,
exits non-zero with one clear line and leaves nothing at ``--out``.

Two tiny real runs (a DP run and a non-private one, seconds each) are trained once for the
module; each test copies one and tampers with the copy."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from conftest import TINY, compose_config
from dpshare.release import CARD_JSON, CARD_MD, EXACT_COPY_METRIC, main
from dpshare.reporting import records
from dpshare.train import load_data, train

# the tiny run, evaluated with only what a release reads (copies and DCR), one utility model
SMALL_EVAL = [
    *TINY,
    "scale.max_epochs=1",
    "eval.models=[logistic_regression]",
    "eval.primary_model=logistic_regression",
    "eval.trtr=false",
    "eval.fidelity=[]",
    "eval.attacks=[copies,mia_dcr]",
    "eval.attack_targets=100",
    "torch_threads=1",
]
DP_RUN = [*SMALL_EVAL, "privacy=fixed", "privacy.target_epsilon=1.0", "privacy.target_delta=1e-4"]
NON_PRIVATE_RUN = [*SMALL_EVAL, "privacy=none"]


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("release") / "dp_run"
    train(compose_config(DP_RUN, run_dir))
    return run_dir


@pytest.fixture(scope="module")
def non_private_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("release") / "non_private_run"
    train(compose_config(NON_PRIVATE_RUN, run_dir))
    return run_dir


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def _edit_json(path: Path, edit: Any) -> None:
    data = records.read_json(path)
    edit(data)
    records.write_json(path, data)


def _edit_config(run_dir: Path, edit: Any) -> None:
    path = run_dir / records.RESOLVED_CONFIG_FILE
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config))


def _released(run_dir: Path, out: Path, *flags: str) -> dict[str, Any]:
    assert main([str(run_dir), "--out", str(out), *flags]) == 0
    return json.loads((out / CARD_JSON).read_text())


def _refused(run_dir: Path, out: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main([str(run_dir), "--out", str(out), *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: release refused: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not out.exists()  # nothing written, not even the directory
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    return err


# ------------------------------------------------------------------------------- success


def test_a_dp_run_is_released_with_its_card(dp_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "release"
    card = _released(dp_run, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [CARD_JSON, CARD_MD, "synthetic.csv", "synthetic.parquet"]
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".release.")]
    # the table in the original schema: Parquet keeps dtypes, CSV the same values
    original = pd.read_parquet(dp_run / "synthetic.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(out / "synthetic.parquet"), original)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "synthetic.csv"), pd.read_csv(dp_run / "synthetic.csv")
    )
    assert card["n_rows"] == len(original)
    schema = card["schema"]["columns"]
    assert [c["name"] for c in schema] == list(original.columns)
    assert [c["dtype"] for c in schema] == [str(t) for t in original.dtypes]
    # the privacy figures: recomputed epsilon within the target, and the full ledger
    metrics = records.read_json(dp_run / "metrics.json")
    ledger = records.read_json(dp_run / "privacy_ledger.json")
    privacy = card["privacy"]
    assert privacy["differentially_private"] is True
    assert 0.5 < privacy["epsilon_spent"] <= privacy["target_epsilon"] == 1.0
    assert math.isclose(privacy["epsilon_spent"], metrics["privacy/epsilon_spent"], rel_tol=1e-9)
    assert privacy["delta"] == 1e-4 and privacy["accountant"] == "rdp"
    assert card["ledger"]["entries"] == ledger["entries"]
    modules = [e["module"] for e in card["sigma_schedule"]["entries"]]
    assert "discriminator" in modules
    steps = {e["module"]: e["steps"] for e in card["sigma_schedule"]["entries"]}
    assert steps["discriminator"] == metrics["privacy/noisy_steps"] > 0
    # copies: recomputed on the exported table, equal to the run's copies attack
    assert card["copies"]["exact_copy_share"] == metrics[EXACT_COPY_METRIC] == 0.0
    assert card["copies"]["source"].startswith("recomputed")
    assert card["copies"]["dcr_median"] == metrics["attack/copies/dcr_median"]
    assert card["attacks"]["attack/mia_dcr/auc"]["value"] == metrics["attack/mia_dcr/auc"]
    assert card["attacks"]["attack/mia_dcr/auc"]["direction"] == "minimize"
    # provenance
    run = records.read_json(dp_run / "run.json")
    assert card["code_version"]["git_commit"] == run["environment"]["git_commit"]
    assert card["source_run_dir"] == str(dp_run.resolve())
    assert card["config"]["privacy"]["target_epsilon"] == 1.0
    assert [c["name"] for c in card["checks"]] == [
        "complete_run",
        "synthetic_artifact",
        "ledger_present",
        "ledger_consistent",
        "differentially_private",
        "budget",
        "synthetic_table",
        "exact_copies",
    ]
    assert set(card["files"]) == {"synthetic.csv", "synthetic.parquet"}
    text = (out / CARD_MD).read_text()
    assert "epsilon spent (recomputed from the ledger)" in text
    assert "OUTSIDE the privacy accountant" in text
    assert "NOT DIFFERENTIALLY PRIVATE" not in text


def test_a_non_empty_out_needs_force(
    dp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "release"
    out.mkdir()
    _released(dp_run, out)  # an empty directory is replaced
    shutil.rmtree(out)
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(SystemExit) as exc:
        main([str(dp_run), "--out", str(out)])
    assert exc.value.code == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    _released(dp_run, out, "--force")
    assert not (out / "old.txt").exists() and (out / CARD_JSON).is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["release"]  # no temp or backup left


def test_the_run_directory_is_never_the_out(
    dp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([str(dp_run), "--out", str(dp_run.parent), "--force"])
    assert "contains the run directory" in capsys.readouterr().err
    assert (dp_run / "metrics.json").is_file()


# ------------------------------------------------------------------------------- refusals


def test_epsilon_above_the_target_refuses(
    dp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(dp_run, tmp_path)

    def lower(target: dict[str, Any], key: str) -> None:
        target[key] = 0.5

    # the same (lower) target everywhere it is recorded, so the record stays consistent
    _edit_json(run / "privacy_ledger.json", lambda d: lower(d, "target_epsilon"))
    _edit_json(run / "metrics.json", lambda d: lower(d, "privacy/target_epsilon"))
    _edit_config(run, lambda c: lower(c["privacy"], "target_epsilon"))
    err = _refused(run, tmp_path / "out", capsys)
    assert "exceeds the run's target epsilon (privacy.target_epsilon) 0.5" in err
    eps = records.read_json(run / "metrics.json")["privacy/epsilon_spent"]
    assert f"epsilon spent {eps:.4g}" in err


def test_the_data_holders_max_epsilon_refuses(
    dp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(dp_run, tmp_path / "out", capsys, "--max-epsilon", "0.1")
    assert "exceeds --max-epsilon 0.1" in err


def test_a_non_private_run_needs_the_flag(
    non_private_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(non_private_run, tmp_path / "out", capsys)
    assert "is not differentially private: privacy=none" in err
    assert "non-private access(es) to real records" in err and "--allow-non-private" in err
    card = _released(non_private_run, tmp_path / "out", "--allow-non-private")
    assert card["privacy"]["differentially_private"] is False
    assert card["privacy"]["released_with_allow_non_private"] is True
    assert card["privacy"]["epsilon_spent"] == "inf"
    assert "NOT DIFFERENTIALLY PRIVATE" in (tmp_path / "out" / CARD_MD).read_text()


def test_a_declared_public_read_needs_the_flag(
    dp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(dp_run, tmp_path)

    def add_public_read(ledger: dict[str, Any]) -> None:
        ledger["entries"].append(
            {
                "mechanism": "declared_public",
                "module": "controller_signal",
                "purpose": "public validation records for a noise controller",
                "records": 250,
                "differentially_private": True,
                "parameters": {},
            }
        )

    _edit_json(run / "privacy_ledger.json", add_public_read)
    err = _refused(run, tmp_path / "out", capsys)
    assert "records declared public were read with no protection" in err


def test_a_missing_ledger_refuses(
    dp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(dp_run, tmp_path)
    (run / "privacy_ledger.json").unlink()
    err = _refused(run, tmp_path / "out", capsys, "--allow-non-private")
    assert "the privacy ledger is missing" in err


def _fewer_history_steps(ledger: dict[str, Any]) -> None:
    entry = next(e for e in ledger["entries"] if e["mechanism"] == "dp_sgd")
    entry["history"][-1][2] -= 1


def _more_noisy_steps(metrics: dict[str, Any]) -> None:
    metrics["privacy/noisy_steps"] += 1


def _smaller_epsilon(ledger: dict[str, Any]) -> None:
    ledger["epsilon_spent"] = 0.5


def _larger_sigma(ledger: dict[str, Any]) -> None:
    entry = next(e for e in ledger["entries"] if e["mechanism"] == "dp_sgd")
    entry["history"][0][0] *= 2


@pytest.mark.parametrize(
    ("file", "edit", "match"),
    [
        ("privacy_ledger.json", _fewer_history_steps, "its noise history sums to"),
        ("metrics.json", _more_noisy_steps, "noisy steps (privacy/noisy_steps)"),
        ("privacy_ledger.json", _smaller_epsilon, "privacy_ledger.json epsilon_spent is 0.5"),
        ("privacy_ledger.json", _larger_sigma, "the rdp accountant recomputes epsilon"),
    ],
)
def test_an_inconsistent_ledger_refuses(
    dp_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    file: str,
    edit: Any,
    match: str,
) -> None:
    run = _copy(dp_run, tmp_path)
    _edit_json(run / file, edit)
    err = _refused(run, tmp_path / "out", capsys)
    assert "the privacy ledger of" in err and "is inconsistent" in err
    assert match in err


def _inject_train_rows(run: Path, n_copies: int, *, as_made_by_the_run: bool = True) -> int:
    """Replace the first synthetic rows with real train records; returns the table size.
    ``as_made_by_the_run``: also record the new table's digest in run.json, as if the run had
    generated those copies itself (else the release sees a table altered after the run)."""
    config = yaml.safe_load((run / records.RESOLVED_CONFIG_FILE).read_text())
    _, splits = load_data(OmegaConf.create(config))
    frame = pd.read_parquet(run / "synthetic.parquet")
    copies = splits.train[frame.columns].iloc[:n_copies].astype(frame.dtypes.to_dict())
    tampered = pd.concat([copies, frame.iloc[n_copies:]], ignore_index=True)
    tampered = tampered.astype(frame.dtypes.to_dict())
    tampered.to_parquet(run / "synthetic.parquet", index=False)
    if as_made_by_the_run:
        digest = records.file_sha256(run / "synthetic.parquet")
        _edit_json(
            run / records.RUN_FILE,
            lambda r: r.__setitem__("artifact_sha256", {"synthetic.parquet": digest}),
        )
    return len(tampered)


def test_a_table_altered_after_the_run_is_refused(
    dp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(dp_run, tmp_path)
    assert "artifact_sha256" in json.loads((run / records.RUN_FILE).read_text())
    _inject_train_rows(run, 1, as_made_by_the_run=False)
    err = _refused(run, tmp_path / "out", capsys, "--max-exact-copy-share", "1")
    assert "synthetic.parquet in" in err and "changed after the run" in err
    assert not (tmp_path / "out").exists()


def test_exact_copies_above_the_threshold_refuse(
    dp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(dp_run, tmp_path)
    n = _inject_train_rows(run, 5)
    err = _refused(run, tmp_path / "out", capsys)
    assert f"(5 of {n}) copy a real train record exactly" in err
    assert "--max-exact-copy-share 0" in err
    # a looser threshold: the table no longer matches the one the run evaluated
    err = _refused(run, tmp_path / "out", capsys, "--max-exact-copy-share", "0.01")
    assert "the table changed after evaluation" in err
    # as recorded by an evaluation of this very table, the looser threshold releases it
    _edit_json(run / "metrics.json", lambda m: m.__setitem__(EXACT_COPY_METRIC, 5 / n))
    card = _released(run, tmp_path / "out", "--max-exact-copy-share", "0.01")
    assert card["copies"]["n_exact_copies"] == 5
    assert card["copies"]["exact_copy_share"] == pytest.approx(5 / n)


def test_without_real_data_the_recorded_copy_share_is_used_or_the_release_refuses(
    dp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(dp_run, tmp_path)
    _edit_config(run, lambda c: c["dataset"].__setitem__("name", "no_such_dataset"))
    card = _released(run, tmp_path / "out")
    assert card["copies"]["source"].startswith("recorded")
    assert "no_such_dataset" in card["copies"]["recompute_error"]
    _edit_json(run / "metrics.json", lambda m: m.pop(EXACT_COPY_METRIC))
    err = _refused(run, tmp_path / "out2", capsys)
    assert "no exact-copy share" in err and "did not run the copies attack" in err


@pytest.mark.parametrize("how", ["no_metrics", "running"])
def test_an_incomplete_run_refuses(
    dp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    run = _copy(dp_run, tmp_path)
    if how == "no_metrics":
        (run / "metrics.json").unlink()
        match = "metrics.json (written last; its absence marks an incomplete run) is missing"
    else:
        _edit_json(run / "run.json", lambda r: r.__setitem__("status", "running"))
        match = "is not complete (run.json status 'running')"
    err = _refused(run, tmp_path / "out", capsys)
    assert match in err


def test_a_released_model_is_not_a_dataset(
    dp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(dp_run, tmp_path)
    _edit_json(run / "metrics.json", lambda m: m.__setitem__("data/artifact", "model"))
    err = _refused(run, tmp_path / "out", capsys)
    assert "released a model (model.pt), not a synthetic dataset" in err
