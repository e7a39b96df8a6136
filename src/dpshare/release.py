"""``python -m dpshare.release RUN_DIR --out DIR``: release a run's synthetic table with a card.

Turns one complete run record (``python -m dpshare.train``) into a release directory:

- ``synthetic.parquet`` (dtype-faithful) and ``synthetic.csv``: the synthetic table in the
  original schema (``synthetic_sequences.npy`` too when the run generated windows);
- ``report_card.json`` and ``report_card.md``: the privacy report card. Epsilon / delta spent
  (recomputed here from the ledger's entries) and target, the accountant, the full ledger, the
  noise (sigma) schedule, every attack result, exact-copy share and distances to closest record
  (DCR), the data schema, the code version, the resolved config, the source run and the checks
  that passed.

Every check runs BEFORE anything is written, and the release REFUSES (exit status 2, one
``error: release refused: ...`` line, nothing at ``--out``) when:

1. the run is incomplete (no ``metrics.json``, ``run.json`` status not ``complete``, no config);
2. the run released a model (``dp_lr``, ``fedavg``), not a synthetic table;
3. the privacy ledger is missing or unreadable;
4. the ledger is inconsistent: the epsilon recomputed from its entries differs from the recorded
   one, a DP entry's step count differs from its history, its ``noisy_steps`` or the step counts
   of ``metrics.json``, or target / delta / accountant differ between ledger, metrics and config;
5. the run is not differentially private (``privacy=none``, a non-private access such as a raw
   transformer fit, records declared public, an infinite epsilon, no DP mechanism at all),
   unless ``--allow-non-private``;
6. the epsilon spent exceeds the target (or ``--max-epsilon``), or a DP run has no target;
7. the synthetic table does not match its recorded schema or row count;
8. the share of synthetic records that copy a real train record exactly exceeds
   ``--max-exact-copy-share`` (default 0: any exact copy refuses).

With ``--sample N`` the table is not the run's ``synthetic.parquet`` but ``N`` rows freshly
drawn from the run's saved generator (:mod:`dpshare.artifact`: verified against the SHA-256 in
``run.json``, rebuilt without reading real data; ``--seed``, ``--class-mix``, ``--conditions``):
sampling is post-processing, so the ledger and epsilon are the run's, and every check above
applies, check 7 to the fresh table (the run's schema) and check 8 recomputed on it.

The exact-copy share is recomputed at release time on the table actually exported, against the
real train split reloaded with the run's own config (:func:`dpshare.train.load_data`); when the
real data cannot be reloaded the value recorded by the ``copies`` attack is used, and with
neither the release refuses. That statistic, the DCR and every attack number are computed on
real records OUTSIDE the privacy accountant: they are the data holder's gate and evidence, not
DP statistics (the card says so). On success the files are written into a temporary sibling
directory that is renamed to ``--out`` at the end, so a reader never sees a half-written
release. See docs/release.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

import dpshare
from dpshare.errors import UserInputError
from dpshare.privacy.ledger import (
    DECLARED_PUBLIC,
    DP_MECHANISMS,
    DP_SGD,
    EXTERNAL,
    MECHANISMS,
    SUBSAMPLED_GAUSSIAN,
    LedgerEntry,
    compose_entries,
)
from dpshare.reporting import records

CARD_JSON = "report_card.json"
CARD_MD = "report_card.md"
CARD_FORMAT = "dpshare-release-card/1"
RELEASED_TABLE = "synthetic.parquet"
RELEASED_CSV = "synthetic.csv"
EXTRA_ARTIFACTS = ("synthetic_sequences.npy",)  # released with the table when the run made them
# relative tolerance for epsilon comparisons (float rounding of the RDP sums, JSON round trips)
RELATIVE_TOLERANCE = 1e-6
EXACT_COPY_METRIC = "attack/copies/exact_copy_share"
MAX_SCHEDULE_ROWS = 30  # sigma-schedule runs shown per entry in the Markdown card (all in JSON)

CAVEAT = (
    "The exact-copy share, the distances to closest record (DCR), every attack result and the "
    "utility and fidelity figures were computed by the data holder on REAL records (the train "
    "split and the held-out test split) OUTSIDE the privacy accountant: they are not "
    "differentially private and are not covered by the epsilon above. They are the data "
    "holder's gate and evidence for this release; publishing them discloses slightly more "
    "about the real records than the synthetic table alone."
)


class ReleaseRefusedError(UserInputError):
    """A release check failed: the message names the check and the fix; nothing was written."""


@dataclass
class Check:
    """One release check that passed, with what it established."""

    name: str
    detail: str


@dataclass
class PreparedRelease:
    """Everything a release writes, built by :func:`prepare_release` before any file exists."""

    run_dir: Path
    synthetic: pd.DataFrame
    card: dict[str, Any]
    extra_files: list[Path] = field(default_factory=list)
    extra_arrays: dict[str, np.ndarray] = field(default_factory=dict)  # file name -> array


@dataclass
class SampleRequest:
    """``--sample N``: release ``n`` rows freshly drawn from the run's saved generator."""

    n: int
    seed: int = 0
    class_mix: Mapping[Any, Any] | None = None
    conditions: Mapping[str, Any] | None = None


def _refuse(message: str) -> ReleaseRefusedError:
    return ReleaseRefusedError(f"release refused: {message}")


