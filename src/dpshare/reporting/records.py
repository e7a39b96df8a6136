"""Writing a run's self-describing record, atomically.

Layout of a run directory (Hydra's output dir):

- ``.hydra/config.yaml``: the resolved config (written by Hydra; by :func:`write_config` when
  ``train`` is called directly).
- ``run.json``: status, timings, versions, host, git commit.
- ``privacy_ledger.json``: every access to real records.
- ``synthetic.parquet`` (dtype-faithful) and ``synthetic.csv``; ``synthetic_schema.json``.
- ``model.pt``: the released weights (generator).
- ``generator.json`` + ``generator.pt``: the saved generator (generator methods): everything
  sampling needs, JSON and plain tensors, SHA-256 in ``run.json`` (:mod:`dpshare.artifact`).
- ``csv/metrics.csv``: Lightning's per-step logs.
- ``metrics.json``: flat ``namespace/name`` -> number; written LAST, so its presence marks a
  complete record.

Every file is written to a temporary name in the same directory and renamed into place, so a
crash never leaves a half-written record behind.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dpshare.errors import UserInputError

METRICS_FILE = "metrics.json"
RUN_FILE = "run.json"
# the config with every interpolation resolved (Hydra's .hydra/config.yaml keeps them as written)
RESOLVED_CONFIG_FILE = "config_resolved.yaml"
LEDGER_FILE = "privacy_ledger.json"
SYNTHETIC_FILE = "synthetic.parquet"
SYNTHETIC_CSV = "synthetic.csv"
SCHEMA_FILE = "synthetic_schema.json"
MODEL_FILE = "model.pt"


def prepare_run_dir(run_dir: Path | str) -> Path:
    """Create ``run_dir`` (and its parents) and check that a file can be written in it; a path
    under a regular file, a read-only place or a full disk raises
    :class:`~dpshare.errors.UserInputError` naming the directory and the fix, before any work."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=run_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        blocker = next((p for p in [run_dir, *run_dir.parents] if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            reason = f"{blocker} is a file, not a folder"
        raise UserInputError(
            f"cannot write the run record to {run_dir}: {reason}; give a writable folder with "
            "run_dir=... or output_root=... (or the DPSHARE_OUTPUT environment variable)"
        ) from exc
    return run_dir


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes the file owner-only; give it the permissions a plain open() would
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _jsonable(value: Any) -> Any:
    """Numbers as JSON numbers; NaN/inf (not valid JSON) as null / "inf" strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def json_text(obj: Any) -> str:
    """A record file's JSON text (what :func:`write_json` writes)."""
    return json.dumps(_jsonable(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: Path, obj: Any) -> Path:
    text = json_text(obj)
    return _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_table(frame: pd.DataFrame, run_dir: Path, *, csv: bool) -> dict[str, str]:
    """The synthetic table as Parquet (keeps dtypes), optionally CSV, plus a dtype schema."""
    run_dir = Path(run_dir)
    _atomic(run_dir / SYNTHETIC_FILE, lambda tmp: frame.to_parquet(tmp, index=False))
    if csv:
        _atomic(run_dir / SYNTHETIC_CSV, lambda tmp: frame.to_csv(tmp, index=False))
    schema = {c: str(t) for c, t in frame.dtypes.items()}
    write_json(run_dir / SCHEMA_FILE, {"columns": list(frame.columns), "dtypes": schema})
    return schema


def file_sha256(path: Path) -> str:
    """SHA-256 of a file (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_array(path: Path, array: Any) -> Path:
    """One NumPy array as ``.npy`` (e.g. generated windows, shape (n, T, V))."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)

    return _atomic(path, write)


def write_torch(path: Path, state: Mapping[str, Any]) -> Path:
    import torch

    return _atomic(path, lambda tmp: torch.save(dict(state), tmp))


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_stamp() -> str:
    """The time stamp that starts a run or sweep directory's name, to the microsecond (as
    ``conf/config.yaml``'s ``${now:...}``): two runs started in the same second never share a
    directory."""
    return datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")


def process_gone(run: Mapping[str, Any]) -> bool:
    """Whether a record's run process is known to be gone: its ``run.json`` names this host and a
    process id that no longer exists. A run killed with SIGKILL (a joblib worker, the OOM
    killer) never rewrites its ``run.json``, which stays ``status: running``; this tells such a
    run from one in progress. ``False`` whenever it cannot tell: another host, a record written
    before pids were kept, or a live pid (which may also be a reused one)."""
    pid, host = run.get("pid"), run.get("host")
    if not isinstance(pid, int) or pid <= 0 or host != platform.node():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists under another user (PermissionError): not gone
        return False
    return False


def environment() -> dict[str, Any]:
    import pytorch_lightning
    import sklearn
    import torch

    import dpshare

    return {
        "dpshare": dpshare.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "scikit_learn": sklearn.__version__,
        "pandas": pd.__version__,
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }
