"""The record archive: the part of each cpu- and paper-scale run record that the report reads,
kept under ``results/records/`` so that it travels with the repository.

A run's full record (``outputs/``: synthetic data, weights, checkpoints) stays where it was
written and is not committed. The archive keeps only the small files every table, claim, note and
the compute table are built from (:data:`ARCHIVED_FILES`), at the same path relative to the
records root, so :func:`dpshare.report.load_records` reads it like any records directory and
``_invocation`` still finds each record's sweep. Two uses:

- ``python -m dpshare.report`` rebuilds ``results/`` on a clean clone from the archive alone, and a
  machine that loses its ``outputs/`` loses no table;
- ``make reproduce SCALE=cpu`` resumes from it: a point whose archived record ran the same resolved
  config (:func:`protocol_hash`) is reused, not retrained, so a reproduction longer than one
  session is finished in several (``--fresh`` retrains everything).

Smoke-scale records are not archived: ``make reproduce`` remakes them in minutes, and a test suite
that writes them would churn the repository.

What the archive holds is what ``results/`` already publishes: configs, metrics, the privacy
ledger, per-epoch training logs and, for MNIST, the 64-image sample preview of Fig. 8. No real
record, no synthetic table and no model weight is copied.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import yaml

from dpshare.reporting import records as record_files

# the keys that do not change what a run computes: the same list as the outputs/ index's hash
from dpshare.reporting.index import NOT_HASHED

# Settings added or changed after records were written: key -> the value a record written
# before the key existed ran with. The report flags records whose effective setting differs from
# the current configuration (``dpshare.report.settings_notes``); the protocol hash drops a key
# at that value, so a record made before a key existed and a new run that leaves the key at that
# value are the same point (adding an option that is off by default retrains nothing).
CHANGED_DEFAULTS: dict[str, object] = {
    "method.continuous_scale": "linear",
    "method.generator_ema": None,
    "method.mean_embedding_weight": 0.0,
    "method.mean_embedding_features": 256,
    "method.mean_embedding_bandwidth": 1.0,
    "method.rounds_per_column": None,  # AIM: the library's 16 rounds per column
    "privacy.release_budget_share": None,  # the fixed privacy.release_noise_multiplier
}

ARCHIVE_DIR = "records"
ARCHIVED_SCALES = ("cpu", "paper")
ARCHIVED_FILES = (
    record_files.RUN_FILE,
    record_files.METRICS_FILE,
    record_files.RESOLVED_CONFIG_FILE,
    record_files.LEDGER_FILE,
    ".hydra/config.yaml",  # HYDRA_CONFIG: only for records without a resolved config
    ".hydra/overrides.yaml",
    "csv/metrics.csv",  # TRAINING_LOG, per-epoch values only (:func:`_per_epoch`)
    "synthetic_images_preview.npy",
)
TRAINING_LOG = "csv/metrics.csv"
HYDRA_CONFIG = ".hydra/config.yaml"


def protocol_hash(resolved_yaml: str) -> str:
    """sha256 (16 hex characters) of a resolved config as its record holds it
    (``config_resolved.yaml``), without :data:`NOT_HASHED`, without the code version and
    without a :data:`CHANGED_DEFAULTS` key at the value records made before it existed ran.

    Unlike :func:`dpshare.reporting.index.config_hash` (which includes the git commit, so a
    re-run after any commit recomputes), this one says "the same experiment, the same settings":
    the report's own notion of one point (it flags records whose settings differ from the
    current configuration, ``settings_notes``). A caller hashes a live config through the same
    text (``OmegaConf.to_yaml(cfg, resolve=True)``), so both sides go through one parser."""
    plain = yaml.safe_load(resolved_yaml) or {}
    if not isinstance(plain, dict):
        raise ValueError("a resolved config is a mapping")
    for key in NOT_HASHED:
        plain.pop(key, None)
    for dotted, before in CHANGED_DEFAULTS.items():
        section, _, name = dotted.partition(".")
        node = plain.get(section)
        if isinstance(node, dict) and name in node and node[name] == before:
            node.pop(name)
    text = json.dumps(plain, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _complete(run_dir: Path) -> bool:
    try:
        info = json.loads((run_dir / record_files.RUN_FILE).read_text(encoding="utf-8"))
        json.loads((run_dir / record_files.METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return info.get("status") == "complete"


@functools.cache
def _complete_by_hash(root: str, _stamp: float) -> dict[str, Path]:
    """protocol hash -> the newest complete archived record of it under ``root`` (cached per
    process while the archive's directory time stamp is unchanged; a record added deeper in the
    tree meanwhile is missed, so at worst a point is retrained, never a wrong one reused)."""
    found: dict[str, tuple[str, Path]] = {}
    for run_file in sorted(Path(root).rglob(record_files.RUN_FILE)):
        run_dir = run_file.parent
        config = run_dir / record_files.RESOLVED_CONFIG_FILE
        if not config.is_file() or not _complete(run_dir):
            continue
        try:
            digest = protocol_hash(config.read_text(encoding="utf-8"))
            started = str(json.loads(run_file.read_text(encoding="utf-8")).get("started_at", ""))
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if digest not in found or started >= found[digest][0]:
            found[digest] = (started, run_dir)
    return {digest: run_dir for digest, (_s, run_dir) in found.items()}


def find_archived(roots: Iterable[str | os.PathLike[str]], digest: str) -> Path | None:
    """The newest complete record of protocol hash ``digest`` under the archive ``roots``."""
    for root in roots:
        path = Path(root)
        if not path.is_dir():
            continue
        hit = _complete_by_hash(str(path.resolve()), path.stat().st_mtime).get(digest)
        if hit is not None:
            return hit
    return None


def archive_records(run_dirs: Iterable[tuple[Path, Path]], dest: Path) -> int:
    """Copy the :data:`ARCHIVED_FILES` of each ``(records_root, run_dir)`` to
    ``dest/<run_dir relative to records_root>``; returns how many records were newly archived or
    updated. A record read from ``dest`` itself is left as it is; one that changed (e.g. a run
    that was incomplete and has finished since) is replaced, its ``metrics.json`` and
    ``run.json`` last, so an archive read mid-copy never shows a complete record with missing
    parts. The caller picks the records (:data:`ARCHIVED_SCALES`)."""
    dest = Path(dest).resolve()
    last = (record_files.METRICS_FILE, record_files.RUN_FILE)
    names = [n for n in ARCHIVED_FILES if n not in last] + list(last)
    written = 0
    for root, run_dir in run_dirs:
        run_dir = Path(run_dir).resolve()
        if run_dir == dest or dest in run_dir.parents:
            continue  # read from the archive itself
        target = dest / run_dir.relative_to(Path(root).resolve())
        changed = False
        resolved = (run_dir / record_files.RESOLVED_CONFIG_FILE).is_file()
        for name in names:
            if name == HYDRA_CONFIG and resolved:
                continue  # the report reads the resolved config; Hydra's only without one
            src, out = run_dir / name, target / name
            if not src.is_file():
                if out.is_file() and name in last:  # e.g. the metrics.json of an older attempt
                    out.unlink()
                    changed = True
                continue
            if name == TRAINING_LOG:
                data = _per_epoch(src)
            elif name == record_files.RUN_FILE:
                data = _run_file(src)
            else:
                data = src.read_bytes()
            if out.is_file() and out.read_bytes() == data:
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, out)
            changed = True
        written += changed
    return written


def _run_file(path: Path) -> bytes:
    """A record's ``run.json`` as archived: as it is, except that a run left ``running`` whose
    process this host knows to be gone (SIGKILL, the OOM killer: :func:`records.process_gone`)
    gets ``process_gone: true``. Only the host that ran a job can see that its process is gone;
    the archive keeps what it saw, so a rebuild on any machine says "stopped" for that record
    (the same bytes each time: archiving it again changes nothing)."""
    data = path.read_bytes()
    try:
        run = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return data  # kept as it is: the report skips a record it cannot parse
    if (
        isinstance(run, dict)
        and run.get("status") == "running"
        and not run.get("process_gone")
        and record_files.process_gone(run)
    ):
        return record_files.json_text(run | {"process_gone": True}).encode("utf-8")
    return data


def _per_epoch(path: Path) -> bytes:
    """The training log's per-epoch values only (``epoch``, ``step`` and the ``*_epoch``
    columns, on the rows that have one): a few KB instead of ~100 KB. The report reads nothing
    else from it; per-step values and the final metrics row (all in ``metrics.json``) are
    left out."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return path.read_bytes()  # kept as it is: the report skips a log it cannot parse
    values = [c for c in frame.columns if str(c).endswith("_epoch")]
    keep = [c for c in ("epoch", "step") if c in frame.columns] + values
    frame = frame[keep].dropna(how="all", subset=values) if values else frame[keep].iloc[:0]
    return frame.to_csv(index=False).encode("utf-8")
