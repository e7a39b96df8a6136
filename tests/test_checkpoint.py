"""Checkpoints and resume: a crashed DP run continues from its last checkpoint, its epsilon
continues from the last step the crashed process took (never resets), checkpoints load with
``torch.load(weights_only=True)``, and bad checkpoints or mismatched configs are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import TINY, compose_config
from dpshare import checkpoint
from dpshare.errors import UserInputError
from dpshare.models.standard_gan import ConditionalGAN
from dpshare.reporting import records
from dpshare.train import train

RUN = [
    *TINY,
    "scale.max_epochs=3",
    "privacy=fixed",
    "privacy.target_epsilon=3",
    "eval.models=[logistic_regression]",
    "eval.primary_model=logistic_regression",
    "eval.fidelity=[]",
    "eval.attacks=[]",
    "privacy.noise_seed=null",  # OS entropy on purpose: the secret release seed is under test
]
CRASH_AT_STEP = 11  # the 3rd step of epoch 2: two noisy steps after the epoch-1 checkpoint


def _crash(run_dir: Path, overrides: list[str]) -> Path:
    original = ConditionalGAN.training_step
    calls = {"n": 0}

    def crashing(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == CRASH_AT_STEP:
            raise RuntimeError("simulated crash")
        return original(self, batch, batch_idx)

    ConditionalGAN.training_step = crashing  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(compose_config(overrides, run_dir))
    finally:
        ConditionalGAN.training_step = original  # type: ignore[method-assign]
    return run_dir


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _crash(tmp_path_factory.mktemp("crashed") / "run", RUN)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_crashed_run_keeps_a_weights_only_checkpoint_and_a_step_journal(crashed: Path) -> None:
    assert not (crashed / records.METRICS_FILE).exists()
    assert json.loads((crashed / records.RUN_FILE).read_text())["status"] == "failed"
    state = torch.load(crashed / checkpoint.CHECKPOINT_FILE, weights_only=True)
    saved = state[checkpoint.STATE_KEY]
    steps_per_epoch = saved["counters"]["discriminator_updates"]
    assert state["epoch"] == 0 and saved["noisy_steps"] == steps_per_epoch
    journal = checkpoint.read_journal(crashed / checkpoint.JOURNAL_FILE)
    assert len(journal) == CRASH_AT_STEP - 1  # every step taken, including the two lost ones
    assert {line["module"] for line in journal} == {"discriminator"}
    # the secret release seed lives in the checkpoint only, in no record file
    seed = str(saved["release_seed"])
    for path in crashed.rglob("*"):
        if path.is_file() and path.name != checkpoint.CHECKPOINT_FILE:
            assert seed not in path.read_text(errors="ignore"), path


def test_resume_continues_epsilon_and_charges_the_lost_steps(crashed: Path, tmp_path: Path) -> None:
    source = _copy(crashed, tmp_path / "crashed")
    metrics = train(compose_config([*RUN, f"resume={source}"], tmp_path / "resumed"))
    resumed = tmp_path / "resumed"
    info = json.loads((resumed / records.RUN_FILE).read_text())
    assert info["status"] == "complete" and info["resumed_from"] == str(source.resolve())
    ledger = json.loads((resumed / records.LEDGER_FILE).read_text())
    entries = {e["module"]: e for e in ledger["entries"]}
    # the pre-training releases are reproduced (same secret seed), charged once
    assert [e["module"] for e in ledger["entries"]].count("transformer") == 1
    trained = metrics["train/discriminator_steps"]
    saved = torch.load(crashed / checkpoint.CHECKPOINT_FILE, weights_only=True)
    steps_per_epoch = saved[checkpoint.STATE_KEY]["counters"]["discriminator_updates"]
    lost = (CRASH_AT_STEP - 1) - steps_per_epoch  # taken after the checkpoint, then lost
    assert lost == 2
    # charged = every step of the crashed process (the lost ones too) + the new ones
    assert entries["discriminator"]["steps"] == trained + lost
    params = entries["discriminator"]["parameters"]
    assert params["noisy_steps"] == trained + lost and params["steps_lost_in_crash"] == lost
    # sigma was calibrated for exactly 3 epochs of steps: the lost steps' cost leaves room for
    # that many fewer new ones, and the ledger's hard stop enforces it
    assert trained + lost == 3 * steps_per_epoch
    assert metrics["privacy/epsilon_spent"] <= 3.0 + 1e-9
    assert not (resumed / checkpoint.CHECKPOINT_FILE).exists()  # deleted once complete
    journal = checkpoint.read_journal(resumed / checkpoint.JOURNAL_FILE)
    assert len(journal) == trained + lost
    # the resumed record passes the release gate's ledger-consistency checks
    from dpshare import release

    assert release.main([str(resumed), "--out", str(tmp_path / "shared")]) == 0
    card = json.loads(next((tmp_path / "shared").glob("*.json")).read_text())
    assert json.dumps(card).count("steps_lost_in_crash") >= 1


def test_resume_starts_at_the_epoch_after_the_checkpoint(tmp_path: Path) -> None:
    """With a fixed sigma and no budget, a resumed 3-epoch run takes exactly the steps of the
    two remaining epochs (restarting from scratch would take three more)."""
    fixed = [*RUN, "privacy.target_epsilon=null", "privacy.noise_multiplier=1.0"]
    source = _crash(tmp_path / "crashed", fixed)
    saved = torch.load(source / checkpoint.CHECKPOINT_FILE, weights_only=True)
    steps_per_epoch = saved[checkpoint.STATE_KEY]["counters"]["discriminator_updates"]
    metrics = train(compose_config([*fixed, f"resume={source}"], tmp_path / "resumed"))
    assert metrics["train/discriminator_steps"] == 3 * steps_per_epoch
    ledger = json.loads((tmp_path / "resumed" / records.LEDGER_FILE).read_text())
    charged = next(e for e in ledger["entries"] if e["module"] == "discriminator")["steps"]
    assert charged == 3 * steps_per_epoch + 2  # plus the two steps lost in the crash


def test_corrupted_checkpoint_is_refused_with_what_to_do(crashed: Path, tmp_path: Path) -> None:
    source = _copy(crashed, tmp_path / "crashed")
    ckpt = source / checkpoint.CHECKPOINT_FILE
    ckpt.write_bytes(ckpt.read_bytes()[:500])  # truncated
    with pytest.raises(UserInputError, match="cannot be read.*corrupted.*start a new run"):
        train(compose_config([*RUN, f"resume={source}"], tmp_path / "r"))
    assert not (tmp_path / "r" / records.METRICS_FILE).exists()
    ckpt.write_text("not a checkpoint at all")
    with pytest.raises(UserInputError, match="cannot be read"):
        train(compose_config([*RUN, f"resume={source}"], tmp_path / "r2"))


def test_resume_refusals(crashed: Path, tmp_path: Path) -> None:
    source = _copy(crashed, tmp_path / "crashed")
    with pytest.raises(UserInputError, match="made with another config"):
        train(
            compose_config(
                [*RUN, "privacy.target_epsilon=2", f"resume={source}"], tmp_path / "other"
            )
        )
    journal = source / checkpoint.JOURNAL_FILE
    journal.write_text("\n".join(journal.read_text().splitlines()[:3]) + "\n")
    with pytest.raises(UserInputError, match="journal is truncated"):
        train(compose_config([*RUN, f"resume={source}"], tmp_path / "trunc"))
    with pytest.raises(UserInputError, match="no such run directory"):
        train(compose_config([*RUN, f"resume={tmp_path / 'nope'}"], tmp_path / "x"))
    (source / checkpoint.CHECKPOINT_FILE).unlink()
    with pytest.raises(UserInputError, match="holds no checkpoint.ckpt"):
        train(compose_config([*RUN, f"resume={source}"], tmp_path / "y"))
    with pytest.raises(UserInputError, match="checkpoint_every_n_epochs=-1"):
        train(compose_config([*RUN, "checkpoint_every_n_epochs=-1"], tmp_path / "z"))


def test_journal_drops_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / checkpoint.JOURNAL_FILE
    good = json.dumps({"entry": 2, "module": "discriminator", "sigma": 1.1, "q": 0.1})
    path.write_text(good + "\n" + good + "\n" + good[:17])
    assert len(checkpoint.read_journal(path)) == 2
