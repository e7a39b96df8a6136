"""Tables rebuilt from run records on disk (never from a tracking service)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from dpshare.reporting import records
from dpshare.reporting.stats import summarize


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


COMPARISON_METRICS = ("accuracy", "f1", "auc", "minority_recall")


def comparison_table(runs: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per (dataset, method, privacy, target epsilon): the downstream scores of each
    method's artifact on the real test split (generators: TSTR with the primary downstream
    model; DP-LR / FedAvg: the released model itself), mean and standard deviation over seeds,
    plus one "real data (TRTR)" reference row per dataset: the same downstream model trained
    on the real train split."""
    rows, refs = [], {}
    for rec in runs:
        m, cfg = rec.metrics, rec.config
        row = {
            "dataset": cfg["dataset"]["name"],
            "method": cfg["method"]["name"],
            "artifact": m.get("data/artifact", "synthetic"),
            "privacy": cfg["privacy"]["name"],
            "target_epsilon": cfg["privacy"].get("target_epsilon"),
            "epsilon_spent": _number(m.get("privacy/epsilon_spent")),
            "seed": cfg["seed"],
        }
        for metric in COMPARISON_METRICS:
            value = m.get(f"utility/downstream_{metric}", m.get(f"utility/tstr_{metric}"))
            row[metric] = _number(value)
        rows.append(row)
        if m.get("utility/trtr_auc") is not None:
            ref = refs.setdefault(cfg["dataset"]["name"], [])
            ref.append(
                {metric: _number(m.get(f"utility/trtr_{metric}")) for metric in COMPARISON_METRICS}
            )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    out = _over_seeds(
        frame, ["dataset", "method", "artifact", "privacy", "target_epsilon"], COMPARISON_METRICS
    )
    for dataset, values in refs.items():
        ref_frame = pd.DataFrame(values)
        entry = {
            "dataset": dataset,
            "method": "real data (TRTR)",
            "artifact": "reference",
            "privacy": "none",
            "target_epsilon": None,
            "seeds": len(ref_frame),
            "epsilon_spent": float("inf"),
        }
        for metric in COMPARISON_METRICS:
            entry[metric] = ref_frame[metric].mean()
            entry[f"{metric}_sd"] = float("nan")  # same real data and model in every run
            entry[f"{metric}_ci95"] = float("nan")
        out.append(entry)
    return pd.DataFrame(out)


def _over_seeds(
    frame: pd.DataFrame, keys: list[str], metrics: Iterable[str]
) -> list[dict[str, Any]]:
    """One entry per group of ``keys``: seed count, largest epsilon spent, and each metric's
    mean, sd and 95% t-interval half-width (``<metric>``, ``_sd``, ``_ci95``)."""
    out = []
    for key, group in frame.groupby(keys, dropna=False, sort=False):
        entry: dict[str, Any] = dict(zip(keys, key, strict=True))
        entry["seeds"] = len(group)
        entry["epsilon_spent"] = group["epsilon_spent"].max()
        for metric in metrics:
            summary = summarize(group[metric])
            entry[metric] = summary.mean
            entry[f"{metric}_sd"] = summary.sd
            entry[f"{metric}_ci95"] = summary.ci
        out.append(entry)
    return out


def _number(value: Any) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, str):
        return float("inf") if value == "inf" else float("nan")
    return float(value)


# what a reported experiment varies -> the column of the comparison table it matches
_VARIED = {"epsilon": "target_epsilon"}


