"""Entry point: ``python -m dpshare.train [hydra overrides]``.

``main`` only composes the config and calls :func:`train`, a plain function that builds
everything from the config, trains, samples, evaluates, writes the run record and returns the
metrics dict (lightning-hydra-template's shape), so tests call ``train(cfg)`` directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, cast

import hydra
import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dpshare import checkpoint, distributed
from dpshare.artifact import write_artifact
from dpshare.config import register_configs
from dpshare.data.base import DataSplits, TabularData, split_records
from dpshare.data.datamodule import TabularDataModule
from dpshare.data.datasets import DATASETS
from dpshare.errors import UserInputError
from dpshare.evaluation import evaluate_utility
from dpshare.evaluation.attacks import ATTACKS
from dpshare.evaluation.attacks.runner import evaluate_attacks
from dpshare.evaluation.feature_nets import default_cache_dir
from dpshare.evaluation.fidelity import FEATURE_NETS, FIDELITY_METRICS, evaluate_fidelity
from dpshare.evaluation.utility import DOWNSTREAM_MODELS, evaluate_released_model
from dpshare.loggers import build_loggers, finish_loggers, log_run_record, log_summary
from dpshare.models import METHODS
from dpshare.models.base import ReleasedModelMethod, SyntheticDataMethod
from dpshare.privacy import BudgetExceededError, PrivacyLedger
from dpshare.privacy.plan import PrivacyPlan, plan_privacy
from dpshare.registry import UnknownNameError
from dpshare.reporting import archive, index, records
from dpshare.snapshots import SNAPSHOT_DIR, CapturedSnapshot, SnapshotCapture

log = logging.getLogger("dpshare.train")

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _quiet_libraries() -> None:
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # Opacus's per-sample hooks on the discriminator's first layer, whose inputs need no grad.
    warnings.filterwarnings("ignore", message=".*Full backward hook is firing.*")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one configuration end to end and return its metrics (also in ``metrics.json``).

    In a multirun (``skip_completed: multirun``, the default; ``always`` for single runs too)
    a point whose complete record already exists (same resolved-config hash, in this run
    directory or named by ``<output_root>/index/``) is not recomputed: its record is copied
    here (:mod:`dpshare.reporting.index`)."""
    reused = _reuse_complete(cfg)
    if reused is not None:
        return reused
    return train_method(cfg)[0]


def _refuse_a_run_dir_in_use(run_dir: Path) -> None:
    """Refuse a run directory whose ``run.json`` says a live process on this host is still
    running there: two processes writing one directory (two sweeps launched in the same second,
    before the stamps had microseconds, or a hand-set ``hydra.run.dir``) mix their records, and
    the later one would delete the other's ``metrics.json``. Raised before anything is written."""
    if _one_of_several_processes():
        return  # the ranks of one multi-device run share its directory by design
    path = run_dir / records.RUN_FILE
    try:
        run = records.read_json(path) if path.is_file() else None
    except (OSError, ValueError):
        return  # an unreadable run.json is a stale one: the run below rewrites it
    if not isinstance(run, dict) or run.get("status") != "running":
        return
    pid = run.get("pid")
    if pid == os.getpid() or run.get("host") != platform.node() or not isinstance(pid, int):
        return  # this process (a resumed or repeated call), or a record from elsewhere
    if records.process_gone(run):
        return  # a run stopped from outside: resuming or rerunning here is what is wanted
    raise UserInputError(
        f"run directory {run_dir} is in use: its run.json says process {pid} on this host has "
        f"been running there since {run.get('started_at')}; give this run its own directory "
        "(hydra.run.dir=..., or run_dir=... outside Hydra), or wait for that run to end"
    )


def _one_of_several_processes() -> bool:
    """Whether this process is one rank of a multi-process run (Lightning's DDP children,
    torchrun, SLURM tasks), from the environment those launchers set."""
    env = os.environ
    if "LOCAL_RANK" in env or "RANK" in env:
        return True
    for key in ("WORLD_SIZE", "SLURM_NTASKS"):
        try:
            if int(env.get(key) or 1) > 1:
                return True
        except ValueError:
            return True  # an unreadable count: assume several, never refuse a rank
    return False