def _number(value: Any) -> float | None:
    """A recorded number (``"inf"`` strings as written by :func:`records.write_json`)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _close(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-12)


def _same(a: Any, b: Any) -> bool:
    """Equal, numbers within the tolerance (``"inf"`` strings read as infinity)."""
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return _close(x, y)
    return bool(a == b)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return str(value)


def _read_json(path: Path, *, what: str, fix: str) -> Any:
    if not path.is_file():
        raise _refuse(f"{what} is missing ({path}); {fix}")
    try:
        return records.read_json(path)
    except (OSError, ValueError) as exc:
        raise _refuse(f"{what} is unreadable ({path}: {exc}); {fix}") from exc


# ------------------------------------------------------------------------------ the record


@dataclass
class RunRecord:
    """The files of one run directory a release reads."""

    run_dir: Path
    run: dict[str, Any]
    metrics: dict[str, Any]
    config: dict[str, Any]

    @property
    def privacy_config(self) -> dict[str, Any]:
        privacy = self.config.get("privacy")
        return privacy if isinstance(privacy, dict) else {}


def load_complete_run(run_dir: Path) -> RunRecord:
    """Check 1: ``run.json`` says complete, ``metrics.json`` (written last) and the resolved
    config are there."""
    if not run_dir.is_dir():
        raise UserInputError(f"no run directory at {run_dir}")
    rerun = "run the training again to completion (python -m dpshare.train ...)"
    run = _read_json(run_dir / records.RUN_FILE, what="run.json", fix=rerun)
    status = run.get("status") if isinstance(run, dict) else None
    if status != "complete":
        error = run.get("error") if isinstance(run, dict) else None
        raise _refuse(
            f"the run in {run_dir} is not complete (run.json status {status!r}"
            + (f", error: {error}" if error else "")
            + f"); {rerun}"
        )
    metrics = _read_json(
        run_dir / records.METRICS_FILE,
        what="metrics.json (written last; its absence marks an incomplete run)",
        fix=rerun,
    )
    if not isinstance(metrics, dict):
        raise _refuse(f"metrics.json in {run_dir} is not a JSON object; {rerun}")
    config_path = run_dir / records.RESOLVED_CONFIG_FILE
    if not config_path.is_file():
        config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise _refuse(f"the run in {run_dir} has no {records.RESOLVED_CONFIG_FILE}; {rerun}")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise _refuse(f"{config_path} is unreadable ({exc}); {rerun}") from exc
    if not isinstance(config, dict):
        raise _refuse(f"{config_path} is not a config mapping; {rerun}")
    return RunRecord(run_dir=run_dir, run=run, metrics=metrics, config=config)


def check_synthetic_artifact(rec: RunRecord) -> Check:
    """Check 2: the run released a synthetic table, not a model."""
    method_cfg = rec.config.get("method")
    method = rec.run.get("method") or (
        method_cfg.get("name") if isinstance(method_cfg, dict) else None
    )
    if rec.metrics.get("data/artifact") == "model":
        raise _refuse(
            f"the run in {rec.run_dir} (method {method}) released a model (model.pt), not a "
            "synthetic dataset; dpshare.release exports synthetic tables only: release a "
            "synthetic-data method's run (standard_gan, multidisc_gan, dp_wgan)"
        )
    if not (rec.run_dir / records.SYNTHETIC_FILE).is_file():
        raise _refuse(
            f"the run in {rec.run_dir} has no {records.SYNTHETIC_FILE}; run the training again "
            "to completion (python -m dpshare.train ...)"
        )
    return Check("synthetic_artifact", f"method {method} released a synthetic table")


# ------------------------------------------------------------------------------ the ledger


@dataclass
class LedgerView:
    """``privacy_ledger.json`` rebuilt into :class:`LedgerEntry` objects and recomputed."""

    record: dict[str, Any]
    entries: list[LedgerEntry]
    accountant: str
    target_epsilon: float | None
    target_delta: float
    epsilon_spent: float  # recomputed from the entries by the accountant

    @property
    def is_private(self) -> bool:
        return all(e.differentially_private for e in self.entries)

    @property
    def dp_entries(self) -> list[LedgerEntry]:
        return [e for e in self.entries if e.mechanism in DP_MECHANISMS]

    @property
    def external_entries(self) -> list[LedgerEntry]:
        """Releases by another library under its own accounting (docs/peers.md)."""
        return [e for e in self.entries if e.mechanism == EXTERNAL]


def load_ledger(rec: RunRecord) -> LedgerView:
    """Check 3: the ledger exists and parses into entries; its epsilon is recomputed with the
    recorded accountant at the recorded delta, exactly as
    :meth:`dpshare.privacy.PrivacyLedger.epsilon_spent` composes it."""
    fix = (
        "a release needs the run's own privacy ledger; restore privacy_ledger.json from the "
        "run, or train again"
    )
    record = _read_json(rec.run_dir / records.LEDGER_FILE, what="the privacy ledger", fix=fix)
    if not isinstance(record, dict) or not isinstance(record.get("entries"), list):
        raise _refuse(f"the privacy ledger of {rec.run_dir} has no list of entries; {fix}")
    if not record["entries"]:
        raise _refuse(
            f"the privacy ledger of {rec.run_dir} is empty, but every run reads real records "
            f"(at least the transformer fit); {fix}"
        )
    entries: list[LedgerEntry] = []
    for i, item in enumerate(record["entries"]):
        try:
            entry = LedgerEntry.from_dict(item)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise _refuse(
                f"privacy ledger entry {i} of {rec.run_dir} is unreadable ({exc!r}); {fix}"
            ) from exc
        if entry.mechanism not in MECHANISMS:
            raise _refuse(
                f"privacy ledger entry {i} ({entry.module}) has unknown mechanism "
                f"{entry.mechanism!r} (known: {list(MECHANISMS)}); {fix}"
            )
        if entry.mechanism == EXTERNAL:
            claim = [_number(entry.parameters.get(k)) for k in ("epsilon", "delta")]
            if any(v is None or not math.isfinite(v) or v < 0 for v in claim) or not all(
                isinstance(entry.parameters.get(k), str) for k in ("library", "version")
            ):
                raise _refuse(
                    f"privacy ledger entry {i} ({entry.module}) is an external release without "
                    "the library, version, epsilon and delta its own accountant reported; "
                    f"{fix}"
                )
        entries.append(entry)
    accountant = record.get("accountant")
    delta = _number(record.get("target_delta"))
    if not isinstance(accountant, str) or delta is None:
        raise _refuse(f"the privacy ledger of {rec.run_dir} has no accountant or delta; {fix}")
    target = _number(record.get("target_epsilon"))
    try:
        # the ledger's own composition rule (external releases by basic composition)
        epsilon = compose_entries(entries, delta=delta, accountant=accountant)
    except UserInputError as exc:
        raise _refuse(
            f"the privacy ledger of {rec.run_dir} cannot be recomputed ({exc}); {fix}"
        ) from exc
    return LedgerView(record, entries, accountant, target, delta, epsilon)


def check_ledger_consistency(rec: RunRecord, view: LedgerView) -> Check:
    """Check 4: the ledger agrees with itself, with ``metrics.json`` and with the config."""
    fix = (
        "the run record was altered or mixed with another run's files; release an untouched "
        "run directory, or train again"
    )

    def inconsistent(what: str) -> ReleaseRefusedError:
        return _refuse(f"the privacy ledger of {rec.run_dir} is inconsistent: {what}; {fix}")

    metrics = rec.metrics
    for entry, item in zip(view.entries, view.record["entries"], strict=True):
        if entry.mechanism not in DP_MECHANISMS:
            continue
        recorded = item.get("steps")
        if not isinstance(recorded, int) or recorded != entry.steps:
            raise inconsistent(
                f"entry {entry.module!r} records {recorded} steps but its noise history sums "
                f"to {entry.steps}"
            )
        noisy = entry.parameters.get("noisy_steps")
        if noisy is not None and _number(noisy) != entry.steps:
            raise inconsistent(
                f"entry {entry.module!r} took {noisy} noisy steps (parameters.noisy_steps) but "
                f"its history accounts for {entry.steps}"
            )
    sgd = [e for e in view.entries if e.mechanism == DP_SGD]
    if sgd and "privacy/noisy_steps" in metrics and metrics["privacy/noisy_steps"] != sgd[0].steps:
        raise inconsistent(
            f"metrics.json records {metrics['privacy/noisy_steps']} noisy steps "
            f"(privacy/noisy_steps) but the ledger's {sgd[0].module!r} entry accounts for "
            f"{sgd[0].steps}"
        )
    signal_steps = sum(e.steps for e in view.entries if e.mechanism == SUBSAMPLED_GAUSSIAN)
    if "privacy/signal_steps" in metrics and metrics["privacy/signal_steps"] != signal_steps:
        raise inconsistent(
            f"metrics.json records {metrics['privacy/signal_steps']} signal steps but the "
            f"ledger's subsampled signals account for {signal_steps}"
        )
    for source, value in (
        ("privacy_ledger.json epsilon_spent", view.record.get("epsilon_spent")),
        ("metrics.json privacy/epsilon_spent", metrics.get("privacy/epsilon_spent")),
    ):
        recorded_eps = _number(value)
        if recorded_eps is None or not _close(recorded_eps, view.epsilon_spent):
            raise inconsistent(
                f"{source} is {value!r} but the {view.accountant} accountant recomputes "
                f"epsilon {_fmt(view.epsilon_spent)} at delta {view.target_delta:g} from the "
                "ledger's entries"
            )
    if bool(view.record.get("differentially_private")) != view.is_private:
        raise inconsistent(
            f"it says differentially_private={view.record.get('differentially_private')} but "
            f"its entries say {view.is_private}"
        )
    if "privacy/is_dp" in metrics and bool(metrics["privacy/is_dp"]) != view.is_private:
        raise inconsistent(
            f"metrics.json privacy/is_dp={metrics['privacy/is_dp']} but the ledger's entries "
            f"say differentially private = {view.is_private}"
        )
    privacy_cfg = rec.privacy_config
    configured = privacy_cfg.get("name") not in (None, "none")
    comparisons: list[tuple[str, Any, Any]] = [
        ("target epsilon", metrics.get("privacy/target_epsilon"), view.target_epsilon),
        ("delta", metrics.get("privacy/delta"), view.target_delta),
        ("accountant", metrics.get("privacy/accountant"), view.accountant),
        ("train records", metrics.get("data/n_train"), view.record.get("n_records")),
    ]
    for name, in_metrics, in_ledger in comparisons:
        if name == "train records" and in_metrics is None:
            continue
        if not _same(in_metrics, in_ledger):
            raise inconsistent(
                f"{name} is {in_metrics!r} in metrics.json, {in_ledger!r} in the ledger"
            )
    if configured:
        for key, in_ledger in (
            ("target_epsilon", view.target_epsilon),
            ("target_delta", view.target_delta),
            ("accountant", view.accountant),
        ):
            in_config = privacy_cfg.get(key)
            if not _same(in_config, in_ledger):
                raise inconsistent(
                    f"privacy.{key} is {in_config!r} in the run's config but {in_ledger!r} in "
                    "the ledger"
                )
    return Check(
        "ledger_consistent",
        f"{len(view.entries)} entries; epsilon recomputed with the {view.accountant} accountant "
        f"({_fmt(view.epsilon_spent)}) equals the recorded one; DP step counts agree with "
        "their histories and metrics.json",
    )


def non_private_reasons(rec: RunRecord, view: LedgerView) -> list[str]:
    """Why the run is not (fully) differentially private; empty when it is."""
    reasons: list[str] = []
    privacy_name = rec.privacy_config.get("name") or rec.run.get("privacy")
    if privacy_name == "none":
        reasons.append("privacy=none (trained without differential privacy)")
    raw = [e for e in view.entries if not e.differentially_private]
    if raw:
        accesses = "; ".join(f"{e.module}: {e.purpose}" for e in raw[:4])
        more = f" (+{len(raw) - 4} more)" if len(raw) > 4 else ""
        reasons.append(f"{len(raw)} non-private access(es) to real records ({accesses}{more})")
    public = [e for e in view.entries if e.mechanism == DECLARED_PUBLIC]
    if public:
        reads = "; ".join(f"{e.module}: {e.records} records, {e.purpose}" for e in public)
        reasons.append(f"records declared public were read with no protection ({reads})")
    if not view.dp_entries and not view.external_entries:
        reasons.append("the ledger holds no differentially private mechanism")
    if math.isinf(view.epsilon_spent) and not raw:
        reasons.append("the epsilon spent is infinite (a mechanism without noise)")
    return reasons


def check_privacy(rec: RunRecord, view: LedgerView, *, allow_non_private: bool) -> Check:
    """Check 5: the run is differentially private, or ``--allow-non-private`` was given."""
    reasons = non_private_reasons(rec, view)
    if not reasons:
        return Check(
            "differentially_private",
            "every access to real records is a DP mechanism in the ledger",
        )
    if not allow_non_private:
        raise _refuse(
            f"the run in {rec.run_dir} is not differentially private: {'; '.join(reasons)}. "
            "Train with every access under DP (privacy=fixed|pid|wgan_feedback, "
            "privacy.transformer_fit=dp, privacy.signal_source=dp), or pass "
            "--allow-non-private to release it anyway with a card that says it is not private"
        )
    return Check(
        "differentially_private",
        "NOT differentially private, released with --allow-non-private: " + "; ".join(reasons),
    )


def check_budget(view: LedgerView, *, max_epsilon: float | None) -> Check:
    """Check 6: the epsilon spent is within the run's target (and ``--max-epsilon``)."""
    eps = view.epsilon_spent
    if math.isinf(eps):  # only reached for a non-private run released with the flag
        return Check("budget", "not applicable: epsilon is infinite (non-private run)")
    limits: list[tuple[str, float]] = []
    if view.target_epsilon is not None:
        limits.append(("the run's target epsilon (privacy.target_epsilon)", view.target_epsilon))
    if max_epsilon is not None:
        limits.append(("--max-epsilon", max_epsilon))
    if not limits:
        raise _refuse(
            f"the run recorded no target epsilon (epsilon spent {eps:.4g} at delta "
            f"{view.target_delta:g}); pass --max-epsilon with the budget this release must "
            "respect"
        )
    external = "; ".join(
        f"{e.module}: {e.parameters['library']} {e.parameters['version']} reports epsilon "
        f"{float(e.parameters['epsilon']):.4g} at delta {float(e.parameters['delta']):g} by its "
        "own accounting"
        for e in view.external_entries
    )
    for name, limit in limits:
        if eps > limit * (1.0 + RELATIVE_TOLERANCE):
            raise _refuse(
                f"epsilon spent {eps:.4g} (recomputed from the ledger, {view.accountant} "
                f"accountant, delta {view.target_delta:g}"
                + (f"; {external}" if external else "")
                + f") exceeds {name} {limit:.4g}; "
                + (
                    "the library spent more than it was given: run it again with settings that "
                    "stay within the budget (docs/peers.md), or release a method that does"
                    if external
                    else "train again with more noise or fewer steps within that budget"
                )
            )
    within = " and ".join(f"{name} {limit:.4g}" for name, limit in limits)
    return Check("budget", f"epsilon spent {eps:.4g} <= {within} at delta {view.target_delta:g}")


