"""An index of complete run records keyed by a hash of the resolved config: a re-run of a
sweep reuses the points that already finished and redoes the rest.

``<output_root>/index/<config hash>.json`` names the run directory of the most recent COMPLETE
record (``metrics.json`` present, ``run.json`` status ``complete``) of that config. It is written
after the record is complete, atomically, so a run killed at any moment is either in the index
with a complete record or not in it at all.

The hash covers the whole resolved config except the keys that only say where the record
goes or how fast it is made (:data:`NOT_HASHED`), plus the code version (dpshare version, git
commit and a digest of uncommitted changes to ``src/`` and ``conf/``): a record made by other
code is never reused, so re-running a sweep after a code change recomputes it. A reused
point's directory receives a copy of the complete record (hard links where the file system
allows) and a ``run.json`` saying ``reused_from``; nothing is retrained. Note what "the same
config" means under DP: the DP noise is drawn from OS entropy, so a recomputation would give a
different (equally valid) sample; the reuse keeps the one that was made and charged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dpshare.reporting import records

INDEX_DIR = "index"
# Keys that do not change what a run computes: where its record goes, how it is logged, threads.
NOT_HASHED = (
    "run_dir",
    "output_root",
    "torch_threads",
    "logger",
    "skip_completed",
    "resume",
    "reuse_records",
)
SKIP_MODES = ("multirun", "always", "never")


@functools.cache
def code_version() -> str:
    """``<dpshare version>+<git commit>[+dirty.<digest of uncommitted src/ and conf/ changes>]``,
    once per process (the code a process runs is the code it imported)."""
    import dpshare

    root = Path(dpshare.__file__).resolve().parents[2]
    commit = records.git_commit(root) or "no-git"
    try:
        diff = subprocess.run(
            ["git", "diff", "HEAD", "--", "src", "conf"],
            cwd=root,
            capture_output=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        diff = b""
    dirty = f"+dirty.{hashlib.sha256(diff).hexdigest()[:12]}" if diff else ""
    return f"{dpshare.__version__}+{commit}{dirty}"


def config_hash(cfg: DictConfig, code: str | None = None) -> str:
    """sha256 (hex, 16 characters) of the resolved config minus :data:`NOT_HASHED`, and of the
    code version (:func:`code_version` unless ``code`` is given)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    for key in NOT_HASHED:
        plain.pop(key, None)
    plain["__code__"] = code_version() if code is None else code
    text = json.dumps(plain, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _entry(output_root: Path, digest: str) -> Path:
    return Path(output_root) / INDEX_DIR / f"{digest}.json"


def is_complete(run_dir: Path, digest: str | None = None) -> bool:
    """A complete record (metrics.json and run.json status complete), of ``digest`` if given."""
    run_dir = Path(run_dir)
    if not (run_dir / records.METRICS_FILE).is_file():
        return False
    try:
        info = json.loads((run_dir / records.RUN_FILE).read_text(encoding="utf-8"))
        json.loads((run_dir / records.METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if info.get("status") != "complete":
        return False
    return digest is None or info.get("config_hash") == digest


def find_complete(output_root: Path, digest: str, run_dir: Path) -> Path | None:
    """The complete record of this config: ``run_dir`` itself (a re-run into the same sweep
    directory), else the one the index names; None if there is none."""
    if is_complete(run_dir, digest):
        return Path(run_dir)
    entry = _entry(output_root, digest)
    try:
        named = Path(json.loads(entry.read_text(encoding="utf-8"))["run_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return named if is_complete(named, digest) else None


def register_complete(output_root: Path, digest: str, run_dir: Path) -> None:
    """Name ``run_dir`` as the complete record of ``digest`` (call after metrics.json)."""
    records.write_json(
        _entry(output_root, digest),
        {"config_hash": digest, "run_dir": str(Path(run_dir).resolve())},
    )


def reuse_record(source: Path, run_dir: Path, digest: str) -> dict[str, Any]:
    """Copy the complete record ``source`` into ``run_dir`` (metrics.json last) and return its
    metrics. ``run.json`` says where it came from, and so does each nested record's."""
    source, run_dir = Path(source), Path(run_dir)
    metrics = json.loads((source / records.METRICS_FILE).read_text(encoding="utf-8"))
    if source.resolve() == run_dir.resolve():
        return metrics
    run_dir.mkdir(parents=True, exist_ok=True)
    skip = {records.METRICS_FILE, records.RUN_FILE}
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if not path.is_file() or rel.as_posix() in skip or rel.parts[0] == ".hydra":
            continue  # this job's own .hydra/ (written by Hydra) describes this job
        target = run_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copy2(path, tmp)
        os.replace(tmp, target)
    # a nested record (a release variant, variants/<name>/) is a copy as well: it says so, so
    # the report never archives it as a new record (write_json replaces the hard link)
    for nested in sorted(source.rglob(records.RUN_FILE)):
        rel = nested.relative_to(source)
        if len(rel.parts) == 1 or rel.parts[0] == ".hydra":
            continue
        nested_info = json.loads(nested.read_text(encoding="utf-8"))
        nested_info["reused_from"] = str(nested.parent.resolve())
        records.write_json(run_dir / rel, nested_info)
    info = json.loads((source / records.RUN_FILE).read_text(encoding="utf-8"))
    info["reused_from"] = str(source.resolve())
    records.write_json(run_dir / records.METRICS_FILE, metrics)
    records.write_json(run_dir / records.RUN_FILE, info)
    return metrics
