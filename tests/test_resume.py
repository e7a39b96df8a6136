"""Crash safety of sweeps: a multirun killed mid-way and run again loses no finished point,
recomputes none, and redoes the interrupted one (records keyed by the resolved-config hash)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import PYTHON, TINY, compose_config, subprocess_env
from dpshare.reporting import index, records

FAST = [
    *TINY,
    "scale.max_records=1500",
    "eval.models=[logistic_regression]",
    "eval.primary_model=logistic_regression",
    "eval.fidelity=[]",
    "eval.attacks=[]",
    "hydra/launcher=basic",
]


def _sweep(tmp_path: Path, sweep: Path) -> list[str]:
    # point 1 trains 30 epochs (~5 s), a wide window to kill it in; points 0 and 2 are short
    return [
        "-m",
        *FAST,
        "scale.max_epochs=1,30,2",
        f"output_root={tmp_path}",
        f"hydra.sweep.dir={sweep}",
    ]


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "dpshare.train", *args],
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, killed as a whole
    )


def _rerun(tmp_path: Path, sweep: Path) -> None:
    out = subprocess.run(
        [PYTHON, "-m", "dpshare.train", *_sweep(tmp_path, sweep)],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def _status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / records.RUN_FILE).read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


def test_killed_multirun_rerun_keeps_finished_points_and_redoes_the_interrupted_one(
    tmp_path: Path,
) -> None:
    first = tmp_path / "sweep1"
    proc = _start(_sweep(tmp_path, first), tmp_path)
    deadline = time.monotonic() + 400
    try:  # kill once point 0 is complete and point 1 is training
        while _status(first / "1") != "running":  # basic launcher: point 0 is done by then
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the sweep did not reach point 1 in time"
            time.sleep(0.05)
        time.sleep(0.5)  # well inside point 1's training
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert index.is_complete(first / "0")
    assert not (first / "1" / records.METRICS_FILE).exists()  # interrupted: no record
    assert not (first / "2").exists()
    finished_mtime = (first / "0" / records.METRICS_FILE).stat().st_mtime_ns
    finished = json.loads((first / "0" / records.METRICS_FILE).read_text())

    # the same command again (Hydra gives it a new sweep directory)
    second = tmp_path / "sweep2"
    _rerun(tmp_path, second)
    reused = json.loads((second / "0" / records.RUN_FILE).read_text())
    assert reused["reused_from"] == str((first / "0").resolve())  # not recomputed ...
    assert json.loads((second / "0" / records.METRICS_FILE).read_text()) == finished
    assert (first / "0" / records.METRICS_FILE).stat().st_mtime_ns == finished_mtime  # ... kept
    for point in ("1", "2"):  # the interrupted point and the one never started: computed
        info = json.loads((second / point / records.RUN_FILE).read_text())
        assert info["status"] == "complete" and "reused_from" not in info
        assert index.is_complete(second / point, info["config_hash"])
    hashes = {json.loads((second / p / records.RUN_FILE).read_text())["config_hash"] for p in "012"}
    assert len(hashes) == 3  # one per point

    # a re-run into the FIRST sweep directory completes it in place
    _rerun(tmp_path, first)
    assert (first / "0" / records.METRICS_FILE).stat().st_mtime_ns == finished_mtime
    for point in ("1", "2"):  # complete in sweep2 already: reused, not recomputed
        info = json.loads((first / point / records.RUN_FILE).read_text())
        assert info["reused_from"] == str((second / point).resolve())


def test_config_hash_ignores_where_the_record_goes_but_not_what_is_computed(
    tmp_path: Path,
) -> None:
    base = compose_config(TINY, tmp_path / "a")
    moved = compose_config([*TINY, f"output_root={tmp_path}", "torch_threads=1"], tmp_path / "b")
    other_seed = compose_config([*TINY, "seed=1"], tmp_path / "a")
    other_eps = compose_config([*TINY, "privacy=fixed", "privacy.target_epsilon=2"], tmp_path / "a")
    assert index.config_hash(base) == index.config_hash(moved)
    assert len({index.config_hash(c) for c in (base, other_seed, other_eps)}) == 3
    # records made by other code are never reused
    assert index.config_hash(base, code="0.1+abc") != index.config_hash(base, code="0.1+abd")
    assert index.code_version().startswith(__import__("dpshare").__version__ + "+")


def test_incomplete_or_foreign_records_are_not_reused(tmp_path: Path) -> None:
    cfg = compose_config(TINY, tmp_path / "run")
    digest = index.config_hash(cfg)
    run = tmp_path / "run"
    run.mkdir()
    records.write_json(run / records.RUN_FILE, {"status": "running", "config_hash": digest})
    assert index.find_complete(tmp_path, digest, run) is None  # no metrics.json
    records.write_json(run / records.METRICS_FILE, {"utility/x": 1.0})
    assert index.find_complete(tmp_path, digest, run) is None  # status still running
    records.write_json(run / records.RUN_FILE, {"status": "complete", "config_hash": "other"})
    assert index.find_complete(tmp_path, digest, run) is None  # another config's record
    records.write_json(run / records.RUN_FILE, {"status": "complete", "config_hash": digest})
    assert index.find_complete(tmp_path, digest, tmp_path / "elsewhere") is None  # not indexed
    index.register_complete(tmp_path, digest, run)
    assert index.find_complete(tmp_path, digest, tmp_path / "elsewhere") == run.resolve()
    (run / records.METRICS_FILE).write_text("{truncated")  # a damaged record is not reused
    assert index.find_complete(tmp_path, digest, tmp_path / "elsewhere") is None


def test_bad_skip_completed_value_is_refused(tmp_path: Path) -> None:
    from dpshare.errors import UserInputError
    from dpshare.train import train

    cfg = compose_config(TINY, tmp_path / "run")
    OmegaConf.update(cfg, "skip_completed", "sometimes")
    with pytest.raises(UserInputError, match="skip_completed='sometimes'; choose one of"):
        train(cfg)


def test_a_run_directory_in_use_by_a_live_process_is_refused_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes in one directory (two sweeps launched in the same second) would mix their
    records: the later one stops before writing anything; a dead process's directory is reused."""
    import platform
    import sys

    from dpshare.errors import UserInputError
    from dpshare.train import train

    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = {"status": "running", "pid": other.pid, "host": platform.node(),
                "started_at": "2026-12-07T23:12:05+0000"}  # fmt: skip
        text = json.dumps(busy)
        (run_dir / records.RUN_FILE).write_text(text, encoding="utf-8")
        (run_dir / records.METRICS_FILE).write_text("{}", encoding="utf-8")  # the other's
        cfg = compose_config(FAST, run_dir)
        with pytest.raises(UserInputError, match=f"is in use: .* process {other.pid} on this"):
            train(cfg)
        assert (run_dir / records.RUN_FILE).read_text(encoding="utf-8") == text
        assert (run_dir / records.METRICS_FILE).is_file()
        assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.json", "run.json"]
        # one rank of a multi-device run shares the directory by design
        monkeypatch.setenv("LOCAL_RANK", "1")
        from dpshare import train as train_module

        train_module._refuse_a_run_dir_in_use(run_dir)
    finally:
        other.kill()
        other.wait()
    monkeypatch.delenv("LOCAL_RANK")
    # the process is gone (stopped from outside): running here again is what is wanted
    metrics = train(cfg)
    assert metrics and records.read_json(run_dir / records.RUN_FILE)["status"] == "complete"


