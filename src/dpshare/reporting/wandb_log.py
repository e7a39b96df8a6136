"""What a finished run sends to Weights & Biases, rebuilt from its record on disk.

:func:`wandb_payload` is pure: it reads a run directory (``.hydra/config.yaml``,
``metrics.json``, ``privacy_ledger.json``, ``synthetic.parquet``,
``synthetic_images_preview.npy``) and returns plain Python / NumPy / pandas objects; it never
imports wandb. :func:`dpshare.loggers.log_run_record` sends the payload to the open W&B run.

The payload holds:

- ``config``: the resolved config; ``group`` and ``tags``: what ``wandb.init`` was given
  (``logger.wandb_group``, default the ``experiment_name``; ``logger.wandb_tags``, default
  ``tags``);
- ``summary``: every key of ``metrics.json`` with a number (bools as 0/1) or a string
  (``"inf"`` stays the string ``"inf"``); nulls, lists and dicts are left out;
- ``curves``: the noise schedule and the privacy spent over the run's noisy steps (see
  :func:`privacy_curves`), or ``None`` when the run took no noisy steps;
- ``image_grid`` / ``image_caption``: the generated-image preview tiled into one uint8 grid
  (image datasets), else ``None``;
- ``table_preview``: the first :data:`TABLE_PREVIEW_ROWS` rows of the synthetic table (tabular
  datasets), else ``None``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from omegaconf import OmegaConf

from dpshare.privacy.accounting import rdp_curve, rdp_to_epsilon
from dpshare.privacy.ledger import DP_SGD, GAUSSIAN, SUBSAMPLED_GAUSSIAN, LedgerEntry
from dpshare.reporting import records

IMAGE_PREVIEW_FILE = "synthetic_images_preview.npy"
TABLE_PREVIEW_ROWS = 50
MAX_CURVE_POINTS = 200


def wandb_payload(run_dir: Path, *, max_curve_points: int = MAX_CURVE_POINTS) -> dict[str, Any]:
    """Everything a finished run logs to W&B, read from its run directory (see module doc)."""
    run_dir = Path(run_dir)
    config = _resolved_config(run_dir)
    logger_cfg = config.get("logger") or {}
    group = logger_cfg.get("wandb_group") or config.get("experiment_name")
    tags = logger_cfg.get("wandb_tags") or config.get("tags") or []
    metrics_path = run_dir / records.METRICS_FILE
    metrics = records.read_json(metrics_path) if metrics_path.is_file() else {}
    ledger_path = run_dir / records.LEDGER_FILE
    ledger = records.read_json(ledger_path) if ledger_path.is_file() else None
    image_grid, image_caption = _image_preview(run_dir)
    table_preview = None
    if image_grid is None and (run_dir / records.SYNTHETIC_FILE).is_file():
        table_preview = _table_head(run_dir / records.SYNTHETIC_FILE, TABLE_PREVIEW_ROWS)
    return {
        "config": config,
        "group": None if group is None else str(group),
        "tags": [str(t) for t in tags],
        "summary": summary_values(metrics),
        "curves": None if ledger is None else privacy_curves(ledger, max_points=max_curve_points),
        "image_grid": image_grid,
        "image_caption": image_caption,
        "table_preview": table_preview,
    }


def summary_values(metrics: dict[str, Any]) -> dict[str, float | str]:
    """``metrics.json`` as a W&B run summary: numbers as floats (bools as 0/1), strings as they
    are (e.g. ``"inf"`` for an infinite epsilon); nulls, lists and dicts are left out."""
    out: dict[str, float | str] = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, int | float):
            if not math.isnan(value):
                out[key] = float(value)
        elif isinstance(value, str):
            out[key] = value
    return out


def privacy_curves(
    ledger: dict[str, Any], *, max_points: int = MAX_CURVE_POINTS
) -> dict[str, Any] | None:
    """The noise multiplier and the cumulative epsilon after each noisy training step.

    ``ledger`` is ``privacy_ledger.json`` (:meth:`PrivacyLedger.to_dict`). The x axis is the
    noisy step of the run's first DP-SGD entry (else its first subsampled-signal entry), sampled
    at most ``max_points`` times, first and last step included.

    - ``noise_multiplier``: sigma (noise std / clipping bound, unitless) that step used, read
      from the entry's run-length history: exactly the ledger's series at those steps.
    - ``epsilon``: the epsilon (at the ledger's ``target_delta``) of everything charged up to and
      including that step, composed under RDP (Mironov et al. 2019; Balle et al. 2020, Thm 21):
      one-off Gaussian releases (made before training) in full; the main entry's steps so far;
      every other stepped entry (noisy controller signals, further DP-SGD modules) spread evenly
      over the main entry's steps, because the ledger keeps each entry's steps in order but not
      how entries interleave. The last point is the whole ledger's RDP epsilon. An adaptive
      schedule is accounted at its floor, as the ledger does. ``None`` when some access was
      not private (epsilon is infinite throughout). With ``privacy.accountant=prv`` the
      reported ``privacy/epsilon_spent`` may be smaller than this RDP curve's last point (both
      are valid upper bounds; the ledger reports the tighter).

    The curve is non-decreasing: the RDP of each prefix only grows and the RDP -> (epsilon,
    delta) conversion is monotone. Returns ``None`` when the run took no noisy steps.
    """
    entries = [_entry(e) for e in ledger.get("entries", [])]
    stepped = [e for e in entries if e.mechanism in (DP_SGD, SUBSAMPLED_GAUSSIAN) and e.steps]
    if not stepped:
        return None
    main = next((e for e in stepped if e.mechanism == DP_SGD), stepped[0])
    others = [e for e in stepped if e is not main]
    n_steps = main.steps
    grid = _grid(n_steps, max_points)
    sigma_series = main.noise_multipliers()
    delta = float(ledger["target_delta"])
    private = bool(ledger.get("differentially_private", True))

    epsilon: list[float] | None = None
    if private:
        rdp = np.zeros_like(rdp_curve(1.0, 1.0))
        for entry in entries:
            if entry.mechanism == GAUSSIAN:
                for sigma, q, steps in entry.accounting_history():
                    rdp = rdp + steps * rdp_curve(sigma, q)
        cursors = {id(e): _Cursor(e) for e in stepped}
        epsilon = []
        for k in grid:
            rdp = rdp + cursors[id(main)].advance_to(k)
            for entry in others:
                rdp = rdp + cursors[id(entry)].advance_to(entry.steps * k // n_steps)
            epsilon.append(rdp_to_epsilon(rdp, delta))
    return {
        "module": main.module,
        "mechanism": main.mechanism,
        "noisy_step": grid,
        "noise_multiplier": [sigma_series[k - 1] for k in grid],
        "epsilon": epsilon,
        "epsilon_accountant": "rdp",
        "delta": delta,
    }


class _Cursor:
    """Walks an entry's accounted runs, returning the RDP of the steps between two positions."""

    def __init__(self, entry: LedgerEntry) -> None:
        self.runs = entry.accounting_history()
        self.run_index = 0
        self.used_in_run = 0
        self.position = 0

    def advance_to(self, position: int) -> np.ndarray:
        added = np.zeros_like(rdp_curve(1.0, 1.0))
        remaining = position - self.position
        while remaining > 0 and self.run_index < len(self.runs):
            sigma, q, steps = self.runs[self.run_index]
            take = min(remaining, steps - self.used_in_run)
            if take > 0:
                added = added + take * rdp_curve(sigma, q)
            remaining -= take
            self.used_in_run += take
            if self.used_in_run >= steps:
                self.run_index += 1
                self.used_in_run = 0
        self.position = position
        return added


