"""``python -m dpshare.reproduce [scale=smoke|cpu|paper] [--only=a,b] [--fresh] [--plan]
[overrides]`` (what ``make reproduce`` runs; docs/scales.md says what each scale is and how long
it takes; ``--plan`` lists each sweep's jobs and how many are archived, and runs nothing).

1. The main job: the non-private conditional GAN on the embedded cross-bank simulator
   (``experiment=bank_sim_standard_gan``), its table in ``results/bank_sim_standard_gan/<scale>/``.
2. Every paper experiment whose records the report needs (:data:`EXPERIMENTS`, less those
   whose points are another sweep's budget snapshots at this scale: :data:`COVERED_AT_SCALE`),
   each as one Hydra multirun (``python -m dpshare.train -m experiment=<name> scale=<scale>``)
   in a subprocess, so one failing sweep never stops the others. The medical scenario runs on
   MIMIC-III only when ``MIMIC3_ROOT`` is set; otherwise it is reported as not run on MIMIC-III
   and its sweep runs on UCI Diabetes 130 as a labelled stand-in
   (``experiment_name=deng2026_medical_standin``), when that data set is present.
3. ``python -m dpshare.report`` over the records: every table and figure of this scale in
   ``results/``, and the cpu- and paper-scale records archived under ``results/records/``
   (:mod:`dpshare.reporting.archive`).

It resumes: a sweep point whose archived record (``results/records/``) ran the same resolved
config is reused, not retrained, so a reproduction that takes longer than one sitting is
finished in several, and the compute table still counts each point's wall once, where it ran.
``--fresh`` retrains every point.

``deng2026_privacy_attacks`` and ``tao2020_samples`` are not run separately: Table 4 and Fig. 8
are drawn from the financial/medical and epsilon-sweep records of the same points. The wall time
of each step goes to ``results/reproduce_<scale>.json``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir

from dpshare.config import register_configs
from dpshare.errors import UserInputError
from dpshare.registry import UnknownNameError
from dpshare.reporting import archive, records
from dpshare.reporting.summary import load_run, write_utility_summary
from dpshare.train import CONF_DIR, summarize, train

REPO_ROOT = CONF_DIR.parent
MAIN_EXPERIMENT = "bank_sim_standard_gan"
# what the medical sweep is called when it runs on the stand-in data set (:func:`medical_sweep`)
MEDICAL_STANDIN = "deng2026_medical_standin"
# the sweeps make reproduce runs, in order; the medical one is resolved by :func:`medical_sweep`
EXPERIMENTS: tuple[str, ...] = (
    "deng2026_financial",
    "bank_sim_epsilon",
    "deng2026_medical",
    "deng2026_noise_stages",
    "mnist_dpgan_epsilon",
    "mnist_dpgan_nonprivate",
    "tao2020_epsilon",
    "tao2020_sigma",
    "tao2020_delta",
    "tao2020_sigma_delta",
    "tao2020_sigma_epsilon",
    "tao2020_delta_epsilon",
    # the peer comparison (docs/peers.md): needs make install-peers, else its peer points are
    # recorded as failed with the install command and reported as not run
    "peers_bank_sim",
    "peers_bank_marketing",
    "peers_diabetes130",
)

# sweeps make reproduce leaves out at a scale because every one of their points is a budget
# snapshot of another sweep's trajectories there (same protocol, docs/scales.md); the report
# takes those points from that sweep's records (also_from in experiments/*/reported.yaml)
COVERED_AT_SCALE: dict[str, dict[str, str]] = {
    # Fig. 4 (sigma 6, epsilon 0.5, four deltas) is the epsilon-0.5 column of Fig. 7
    "cpu": {"tao2020_delta": "tao2020_delta_epsilon"},
}


# sweep names (the records' experiment_name, what --plan prints) that differ from the
# experiment file --only takes
SWEEP_ALIASES: dict[str, str] = {MEDICAL_STANDIN: "deng2026_medical"}


def only_experiments(text: str) -> tuple[str, ...]:
    """The experiments ``--only=a,b`` names, in the order given, without repeats. A sweep name
    (:data:`SWEEP_ALIASES`, e.g. ``deng2026_medical_standin``) stands for its experiment; an
    unknown name is a :class:`UserInputError` that lists the choices."""
    names = [SWEEP_ALIASES.get(e.strip(), e.strip()) for e in text.split(",") if e.strip()]
    unknown = sorted(set(names) - set(EXPERIMENTS))
    if unknown or not names:
        raise UserInputError(
            f"--only names unknown experiment(s) {unknown or [text]}; choose from "
            f"{list(EXPERIMENTS)} (or a sweep name: {sorted(SWEEP_ALIASES)})"
        )
    return tuple(dict.fromkeys(names))


def sweeps(scale: str, experiments: tuple[str, ...] = EXPERIMENTS) -> tuple[str, ...]:
    """The sweeps make reproduce runs at ``scale``, in order."""
    covered = COVERED_AT_SCALE.get(scale, {})
    return tuple(e for e in experiments if e not in covered)


def main_job(
    overrides: list[str], *, results_dir: Path, output_root: Path
) -> tuple[list[Path], str]:
    """Run the main experiment and write ``results/<experiment>/<scale>/summary.{md,csv}``."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        probe = compose("config", overrides=[f"experiment={MAIN_EXPERIMENT}", *overrides])
        stamp = records.run_stamp()
        run_dir = output_root / "runs" / probe.experiment_name / f"{stamp}_{probe.scale.name}"
        cfg = compose(
            "config",
            overrides=[f"experiment={MAIN_EXPERIMENT}", *overrides, f"run_dir={run_dir}"],
        )
    metrics = train(cfg)
    print(summarize(metrics, run_dir))
    written = write_utility_summary(
        [load_run(run_dir)],
        results_dir / cfg.experiment_name / cfg.scale.name,
        title=f"{cfg.experiment_name} ({cfg.scale.name} scale)",
    )
    return written, str(cfg.scale.name)