def test_directory_stamps_have_microseconds_so_same_second_launches_differ() -> None:
    """Two sweeps started in the same second got one directory before (their records mixed)."""
    import re

    from hydra import compose, initialize_config_dir

    from dpshare.config import register_configs
    from dpshare.train import CONF_DIR

    register_configs()
    stamp = r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}-\d{6}"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment_name=x"], return_hydra_config=True)
    sweep = OmegaConf.select(cfg, "hydra.sweep.dir")
    run = OmegaConf.select(cfg, "hydra.run.dir")
    assert re.search(rf"/multiruns/x/{stamp}$", sweep), sweep
    assert re.search(rf"/runs/x/{stamp}_", run), run
    assert re.fullmatch(stamp, records.run_stamp())


def test_record_writes_are_atomic_and_readable_by_the_team(tmp_path: Path) -> None:
    path = tmp_path / records.METRICS_FILE
    records.write_json(path, {"utility/x": 1.0})

    def crash_half_way(tmp: Path) -> None:
        tmp.write_text('{"utility/x": 2.')  # a crash in the middle of the write
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        records._atomic(path, crash_half_way)
    assert json.loads(path.read_text()) == {"utility/x": 1.0}  # the old record, intact
    assert [p.name for p in tmp_path.iterdir()] == [records.METRICS_FILE]  # no temp file left
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's owner-only 0600


