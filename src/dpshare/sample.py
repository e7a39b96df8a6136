"""``python -m dpshare.sample RUN_DIR --n N --out FILE``: more rows from a finished run.

Loads the run's saved generator (``generator.json`` + ``generator.pt``, verified against the
SHA-256 recorded in ``run.json``; :mod:`dpshare.artifact`), draws ``N`` rows in the original
schema with an optional class mix and feature conditions, and writes them to ``FILE`` (``.csv``
or ``.parquet``) with a report ``FILE.report.json``: the run, the options, the seed, the wall
time and the run's epsilon, unchanged, because sampling is post-processing of the released
generator and of statistics already charged to the run's ledger (no real record is read).

Bad input (no run, an incomplete run, a run that released a classifier, a record from an older
artifact version, a tampered artifact, bad options) stops with one ``error: ...`` line on stderr
and exit status 2, and nothing is written. See docs/sampling.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dpshare.artifact import (
    FORMAT,
    JSON_FILE,
    TENSOR_FILE,
    VERSION,
    LoadedRun,
    load_run,
    match_class_keys,
    parse_mapping_option,
)
from dpshare.errors import UserInputError
from dpshare.reporting import records

REPORT_FORMAT = "dpshare-sample-report/1"
FORMATS = (".csv", ".parquet")
STATEMENT = (
    "Sampling is post-processing of the run's released generator and of statistics already "
    "charged to its privacy ledger (transformer statistics, class counts): no real record was "
    "read and no privacy was spent; the run's epsilon and its ledger are unchanged."
)


def report_path(out: Path) -> Path:
    """The report written next to ``out``: ``<out>.report.json``."""
    return out.with_name(out.name + ".report.json")


def sequences_path(out: Path) -> Path:
    """Generated windows (runs with a temporal head) next to ``out``: ``<out>.sequences.npy``."""
    return out.with_name(out.name + ".sequences.npy")


def check_out(out: Path, run_dir: Path, *, force: bool) -> None:
    """Refuse an ``--out`` of an unknown format, inside the run directory, or (unless
    ``--force``) an existing file; its folder must exist."""
    if out.suffix.lower() not in FORMATS:
        raise UserInputError(
            f"--out {out}: give a file ending in {' or '.join(FORMATS)} (the format follows "
            "the suffix)"
        )
    run_r = run_dir.resolve()
    if run_r == out.resolve() or run_r in out.resolve().parents:
        raise UserInputError(
            f"--out {out} is inside the run directory; write elsewhere (the run record stays "
            "as the run left it)"
        )
    if not out.parent.is_dir():
        raise UserInputError(f"--out {out}: the folder {out.parent} does not exist; create it")
    existing = [p for p in (out, report_path(out), sequences_path(out)) if p.exists()]
    if existing and not force:
        raise UserInputError(
            f"--out {out}: {existing[0]} exists; choose another name or pass --force to replace it"
        )


def _jsonable_mapping(value: Mapping[Any, Any] | None) -> dict[str, Any] | None:
    return None if value is None else {str(k): v for k, v in value.items()}


def _ledger_epsilon(run_dir: Path) -> tuple[Any, str | None]:
    path = run_dir / records.LEDGER_FILE
    if not path.is_file():
        return None, None
    ledger = records.read_json(path)
    eps = ledger.get("epsilon_spent") if isinstance(ledger, dict) else None
    return eps, records.file_sha256(path)


def draw(
    loaded: LoadedRun,
    n: int,
    *,
    seed: int,
    class_mix: Mapping[Any, Any] | None = None,
    conditions: Mapping[str, Any] | None = None,
    refine: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, np.ndarray | None, dict[str, Any]]:
    """``n`` rows from a loaded run, the generated windows (or ``None``) and the options as
    used (class-mix keys matched to the classes: ``"1"`` names class ``1``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserInputError(f"--n must be a whole number >= 1, got {n!r}")
    method = loaded.method
    options: dict[str, Any] = {}
    if class_mix:
        options["class_mix"] = match_class_keys(class_mix, method.datamodule.classes)
    if conditions:
        options["conditions"] = dict(conditions)
    if refine:
        options["refine"] = dict(refine)
    if ("conditions" in options or "refine" in options) and loaded.document["method"] != (
        "multidisc_gan"
    ):
        raise UserInputError(
            f"--conditions and --refine need a multidisc_gan run; this run is "
            f"{loaded.document['method']} (only --class-mix applies)"
        )
    frame = method.sample(n, seed=seed, **options)
    windows = getattr(method, "synthetic_sequences", None)
    return frame, windows, options


def sample_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    n: int,
    seed: int = 0,
    class_mix: Mapping[Any, Any] | None = None,
    conditions: Mapping[str, Any] | None = None,
    refine: Mapping[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Load ``run_dir``, draw ``n`` rows, write ``out`` (+ its report) atomically; return the
    report. Raises :class:`~dpshare.errors.UserInputError` (nothing written) on bad input."""
    started = time.perf_counter()
    run_dir, out = Path(run_dir), Path(out)
    check_out(out, run_dir, force=force)
    loaded = load_run(run_dir)
    eps_before, ledger_sha_before = _ledger_epsilon(run_dir)
    load_seconds = time.perf_counter() - started
    t0 = time.perf_counter()
    frame, windows, options = draw(
        loaded, n, seed=seed, class_mix=class_mix, conditions=conditions, refine=refine
    )
    sample_seconds = time.perf_counter() - t0
    eps_after, ledger_sha_after = _ledger_epsilon(run_dir)
    if ledger_sha_after != ledger_sha_before:  # cannot happen: sampling never writes the record
        raise UserInputError(f"the privacy ledger of {run_dir} changed while sampling; retry")

    schema = loaded.method.datamodule.data
    positive = schema.positive_label
    metrics = loaded.metrics
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "created_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "run_dir": str(run_dir.resolve()),
        "method": loaded.document["method"],
        "dataset": loaded.document["data"]["dataset"],
        "n_rows": len(frame),
        "seed": seed,
        "class_mix": _jsonable_mapping(options.get("class_mix")),
        "conditions": _jsonable_mapping(options.get("conditions")),
        "refine": options.get("refine"),
        "positive_label": positive,
        "positive_rate": float((frame[schema.target] == positive).mean()),
        "output": {
            "file": out.name,
            "format": out.suffix.lower().lstrip("."),
            "columns": [{"name": str(c), "dtype": str(t)} for c, t in frame.dtypes.items()],
            "sequences": None if windows is None else sequences_path(out).name,
        },
        "privacy": {
            "cost_of_this_sample": 0.0,
            "statement": STATEMENT,
            "differentially_private": bool(metrics.get("privacy/is_dp")),
            "epsilon_spent": eps_after,
            "epsilon_spent_before_sampling": eps_before,
            "epsilon_spent_metrics": metrics.get("privacy/epsilon_spent"),
            "target_epsilon": metrics.get("privacy/target_epsilon"),
            "delta": metrics.get("privacy/delta"),
            "accountant": metrics.get("privacy/accountant"),
            "ledger_sha256_before": ledger_sha_before,
            "ledger_sha256_after": ledger_sha_after,
            "ledger_unchanged": ledger_sha_after == ledger_sha_before,
        },
        "artifact": {
            "format": FORMAT,
            "version": VERSION,
            "sha256": {
                name: (loaded.run.get("artifact_sha256") or {}).get(name)
                for name in (JSON_FILE, TENSOR_FILE)
            },
        },
        "load_seconds": load_seconds,
        "sample_seconds": sample_seconds,
    }
    _write_outputs(out, frame, windows, report, started)
    return report


def _write_outputs(
    out: Path,
    frame: pd.DataFrame,
    windows: np.ndarray | None,
    report: dict[str, Any],
    started: float,
) -> None:
    """Every file to a temporary name in ``out``'s folder first, then renamed into place:
    a failure leaves nothing behind."""
    temps: list[tuple[Path, Path]] = []
    try:

        def temp_for(target: Path) -> Path:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=out.parent)
            os.close(fd)
            temps.append((Path(name), target))
            return Path(name)

        table_tmp = temp_for(out)
        if out.suffix.lower() == ".parquet":
            frame.to_parquet(table_tmp, index=False)
        else:
            frame.to_csv(table_tmp, index=False)
        report["output"]["sha256"] = records.file_sha256(table_tmp)
        if windows is not None:
            with open(temp_for(sequences_path(out)), "wb") as fh:
                np.save(fh, np.asarray(windows), allow_pickle=False)
        report["wall_seconds"] = time.perf_counter() - started
        text = json.dumps(records._jsonable(report), indent=2, allow_nan=False)
        temp_for(report_path(out)).write_text(text + "\n", encoding="utf-8")
        for tmp, target in temps:
            os.chmod(tmp, 0o666 & ~records._UMASK)
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise


def summarize(report: Mapping[str, Any], out: Path) -> str:
    privacy = report["privacy"]
    return (
        f"sampled {report['n_rows']} rows from {report['run_dir']} to {out} "
        f"({report_path(out).name}) in {report['wall_seconds']:.1f} s (seed {report['seed']})\n"
        f"  positive rate {report['positive_rate']:.4f} | epsilon spent "
        f"{privacy['epsilon_spent']} (unchanged: sampling is post-processing, no privacy cost)"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m dpshare.sample RUN_DIR --n N [--class-mix ...] [--conditions ...] --out F``."""
    parser = argparse.ArgumentParser(
        prog="python -m dpshare.sample", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("run_dir", type=Path, help="a finished generator run (dpshare.train)")
    parser.add_argument("--n", type=int, required=True, help="number of rows to draw")
    parser.add_argument("--out", type=Path, required=True, help="output file, .csv or .parquet")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument(
        "--class-mix", default=None, help="class shares, e.g. '{1: 0.3, 0: 0.7}' (normalised)"
    )
    parser.add_argument(
        "--conditions",
        default=None,
        help="multidisc_gan: values fixed in every row, e.g. '{bank: bank_B}'",
    )
    parser.add_argument(
        "--refine", default=None, help="multidisc_gan: e.g. '{match_marginals: true}'"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    try:
        report = sample_run(
            args.run_dir,
            args.out,
            n=args.n,
            seed=args.seed,
            class_mix=parse_mapping_option(args.class_mix, "--class-mix"),
            conditions=parse_mapping_option(args.conditions, "--conditions"),
            refine=parse_mapping_option(args.refine, "--refine"),
            force=args.force,
        )
    except UserInputError as exc:
        message = " ".join(str(exc).split())  # one line
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    print(summarize(report, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
