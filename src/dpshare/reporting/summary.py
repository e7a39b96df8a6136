"""Tables rebuilt from run records on disk (never from a tracking service)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from dpshare.reporting import records


@dataclass
class RunRecord:
    """What a finished run left on disk."""

    run_dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    run: dict[str, Any]
    ledger: dict[str, Any]


def load_run(run_dir: Path) -> RunRecord:
    """Load a complete run record; a run without ``metrics.json`` is incomplete and rejected."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / records.METRICS_FILE
    if not metrics_path.exists():
        raise FileNotFoundError(
            f"{run_dir} has no {records.METRICS_FILE}: the run did not finish (see run.json)"
        )
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text(encoding="utf-8"))
    return RunRecord(
        run_dir=run_dir,
        config=config,
        metrics=records.read_json(metrics_path),
        run=records.read_json(run_dir / records.RUN_FILE),
        ledger=records.read_json(run_dir / records.LEDGER_FILE),
    )


UTILITY_METRICS = ("accuracy", "precision", "recall", "f1", "auc", "minority_recall")


def utility_table(runs: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per (run, downstream model, scheme): TSTR vs TRTR scores on the real test split."""
    rows = []
    for rec in runs:
        models = rec.config["eval"]["models"]
        for model in models:
            short = {"logistic_regression": "logreg", "hist_gradient_boosting": "hgb"}.get(
                model, model
            )
            for scheme in ("tstr", "trtr"):
                key = f"utility/{short}/{scheme}_auc"
                if key not in rec.metrics:
                    continue
                row = {
                    "dataset": rec.config["dataset"]["name"],
                    "method": rec.config["method"]["name"],
                    "privacy": rec.config["privacy"]["name"],
                    "epsilon_spent": rec.metrics.get("privacy/epsilon_spent"),
                    "scale": rec.config["scale"]["name"],
                    "seed": rec.config["seed"],
                    "model": model,
                    "scheme": scheme.upper(),
                }
                for metric in UTILITY_METRICS:
                    row[metric] = rec.metrics.get(f"utility/{short}/{scheme}_{metric}")
                row["n_train_rows"] = (
                    rec.metrics.get("data/n_synthetic")
                    if scheme == "tstr"
                    else rec.metrics.get("data/n_train")
                )
                row["n_test_rows"] = rec.metrics.get("data/n_test")
                rows.append(row)
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no optional dependency on ``tabulate``)."""

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "n/a"
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def write_utility_summary(runs: list[RunRecord], out_dir: Path, *, title: str) -> list[Path]:
    """``summary.md`` and ``summary.csv`` in ``out_dir``; returns the written paths."""
    table = utility_table(runs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "summary.csv"
    md_path = out_dir / "summary.md"
    records._atomic(csv_path, lambda tmp: table.to_csv(tmp, index=False))
    lines = [f"# {title}", ""]
    for rec in runs:
        m = rec.metrics
        lines += [
            f"Run `{rec.run_dir.name}`: dataset `{rec.config['dataset']['name']}`, method "
            f"`{rec.config['method']['name']}`, privacy `{rec.config['privacy']['name']}` "
            f"(epsilon spent: {m.get('privacy/epsilon_spent')}), scale "
            f"**{rec.config['scale']['name']}**, seed {rec.config['seed']}; "
            f"{m.get('data/n_train')} real train / {m.get('data/n_test')} real test records, "
            f"{m.get('data/n_synthetic')} synthetic; fit {m.get('runtime/fit_seconds', 0):.1f} s, "
            f"total {m.get('runtime/total_seconds', 0):.1f} s.",
            "",
        ]
    lines += [
        "TSTR = train on synthetic, test on the held-out real test split; TRTR = train on the "
        "real train split, same test split. Decision threshold 0.5, fixed hyper-parameters.",
        "",
        _markdown(table),
        "",
    ]
    text = "\n".join(lines)
    records._atomic(md_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return [md_path, csv_path]