def medical_sweep() -> tuple[list[str], str]:
    """The overrides of the medical sweep and a note saying on what it runs."""
    if os.environ.get("MIMIC3_ROOT"):
        # conf/dataset/mimic3.yaml reads MIMIC3_ROOT itself
        return ["experiment=deng2026_medical"], "MIMIC-III (MIMIC3_ROOT)"
    return (
        [
            "experiment=deng2026_medical",
            "dataset=diabetes130",
            # no public domain is known for these two free-text-like codes, and a DP transformer
            # may not learn one from the data (docs/datasets.md): they are left out of the release
            "dataset.drop_columns=[payer_code,medical_specialty]",
            # diabetes130 has no hospital id: FL federates 10 simulated hospitals
            "method=multidisc_gan,standard_gan,dp_lr,fedavg_random_clients",
            f"experiment_name={MEDICAL_STANDIN}",
            "tags=[deng2026,medical,standin,diabetes130]",
        ],
        "not run on MIMIC-III (MIMIC3_ROOT not set); stand-in: diabetes130",
    )


def sweep_points(args: list[str], scale: str) -> list[list[str]]:
    """The jobs one sweep of ``make reproduce`` runs: ``args`` (with ``scale=``) and the
    experiment's ``hydra.sweeper.params``, expanded as Hydra's basic sweeper does (a command-line
    value replaces the experiment's), one override list per job."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    given = parser.parse_overrides([*args, f"scale={scale}"])
    swept = {
        o.key_or_group: list(o.sweep_string_iterator()) for o in given if o.is_sweep_override()
    }
    fixed = [o.input_line for o in given if not o.is_sweep_override()]
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*fixed, "run_dir=unused"], return_hydra_config=True)
    on_command_line = {o.key_or_group for o in given}
    for key, value in (cfg.hydra.sweeper.params or {}).items():
        if key not in on_command_line:
            line = f"{key}={value}"
            (override,) = parser.parse_overrides([line])
            swept[key] = (
                list(override.sweep_string_iterator())
                if override.is_sweep_override()
                else [override.get_value_element_as_str()]
            )
    keys = list(swept)
    return [
        [*fixed, *(f"{k}={v}" for k, v in zip(keys, values, strict=True))]
        for values in itertools.product(*(swept[k] for k in keys))
    ]


def plan(
    scale: str,
    experiments: tuple[str, ...] = EXPERIMENTS,
    overrides: tuple[str, ...] = (),
    *,
    archive_dirs: tuple[Path, ...] = (REPO_ROOT / "results" / archive.ARCHIVE_DIR,),
) -> list[dict[str, Any]]:
    """What ``make reproduce SCALE=<scale>`` would run now: per sweep (the main job first), its
    jobs and how many of them have a complete archived record of the same resolved config
    (reused on resume, :mod:`dpshare.reporting.archive`); the rest would be trained."""
    from omegaconf import OmegaConf

    def job_configs(args: list[str]) -> list[Any]:
        out = []
        for job in sweep_points(args, scale):
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                out.append(compose("config", overrides=[*job, "run_dir=unused"]))
        return out

    register_configs()
    rows = []
    sweeps_at = [(MAIN_EXPERIMENT, [f"experiment={MAIN_EXPERIMENT}", *overrides])]
    for experiment in sweeps(scale, experiments):
        args = (
            medical_sweep()[0] if experiment == "deng2026_medical" else [f"experiment={experiment}"]
        )
        if not any(a.startswith("experiment_name=") for a in args):
            args.append(f"experiment_name={experiment}")
        sweeps_at.append((experiment, [*args, *overrides]))
    for experiment, args in sweeps_at:
        if experiment == MAIN_EXPERIMENT:  # one run, not a multirun (main_job)
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                jobs = [compose("config", overrides=[*args, f"scale={scale}", "run_dir=unused"])]
        else:
            jobs = job_configs(args)
        found = [
            archive.find_archived(
                archive_dirs, archive.protocol_hash(OmegaConf.to_yaml(cfg, resolve=True))
            )
            for cfg in jobs
        ]
        done = sum(f is not None for f in found)
        name = str(jobs[0].experiment_name) if jobs else experiment
        rows.append(
            {"sweep": name, "jobs": len(jobs), "archived": done, "to run": len(jobs) - done}
        )
    return rows


def run_sweep(args: list[str], *, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    """One multirun in a subprocess; its output goes to ``log_dir/<experiment>.log``."""
    name = next(a.split("=", 1)[1] for a in args if a.startswith("experiment_name="))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log_file:
        proc = subprocess.run(
            [sys.executable, "-m", "dpshare.train", "-m", *args],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.perf_counter() - started
    print(f"  {name}: exit {proc.returncode}, {seconds:.0f} s (log: {log_path})", flush=True)
    return {"experiment": name, "exit_code": proc.returncode, "seconds": round(seconds, 1)}


def reproduce(
    overrides: list[str],
    *,
    results_dir: Path | None = None,
    output_root: Path | None = None,
    experiments: tuple[str, ...] = EXPERIMENTS,
    resume: bool = True,
) -> dict[str, Any]:
    """The main job, every experiment's sweep, then the report. Returns the timing record.
    ``resume``: reuse the archived records of points that ran the same config."""
    from dpshare.report import build

    started = time.perf_counter()
    results_dir = Path(results_dir or REPO_ROOT / "results")
    output_root = Path(output_root or os.environ.get("DPSHARE_OUTPUT") or REPO_ROOT / "outputs")
    steps: list[dict[str, Any]] = []
    archive_dir = results_dir / archive.ARCHIVE_DIR
    resumed: list[str] = []
    if resume and not any(o.startswith("reuse_records=") for o in overrides):
        resumed = [f"reuse_records=['{archive_dir.resolve()}']"]
    t0 = time.perf_counter()
    # the main job is one run, not a multirun: it reuses an archived record only when told to
    main_overrides = [*overrides, *resumed]
    if resumed and not any(o.startswith("skip_completed=") for o in overrides):
        main_overrides.append("skip_completed=always")
    written, scale = main_job(main_overrides, results_dir=results_dir, output_root=output_root)
    steps.append(
        {
            "experiment": MAIN_EXPERIMENT,
            "exit_code": 0,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    )
    env = dict(os.environ, DPSHARE_OUTPUT=str(output_root), PYTHONUNBUFFERED="1")
    env.setdefault("WANDB_MODE", "offline")
    notes = []
    passthrough = [o for o in overrides if not o.startswith("scale=")] + resumed
    for experiment, source in COVERED_AT_SCALE.get(scale, {}).items():
        if experiment in experiments:
            notes.append(f"{experiment}: not run at {scale} scale; its points are {source}'s")
    for experiment in sweeps(scale, experiments):
        if experiment == "deng2026_medical":
            args, note = medical_sweep()
            notes.append(f"medical scenario: {note}")
        else:
            args = [f"experiment={experiment}"]
        if not any(a.startswith("experiment_name=") for a in args):
            args.append(f"experiment_name={experiment}")
        steps.append(
            run_sweep(
                [*args, f"scale={scale}", *passthrough],
                env=env,
                log_dir=output_root / "reproduce_logs" / scale,
            )
        )
    t0 = time.perf_counter()
    # this scale's tables only: a smoke reproduction never rewrites the cpu or paper tables (the
    # index keeps the other scales' sections as the earlier build wrote them)
    index = build(output_root, results_dir, (scale,), archive_dir=archive_dir)
    steps.append(
        {"experiment": "report", "exit_code": 0, "seconds": round(time.perf_counter() - t0, 1)}
    )
    timing = {
        "scale": scale,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "steps": steps,
        "notes": notes,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "main_job_tables": [str(p) for p in written],
        "report_index": str(index),
        "environment": records.environment(),
    }
    records.write_json(results_dir / f"reproduce_{scale}.json", timing)
    return timing


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    argv = sys.argv[1:]
    if not any(a.startswith("scale=") for a in argv):
        argv = ["scale=smoke", *argv]
    # --only=a,b: just these sweeps (and the main job and the report), e.g. to redo one figure
    only = [a.split("=", 1)[1] for a in argv if a.startswith("--only=")]
    argv = [a for a in argv if not a.startswith("--only=")]
    # --fresh: retrain every point instead of reusing archived records of the same config
    fresh = "--fresh" in argv
    # --plan: say what would run (jobs per sweep, how many are archived) and run nothing
    dry = "--plan" in argv
    argv = [a for a in argv if a not in ("--fresh", "--plan")]
    experiments = EXPERIMENTS
    if only:
        try:
            experiments = only_experiments(",".join(only))
        except UserInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
    if dry:
        scale = next(a.split("=", 1)[1] for a in argv if a.startswith("scale="))
        try:
            extra = tuple(a for a in argv if not a.startswith("scale="))
            rows = plan(scale, experiments, extra)
        except (UserInputError, UnknownNameError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        print(f"make reproduce SCALE={scale}: jobs per sweep, archived (reused on resume)")
        for row in rows:
            print(f"  {row['sweep']}: {row['jobs']} jobs, {row['archived']} archived, "
                  f"{row['to run']} to run")  # fmt: skip
        total = sum(r["to run"] for r in rows)
        print(f"to run: {total} of {sum(r['jobs'] for r in rows)} jobs")
        return
    try:
        timing = reproduce(argv, experiments=experiments, resume=not fresh)
    except (UserInputError, UnknownNameError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    failed = [s["experiment"] for s in timing["steps"] if s["exit_code"] != 0]
    print(f"reproduce ({timing['scale']} scale): {timing['wall_seconds']:.0f} s wall")
    for step in timing["steps"]:
        print(f"  {step['experiment']}: {step['seconds']:.0f} s (exit {step['exit_code']})")
    print(f"results: {timing['report_index']}")
    if failed:
        print(f"sweeps that exited non-zero (see their logs): {failed}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