# ------------------------------------------------------------------------ synthetic table


def load_synthetic(rec: RunRecord) -> tuple[pd.DataFrame, dict[str, Any], Check]:
    """Check 7: the synthetic table matches its recorded schema and row count."""
    fix = "the run's synthetic table was altered; release an untouched run, or train again"
    schema = _read_json(rec.run_dir / records.SCHEMA_FILE, what="synthetic_schema.json", fix=fix)
    recorded = (rec.run.get("artifact_sha256") or {}).get(records.SYNTHETIC_FILE)
    if recorded is not None:
        try:
            now = records.file_sha256(rec.run_dir / records.SYNTHETIC_FILE)
        except OSError as exc:
            raise _refuse(
                f"{records.SYNTHETIC_FILE} in {rec.run_dir} is unreadable ({exc}); {fix}"
            ) from exc
        if now != recorded:
            raise _refuse(
                f"{records.SYNTHETIC_FILE} in {rec.run_dir} changed after the run (sha256 "
                f"{now[:12]}... now, {recorded[:12]}... recorded in run.json); {fix}"
            )
    try:
        frame = pd.read_parquet(rec.run_dir / records.SYNTHETIC_FILE)
    except (OSError, ValueError) as exc:
        raise _refuse(
            f"{records.SYNTHETIC_FILE} in {rec.run_dir} is unreadable ({exc}); {fix}"
        ) from exc
    columns = schema.get("columns") if isinstance(schema, dict) else None
    dtypes = schema.get("dtypes") if isinstance(schema, dict) else None
    if list(frame.columns) != columns or not isinstance(dtypes, dict):
        raise _refuse(
            f"{records.SYNTHETIC_FILE} has columns {list(frame.columns)} but "
            f"synthetic_schema.json lists {columns}; {fix}"
        )
    actual = {c: str(t) for c, t in frame.dtypes.items()}
    wrong = {c: (dtypes.get(c), actual[c]) for c in columns if dtypes.get(c) != actual[c]}
    if wrong:
        raise _refuse(f"{records.SYNTHETIC_FILE} dtypes differ from the schema {wrong}; {fix}")
    expected_rows = rec.metrics.get("data/n_synthetic")
    if expected_rows is not None and int(expected_rows) != len(frame):
        raise _refuse(
            f"{records.SYNTHETIC_FILE} has {len(frame)} rows but metrics.json recorded "
            f"{expected_rows} (data/n_synthetic); {fix}"
        )
    return (
        frame,
        schema,
        Check("synthetic_table", f"{len(frame)} rows x {len(columns)} columns match the schema"),
    )