def _entry(record: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry.from_dict({"differentially_private": False, **record})


def _grid(n_steps: int, max_points: int) -> list[int]:
    """1-based step numbers: all of them, or at most ``max_points`` evenly spaced (ends kept)."""
    if n_steps <= max_points:
        return list(range(1, n_steps + 1))
    points = np.unique(np.round(np.linspace(1, n_steps, max(max_points, 2))).astype(int))
    return [int(k) for k in points]


def _resolved_config(run_dir: Path) -> dict[str, Any]:
    """``.hydra/config.yaml`` resolved; Hydra saves it unresolved, and ``run_dir`` (a
    ``${hydra:...}`` interpolation) is the run directory itself. Unresolved if resolving fails."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    cfg = OmegaConf.load(path)
    if "run_dir" in cfg:
        cfg.run_dir = str(run_dir)
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an env var or resolver missing here: keep the text as written
        container = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {str(k): v for k, v in container.items()} if isinstance(container, dict) else {}


def _image_preview(run_dir: Path) -> tuple[np.ndarray | None, str | None]:
    """The generated images tiled into one uint8 grid (10 per row: one class per row)."""
    path = run_dir / IMAGE_PREVIEW_FILE
    if not path.is_file():
        return None, None
    images = np.load(path, allow_pickle=False)
    if images.ndim == 4 and images.shape[1] in (1, 3):  # (n, C, H, W) -> (n, H, W, C)
        images = np.moveaxis(images, 1, -1)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or len(images) == 0:
        return None, None
    n, height, width = images.shape[:3]
    per_row = 10 if n % 10 == 0 else math.ceil(math.sqrt(n))
    rows = math.ceil(n / per_row)
    grid = np.zeros((rows * height, per_row * width, *images.shape[3:]), dtype=images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, per_row)
        grid[r * height : (r + 1) * height, c * width : (c + 1) * width] = image
    caption = f"{n} generated images, {per_row} per row"
    if per_row == 10:
        caption += " (one row per class, in label order)"
    return grid, caption


def _table_head(path: Path, n_rows: int) -> pd.DataFrame:
    return pd.read_parquet(path).head(n_rows).reset_index(drop=True)


__all__ = ["privacy_curves", "summary_values", "wandb_payload"]