def test_an_archived_record_is_reused_across_machines_and_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make reproduce resumes from results/records: a point whose archived record ran the same
    resolved config is reused even where the outputs/ index is gone and the code has moved on."""
    from dpshare.reporting import archive
    from dpshare.train import train

    first_root, run = tmp_path / "machine1", tmp_path / "machine1" / "2026-12-07_10-00-00" / "0"
    train(compose_config([*FAST, f"output_root={first_root}"], run))
    made = json.loads((run / records.METRICS_FILE).read_text())
    archived = tmp_path / "results" / "records"
    assert archive.archive_records([(first_root, run)], archived) == 1
    assert archive.archive_records([(first_root, run)], archived) == 0  # already there
    copy = archived / "2026-12-07_10-00-00" / "0"
    assert (copy / records.METRICS_FILE).is_file() and not (copy / "synthetic.parquet").exists()

    # another machine (no outputs/ index) and another commit (another strict config hash)
    monkeypatch.setattr(index, "code_version", lambda: "0.0+another-commit")
    other = [*FAST, f"output_root={tmp_path / 'machine2'}", "skip_completed=always"]
    again = tmp_path / "machine2" / "run"
    cfg = compose_config([*other, f"reuse_records=['{archived}']"], again)
    assert train(cfg) == made
    info = json.loads((again / records.RUN_FILE).read_text())
    assert info["reused_from"] == str(copy.resolve())
    # outside a Hydra app the record still has its config where load_run reads it (main job)
    from dpshare.reporting.summary import load_run

    assert load_run(again).metrics == made
    # another config (seed) is not the archived one; without reuse_records nothing is looked up
    for overrides in ([*other, "seed=1", f"reuse_records=['{archived}']"], other):
        other_cfg = compose_config(overrides, tmp_path / "machine2" / "x")
        same = archive.protocol_hash(OmegaConf.to_yaml(other_cfg, resolve=True))
        found = archive.find_archived(list(other_cfg.reuse_records), same)
        assert found is None
    # the archived config hashes as the live one does (one parser on both sides)
    cfg_hash = archive.protocol_hash(OmegaConf.to_yaml(cfg, resolve=True))
    assert cfg_hash == archive.protocol_hash((copy / records.RESOLVED_CONFIG_FILE).read_text())


def test_a_setting_added_later_at_its_old_value_keeps_the_protocol_hash() -> None:
    """A record made before ``method.mean_embedding_weight`` existed is the same point as a new
    run that leaves it off; the option switched on is another point."""
    from dpshare.reporting import archive

    off = [*FAST, "method=multidisc_gan", "method.mean_embedding_weight=0.0"]
    live = OmegaConf.to_yaml(compose_config(off), resolve=True)
    plain = yaml.safe_load(live)
    assert plain["method"]["mean_embedding_weight"] == 0.0
    before = {**plain, "method": dict(plain["method"])}
    for key in ("mean_embedding_weight", "mean_embedding_features", "mean_embedding_bandwidth"):
        before["method"].pop(key)
    assert archive.protocol_hash(yaml.safe_dump(before)) == archive.protocol_hash(live)
    on = {**plain, "method": {**plain["method"], "mean_embedding_weight": 100.0}}
    assert archive.protocol_hash(yaml.safe_dump(on)) != archive.protocol_hash(live)
    # a record that ran another value of a changed default is another point too
    ema = {**before, "method": {**before["method"], "generator_ema": 0.5}}
    assert archive.protocol_hash(yaml.safe_dump(ema)) != archive.protocol_hash(live)
    # the same for privacy.release_budget_share: absent (older records) = null = the fixed noise
    dp = [*off, "privacy=fixed", "privacy.target_epsilon=1"]
    live = OmegaConf.to_yaml(compose_config(dp), resolve=True)
    plain = yaml.safe_load(live)
    assert plain["privacy"]["release_budget_share"] is None
    fixed = {**plain, "privacy": dict(plain["privacy"])}
    fixed["privacy"].pop("release_budget_share")
    assert archive.protocol_hash(yaml.safe_dump(fixed)) == archive.protocol_hash(live)
    share = {**plain, "privacy": {**plain["privacy"], "release_budget_share": 0.3}}
    assert archive.protocol_hash(yaml.safe_dump(share)) != archive.protocol_hash(live)


def test_a_reused_records_nested_variants_say_they_are_copies(tmp_path: Path) -> None:
    """A record's release variants (variants/<name>/, each with its own run.json) are copied
    with it; each copy says reused_from, so the report never archives it as a new record, and
    the source's files are untouched (the copy replaces its hard link)."""
    source = tmp_path / "source"
    variant = source / "variants" / "variant0"
    records.write_json(source / records.RUN_FILE, {"status": "complete", "config_hash": "h"})
    records.write_json(variant / records.RUN_FILE, {"status": "complete", "variant": "v0"})
    records.write_json(variant / records.METRICS_FILE, {"utility/tstr_auc": 0.75})
    records.write_json(source / records.METRICS_FILE, {"utility/tstr_auc": 0.7})
    copy = tmp_path / "copy"
    metrics = index.reuse_record(source, copy, "h")
    assert metrics == {"utility/tstr_auc": 0.7}
    info = records.read_json(copy / records.RUN_FILE)
    assert info["reused_from"] == str(source.resolve())
    nested = records.read_json(copy / "variants" / "variant0" / records.RUN_FILE)
    assert nested == {"status": "complete", "variant": "v0", "reused_from": str(variant.resolve())}
    assert records.read_json(copy / "variants" / "variant0" / records.METRICS_FILE) == {
        "utility/tstr_auc": 0.75
    }
    assert "reused_from" not in records.read_json(variant / records.RUN_FILE)  # source intact