def _reuse_complete(cfg: DictConfig) -> dict[str, Any] | None:
    mode = cfg.get("skip_completed", "multirun")
    if mode not in index.SKIP_MODES:
        raise UserInputError(
            f"skip_completed={mode!r}; choose one of {list(index.SKIP_MODES)} (multirun: reuse "
            "complete records of the same config in multiruns only)"
        )
    if mode == "never" or (mode == "multirun" and not _in_multirun()):
        return None
    digest = _config_hash_or_none(cfg)
    if digest is None:
        return None  # an unresolvable config: the error surfaces where the value is used
    source = index.find_complete(Path(cfg.output_root), digest, Path(cfg.run_dir))
    if source is None and cfg.get("reuse_records"):
        # the same resolved config by any code version (archive.protocol_hash), as the report
        # treats records of earlier commits: its settings check flags a changed default
        same = archive.protocol_hash(OmegaConf.to_yaml(cfg, resolve=True))
        source = archive.find_archived(list(cfg.reuse_records), same)
    if source is None:
        return None
    log.info(
        "complete record of this config (hash %s) at %s: reused, not recomputed", digest, source
    )
    _refuse_a_run_dir_in_use(Path(cfg.run_dir))  # (train_method checks the path that trains)
    metrics = index.reuse_record(source, Path(cfg.run_dir), digest)
    hydra_cfg = Path(cfg.run_dir) / ".hydra" / "config.yaml"
    if not hydra_cfg.exists():  # reused outside a Hydra app: the record's config, as train writes
        text = OmegaConf.to_yaml(cfg, resolve=True)
        records._atomic(hydra_cfg, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return metrics


def train_method(
    cfg: DictConfig,
) -> tuple[dict[str, Any], SyntheticDataMethod | ReleasedModelMethod]:
    """:func:`train`, also returning the fitted method (its ``sample`` draws more rows;
    :func:`dpshare.api.fit` is the friendlier entry point)."""
    _quiet_libraries()
    run_dir = records.prepare_run_dir(cfg.run_dir)  # a clear error if it cannot be written
    _refuse_a_run_dir_in_use(run_dir)
    hydra_cfg = run_dir / ".hydra" / "config.yaml"
    try:
        text: str | None = OmegaConf.to_yaml(cfg, resolve=True)
    except OmegaConfBaseException as exc:  # the error surfaces where the value is used
        log.warning("config not fully resolvable for %s: %s", records.RESOLVED_CONFIG_FILE, exc)
        text = None
    if text is not None:
        if not hydra_cfg.exists():  # called outside a Hydra app (tests, notebooks)
            records._atomic(hydra_cfg, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        resolved = run_dir / records.RESOLVED_CONFIG_FILE
        records._atomic(resolved, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    started = time.time()
    run_info: dict[str, Any] = {
        "status": "running",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "experiment_name": cfg.experiment_name,
        "dataset": cfg.dataset.name,
        "method": cfg.method.name,
        "privacy": cfg.privacy.name,
        "scale": cfg.scale.name,
        "seed": cfg.seed,
        "tags": list(cfg.tags),
        "command": " ".join(sys.argv),
        # the process and host, so that the report can tell a run killed without a word
        # (SIGKILL leaves this file "running") from one in progress (records.process_gone)
        "pid": os.getpid(),
        "host": platform.node(),
        "environment": records.environment(),
        "config_hash": _config_hash_or_none(cfg),
    }
    records.write_json(run_dir / records.RUN_FILE, run_info)
    stale = run_dir / records.METRICS_FILE
    stale.unlink(missing_ok=True)  # metrics.json marks completion; never keep an old one

    loggers: list[Any] = []
    status = "failed"
    journal: checkpoint.LedgerJournal | None = None
    try:
        check_eval_config(cfg.eval)
        every = _checkpoint_every(cfg)
        resume = _resume_state(cfg, run_info)
        run_info["torch_threads"] = _configure_threads(cfg.get("torch_threads"))
        distributed.check_config(cfg.trainer, private=cfg.privacy.name != "none")
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        t0 = time.perf_counter()
        data, splits = load_data(cfg)
        data_seconds = time.perf_counter() - t0
        log.info("data: %s; splits %s", data.description, splits.sizes())

        ledger, plan = _privacy_setup(cfg, n_train=len(splits.train))
        if plan is not None and resume is not None:
            plan.release_seed = resume.release_seed  # the same releases, not new ones
        elif plan is not None and every > 0 and plan.noise_seed is None:
            plan.release_seed = checkpoint.new_release_seed()
        public_validation = (
            splits.validation
            if plan is not None and plan.signal_source == "public_validation"
            else None
        )
        datamodule = TabularDataModule(
            data,
            splits.train,
            batch_size=cfg.method.batch_size,
            continuous_mode=cfg.method.continuous_mode,
            continuous_scale=str(cfg.method.get("continuous_scale", "linear")),
            ledger=ledger,
            seed=cfg.seed,
            plan=plan,
            public_validation=public_validation,
        )
        if resume is not None:
            datamodule.fresh_sampling = True
        method = METHODS.get(cfg.method.name)(cfg.method, datamodule, plan=plan)
        if resume is not None:  # epsilon continues from the crashed run's last step
            replayed = checkpoint.replay_journal(ledger, resume.journal)
            log.info(
                "resume: %d noisy steps replayed, epsilon %.4g", replayed, ledger.epsilon_spent()
            )
            method.resume_checkpoint = resume.checkpoint  # type: ignore[union-attr]
        if plan is not None and (every > 0 or resume is not None):
            journal = checkpoint.LedgerJournal(
                run_dir / checkpoint.JOURNAL_FILE,
                ledger,
                replayed=resume.journal if resume is not None else [],
            )
        saver = checkpoint.EpochCheckpoint(
            run_dir,
            every_n_epochs=every,
            config_hash=run_info["config_hash"],
            release_seed=plan.release_seed if plan is not None else None,
            journal=journal,
        )
        loggers = build_loggers(cfg, run_dir)
        trainer_args = cast(dict[str, Any], OmegaConf.to_container(cfg.trainer, resolve=True))
        if plan is not None and plan.training_length == "budget":
            trainer_args["max_epochs"] = plan.max_epochs  # the accountant sets the length
        trainer = pl.Trainer(
            **trainer_args,
            logger=loggers or False,
            default_root_dir=str(run_dir),
            enable_checkpointing=False,  # Lightning's own; ours is the EpochCheckpoint callback
            callbacks=[saver],
        )
        distributed.check_trainer(trainer, private=plan is not None, seed=cfg.seed)
        capture = _snapshot_capture(cfg, method, ledger, plan, trainer)
        t0 = time.perf_counter()
        reset_peak_memory()
        method.fit(trainer)
        fit_seconds = time.perf_counter() - t0
        if not trainer.is_global_zero:  # DDP: rank 0 samples, evaluates and writes the record
            status = "success"
            return {}, method

        timings = {
            "runtime/data_seconds": data_seconds,
            "runtime/fit_seconds": fit_seconds,
            "runtime/peak_memory_mb": peak_memory_mb(method),
        }
        evaluations: dict[str, tuple[dict[str, Any], str]] = {}  # release_and_evaluate
        metrics = release_and_evaluate(
            cfg,
            run_dir,
            method=method,
            datamodule=datamodule,
            data=data,
            splits=splits,
            ledger=ledger,
            plan=plan,
            run_info=run_info,
            timings=timings,
            started=started,
            evaluations=evaluations,
        )
        variants = list(cfg.method.get("release_variants") or [])
        if variants:
            run_info["release_variants"] = write_variants(
                cfg,
                run_dir,
                variants,
                method=method,
                datamodule=datamodule,
                data=data,
                splits=splits,
                ledger=ledger,
                plan=plan,
                run_info=run_info,
                timings=timings,
            )
        if capture is not None:
            run_info["snapshots"] = write_snapshots(
                cfg,
                run_dir,
                capture.finish(int(method.module.discriminator_updates)),
                method=method,
                datamodule=datamodule,
                data=data,
                splits=splits,
                plan=plan,
                run_info=run_info,
                timings=timings,
                evaluations=evaluations,
            )
        ledger_record = ledger.to_dict()
        if plan is not None:
            ledger_record["plan"] = plan.to_dict()
            ledger_record.update(method.privacy_summary())
        records.write_json(run_dir / records.LEDGER_FILE, ledger_record)
        log_summary(loggers, metrics)
        records.write_json(run_dir / records.METRICS_FILE, metrics)  # last: marks completion
        saver.remove()  # complete: the checkpoint (and its secret release seed) is not needed
        status = "success"
        run_info.update(status="complete", finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        records.write_json(run_dir / records.RUN_FILE, run_info)
        if run_info["config_hash"] is not None:
            index.register_complete(Path(cfg.output_root), run_info["config_hash"], run_dir)
        log_run_record(loggers, run_dir)  # W&B only; a failure there is a warning
        return metrics, method
    except BaseException as exc:
        run_info.update(
            status="failed",
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(limit=20),
        )
        records.write_json(run_dir / records.RUN_FILE, run_info)
        raise
    finally:
        if journal is not None:
            journal.close()
        finish_loggers(loggers, status)


def release_and_evaluate(
    cfg: DictConfig,
    run_dir: Path,
    *,
    method: SyntheticDataMethod | ReleasedModelMethod,
    datamodule: TabularDataModule,
    data: TabularData,
    splits: DataSplits,
    ledger: PrivacyLedger,
    plan: PrivacyPlan | None,
    run_info: dict[str, Any],
    timings: dict[str, float],
    started: float,
    evaluations: dict[str, tuple[dict[str, Any], str]] | None = None,
) -> dict[str, Any]:
    """The release of a trained method and its evaluation, into ``run_dir``: the synthetic
    table (or the model), artifacts, weights, then utility, fidelity and attacks, and the
    privacy keys of ``ledger``. Returns the metrics (not yet written: ``metrics.json`` marks
    completion and is the caller's last write). The run and each budget snapshot go through
    this same function.

    ``evaluations`` (one dict per training run) shares the evaluation between records of the
    same run that release a byte-identical synthetic table under the same ``eval`` config: a
    budget snapshot that training never got past (a capped trajectory, Tao 2020's grid at
    ``scale=cpu``) holds the final model, so its table, and therefore every utility, fidelity
    and attack score, is the run's. Scoring it again would cost minutes and give the same
    numbers; the record says whose evaluation it carries (``eval/shared_from``). Privacy keys are
    always the record's own."""
    t0 = time.perf_counter()
    synthetic: pd.DataFrame | None = None
    if isinstance(method, ReleasedModelMethod):  # the artifact is the model itself
        sample_seconds = 0.0
    else:
        n_synthetic = cfg.method.sample_size or datamodule.n_train
        generation = {
            key: OmegaConf.to_container(cfg.method[key], resolve=True)
            for key in ("class_mix", "conditions")
            if cfg.method.get(key)
        }
        synthetic = method.sample(n_synthetic, seed=cfg.seed, **generation)
        sample_seconds = time.perf_counter() - t0
        records.write_table(synthetic, run_dir, csv=cfg.save_synthetic_csv)
        # the release gate checks that the table it exports is the one this run made
        run_info["artifact_sha256"] = {
            records.SYNTHETIC_FILE: records.file_sha256(run_dir / records.SYNTHETIC_FILE)
        }
    for name, array in method.artifacts().items():
        records.write_array(run_dir / f"{name}.npy", array)
    records.write_torch(run_dir / records.MODEL_FILE, method.state_dict())
    if isinstance(method, SyntheticDataMethod) and method.saves_generator:  # load, sample later
        write_artifact(
            run_dir, cfg=cfg, method=method, datamodule=datamodule, ledger=ledger, run_info=run_info
        )

    # eval.score_on=validation (tuning runs): every score on the validation split, so that
    # choices are never made on the test split; otherwise the test split is scored and the
    # validation split only chooses the minority decision threshold
    tuning = cfg.eval.get("score_on", "test") == "validation"
    scored = splits.validation if tuning else splits.test
    share_key = _evaluation_key(cfg, run_info) if synthetic is not None else None
    if evaluations is not None and share_key is not None and share_key in evaluations:
        shared, source = evaluations[share_key]
        metrics = {**shared, "eval/shared_from": source}
        eval_seconds = fidelity_seconds = attack_seconds = 0.0
    else:
        metrics, eval_seconds, fidelity_seconds, attack_seconds = _evaluate(
            cfg, method, synthetic, data, splits, tuning=tuning, scored=scored
        )
        if evaluations is not None and share_key is not None:
            evaluations[share_key] = (dict(metrics), str(Path(run_dir).resolve()))
    metrics["data/scored_on"] = "validation" if tuning else "test"
    target = data.target
    transformer = getattr(datamodule, "transformer", None)  # None: a peer library encodes itself
    metrics.update(privacy_metrics(ledger, plan))
    metrics.update(
        {
            "data/n_train": len(splits.train),
            "data/n_validation": len(splits.validation),
            "data/n_test": len(splits.test),
            "data/n_synthetic": 0 if synthetic is None else len(synthetic),
            "data/n_features": len(data.feature_columns),
            "data/encoded_dim": None if transformer is None else transformer.output_dim,
            # numeric columns whose DP std is mostly noise (DPRelease.unresolved_std_columns)
            "data/unresolved_std_columns": _unresolved_std_columns(transformer),
            "data/positive_rate_train": float((splits.train[target] == data.positive_label).mean()),
            "data/positive_rate_synthetic": None
            if synthetic is None
            else float((synthetic[target] == data.positive_label).mean()),
            "data/artifact": "model" if synthetic is None else "synthetic",
            "train/discriminator_steps": getattr(method.module, "discriminator_updates", 0),
            "train/generator_steps": getattr(method.module, "generator_updates", 0),
            **timings,
            "runtime/sample_seconds": sample_seconds,
            "runtime/eval_seconds": eval_seconds,
            "runtime/fidelity_seconds": fidelity_seconds,
            "runtime/attack_seconds": attack_seconds,
            "runtime/total_seconds": time.time() - started,
        }
    )
    return metrics


def _evaluation_key(cfg: DictConfig, run_info: dict[str, Any]) -> str | None:
    """What decides an evaluation's numbers: the released table's hash and the ``eval``
    config (the splits and the data are the run's own, the same for all its records)."""
    table_hash = (run_info.get("artifact_sha256") or {}).get(records.SYNTHETIC_FILE)
    if table_hash is None:
        return None
    eval_cfg = json.dumps(OmegaConf.to_container(cfg.eval, resolve=True), sort_keys=True)
    return f"{table_hash}:{hashlib.sha256(eval_cfg.encode()).hexdigest()}"


def _unresolved_std_columns(transformer: Any) -> str | None:
    """Comma-separated columns whose DP-fitted std is mostly noise ("" for none); None when the
    run has no DP-fitted transformer (a raw or public fit, or a peer library)."""
    release = getattr(transformer, "release", None)
    if release is None:
        return None
    return ",".join(release.unresolved_std_columns())


def _evaluate(
    cfg: DictConfig,
    method: SyntheticDataMethod | ReleasedModelMethod,
    synthetic: pd.DataFrame | None,
    data: TabularData,
    splits: DataSplits,
    *,
    tuning: bool,
    scored: pd.DataFrame,
) -> tuple[dict[str, Any], float, float, float]:
    """Utility, fidelity and attack scores of one release, with the seconds each took."""
    t0 = time.perf_counter()
    eval_kwargs: dict[str, Any] = dict(
        real_train=splits.train,
        real_test=scored,
        validation=None if tuning else splits.validation,
        target=data.target,
        positive_label=data.positive_label,
        models=list(cfg.eval.models),
        primary_model=cfg.eval.primary_model,
        trtr=cfg.eval.trtr,
        max_train_rows=cfg.eval.max_train_rows,
        seed=cfg.eval.seed,
        cache_dir=default_cache_dir() if cfg.eval.trtr_cache else None,
    )
    metrics: dict[str, Any]
    if synthetic is None:
        assert isinstance(method, ReleasedModelMethod)
        metrics = evaluate_released_model(
            predict_proba=method.predict_proba, model_classes=method.classes, **eval_kwargs
        )
    else:
        metrics = evaluate_utility(synthetic=synthetic, **eval_kwargs)
    eval_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    if synthetic is not None and cfg.eval.fidelity:
        metrics.update(
            evaluate_fidelity(
                synthetic=synthetic,
                real_train=splits.train,
                real_test=scored,
                target=data.target,
                names=list(cfg.eval.fidelity),
                max_rows=cfg.eval.fidelity_max_rows,
                prdc_k=cfg.eval.prdc_k,
                seed=cfg.eval.seed,
                feature_net=cfg.eval.feature_net,
            )
        )
    fidelity_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    if cfg.eval.attacks:
        # the attacker's population: the reference split, else the validation split
        reference = splits.reference if len(splits.reference) else splits.validation
        released = isinstance(method, ReleasedModelMethod)
        metrics.update(
            evaluate_attacks(
                names=list(cfg.eval.attacks),
                real_train=splits.train,
                real_test=scored,
                reference=reference,
                target=data.target,
                positive_label=data.positive_label,
                synthetic=synthetic,
                predict_proba=method.predict_proba if released else None,
                model_classes=method.classes if released else None,
                released_surrogate=method.attack_surrogate if released else None,
                attack_model=cfg.eval.attack_model,
                n_targets=cfg.eval.attack_targets,
                params=OmegaConf.to_container(cfg.eval.attack_params, resolve=True),
                seed=cfg.eval.seed,
            )
        )
        metrics["attack/reference_split"] = "reference" if len(splits.reference) else "validation"
    attack_seconds = time.perf_counter() - t0
    return metrics, eval_seconds, fidelity_seconds, attack_seconds


def _snapshot_capture(
    cfg: DictConfig,
    method: Any,
    ledger: PrivacyLedger,
    plan: PrivacyPlan | None,
    trainer: pl.Trainer,
) -> SnapshotCapture | None:
    """The callback that captures ``privacy.snapshots`` during training (None without any)."""
    if plan is None or not plan.snapshots:
        return None
    if cfg.get("resume"):
        raise UserInputError(
            "privacy.snapshots with resume=: the snapshots before the crash were not kept; "
            "rerun the point without resume= (or drop privacy.snapshots)"
        )
    if not isinstance(method, SyntheticDataMethod):
        raise UserInputError(
            f"privacy.snapshots needs a generator method; method={cfg.method.name} releases a model"
        )
    method.snapshot_state()  # a method that cannot snapshot says so before any training
    capture = SnapshotCapture(method, ledger, plan.snapshots)
    trainer.callbacks.append(capture)
    return capture


VARIANT_DIR = "variants"
VARIANT_KEYS = ("class_mix", "conditions")


def write_variants(
    cfg: DictConfig,
    run_dir: Path,
    variants: list[Any],
    *,
    method: SyntheticDataMethod | ReleasedModelMethod,
    datamodule: TabularDataModule,
    data: TabularData,
    splits: DataSplits,
    ledger: PrivacyLedger,
    plan: PrivacyPlan | None,
    run_info: dict[str, Any],
    timings: dict[str, float],
) -> list[dict[str, Any]]:
    """One more released table per ``method.release_variants`` entry, sampled from the SAME
    trained generator with other generation settings (a class mix, conditions), each with a
    complete record under ``<run_dir>/variants/variant<i>/``: post-processing of the run's
    release, so its ledger is the run's (nothing more is charged). A failing variant leaves a
    failed record with its reason; the run stands."""
    if not isinstance(method, SyntheticDataMethod):
        raise UserInputError(
            f"method.release_variants needs a generator method; method={cfg.method.name} "
            "releases a model"
        )
    summary: list[dict[str, Any]] = []
    for i, spec in enumerate(variants):
        name = f"variant{i}"
        var_dir = records.prepare_run_dir(run_dir / VARIANT_DIR / name)
        info = {
            key: value
            for key, value in run_info.items()
            if key not in ("snapshots", "release_variants", "artifact_sha256", "status")
        }
        info.update(status="running", variant_of=str(Path(run_dir).resolve()))
        try:
            if not hasattr(spec, "keys") or not set(spec) or set(spec) - set(VARIANT_KEYS):
                raise UserInputError(
                    f"method.release_variants entry {spec!r}: give a mapping of "
                    f"{list(VARIANT_KEYS)} (e.g. {{class_mix: {{1: 0.3, 0: 0.7}}}})"
                )
            var_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
            for key in spec:
                if key not in var_cfg.method:
                    raise UserInputError(
                        f"method.release_variants: method={cfg.method.name} has no {key}"
                    )
                var_cfg.method[key] = OmegaConf.to_container(spec[key], resolve=True)
            var_cfg.method.release_variants = []
            var_cfg.run_dir = str(var_dir)
            _write_config(var_dir, var_cfg)
            info.update(
                variant={k: OmegaConf.to_container(spec[k], resolve=True) for k in spec},
                config_hash=_config_hash_or_none(var_cfg),
            )
            var_ledger = (
                ledger.snapshot(
                    target_epsilon=ledger.target_epsilon, target_delta=ledger.target_delta
                )
                if ledger.target_epsilon is not None
                else ledger
            )
            metrics = release_and_evaluate(
                var_cfg,
                var_dir,
                method=method,
                datamodule=datamodule,
                data=data,
                splits=splits,
                ledger=var_ledger,
                plan=plan,
                run_info=info,
                timings=timings,
                started=time.time(),
            )
            metrics["privacy/release_variant"] = 1
            ledger_record = var_ledger.to_dict()
            if plan is not None:
                ledger_record["plan"] = plan.to_dict()
            records.write_json(var_dir / records.LEDGER_FILE, ledger_record)
            records.write_json(var_dir / records.METRICS_FILE, metrics)
            info.update(status="complete", finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            records.write_json(var_dir / records.RUN_FILE, info)
            summary.append({"name": name, "status": "complete", "variant": info["variant"]})
        except Exception as exc:  # the run itself stands; the variant says why it failed
            log.error("release variant %s failed: %s", name, exc)
            info.update(
                status="failed",
                finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                error=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(limit=20),
            )
            records.write_json(var_dir / records.RUN_FILE, info)
            summary.append({"name": name, "status": "failed", "error": info["error"]})
    return summary


def _write_config(run_dir: Path, cfg: DictConfig) -> None:
    """The resolved config of an extra record (a snapshot or a release variant), where the
    report reads it."""
    text = OmegaConf.to_yaml(cfg)
    for path in (run_dir / records.RESOLVED_CONFIG_FILE, run_dir / ".hydra" / "config.yaml"):
        path.parent.mkdir(parents=True, exist_ok=True)
        records._atomic(path, lambda tmp, t=text: tmp.write_text(t, encoding="utf-8"))


def write_snapshots(
    cfg: DictConfig,
    run_dir: Path,
    captured: list[CapturedSnapshot],
    *,
    method: SyntheticDataMethod | ReleasedModelMethod,
    datamodule: TabularDataModule,
    data: TabularData,
    splits: DataSplits,
    plan: PrivacyPlan | None,
    run_info: dict[str, Any],
    timings: dict[str, float],
    evaluations: dict[str, tuple[dict[str, Any], str]] | None = None,
) -> list[dict[str, Any]]:
    """One complete run record per captured budget snapshot, under
    ``<run_dir>/snapshots/<eps..._delta...>/`` (:mod:`dpshare.snapshots`); a snapshot that
    fails leaves a failed record with its reason. The method's final weights are restored."""
    assert isinstance(method, SyntheticDataMethod) and plan is not None
    final_state = method.snapshot_state()
    summary: list[dict[str, Any]] = []
    try:
        for item in captured:
            snap = item.snapshot
            snap_dir = records.prepare_run_dir(run_dir / SNAPSHOT_DIR / snap.name)
            snap_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
            snap_cfg.privacy.target_epsilon = snap.target_epsilon
            snap_cfg.privacy.target_delta = snap.target_delta
            snap_cfg.privacy.snapshots = []
            if "release_variants" in snap_cfg.method:
                snap_cfg.method.release_variants = []
            snap_cfg.run_dir = str(snap_dir)
            _write_config(snap_dir, snap_cfg)
            info = {
                key: value
                for key, value in run_info.items()
                if key not in ("snapshots", "artifact_sha256", "status", "finished_at")
            }
            info.update(
                status="running",
                snapshot_of=str(Path(run_dir).resolve()),
                snapshot={**snap.__dict__, "noisy_steps": item.noisy_steps},
                config_hash=_config_hash_or_none(snap_cfg),
            )
            started = time.time()
            try:
                if item.error is not None:
                    raise UserInputError(item.error)
                assert item.state is not None and item.ledger is not None
                method.load_snapshot_state(item.state)
                snap_plan = dataclasses.replace(
                    plan,
                    budget_steps=snap.budget_steps,
                    planned_steps=snap.steps,
                    capped=snap.capped or item.stopped_early,
                    snapshots=[],
                )
                metrics = release_and_evaluate(
                    snap_cfg,
                    snap_dir,
                    method=method,
                    datamodule=datamodule,
                    data=data,
                    splits=splits,
                    ledger=item.ledger,
                    plan=snap_plan,
                    run_info=info,
                    timings={**timings, "runtime/fit_seconds": 0.0},
                    started=started,
                    evaluations=evaluations,
                )
                metrics["privacy/snapshot"] = 1
                ledger_record = item.ledger.to_dict()
                ledger_record["plan"] = snap_plan.to_dict()
                records.write_json(snap_dir / records.LEDGER_FILE, ledger_record)
                records.write_json(snap_dir / records.METRICS_FILE, metrics)
                info.update(status="complete", finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
                records.write_json(snap_dir / records.RUN_FILE, info)
                summary.append(
                    {
                        "name": snap.name,
                        "status": "complete",
                        "noisy_steps": item.noisy_steps,
                        "epsilon_spent": metrics["privacy/epsilon_spent"],
                    }
                )
            except Exception as exc:  # the run itself stands; the snapshot says why it failed
                log.error("snapshot %s failed: %s", snap.name, exc)
                info.update(
                    status="failed",
                    finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    error=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc(limit=20),
                )
                records.write_json(snap_dir / records.RUN_FILE, info)
                summary.append({"name": snap.name, "status": "failed", "error": info["error"]})
    finally:
        method.load_snapshot_state(final_state)
    return summary


def _checkpoint_every(cfg: DictConfig) -> int:
    every = cfg.get("checkpoint_every_n_epochs", 1)
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise UserInputError(
            f"checkpoint_every_n_epochs={every!r}: give a whole number of epochs >= 1, or 0 "
            "for no checkpoints"
        )
    return every


def _resume_state(cfg: DictConfig, run_info: dict[str, Any]) -> checkpoint.ResumeState | None:
    target = cfg.get("resume")
    if not target:
        return None
    if cfg.method.name == "fedavg":
        raise UserInputError(
            "resume= is not supported for method=fedavg (it runs its own round loop, without "
            "checkpoints); start a new run"
        )
    state = checkpoint.ResumeState(Path(str(target)), config_hash=run_info["config_hash"])
    run_info["resumed_from"] = str(state.run_dir.resolve())
    run_info["resumed_at_epoch"] = state.epoch
    return state


def _config_hash_or_none(cfg: DictConfig) -> str | None:
    try:
        return index.config_hash(cfg)
    except OmegaConfBaseException:
        return None


def load_data(cfg: DictConfig) -> tuple[TabularData, DataSplits]:
    """The configured dataset (capped at ``scale.max_records``) and its seeded splits."""
    data = DATASETS.get(cfg.dataset.name)(cfg.dataset, max_records=cfg.scale.max_records)
    splits = split_records(
        data,
        val_fraction=cfg.dataset.val_fraction,
        test_fraction=cfg.dataset.test_fraction,
        split_seed=cfg.dataset.split_seed,
        stratify=cfg.dataset.stratify,
        reference_fraction=cfg.dataset.reference_fraction,
    )
    return data, splits


def check_eval_config(eval_cfg: DictConfig) -> None:
    """Fail before any training on an unknown metric, attack or model name in ``eval``."""
    score_on = eval_cfg.get("score_on", "test")
    if score_on not in ("test", "validation"):
        raise UserInputError(f"eval.score_on={score_on!r}; choose test or validation")
    if score_on == "validation" and eval_cfg.attacks:
        raise UserInputError(
            "eval.score_on=validation is for tuning sweeps, whose attacks would need the "
            "validation split as both non-members and reference: set eval.attacks=[]"
        )
    for name in eval_cfg.models:
        DOWNSTREAM_MODELS.get(name)
    DOWNSTREAM_MODELS.get(eval_cfg.attack_model)
    for name in eval_cfg.fidelity:
        FIDELITY_METRICS.get(name)
    if eval_cfg.feature_net is not None:
        FEATURE_NETS.get(eval_cfg.feature_net)
    for name in eval_cfg.attacks:
        ATTACKS.get(name)
    extra = sorted(set(eval_cfg.attack_params or {}) - set(eval_cfg.attacks))
    if extra:
        raise UserInputError(
            f"eval.attack_params names attack(s) {extra} that are not in "
            f"eval.attacks={list(eval_cfg.attacks)}"
        )
    if eval_cfg.attack_targets < 10:
        raise UserInputError(
            f"eval.attack_targets={eval_cfg.attack_targets}: a membership game needs at least "
            "10 members and 10 non-members"
        )


def _privacy_setup(cfg: DictConfig, *, n_train: int) -> tuple[PrivacyLedger, PrivacyPlan | None]:
    """The run's ledger and, for a DP strategy, its plan (sample rate, calibrated noise...)."""
    privacy = cfg.privacy
    method_cls = METHODS.get(cfg.method.name)
    if getattr(method_cls, "external_accounting", False):
        # a peer library spends the budget under its own accounting (docs/peers.md): no DP-SGD
        # plan, no class-count or transformer release of ours; the ledger records its release
        return method_cls.privacy_ledger(privacy, n_train=n_train), None
    if privacy.name == "none":
        return PrivacyLedger(n_records=n_train), None
    batch_size = cfg.method.batch_size
    if not 1 <= batch_size <= n_train:
        raise UserInputError(
            f"method.batch_size={batch_size} must be between 1 and the real train split's size "
            f"({n_train} records); lower method.batch_size or use more data"
        )
    # FedAvg: a record is visited local_epochs times in each of the rounds
    epochs = (
        int(cfg.method.rounds) * int(cfg.method.local_epochs)
        if "rounds" in cfg.method
        else cfg.trainer.max_epochs
    )
    plan = plan_privacy(
        privacy,
        n_train=n_train,
        batch_size=batch_size,
        max_epochs=epochs,
        class_counts_release=getattr(method_cls, "releases_class_counts", True),
        transformer_release=getattr(method_cls, "releases_transformer_stats", True),
        method_releases=getattr(method_cls, "planned_releases", lambda _: 0)(cfg.method),
    )
    ledger = PrivacyLedger(
        accountant=privacy.accountant,
        target_epsilon=privacy.target_epsilon,
        target_delta=privacy.target_delta,
        n_records=n_train,
    )
    log.info(
        "privacy: %s, target epsilon %s at delta %g; sample rate %.4f, %d planned noisy steps, "
        "noise multiplier %.3f (range %.3f-%.3f%s)",
        plan.name,
        privacy.target_epsilon,
        privacy.target_delta,
        plan.sample_rate,
        plan.planned_steps,
        plan.noise_multiplier,
        plan.sigma_min,
        plan.sigma_max,
        ", calibrated" if plan.calibrated else "",
    )
    return ledger, plan


def privacy_metrics(ledger: PrivacyLedger, plan: PrivacyPlan | None) -> dict[str, Any]:
    """The ``privacy/*`` keys of ``metrics.json``: spent vs target, accountant, steps, sample
    rate, the noise schedule's range, and each mechanism's epsilon on its own."""
    out: dict[str, Any] = {
        "privacy/is_dp": int(ledger.is_private),
        "privacy/epsilon_spent": ledger.epsilon_spent(),
        "privacy/epsilon_realized_schedule": ledger.realized_epsilon(),
        "privacy/target_epsilon": ledger.target_epsilon,
        "privacy/delta": ledger.target_delta,
        "privacy/accountant": ledger.accountant,
        "privacy/approximate": int(ledger.approximate),
        "privacy/delta_ge_1_over_n": int(ledger.delta_warning),
        "privacy/non_private_accesses": len(ledger.non_private_entries),
        "privacy/declared_public_reads": len(ledger.declared_public_entries),
    }
    for module, eps in ledger.epsilon_breakdown().items():
        out[f"privacy/epsilon_by_mechanism/{module}"] = eps
    sgd = [e for e in ledger.dp_entries if e.mechanism == "dp_sgd"]
    if plan is not None and sgd:
        entry = sgd[0]
        series = entry.noise_multipliers()
        out.update(
            {
                "privacy/strategy": plan.name,
                "privacy/noisy_steps": entry.steps,
                "privacy/planned_steps": plan.planned_steps,
                "privacy/sample_rate": plan.sample_rate,
                "privacy/max_grad_norm": plan.max_grad_norm,
                "privacy/noise_calibrated": int(plan.calibrated),
                "privacy/training_length": plan.training_length,
                "privacy/budget_steps": plan.budget_steps,
                "privacy/budget_capped": int(plan.capped),
                "privacy/stopped_by_budget": int(bool(entry.parameters.get("stopped_by_budget"))),
                "privacy/noise_multiplier_min": min(series) if series else None,
                "privacy/noise_multiplier_mean": sum(series) / len(series) if series else None,
                "privacy/noise_multiplier_max": max(series) if series else None,
                "privacy/signal_steps": sum(
                    e.steps for e in ledger.dp_entries if e.mechanism == "subsampled_gaussian"
                ),
            }
        )
    return out


def summarize(metrics: dict[str, Any], run_dir: Path) -> str:
    def fmt(key: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{value:.3f}"

    scheme = "model" if metrics.get("data/artifact") == "model" else "tstr"
    label = scheme.upper()
    return (
        f"run record: {run_dir}\n"
        f"  {label} AUC {fmt(f'utility/{scheme}_auc')} | TRTR AUC {fmt('utility/trtr_auc')} | "
        f"{label} F1 {fmt(f'utility/{scheme}_f1')} | TRTR F1 {fmt('utility/trtr_f1')} | "
        f"{label} accuracy {fmt(f'utility/{scheme}_accuracy')} | "
        f"TRTR accuracy {fmt('utility/trtr_accuracy')} | "
        + (
            f"{label} minority recall / F1 at the validation threshold "
            f"{fmt(f'utility/{scheme}_minority_recall_valthr')} / "
            f"{fmt(f'utility/{scheme}_minority_f1_valthr')} | "
            if f"utility/{scheme}_minority_recall_valthr" in metrics
            else ""
        )
        + f"epsilon spent {metrics.get('privacy/epsilon_spent')} | "
        f"fit {metrics.get('runtime/fit_seconds', 0):.1f} s"
    )


def reset_peak_memory() -> None:
    """Reset this process's resident-memory high-water mark (Linux ``/proc/self/clear_refs``),
    so that :func:`peak_memory_mb` covers what follows, not earlier runs of the same process (a
    sequential multirun). Elsewhere a no-op."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")


def peak_memory_mb(method: Any = None) -> float:
    """Peak resident memory in MiB since :func:`reset_peak_memory` (Linux ``VmHWM``; elsewhere
    the process's lifetime peak, ``ru_maxrss``), or the peak of the child process the method fit
    in, whichever is larger (``fit_child_peak_memory_mb``: a peer library, docs/peers.md). It
    includes what the process held before the fit: interpreter, libraries, data."""
    own = None
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                own = float(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    if own is None:
        import resource

        scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB elsewhere
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    return max(own, float(getattr(method, "fit_child_peak_memory_mb", 0.0) or 0.0))


def _configure_threads(requested: Any) -> int:
    """Set torch's intra-op threads: ``torch_threads`` when given; in a Hydra multirun with
    parallel joblib jobs, the cores shared out between the jobs (two jobs on two cores, each with
    torch's default of one thread per core, spend most of their CPU time spinning: measured in
    benchmarks/README.md); otherwise torch's default."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise UserInputError(
                f"torch_threads={requested!r}: give a whole number >= 1, or null for the "
                "default (one per core, shared between parallel multirun jobs)"
            )
        torch.set_num_threads(requested)
        return requested
    if _in_multirun():
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher
        cores = os.cpu_count() or 1
        jobs = int(launcher.get("n_jobs", 1) or 1) if launcher is not None else 1
        jobs = cores if jobs < 0 else min(jobs, cores)
        if jobs > 1:
            torch.set_num_threads(max(1, cores // jobs))
    return torch.get_num_threads()


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> dict[str, Any]:
    try:
        metrics = train(cfg)
    except (UserInputError, UnknownNameError, BudgetExceededError) as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        if _in_multirun():
            # one impossible point (e.g. a sigma too small for one step within epsilon) must not
            # end the sweep: its run.json says "failed" with the reason, and reports show the
            # point as not run with that reason
            return {}
        sys.exit(2)
    if metrics:  # empty in the extra processes of a multi-device run
        print(summarize(metrics, Path(cfg.run_dir)))
    return metrics


def main() -> None:
    """Console script ``dpshare-train``."""
    register_configs()
    _hydra_main()


if __name__ == "__main__":
    main()