def reported_values(path: Path, experiment: str) -> tuple[str, str, dict[float, float]]:
    """``(column, metric, {value: reported})`` for one experiment of a paper's reported.yaml;
    percentages are converted to fractions."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no reported values at {path}")
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    found = [e for e in spec.get("experiments", []) if e.get("id") == experiment]
    if not found:
        ids = [e.get("id") for e in spec.get("experiments", [])]
        raise ValueError(f"{path} has no experiment {experiment!r}; ids: {ids}")
    entry = found[0]
    varied = entry.get("varied")
    if varied not in _VARIED:
        raise ValueError(
            f"experiment {experiment!r} varies {varied!r}; comparable: {sorted(_VARIED)}"
        )
    metric = str(spec.get("metric", ""))
    scale = 0.01 if metric.endswith("_percent") else 1.0
    values = {float(k): float(v) * scale for k, v in (entry.get("results") or {}).items()}
    name = metric.removesuffix("_percent").removeprefix("tstr_")
    return _VARIED[varied], name, values


def write_comparison(
    runs: list[RunRecord],
    out_dir: Path,
    *,
    title: str,
    reported: tuple[str, str, dict[float, float]] | None = None,
) -> list[Path]:
    """``comparison.md`` and ``comparison.csv`` (mean, sd and 95% t-interval over seeds) in
    ``out_dir``; with ``reported`` (from :func:`reported_values`) a ``paper_<metric>`` column
    beside ours. When the records hold fidelity or attack metrics, also ``evaluation.md`` and
    ``evaluation.csv`` (:func:`evaluation_table`)."""
    table = comparison_table(runs)
    if reported is not None:
        column, metric, values = reported
        table[f"paper_{metric}"] = [
            values.get(float(v)) if v is not None and v == v else None for v in table[column]
        ]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "comparison.csv", out_dir / "comparison.md"
    records._atomic(csv_path, lambda tmp: table.to_csv(tmp, index=False))
    shown = table[
        ["dataset", "method", "privacy", "target_epsilon", "epsilon_spent", "seeds"]
    ].copy()
    metrics = list(COMPARISON_METRICS)
    for metric in metrics:
        shown[metric] = [
            "n/a" if mean != mean else (f"{mean:.3f}" if ci != ci else f"{mean:.3f} ± {ci:.3f}")
            for mean, ci in zip(table[metric], table[f"{metric}_ci95"], strict=True)
        ]
    if reported is not None:
        key = f"paper_{reported[1]}"
        shown[key] = ["n/a" if v is None or v != v else f"{v:.4f}" for v in table[key]]
    lines = [
        f"# {title}",
        "",
        "Downstream scores on the held-out real test split: generators by TSTR (the primary "
        "downstream model trained on their synthetic rows), DP-LR and FedAvg by their released "
        "model; mean ± half-width of the 95% Student-t interval over seeds (the CSV also "
        "holds the standard deviation). `epsilon_spent` is the largest over the seeds. "
        "Rebuilt from these run records:",
        "",
        *[f"- `{rec.run_dir}`" for rec in runs],
        "",
        _markdown(shown),
        "",
    ]
    text = "\n".join(lines)
    records._atomic(md_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    written = [md_path, csv_path]
    evaluation = evaluation_table(runs)
    if not evaluation.empty:
        written += write_evaluation(runs, evaluation, out_dir, title=title)
    return written


# headline fidelity and attack metrics of the evaluation table, in display order (the run's
# metrics.json holds many more; docs/evaluation.md defines each)
EVALUATION_METRICS = (
    "fidelity/fd_raw",
    "fidelity/fd_encoder",
    "fidelity/fd_lenet",
    "fidelity/precision",
    "fidelity/recall",
    "fidelity/density",
    "fidelity/coverage",
    "fidelity/detection_auc",
    "attack/mia_dcr/auc",
    "attack/mia_dcr/tpr_at_fpr_1pct",
    "attack/mia_dcr/success_rate",
    "attack/mia_domias/auc",
    "attack/mia_shadow/auc",
    "attack/mia_loss/auc",
    "attack/mia_loss/tpr_at_fpr_1pct",
    "attack/mia_lira/auc",
    "attack/mia_lira/tpr_at_fpr_1pct",
    "attack/aia/success_rate",
    "attack/aia/control_success_rate",
    "attack/aia/risk",
    "attack/inversion/reconstruction_accuracy",
    "attack/inversion/reconstruction_accuracy_control",
    "attack/copies/exact_copy_share",
    "attack/copies/dcr_share_closer_to_train",
)


def evaluation_table(runs: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per (dataset, method, privacy, target epsilon) and one column group per headline
    fidelity/attack metric (:data:`EVALUATION_METRICS`) that at least one run reported: mean,
    sd and 95% t-interval half-width over seeds. Empty when no run has such metrics."""
    runs = list(runs)
    present = [k for k in EVALUATION_METRICS if any(_is_number(r.metrics.get(k)) for r in runs)]
    if not present:
        return pd.DataFrame()
    rows = []
    for rec in runs:
        cfg = rec.config
        row: dict[str, Any] = {
            "dataset": cfg["dataset"]["name"],
            "method": cfg["method"]["name"],
            "privacy": cfg["privacy"]["name"],
            "target_epsilon": cfg["privacy"].get("target_epsilon"),
            "epsilon_spent": _number(rec.metrics.get("privacy/epsilon_spent")),
        }
        for key in present:
            row[key] = _number(rec.metrics.get(key))
        rows.append(row)
    frame = pd.DataFrame(rows)
    return pd.DataFrame(
        _over_seeds(frame, ["dataset", "method", "privacy", "target_epsilon"], present)
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def write_evaluation(
    runs: list[RunRecord], table: pd.DataFrame, out_dir: Path, *, title: str
) -> list[Path]:
    """``evaluation.md`` (one row per metric, one column per method: the table is wide) and
    ``evaluation.csv`` (:func:`evaluation_table` as is) in ``out_dir``."""
    import dpshare.evaluation.attacks.runner
    import dpshare.evaluation.fidelity  # noqa: F401  (both register their metrics on import)
    from dpshare.evaluation.metrics import metric_info
    from dpshare.registry import UnknownNameError

    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / "evaluation.csv", out_dir / "evaluation.md"
    records._atomic(csv_path, lambda tmp: table.to_csv(tmp, index=False))
    metrics = [k for k in EVALUATION_METRICS if k in table.columns]
    labels = [
        f"{m} {p}" + ("" if t != t or t is None else f" eps {t:g}")
        for m, p, t in zip(table["method"], table["privacy"], table["target_epsilon"], strict=True)
    ]
    rows = [
        [
            "privacy/epsilon_spent (max over seeds)",
            *(summarize([e]).text() for e in table["epsilon_spent"]),
        ]
    ]
    for metric in metrics:
        try:
            direction = metric_info(metric).direction
        except UnknownNameError:
            direction = "none"
        arrow = {"maximize": "↑", "minimize": "↓"}.get(direction, "")
        cells = [
            summarize([m]).text() if ci != ci else f"{m:.3f} ± {ci:.3f}"
            for m, ci in zip(table[metric], table[f"{metric}_ci95"], strict=True)
        ]
        rows.append([f"{metric} {arrow}".strip(), *cells])
    shown = pd.DataFrame(rows, columns=["metric", *labels])
    seeds = ", ".join(f"{label}: {n}" for label, n in zip(labels, table["seeds"], strict=True))
    lines = [
        f"# {title}: fidelity and privacy attacks",
        "",
        "Fidelity of each artifact against the held-out real test split and the registered "
        "attacks on it (docs/evaluation.md defines every metric and threat model; ↑ higher is "
        "better for the data holder, ↓ lower is better). Mean ± half-width of the 95% "
        f"Student-t interval over seeds ({seeds}). Rebuilt from these run records:",
        "",
        *[f"- `{rec.run_dir}`" for rec in runs],
        "",
        _markdown(shown),
        "",
    ]
    text = "\n".join(lines)
    records._atomic(md_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return [md_path, csv_path]


def _natural_key(path: Path) -> list[Any]:
    """Multirun job dirs 0, 1, ..., 10 in numeric order (so rows keep the sweep's order)."""
    return [int(part) if part.isdigit() else part for part in path.parts]


def main(argv: list[str] | None = None) -> int:
    """``python -m dpshare.reporting.summary compare RUN_OR_SWEEP_DIR... --out DIR``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dpshare.reporting.summary")
    parser.add_argument("command", choices=["compare"])
    parser.add_argument("dirs", nargs="+", type=Path, help="run dirs or multirun dirs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="Methods compared on the same splits and budget")
    parser.add_argument(
        "--reported",
        type=Path,
        help="a paper's reported.yaml (experiments/<paper>/): adds its values beside ours",
    )
    parser.add_argument(
        "--experiment", help="the id of the reported experiment (e.g. fig2_epsilon)"
    )
    args = parser.parse_args(argv)
    found: list[Path] = []
    for d in args.dirs:
        if (d / records.METRICS_FILE).exists():
            found.append(d)
        else:
            found += sorted(
                (p.parent for p in d.glob(f"**/{records.METRICS_FILE}")), key=_natural_key
            )
    if not found:
        parser.error(f"no complete run (a directory with {records.METRICS_FILE}) under {args.dirs}")
    runs = [load_run(p) for p in found]
    reported = None
    if args.reported is not None:
        if not args.experiment:
            parser.error("--reported needs --experiment <id>")
        reported = reported_values(args.reported, args.experiment)
    for path in write_comparison(runs, args.out, title=args.title, reported=reported):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