def sample_fresh_table(
    rec: RunRecord, request: SampleRequest
) -> tuple[pd.DataFrame, np.ndarray | None, dict[str, Any], Check]:
    """Check 7 for ``--sample``: ``request.n`` rows drawn from the run's saved generator
    (verified against ``run.json``, rebuilt without real data), in the run's schema
    (``synthetic_schema.json``). Sampling is post-processing: nothing is charged."""
    from dpshare.artifact import ArtifactError, load_run
    from dpshare.sample import STATEMENT, draw

    fix = "the run's synthetic table was altered; release an untouched run, or train again"
    schema = _read_json(rec.run_dir / records.SCHEMA_FILE, what="synthetic_schema.json", fix=fix)
    try:
        loaded = load_run(rec.run_dir)
    except ArtifactError as exc:
        raise _refuse(str(exc)) from exc
    frame, windows, options = draw(
        loaded,
        request.n,
        seed=request.seed,
        class_mix=request.class_mix,
        conditions=request.conditions,
    )
    columns = schema.get("columns") if isinstance(schema, dict) else None
    dtypes = schema.get("dtypes") if isinstance(schema, dict) else None
    actual = {str(c): str(t) for c, t in frame.dtypes.items()}
    if list(frame.columns) != columns or not isinstance(dtypes, dict) or actual != dtypes:
        raise _refuse(
            f"the freshly sampled table has columns / dtypes {actual} but "
            f"synthetic_schema.json lists {dtypes}; {fix}"
        )
    info = {
        "n_rows": len(frame),
        "seed": request.seed,
        "class_mix": None
        if "class_mix" not in options
        else {str(k): v for k, v in options["class_mix"].items()},
        "conditions": options.get("conditions"),
        "artifact_sha256": {
            k: v
            for k, v in (rec.run.get("artifact_sha256") or {}).items()
            if k != records.SYNTHETIC_FILE
        },
        "statement": STATEMENT,
    }
    check = Check(
        "synthetic_table",
        f"{len(frame)} rows freshly sampled from the saved generator (seed {request.seed}; "
        f"artifact verified against run.json) x {len(columns)} columns match the run's schema",
    )
    return frame, windows, info, check


def schema_card(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Columns with their dtypes, and the categories of categorical columns."""
    out: list[dict[str, Any]] = []
    for column, dtype in frame.dtypes.items():
        item: dict[str, Any] = {"name": str(column), "dtype": str(dtype)}
        if isinstance(dtype, pd.CategoricalDtype):
            item["categories"] = [str(c) for c in dtype.categories]
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            values = frame[column].dropna().unique()
            if len(values) <= 50:
                item["categories"] = sorted(str(v) for v in values)
        out.append(item)
    return out


def exact_copies(
    rec: RunRecord, frame: pd.DataFrame, *, max_share: float, fresh: bool = False
) -> tuple[dict[str, Any], Check]:
    """Check 8: exact copies of real train records, recomputed on the exported table against
    the real train split reloaded with the run's config (the recorded value as a fallback).
    A ``fresh`` table (``--sample``) is not the one the run evaluated: its share must be
    recomputed, and the recorded value is only shown."""
    from dpshare.evaluation.attacks.copies import exact_copy_share

    recorded = _number(rec.metrics.get(EXACT_COPY_METRIC))
    out: dict[str, Any] = {
        "max_exact_copy_share": max_share,
        "exact_copy_share_recorded": recorded,
    }
    share: float | None = None
    try:
        train, test = _real_splits(rec)
    except Exception as exc:  # any failure to reload real data: fall back to the record
        out["recompute_error"] = f"{type(exc).__name__}: {exc}"
    else:
        missing = [c for c in frame.columns if c not in train.columns]
        recorded_n = rec.metrics.get("data/n_train")
        if missing or (recorded_n is not None and int(recorded_n) != len(train)):
            raise _refuse(
                "the real train split reloaded with the run's config does not match the run "
                f"({len(train)} records, recorded {recorded_n}; synthetic columns missing from "
                f"it: {missing}); the exact-copy check needs the run's own real data"
            )
        columns = list(frame.columns)
        share = exact_copy_share(frame, train[columns])
        out.update(
            source="recomputed at release on the exported table vs the whole real train split",
            exact_copy_share=share,
            n_exact_copies=round(share * len(frame)),
            exact_copy_share_test=exact_copy_share(frame, test[columns]),
        )
    if share is None and fresh:
        raise _refuse(
            "a freshly sampled table needs its exact copies recomputed against the real train "
            f"split, which could not be reloaded ({out.get('recompute_error')}); make the run's "
            "real data available (dataset paths in its config) and retry, or release the run's "
            "own table (without --sample)"
        )
    if share is None:
        if recorded is None:
            raise _refuse(
                "no exact-copy share: metrics.json has no "
                f"{EXACT_COPY_METRIC} (the run's eval did not run the copies attack) and the "
                f"real train split could not be reloaded ({out.get('recompute_error')}); make "
                "the run's real data available (dataset paths in its config) and retry"
            )
        share = recorded
        out.update(
            source="recorded by the run's copies attack (real data not reloadable at release)",
            exact_copy_share=share,
            n_exact_copies=round(share * len(frame)),
        )
    worst = share if fresh else max(share, recorded if recorded is not None else 0.0)
    if worst > max_share:
        control = out.get(
            "exact_copy_share_test", rec.metrics.get("attack/copies/exact_copy_share_holdout")
        )
        raise _refuse(
            f"{_fmt(worst)} of the synthetic records ({round(worst * len(frame))} of "
            f"{len(frame)}) copy a real train record exactly, above --max-exact-copy-share "
            f"{max_share:g} (against held-out real test records the share is {_fmt(control)}); "
            "train again with more noise or fewer epochs, or, if the copies are common "
            "population values (a test share as high), raise --max-exact-copy-share knowingly"
        )
    if recorded is not None and not fresh and not _close(share, recorded):
        raise _refuse(
            f"the exported {records.SYNTHETIC_FILE} has exact-copy share {_fmt(share)} but "
            f"metrics.json recorded {_fmt(recorded)}: the table changed after evaluation; "
            "release an untouched run directory, or train again"
        )
    for key in (
        "exact_copy_share_members",
        "exact_copy_share_holdout",
        "dcr_median",
        "dcr_holdout_median",
        "dcr_share_closer_to_train",
        "near_copy_share",
        "nndr_median",
    ):
        out[key] = rec.metrics.get(f"attack/copies/{key}")
    if rec.metrics.get("attack/mia_dcr/auc") is not None:
        out["mia_dcr_auc"] = rec.metrics["attack/mia_dcr/auc"]
    return out, Check(
        "exact_copies",
        f"exact-copy share {_fmt(share)} <= --max-exact-copy-share {max_share:g}",
    )


def _real_splits(rec: RunRecord) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The real train and test splits, reloaded with the run's recorded config."""
    from omegaconf import OmegaConf

    from dpshare.train import load_data

    _, splits = load_data(OmegaConf.create(rec.config))
    return splits.train, splits.test


# ----------------------------------------------------------------------------- the card


def _metric_description(key: str) -> dict[str, Any]:
    try:
        import dpshare.evaluation.attacks  # noqa: F401  (registers the attack metrics)
        from dpshare.evaluation.metrics import metric_info

        info = metric_info(key)
    except Exception:  # unregistered keys (e.g. attack/skipped) are shown without one
        return {}
    return {"direction": info.direction, "unit": info.unit, "description": info.description}


def sigma_schedule(view: LedgerView) -> dict[str, Any]:
    """The noise multipliers as recorded: each DP entry's run-length history
    ``[noise_multiplier, sample_rate, steps]`` and a controller's decisions, when any."""
    entries = []
    for entry in view.dp_entries:
        series = entry.noise_multipliers()
        entries.append(
            {
                "module": entry.module,
                "mechanism": entry.mechanism,
                "steps": entry.steps,
                "history": [list(run) for run in entry.history],
                "accounted_at_noise_multiplier": entry.adaptive_floor,
                "noise_multiplier_min": min(series) if series else None,
                "noise_multiplier_max": max(series) if series else None,
                "max_grad_norm": entry.parameters.get("max_grad_norm"),
                "max_grad_norm_history": entry.parameters.get("max_grad_norm_history"),
            }
        )
    controller = [
        {k: point.get(k) for k in ("step", "noise_multiplier", "max_grad_norm")}
        for point in view.record.get("controller_history") or []
        if isinstance(point, dict)
    ]
    return {"entries": entries, "controller_decisions": controller}


def _file_digest(path: Path) -> dict[str, Any]:
    return {"sha256": records.file_sha256(path), "bytes": path.stat().st_size}


def build_card(
    rec: RunRecord,
    view: LedgerView,
    frame: pd.DataFrame,
    copies: dict[str, Any],
    checks: Sequence[Check],
    *,
    allow_non_private: bool,
    max_epsilon: float | None,
) -> dict[str, Any]:
    """The report card (JSON-ready; files and their digests are added when written)."""
    env = rec.run.get("environment") or {}
    metrics = rec.metrics
    reasons = non_private_reasons(rec, view)
    return {
        "format": CARD_FORMAT,
        "created_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "source_run_dir": str(rec.run_dir.resolve()),
        "run": {
            k: rec.run.get(k)
            for k in (
                "experiment_name",
                "dataset",
                "method",
                "privacy",
                "scale",
                "seed",
                "started_at",
                "finished_at",
                "command",
            )
        },
        "code_version": {
            "dpshare": env.get("dpshare"),
            "git_commit": env.get("git_commit"),
            "environment": env,
            "release_tool": {"dpshare": dpshare.__version__, "git_commit": records.git_commit()},
        },
        "n_rows": len(frame),
        "n_columns": frame.shape[1],
        "privacy": {
            "differentially_private": not reasons,
            "non_private_reasons": reasons,
            "released_with_allow_non_private": bool(reasons) and allow_non_private,
            "epsilon_spent": view.epsilon_spent,
            "epsilon_spent_recorded": _number(view.record.get("epsilon_spent")),
            "target_epsilon": view.target_epsilon,
            "max_epsilon": max_epsilon,
            "delta": view.target_delta,
            "accountant": view.accountant,
            "approximate": view.record.get("approximate"),
            "delta_ge_1_over_n": view.record.get("delta_ge_1_over_n"),
            "n_train_records": view.record.get("n_records"),
            "epsilon_realized_schedule": _number(view.record.get("epsilon_realized_schedule")),
            "epsilon_by_mechanism": view.record.get("epsilon_by_mechanism"),
            # releases made by other libraries under their own accounting (docs/peers.md)
            "external_releases": [
                {"module": e.module}
                | {
                    k: e.parameters.get(k)
                    for k in ("library", "version", "synthesizer", "epsilon", "delta", "accounting")
                }
                for e in view.external_entries
            ],
            "refused_steps": view.record.get("refused_steps"),
            "strategy": metrics.get("privacy/strategy"),
            "noisy_steps": metrics.get("privacy/noisy_steps"),
            "signal_steps": metrics.get("privacy/signal_steps"),
        },
        "ledger": view.record,
        "sigma_schedule": sigma_schedule(view),
        "copies": copies,
        "attacks": {
            key: {"value": value, **_metric_description(key)}
            for key, value in sorted(metrics.items())
            if key.startswith("attack/")
        },
        "utility": {k: v for k, v in sorted(metrics.items()) if k.startswith("utility/")},
        "fidelity": {k: v for k, v in sorted(metrics.items()) if k.startswith("fidelity/")},
        "caveat": CAVEAT,
        "schema": {"columns": schema_card(frame)},
        "checks": [{"name": c.name, "passed": True, "detail": c.detail} for c in checks],
        "config": rec.config,
    }


def render_markdown(card: Mapping[str, Any]) -> str:
    """The report card as Markdown (the JSON holds everything; this is the readable view)."""
    privacy = card["privacy"]
    run = card["run"]
    code = card["code_version"]
    lines = [
        f"# Privacy report card: {run.get('dataset')} / {run.get('method')}",
        "",
        f"Synthetic table of **{card['n_rows']} rows x {card['n_columns']} columns** released "
        f"from run `{card['source_run_dir']}` on {card['created_at']}.",
        "",
    ]
    sample = card.get("sample")
    if sample:
        options = ", ".join(
            f"{key} {sample[key]}" for key in ("class_mix", "conditions") if sample.get(key)
        )
        lines += [
            f"Freshly sampled from the run's saved generator (`--sample {sample['n_rows']}`, "
            f"seed {sample['seed']}{', ' + options if options else ''}): {sample['statement']}",
            "",
        ]
    if not privacy["differentially_private"]:
        lines += [
            "> **NOT DIFFERENTIALLY PRIVATE** (released with `--allow-non-private`): "
            + "; ".join(privacy["non_private_reasons"]),
            "",
        ]
    lines += [
        "## Privacy guarantee",
        "",
        "| | |",
        "|---|---|",
        f"| differentially private | {_fmt(privacy['differentially_private'])} |",
        f"| epsilon spent (recomputed from the ledger) | {_fmt(privacy['epsilon_spent'])} |",
        f"| target epsilon | {_fmt(privacy['target_epsilon'])} |",
    ]
    if privacy["max_epsilon"] is not None:
        lines.append(f"| --max-epsilon | {_fmt(privacy['max_epsilon'])} |")
    lines += [
        f"| delta | {_fmt(privacy['delta'])} |",
        f"| accountant | {privacy['accountant']} |",
        f"| accountant approximate (non-Poisson sampling) | {_fmt(privacy['approximate'])} |",
        f"| delta >= 1/n | {_fmt(privacy['delta_ge_1_over_n'])} |",
        f"| real train records protected | {_fmt(privacy['n_train_records'])} |",
        f"| strategy | {_fmt(privacy['strategy'])} |",
        f"| noisy steps (DP-SGD) | {_fmt(privacy['noisy_steps'])} |",
        f"| epsilon of the realised schedule (informative) | "
        f"{_fmt(privacy['epsilon_realized_schedule'])} |",
        *(
            f"| external release `{e['module']}` (the library's own accounting, not "
            f"recomputed by dpshare) | {e['library']} {e['version']}: epsilon "
            f"{_fmt(e['epsilon'])} at delta {_fmt(e['delta'])} |"
            for e in privacy.get("external_releases") or []
        ),
        "",
        "## Checks passed",
        "",
        *(f"- **{c['name']}**: {c['detail']}" for c in card["checks"]),
        "",
        "## Privacy ledger",
        "",
        "Every access the run made to real records (full ledger in `report_card.json`).",
        "",
        "| # | mechanism | module | purpose | records | DP | steps | noise multiplier |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, entry in enumerate(card["ledger"]["entries"]):
        sigma = entry.get("noise_multiplier_min")
        if sigma is not None and entry.get("noise_multiplier_max") != sigma:
            sigma_text = f"{_fmt(sigma)}-{_fmt(entry.get('noise_multiplier_max'))}"
        else:
            sigma_text = _fmt(sigma)
        lines.append(
            f"| {i} | {entry['mechanism']} | {entry['module']} | {entry.get('purpose', '')} | "
            f"{entry.get('records')} | {_fmt(entry.get('differentially_private'))} | "
            f"{_fmt(entry.get('steps'))} | {sigma_text} |"
        )
    by_mechanism = privacy.get("epsilon_by_mechanism") or {}
    if by_mechanism:
        parts = ", ".join(f"{k} {_fmt(_number(v))}" for k, v in by_mechanism.items())
        lines += ["", f"Epsilon of each entry on its own (sub-additive, not a sum): {parts}."]
    lines += ["", "## Noise (sigma) schedule", ""]
    schedule = card["sigma_schedule"]
    if not schedule["entries"] and privacy.get("external_releases"):
        lines += [
            "The noise was added inside the external library (its own mechanisms and "
            "accountant, listed above); dpshare ran no DP-SGD or Gaussian release of its own.",
            "",
        ]
    elif not schedule["entries"]:
        lines.append("No DP mechanism: no noise was added.")
    for entry in schedule["entries"]:
        floor = entry["accounted_at_noise_multiplier"]
        lines += [
            f"**{entry['module']}** ({entry['mechanism']}, steps: {entry['steps']}"
            + (f", accounted at the adaptive floor {_fmt(floor)}" if floor is not None else "")
            + ")",
            "",
            "| noise multiplier | sample rate | steps |",
            "|---|---|---|",
        ]
        runs = entry["history"]
        for sigma, rate, steps in runs[:MAX_SCHEDULE_ROWS]:
            lines.append(f"| {_fmt(sigma)} | {_fmt(rate)} | {int(steps)} |")
        if len(runs) > MAX_SCHEDULE_ROWS:
            lines.append(f"| ... | ... | {len(runs) - MAX_SCHEDULE_ROWS} more runs in JSON |")
        lines.append("")
    if schedule["controller_decisions"]:
        lines.append(
            f"Noise controller: {len(schedule['controller_decisions'])} decisions "
            "(step, noise multiplier, clipping bound) in `report_card.json`."
        )
        lines.append("")
    copies = card["copies"]
    lines += [
        "## Exact copies and distance to closest record",
        "",
        "| | |",
        "|---|---|",
        f"| exact-copy share (vs the whole real train split) | "
        f"{_fmt(copies.get('exact_copy_share'))} |",
        f"| exact copies | {_fmt(copies.get('n_exact_copies'))} |",
        f"| allowed (--max-exact-copy-share) | {_fmt(copies.get('max_exact_copy_share'))} |",
        f"| how computed | {copies.get('source')} |",
    ]
    for key in (
        "exact_copy_share_test",
        "exact_copy_share_recorded",
        "dcr_median",
        "dcr_holdout_median",
        "dcr_share_closer_to_train",
        "near_copy_share",
        "nndr_median",
    ):
        if copies.get(key) is not None:
            lines.append(f"| {key} | {_fmt(copies[key])} |")
    lines += ["", "## Attack results", ""]
    if card["attacks"]:
        lines += ["| metric | value | better | description |", "|---|---|---|---|"]
        for key, item in card["attacks"].items():
            lines.append(
                f"| `{key}` | {_fmt(item['value'])} | {item.get('direction', '')} | "
                f"{item.get('description', '')} |"
            )
    else:
        lines.append("The run's evaluation ran no attack.")
    lines += ["", "## Utility and fidelity", ""]
    quality = {**card["utility"], **card["fidelity"]}
    if quality:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| `{k}` | {_fmt(v)} |" for k, v in quality.items()]
    else:
        lines.append("Not evaluated.")
    lines += [
        "",
        "**Caveat.** " + card["caveat"],
        "",
        "## Data schema",
        "",
        "| column | dtype | categories |",
        "|---|---|---|",
    ]
    for column in card["schema"]["columns"]:
        categories = column.get("categories")
        cats = ", ".join(categories) if categories else ""
        lines.append(f"| {column['name']} | {column['dtype']} | {cats} |")
    lines += [
        "",
        "## Files",
        "",
        *(f"- `{name}`: sha256 `{f['sha256']}`" for name, f in card.get("files", {}).items()),
        "",
        "## Code version and configuration",
        "",
        f"- dpshare {code.get('dpshare')}, git commit `{code.get('git_commit')}`",
        f"- released by dpshare {code['release_tool']['dpshare']}, "
        f"git commit `{code['release_tool']['git_commit']}`",
        f"- command: `{run.get('command')}`",
        "",
        "```yaml",
        yaml.safe_dump(card["config"], sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the release


def check_output(out: Path, run_dir: Path, *, force: bool) -> None:
    """Refuse an ``--out`` that exists and is not empty (unless ``--force``), is a file, or is
    (or contains) the run directory."""
    out_r, run_r = out.resolve(), run_dir.resolve()
    if out_r == run_r or out_r in run_r.parents:
        raise UserInputError(f"--out {out} is or contains the run directory; choose another")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserInputError(f"--out {out} exists and is not a directory; choose another")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserInputError(
            f"--out {out} exists and is not empty; choose another or pass --force to replace it"
        )


def prepare_release(
    run_dir: Path,
    *,
    allow_non_private: bool = False,
    max_exact_copy_share: float = 0.0,
    max_epsilon: float | None = None,
    sample: SampleRequest | None = None,
) -> PreparedRelease:
    """Run every check (nothing is written) and build the card; raises
    :class:`ReleaseRefusedError` (a :class:`UserInputError`) naming the failed check.
    ``sample``: release a table freshly drawn from the run's saved generator instead of its
    ``synthetic.parquet`` (the same checks; copies recomputed on the fresh table)."""
    if not 0.0 <= max_exact_copy_share <= 1.0:
        raise UserInputError(
            f"--max-exact-copy-share must be in [0, 1], got {max_exact_copy_share}"
        )
    if max_epsilon is not None and not (max_epsilon > 0 and math.isfinite(max_epsilon)):
        raise UserInputError(f"--max-epsilon must be a finite number > 0, got {max_epsilon}")
    run_dir = Path(run_dir)
    rec = load_complete_run(run_dir)
    checks = [Check("complete_run", "run.json status complete; metrics.json present")]
    checks.append(check_synthetic_artifact(rec))
    view = load_ledger(rec)
    checks.append(Check("ledger_present", f"{len(view.entries)} entries parsed"))
    checks.append(check_ledger_consistency(rec, view))
    checks.append(check_privacy(rec, view, allow_non_private=allow_non_private))
    checks.append(check_budget(view, max_epsilon=max_epsilon))
    windows: np.ndarray | None = None
    sample_info: dict[str, Any] | None = None
    if sample is None:
        frame, _, table_check = load_synthetic(rec)
    else:
        frame, windows, sample_info, table_check = sample_fresh_table(rec, sample)
    checks.append(table_check)
    copies, copies_check = exact_copies(
        rec, frame, max_share=max_exact_copy_share, fresh=sample is not None
    )
    checks.append(copies_check)
    card = build_card(
        rec,
        view,
        frame,
        copies,
        checks,
        allow_non_private=allow_non_private,
        max_epsilon=max_epsilon,
    )
    if sample_info is None:
        extra = [run_dir / name for name in EXTRA_ARTIFACTS if (run_dir / name).is_file()]
        return PreparedRelease(run_dir=run_dir, synthetic=frame, card=card, extra_files=extra)
    card["sample"] = sample_info  # the run's own windows belong to its own table: not copied
    arrays = {} if windows is None else {"synthetic_sequences.npy": np.asarray(windows)}
    return PreparedRelease(run_dir=run_dir, synthetic=frame, card=card, extra_arrays=arrays)


def write_release(prepared: PreparedRelease, out: Path, *, force: bool = False) -> Path:
    """Write the release into a temporary sibling of ``out`` and rename it into place."""
    out = Path(out)
    check_output(out, prepared.run_dir, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.release-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    backup: Path | None = None
    try:
        prepared.synthetic.to_parquet(tmp / RELEASED_TABLE, index=False)
        prepared.synthetic.to_csv(tmp / RELEASED_CSV, index=False)
        for path in prepared.extra_files:
            shutil.copy2(path, tmp / path.name)
        for name, array in prepared.extra_arrays.items():
            with open(tmp / name, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
        names = [
            RELEASED_TABLE,
            RELEASED_CSV,
            *(p.name for p in prepared.extra_files),
            *prepared.extra_arrays,
        ]
        card = dict(prepared.card)
        card["files"] = {name: _file_digest(tmp / name) for name in names}
        card = records._jsonable(card)  # NaN -> null, inf -> "inf" (strict JSON)
        text = json.dumps(card, indent=2, allow_nan=False)
        (tmp / CARD_JSON).write_text(text + "\n", encoding="utf-8")
        (tmp / CARD_MD).write_text(render_markdown(card), encoding="utf-8")
        if out.is_dir() and any(out.iterdir()):  # --force: move the old release aside first
            backup = out.parent / f".{out.name}.replaced-{uuid.uuid4().hex[:8]}"
            os.replace(out, backup)
        try:
            os.replace(tmp, out)  # replaces an empty directory too
        except BaseException:
            if backup is not None:
                os.replace(backup, out)
                backup = None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return out


def release(
    run_dir: Path,
    out: Path,
    *,
    allow_non_private: bool = False,
    max_exact_copy_share: float = 0.0,
    max_epsilon: float | None = None,
    force: bool = False,
    sample: SampleRequest | None = None,
) -> dict[str, Any]:
    """Check ``run_dir`` and release it to ``out``; return the card. Raises
    :class:`UserInputError` (nothing written) when a check fails. ``sample``: release a table
    freshly drawn from the run's saved generator (``--sample``)."""
    check_output(Path(out), Path(run_dir), force=force)
    prepared = prepare_release(
        run_dir,
        allow_non_private=allow_non_private,
        max_exact_copy_share=max_exact_copy_share,
        max_epsilon=max_epsilon,
        sample=sample,
    )
    write_release(prepared, Path(out), force=force)
    return records.read_json(Path(out) / CARD_JSON)  # type: ignore[no-any-return]


def summarize(card: Mapping[str, Any], out: Path) -> str:
    privacy = card["privacy"]
    copies = card["copies"]
    eps = privacy["epsilon_spent"]
    accounting = [
        f"{e['library']} {e['version']}'s own accounting"
        for e in privacy.get("external_releases") or []
    ]
    if not accounting or card["sigma_schedule"]["entries"]:
        accounting.insert(0, f"{privacy['accountant']} accountant")
    return (
        f"released {card['n_rows']} rows to {out} ({CARD_MD}, {CARD_JSON})\n"
        f"  epsilon spent {_fmt(_number(eps))} (target {_fmt(privacy['target_epsilon'])}, "
        f"delta {_fmt(privacy['delta'])}, {' + '.join(accounting)})"
        f"{'' if privacy['differentially_private'] else ' NOT DIFFERENTIALLY PRIVATE'} | "
        f"exact-copy share {_fmt(copies.get('exact_copy_share'))}"
    )


def _sample_request(args: argparse.Namespace) -> SampleRequest | None:
    """The ``--sample`` options, or ``None``; sampling options without ``--sample`` refuse."""
    from dpshare.artifact import parse_mapping_option

    if args.sample is None:
        options = (("--class-mix", args.class_mix), ("--conditions", args.conditions))
        given = [flag for flag, value in options if value is not None]
        if given or args.seed != 0:
            raise UserInputError(
                f"{', '.join(given) or '--seed'} only applies with --sample N (a freshly "
                "sampled table); drop it to release the run's own table"
            )
        return None
    if args.sample < 1:
        raise UserInputError(f"--sample must be a whole number >= 1, got {args.sample}")
    return SampleRequest(
        n=args.sample,
        seed=args.seed,
        class_mix=parse_mapping_option(args.class_mix, "--class-mix"),
        conditions=parse_mapping_option(args.conditions, "--conditions"),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m dpshare.release RUN_DIR --out DIR [--sample N ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m dpshare.release", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("run_dir", type=Path, help="a complete run directory (dpshare.train)")
    parser.add_argument("--out", type=Path, required=True, help="the release directory")
    parser.add_argument(
        "--allow-non-private",
        action="store_true",
        help="release a run that is not differentially private (the card says so)",
    )
    parser.add_argument(
        "--max-exact-copy-share",
        type=float,
        default=0.0,
        help="largest share of synthetic records allowed to copy a real train record exactly "
        "(default 0: any exact copy refuses)",
    )
    parser.add_argument(
        "--max-epsilon",
        type=float,
        default=None,
        help="the data holder's own epsilon cap (needed when the run recorded no target)",
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out directory")
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="N",
        help="release N rows freshly drawn from the run's saved generator instead of its "
        "synthetic.parquet (post-processing: no privacy cost; the same checks)",
    )
    parser.add_argument("--seed", type=int, default=0, help="with --sample: the sampling seed")
    parser.add_argument(
        "--class-mix", default=None, help="with --sample: class shares, e.g. '{1: 0.3, 0: 0.7}'"
    )
    parser.add_argument(
        "--conditions", default=None, help="with --sample (multidisc_gan): e.g. '{bank: bank_B}'"
    )
    args = parser.parse_args(argv)
    try:
        request = _sample_request(args)
        card = release(
            args.run_dir,
            args.out,
            allow_non_private=args.allow_non_private,
            max_exact_copy_share=args.max_exact_copy_share,
            max_epsilon=args.max_epsilon,
            force=args.force,
            sample=request,
        )
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(summarize(card, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
