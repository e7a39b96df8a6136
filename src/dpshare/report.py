"""``python -m dpshare.report``: every table and figure of both papers, rebuilt from run records.

Reads the run records under a records root (``outputs/`` by default: ``runs/`` and
``multiruns/``), never a tracking service, and the papers' reported values in
``experiments/<paper>/reported.yaml``; writes, per scale, Markdown + CSV + LaTeX tables and PNG
figures under ``results/<paper>/<scale>/`` and an index ``results/README.md``. Each table puts the
paper's value beside our mean and 95% Student-t interval over seeds and the difference; each
claim of ``reported.yaml`` is marked "holds", "does not hold", "inconclusive" (the 95%
intervals over seeds cannot separate the compared means) or "not run". A sweep point with
no record, or whose run failed (e.g. a sigma too small for one step within epsilon), is listed as
"not run" with the reason instead of breaking the report.

Which records feed which table: a record's ``experiment_name`` (set by ``experiment=...``) names
its experiment; the expected sweep points come from composing that experiment's config at the
table's scale (``hydra.sweeper.params``). When a point was run more than once with the same seed,
the newest complete record wins.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from dpshare.errors import UserInputError
from dpshare.reporting import archive
from dpshare.reporting import records as record_files
from dpshare.reporting.stats import SeedSummary, summarize

log = logging.getLogger("dpshare.report")

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
SCALES = ("smoke", "cpu", "paper")
# a paper's swept parameter -> the config key that holds it
PARAMETERS = {
    "epsilon": "privacy.target_epsilon",
    "sigma": "privacy.noise_multiplier",
    "delta": "privacy.target_delta",
}
UTILITY = "utility/downstream_accuracy"
NOT_RUN = "not run"


# ------------------------------------------------------------------------------------ records


@dataclass
class Record:
    """One run directory: its resolved config, run.json and (when complete) metrics.json."""

    run_dir: Path
    config: dict[str, Any]
    run: dict[str, Any]
    metrics: dict[str, Any] | None
    # the records directory it was read from (its path below it is the same in the archive)
    root: Path | None = None

    @property
    def complete(self) -> bool:
        return self.metrics is not None

    @property
    def error(self) -> str | None:
        return None if self.complete else str(self.run.get("error") or self.run.get("status"))

    def get(self, dotted: str) -> Any:
        """A config value. Hydra saves ``.hydra/config.yaml`` unresolved, so a value that is an
        interpolation (e.g. ``${by_scale:...}``) is resolved against the record's own config;
        one that cannot be (``${hydra:...}`` outside Hydra) stays as written."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        if isinstance(node, str) and "${" in node:
            return _resolve(self.config, dotted, node)
        return node

    def metric(self, key: str) -> float | None:
        """A numeric metric (``"inf"`` strings become inf); derived keys are read from the CSV
        log (:func:`derived_metric`)."""
        if self.metrics is None:
            return None
        value = self.metrics.get(key)
        if value is None and key in DERIVED:
            return DERIVED[key](self)
        if isinstance(value, str):
            return math.inf if value == "inf" else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    @property
    def experiment(self) -> str:
        return str(self.config.get("experiment_name"))

    @property
    def scale(self) -> str:
        return str(self.get("scale.name"))

    @property
    def method_label(self) -> str:
        """The paper-facing method: ``multidisc_gan`` with a class mix is its own row."""
        name = str(self.get("method.name"))
        return (
            f"{name}+class_mix"
            if name == "multidisc_gan" and self.get("method.class_mix")
            else name
        )


def _resolve(config: dict[str, Any], dotted: str, raw: str) -> Any:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from dpshare.config import register_configs

    register_configs()  # the by_scale resolver
    try:
        return OmegaConf.select(OmegaConf.create(config), dotted)
    except OmegaConfBaseException:
        return raw


def _last_epoch_mean(rec: Record, prefix: str) -> float | None:
    """Mean over columns ``<prefix>*_epoch`` of the last logged row that has them."""
    path = rec.run_dir / "csv" / "metrics.csv"
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    columns = [c for c in frame.columns if c.startswith(prefix) and c.endswith("_epoch")]
    if not columns:
        return None
    rows = frame[columns].dropna(how="all")
    return None if rows.empty else float(rows.iloc[-1].mean())


# metrics a report may ask for that are not in metrics.json but derivable from the record
DERIVED = {"train/d_accuracy_fake": lambda rec: _last_epoch_mean(rec, "train/d_accuracy_fake/")}


def load_records(root: Path) -> list[Record]:
    """Every run directory (one with ``run.json`` and a config: ``config_resolved.yaml``, else
    Hydra's ``.hydra/config.yaml``) under ``root``."""
    found = []
    for run_file in sorted(Path(root).rglob(record_files.RUN_FILE)):
        run_dir = run_file.parent
        config_file = run_dir / record_files.RESOLVED_CONFIG_FILE
        if not config_file.exists():  # records written before it existed
            config_file = run_dir / ".hydra" / "config.yaml"
        if not config_file.exists():
            continue
        try:
            config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
            run = record_files.read_json(run_file)
            metrics_file = run_dir / record_files.METRICS_FILE
            metrics = record_files.read_json(metrics_file) if metrics_file.exists() else None
        except (OSError, ValueError, yaml.YAMLError) as exc:
            log.warning("skipped unreadable record %s: %s", run_dir, exc)
            continue
        found.append(Record(run_dir, config, run, metrics, Path(root)))
    return found


def load_all(roots: Sequence[Path]) -> list[Record]:
    """:func:`load_records` of each root that exists, each run once. A run at the same path
    below two roots (``outputs/`` and the archive, which mirrors it) is the first root's: the
    records root is the live one, the archive a copy that may be older. A reused copy of a
    point and its source have the same ``run.json`` clock and config hash: the source is kept."""
    seen: set[tuple[Any, ...]] = set()
    paths: set[Path] = set()
    out: list[Record] = []
    loaded = [rec for root in roots if Path(root).is_dir() for rec in load_records(root)]
    # a point's original run before any reused copy of it, so that its time counts where it ran
    for rec in sorted(loaded, key=lambda r: "reused_from" in r.run):
        where = _below_root(rec)
        if where in paths:
            continue
        started = rec.run.get("started_at")
        key = (
            *_point_key(rec),
            started,
            rec.run.get("finished_at"),
            rec.run.get("config_hash"),
            # runs without a clock (none today) are never merged
            None if started else str(rec.run_dir),
            # a snapshot or release variant shares its parent's clock
            rec.run_dir.name if _derived(rec.run_dir) else None,
        )
        if key in seen:
            continue
        seen.add(key)
        paths.add(where)
        out.append(rec)
    return out


def _below_root(rec: Record) -> Path:
    """A record's path below its records root (the same in ``outputs/`` and in the archive)."""
    if rec.root is None:
        return rec.run_dir
    try:
        return rec.run_dir.resolve().relative_to(rec.root.resolve())
    except ValueError:
        return rec.run_dir


def _point_key(rec: Record) -> tuple[Any, ...]:
    return (
        rec.experiment,
        rec.scale,
        rec.get("dataset.name"),
        rec.method_label,
        rec.get("privacy.name"),
        rec.get("privacy.target_epsilon"),
        rec.get("privacy.target_delta"),
        rec.get("privacy.noise_multiplier"),
        rec.get("seed"),
    )


def deduplicate(recs: Iterable[Record]) -> list[Record]:
    """One record per (experiment, scale, point, seed): the newest complete one, else the newest
    failed one."""
    best: dict[tuple[Any, ...], Record] = {}
    for rec in recs:
        key = _point_key(rec)
        old = best.get(key)
        newer = str(rec.run.get("started_at", "")) >= str(
            old.run.get("started_at", "") if old else ""
        )
        if (
            old is None
            or (rec.complete and not old.complete)
            or (rec.complete == old.complete and newer)
        ):
            best[key] = rec
    return list(best.values())


def select(recs: Sequence[Record], experiments: Sequence[str], scale: str) -> list[Record]:
    return [r for r in recs if r.experiment in experiments and r.scale == scale]


# --------------------------------------------------------------------------- sweep definition


# Defaults that changed after records were written: key -> the value a record written before
# the key existed ran with. A section whose records ran another effective setting than their
# experiment's current configuration says so (settings_notes), so that old settings never pass
# for current ones. One list with the archive's protocol hash.
CHANGED_DEFAULTS = archive.CHANGED_DEFAULTS
# Settings that always existed but whose default a later validation sweep changed (the peers'
# tuning, docs/peers.md "Equal tuning budgets"): every record says the value it ran, and a
# record that ran another value than its method's current one is flagged the same way.
RETUNED_DEFAULTS = ("method.bins",)
# every (key, value before the key existed) that settings_notes compares; a retuned key always
# existed, so a record says its value and the "before" value is never used
_COMPARED_SETTINGS = (*CHANGED_DEFAULTS.items(), *((key, None) for key in RETUNED_DEFAULTS))
# settings that shape only the DP fit of the transformer: runs that fit it without DP are not
# compared on them
_DP_FIT_SETTINGS = frozenset({"method.continuous_scale"})


def _log_columns(rec: Record, continuous_scale: Any) -> tuple[str, ...] | None:
    """The columns of ``rec``'s data set that ``continuous_scale`` puts on the public log scale
    (``None``: the data set's declared bounds are not known here)."""
    from dpshare.data.datasets import declared_domain
    from dpshare.data.transformer import CONTINUOUS_SCALES, log_scaled

    if continuous_scale not in CONTINUOUS_SCALES:
        return None
    try:
        domain = declared_domain(rec.config.get("dataset") or {})
    except (UserInputError, KeyError, TypeError, ValueError):  # a config this version cannot
        return None  # read: bounds unknown
    if domain is None:
        return None
    bounds = domain.bounds
    return tuple(
        sorted(c for c, (lo, hi) in bounds.items() if log_scaled(lo, hi, continuous_scale))
    )


@functools.lru_cache(maxsize=4096)
def _overrides(run_dir: Path) -> tuple[str, ...]:
    """A record's Hydra overrides (``.hydra/overrides.yaml``), read once per build."""
    path = run_dir / ".hydra" / "overrides.yaml"
    try:
        overrides = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError):
        return ()
    return tuple(str(o) for o in overrides)


def _option(rec: Record, group: str) -> str | None:
    """The ``<group>=`` option a record ran, from its Hydra overrides (the last one given);
    ``None``: none given (or no overrides saved)."""
    options = [o.split("=", 1)[1] for o in _overrides(rec.run_dir) if o.startswith(f"{group}=")]
    return options[-1] if options else None


def _method_option(rec: Record) -> str | None:
    """The ``method=`` option a record ran (a variant such as ``multidisc_gan_mix`` included);
    ``None``: the experiment's own method."""
    return _option(rec, "method")


def _experiment_option(rec: Record) -> str:
    """The ``conf/experiment`` file a record ran: its ``experiment=`` override, which differs
    from its ``experiment_name`` for a renamed sweep (the medical stand-in runs
    ``experiment=deng2026_medical`` as ``deng2026_medical_standin``)."""
    return _option(rec, "experiment") or rec.experiment


def settings_notes(recs: Sequence[Record], scale: str) -> dict[str, list[str]]:
    """Per experiment, a note on its complete records at ``scale`` that ran with a setting of
    :data:`CHANGED_DEFAULTS` or :data:`RETUNED_DEFAULTS` other than the current configuration
    of the same experiment and method, where the two settings differ in effect (e.g.
    ``continuous_scale`` on a data set with no column declared ``[0, >= 1000]`` changes
    nothing). Settings in :data:`_DP_FIT_SETTINGS` shape only the DP fit of the transformer:
    runs that fit it without DP are not compared on them; the others (``generator_ema``) are
    compared for every run."""
    stale: dict[tuple[str, str, str, Any, Any], int] = {}
    for rec in recs:
        experiment, option = rec.experiment, _experiment_option(rec)
        if rec.scale != scale or not rec.complete:
            continue
        if rec.get("eval.score_on") == "validation":
            continue  # a tuning run: it ran another setting on purpose, and feeds no table
        if not (REPO_ROOT / "conf" / "experiment" / f"{option}.yaml").is_file():
            continue
        dp_fit = rec.get("privacy.name") != "none" and rec.get("privacy.transformer_fit") in (
            None,
            "dp",
        )
        try:
            current_cfg = _compose_cached(option, scale, _method_option(rec))
        except Exception:  # noqa: BLE001 - an option that no longer exists: nothing to compare
            continue
        for key, before in _COMPARED_SETTINGS:
            if key in _DP_FIT_SETTINGS and not dp_fit:
                continue
            section, _, name = key.partition(".")
            node = current_cfg.get(section) or {}
            if name not in node:  # the method has no such setting
                continue
            current = node.get(name)
            ran = rec.get(key)
            ran = before if ran is None else ran
            if ran == current:
                continue
            if key == "method.continuous_scale":
                mine, now = _log_columns(rec, ran), _log_columns(rec, current)
                if mine is not None and mine == now:
                    continue
            what = (experiment, option, key, ran, current)
            stale[what] = stale.get(what, 0) + 1
    notes: dict[str, list[str]] = {}
    for (experiment, option, key, ran, current), count in sorted(stale.items(), key=str):
        notes.setdefault(experiment, []).append(
            f"{experiment}: {count} record(s) ran with {key}={_yaml(ran)}, the current "
            f"configuration of their method has {_yaml(current)} (records written before the "
            f"change; rerun `make reproduce SCALE={scale} ARGS=--only={option}` to refresh them)"
        )
    return notes


def _yaml(value: Any) -> str:
    """A config value as the YAML files spell it (``null``, not Python's ``None``)."""
    return "null" if value is None else str(value)


_COMPOSED: dict[tuple[str, str, str | None], Any] = {}


def _compose_cached(experiment: str, scale: str, method: str | None = None) -> Any:
    """:func:`_compose` (with ``method=<method>`` when given), once per build (read only)."""
    key = (experiment, scale, method)
    if key not in _COMPOSED:
        _COMPOSED[key] = _compose(experiment, scale, *([f"method={method}"] if method else []))
    return _COMPOSED[key]


def _compose(experiment: str, scale: str, *overrides: str) -> Any:
    """``conf/experiment/<experiment>.yaml`` at ``scale`` (and ``overrides``), with Hydra's own
    config."""
    from hydra import compose, initialize_config_dir

    from dpshare.config import register_configs

    register_configs()
    conf_dir = REPO_ROOT / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose(
            "config",
            overrides=[f"experiment={experiment}", f"scale={scale}", "run_dir=unused", *overrides],
            return_hydra_config=True,
        )


def expected_grid(experiment: str, scale: str) -> dict[str, list[Any]]:
    """The non-seed sweep parameters of ``conf/experiment/<experiment>.yaml`` at ``scale``."""
    cfg = _compose(experiment, scale)
    params = cfg.hydra.sweeper.params or {}
    grid = {}
    for key, value in params.items():
        if key == "seed":
            continue
        grid[str(key)] = [_parse(v) for v in str(value).split(",")]
    # budget snapshots (privacy.snapshots): more epsilon / delta points of every swept run
    snapshots = list(cfg.privacy.get("snapshots") or [])
    if snapshots:
        for key in ("target_epsilon", "target_delta"):
            own = grid.get(f"privacy.{key}", [cfg.privacy.get(key)])
            values = {float(v) for v in own if v is not None}
            values |= {float(s.get(key, cfg.privacy.get(key))) for s in snapshots}
            if len(values) > 1:
                grid[f"privacy.{key}"] = sorted(values)
    return grid


# what makes two runs the same protocol: everything that shapes training and scoring except the
# swept privacy point (compared on its own), the seed, and where and how the run was logged
_PROTOCOL_SECTIONS = ("method", "privacy", "eval", "trainer")
_PROTOCOL_FREE = frozenset(
    {
        "privacy.target_epsilon",
        "privacy.target_delta",
        "privacy.noise_multiplier",
        "privacy.snapshots",
        "privacy.noise_seed",
        "eval.seed",
    }
)


def _flat(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}.{k}"))
        return out
    return {prefix: node}


def protocol(config: dict[str, Any]) -> dict[str, Any]:
    """The settings of a run's resolved config that two runs must share to be one protocol (the
    same point of one figure, whichever sweep ran it): method, privacy mechanism, evaluation,
    trainer, data set and scale, without the privacy point itself."""
    flat: dict[str, Any] = {}
    for section in _PROTOCOL_SECTIONS:
        flat.update(_flat(config.get(section) or {}, section))
    flat["dataset.name"] = (config.get("dataset") or {}).get("name")
    flat["scale.name"] = (config.get("scale") or {}).get("name")
    return {k: v for k, v in flat.items() if k not in _PROTOCOL_FREE}


def _same_protocol(rec: Record, reference: dict[str, Any]) -> bool:
    """The record ran ``reference``'s protocol (keys one side lacks, e.g. those added after an
    older record was written, are not compared)."""
    own = protocol(rec.config)
    shared = own.keys() & reference.keys()
    return all(_same(own[k], reference[k]) for k in shared)


def borrowed(
    recs: Sequence[Record], entry: dict[str, Any], experiment: str, scale: str
) -> list[Record]:
    """The records of a paper figure: its own experiment's, plus complete ones of its
    ``also_from`` experiments that ran the same protocol at the figure's fixed settings, for a
    (point, seed) that the own experiment has no complete record of. E.g. Tao 2020 Fig. 3 at
    scale=cpu trains only the odd sigmas; its even ones are budget snapshots of Figs. 5 and 7's
    trajectories at (epsilon 0.5, delta 1e-5) (docs/scales.md): the same runs, not trained
    twice."""
    own = [r for r in recs if r.experiment == experiment]
    if not entry.get("also_from"):
        return own
    varied = entry["varied"]
    keys = [PARAMETERS[v] for v in ([varied] if isinstance(varied, str) else varied)]
    fixed = {PARAMETERS[k]: v for k, v in (entry.get("fixed") or {}).items()}

    def point(rec: Record) -> tuple[Any, ...]:
        return (*(rec.get(k) for k in keys), rec.get("seed"))

    taken = [point(r) for r in own if r.complete]
    reference = protocol(plain_config(_compose(experiment, scale)))
    out = list(own)
    for source in entry.get("also_from", []):
        for rec in recs:
            at = point(rec)
            if (
                rec.experiment != source
                or not rec.complete
                or any(not _same(rec.get(k), v) for k, v in fixed.items())
                or any(all(_same(a, b) for a, b in zip(at, t, strict=True)) for t in taken)
                or not _same_protocol(rec, reference)
            ):
                continue
            taken.append(at)
            out.append(rec)
    return out


def plain_config(cfg: Any) -> dict[str, Any]:
    """A composed config as a run's record holds it: resolved, without Hydra's own node."""
    from omegaconf import OmegaConf

    with_hydra = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(with_hydra, dict)
    with_hydra.pop("hydra", None)
    plain = OmegaConf.to_container(OmegaConf.create(with_hydra), resolve=True)
    assert isinstance(plain, dict)
    return {str(k): v for k, v in plain.items()}


def _parse(text: str) -> Any:
    text = text.strip().strip("'\"")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
    return a == b


# ------------------------------------------------------------------------------ presentation


@dataclass
class Table:
    """A table with its Markdown/CSV/LaTeX renderings and the notes printed under it."""

    id: str
    title: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        header = "| " + " | ".join(map(str, self.frame.columns)) + " |"
        rule = "|" + "|".join("---" for _ in self.frame.columns) + "|"
        body = [
            "| " + " | ".join(_cell(v) for v in row) + " |"
            for row in self.frame.itertuples(index=False)
        ]
        # a note is a bullet; an empty one a blank line; one of several lines (an embedded
        # table) a block of its own, so that Markdown renders it as a table, not in a bullet
        notes = [f"\n{n.strip()}\n" if "\n" in n else f"- {n}" if n else "" for n in self.notes]
        return "\n".join([f"# {self.title}", "", header, rule, *body, "", *notes, ""])

    def latex(self) -> str:
        # written by hand: pandas' to_latex needs jinja2 (Styler), an extra dependency for this
        cols = "l" * len(self.frame.columns)
        lines = [
            f"% {self.title} (generated by python -m dpshare.report; do not edit)",
            f"\\begin{{tabular}}{{{cols}}}",
            "\\hline",
            " & ".join(_tex(c) for c in self.frame.columns) + " \\\\",
            "\\hline",
        ]
        for row in self.frame.itertuples(index=False):
            lines.append(" & ".join(_tex(_cell(v)) for v in row) + " \\\\")
        lines += ["\\hline", "\\end{tabular}", ""]
        return "\n".join(lines)

    def write(self, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for suffix, text in (("md", self.markdown()), ("tex", self.latex())):
            path = out_dir / f"{self.id}.{suffix}"
            _write_text(path, text)
            paths.append(path)
        csv = out_dir / f"{self.id}.csv"
        record_files._atomic(csv, lambda tmp: self.frame.to_csv(tmp, index=False))
        return [paths[0], csv, paths[1]]


def _write_text(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    record_files._atomic(path, write)


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4g}"
    return str(v)


def _tex(text: Any) -> str:
    out = str(text)
    for a, b in (
        ("\\", "\\textbackslash{}"),
        ("&", "\\&"),
        ("%", "\\%"),
        ("_", "\\_"),
        ("#", "\\#"),
        ("$", "\\$"),
        ("±", "$\\pm$"),
        ("≥", "$\\geq$"),
    ):
        out = out.replace(a, b)
    return out


def fmt(summary: SeedSummary, percent: bool = False) -> str:
    if summary.n == 0:
        return NOT_RUN
    scale = 100.0 if percent else 1.0
    if math.isinf(summary.mean):
        return "inf"
    digits = 2 if percent else 3
    if summary.ci != summary.ci:
        return f"{summary.mean * scale:.{digits}f}"
    return f"{summary.mean * scale:.{digits}f} ± {summary.ci * scale:.{digits}f}"


def _errorbar_over_epsilon(
    ax: Any,
    by_epsilon: dict[float, list[Record]],
    metric: str,
    *,
    label: str,
    single_marker: str = "o",
    dodge: float = 1.0,
    **style: Any,
) -> None:
    """One line of ``metric`` (mean ± 95 % interval over seeds) against epsilon; epsilons
    without a value are left out, a line of one point gets ``single_marker``. ``dodge``
    multiplies the x positions (a log axis: :func:`_dodge`), so that the intervals of several
    methods at the same epsilon sit side by side instead of on top of each other."""
    pts = [(e, summarize(_values(g, metric))) for e, g in sorted(by_epsilon.items())]
    pts = [(e, s_) for e, s_ in pts if s_.n]
    if not pts:
        return
    ax.errorbar(
        [e * dodge for e, _ in pts],
        [s_.mean for _, s_ in pts],
        yerr=[0 if s_.ci != s_.ci else s_.ci for _, s_ in pts],
        marker="o" if len(pts) > 1 else single_marker,
        capsize=3,
        label=label,
        **style,
    )


def _dodge(i: int, n: int, *, step: float = 0.02) -> float:
    """The x factor of line ``i`` of ``n`` on a log epsilon axis: lines spread symmetrically
    around the true epsilon, ``10 ** step`` apart (~5 %: the points stay readable as one
    epsilon)."""
    return float(10 ** ((i - (n - 1) / 2) * step))


def _values(recs: Iterable[Record], key: str) -> list[float]:
    out = []
    for rec in recs:
        value = rec.metric(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out.append(value)
    return out


# ------------------------------------------------------------------------------------- claims


@dataclass
class Claim:
    id: str
    text: str
    source: str
    status: str  # holds | does not hold | inconclusive | not run
    evidence: str


HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


def _has_interval(summary: SeedSummary) -> bool:
    return summary.n >= 2 and summary.ci == summary.ci and not math.isinf(summary.mean)


def _order(a: SeedSummary, b: SeedSummary) -> int:
    """+1 when ``a``'s 95% interval lies wholly above ``b``'s, -1 wholly below, 0 when they
    overlap or either has no interval (one seed)."""
    if not (_has_interval(a) and _has_interval(b)):
        return 0
    if a.low > b.high:
        return 1
    if a.high < b.low:
        return -1
    return 0


def _interval_note(*summaries: SeedSummary) -> str:
    if any(not _has_interval(s) for s in summaries):
        return "a point with fewer than 2 seeds has no interval"
    return "95% t-intervals over seeds"


def compare_claim(spec: dict[str, Any], groups: dict[str, list[Record]], source: str) -> Claim:
    """``a`` beats ``b`` on ``metric`` (``better``: higher | lower): "holds" when their 95%
    intervals over seeds are disjoint in that order, "does not hold" when disjoint the other
    way, "inconclusive" when they overlap (or a side has one seed)."""
    a, b = groups.get(spec["a"], []), groups.get(spec["b"], [])
    sa, sb = summarize(_values(a, spec["metric"])), summarize(_values(b, spec["metric"]))
    if sa.n == 0 or sb.n == 0:
        missing = [k for k, s in ((spec["a"], sa), (spec["b"], sb)) if s.n == 0]
        return Claim(spec["id"], spec["text"], source, NOT_RUN, f"no record for {missing}")
    higher = spec.get("better", "higher") == "higher"
    order = _order(sa, sb) * (1 if higher else -1)
    status = HOLDS if order > 0 else FAILS if order < 0 else INCONCLUSIVE
    overlap = (
        "one seed, no interval"
        if not (_has_interval(sa) and _has_interval(sb))
        else ("95% intervals disjoint" if _order(sa, sb) else "95% intervals overlap")
    )
    evidence = (
        f"{spec['metric']}: {spec['a']} {fmt(sa)} vs {spec['b']} {fmt(sb)} (n = {sa.n}, {sb.n}; "
        f"{overlap})"
    )
    return Claim(spec["id"], spec["text"], source, status, evidence)


def trend_verdict(points: Sequence[tuple[float, SeedSummary]], sign: int) -> tuple[str, str]:
    """The verdict on "the mean moves with the parameter in direction ``sign``" (+1 up, -1
    down) over ``points`` sorted by parameter: "holds" when the means are monotone enough
    (Spearman rho of the means with the parameter has that sign, |rho| >= 0.8) AND the first
    and last points' 95% intervals are disjoint in that direction; "does not hold" when they are
    disjoint the other way; otherwise "inconclusive" (the data cannot tell a trend from noise).
    Returns (verdict, evidence)."""
    from scipy.stats import spearmanr

    run = sorted((x, s) for x, s in points if s.n > 0)
    first, last = run[0][1], run[-1][1]
    means = [s.mean for _, s in run]
    varies = len(set(means)) > 1
    rho = float(spearmanr([x for x, _ in run], means).statistic) if varies else 0.0
    ends = _order(last, first) * sign
    if ends > 0 and sign * rho >= 0.8:
        status = HOLDS
    elif ends < 0:
        status = FAILS
    else:
        status = INCONCLUSIVE
    evidence = (
        f"Spearman rho {rho:+.2f} over {len(run)} points; first vs last "
        f"{'disjoint' if _order(last, first) else 'overlapping or without interval'} "
        f"({_interval_note(first, last)}): " + ", ".join(f"{x:g} -> {fmt(s)}" for x, s in run)
    )
    return status, evidence


def monotone_claim(
    spec: dict[str, Any], points: Sequence[tuple[float, SeedSummary]], source: str
) -> Claim:
    """The mean moves in ``direction`` as the parameter grows (:func:`trend_verdict`; needs 3
    or more points)."""
    run = [(x, s) for x, s in points if s.n > 0]
    if len(run) < 3:
        return Claim(
            spec["id"],
            spec["text"],
            source,
            NOT_RUN,
            f"{len(run)} point(s) measured; a trend needs at least 3",
        )
    sign = 1 if spec.get("direction", "increases") == "increases" else -1
    status, evidence = trend_verdict(run, sign)
    return Claim(spec["id"], spec["text"], source, status, evidence)


def near_paper_claim(
    spec: dict[str, Any], pairs: Sequence[tuple[str, float, SeedSummary]], source: str
) -> Claim:
    """Our mean is within ``tolerance`` of the paper's value at every reported point we ran:
    "holds" when every point's 95% interval lies inside paper +- tolerance, "does not hold" when
    some point's interval lies wholly outside it, else "inconclusive"."""
    tol = float(spec.get("tolerance", 0.05))
    run = [(label, paper, s) for label, paper, s in pairs if s.n > 0]
    if not run:
        return Claim(spec["id"], spec["text"], source, NOT_RUN, "no reported point was run")
    worst = max(abs(s.mean - paper) for _, paper, s in run)
    inside = all(
        _has_interval(s) and paper - tol <= s.low and s.high <= paper + tol for _, paper, s in run
    )
    outside = any(
        _has_interval(s) and (s.high < paper - tol or s.low > paper + tol) for _, paper, s in run
    )
    status = FAILS if outside else HOLDS if inside else INCONCLUSIVE
    evidence = "; ".join(f"{label}: ours {fmt(s)} vs paper {paper:.4f}" for label, paper, s in run)
    note = _interval_note(*(s for _, _, s in run))
    return Claim(
        spec["id"],
        spec["text"],
        source,
        status,
        f"largest gap of the means {worst:.3f}, tolerance {tol:g} ({note}): {evidence}",
    )


# --------------------------------------------------------------------------------- Tao 2020


@dataclass
class Output:
    """What one paper's report produced at one scale."""

    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, path)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fixed_settings(recs: Sequence[Record]) -> str:
    if not recs:
        return ""
    r = recs[0]
    parts = [
        f"n_train {r.metrics.get('data/n_train') if r.metrics else 'n/a'}",
        f"batch {r.get('method.batch_size')}",
        f"C {r.get('privacy.max_grad_norm')}",
        f"budget cap {r.get('privacy.budget_max_epochs')} epochs",
    ]
    return ", ".join(parts)


def tao_report(recs: Sequence[Record], scale: str, out_dir: Path) -> Output:
    spec = yaml.safe_load((EXPERIMENTS_DIR / "tao2020" / "reported.yaml").read_text("utf-8"))
    out = Output()
    entries = {e["id"]: e for e in spec["experiments"]}
    one_d: dict[str, list[tuple[float, SeedSummary]]] = {}
    paper_pairs: dict[str, list[tuple[str, float, SeedSummary]]] = {}
    for eid, entry in entries.items():
        experiment = entry.get("experiment")
        varied = entry.get("varied")
        if experiment is None or eid == "conclusion":
            continue
        chosen = select(recs, [experiment, *entry.get("also_from", [])], scale)
        if varied is not None:
            chosen = borrowed(chosen, entry, experiment, scale)
        if isinstance(varied, str):
            table, points, pairs = _tao_sweep(eid, entry, experiment, chosen, scale)
            out.tables.append(table)
            one_d[eid], paper_pairs[eid] = points, pairs
            out.figures.append((table.title, _plot_sweep(eid, entry, table, out_dir)))
        elif isinstance(varied, list):
            table = _tao_grid(eid, entry, experiment, chosen, scale)
            out.tables.append(table)
            path = _plot_grid(eid, entry, chosen, out_dir)
            if path is not None:
                out.figures.append((table.title, path))
        elif eid == "fig8_samples":
            path = _plot_samples(chosen, out_dir)
            if path is not None:
                out.figures.append(("Tao 2020 Fig. 8: generated digits per setting", path))
            else:
                out.notes.append("Fig. 8 samples: not run (no complete dp_wgan record)")
    table, path = _ours_mnist(recs, scale, out_dir, entries.get("fig2_epsilon"))
    out.tables.append(table)
    if path is not None:
        out.figures.append((table.title, path))
    conclusion = entries.get("conclusion")
    if conclusion is not None:
        setting = conclusion["setting"]
        chosen = [
            r
            for r in select(recs, [conclusion["experiment"]], scale)
            if r.complete
            and _same(r.get("privacy.target_epsilon"), setting["epsilon"])
            and _same(r.get("privacy.noise_multiplier"), setting["sigma"])
        ]
        paper_pairs["conclusion"] = [
            (
                f"epsilon {setting['epsilon']}",
                conclusion["results"]["accuracy"] / 100.0,
                summarize(_values(chosen, UTILITY)),
            )
        ]
    for claim in spec.get("claims", []):
        source = f"Tao 2020 {claim['experiment']}"
        if claim["type"] == "monotone":
            out.claims.append(monotone_claim(claim, one_d.get(claim["experiment"], []), source))
        elif claim["type"] == "near_paper":
            out.claims.append(
                near_paper_claim(claim, paper_pairs.get(claim["experiment"], []), source)
            )
    return out


def _tao_sweep(
    eid: str, entry: dict[str, Any], experiment: str, recs: Sequence[Record], scale: str
) -> tuple[Table, list[tuple[float, SeedSummary]], list[tuple[str, float, SeedSummary]]]:
    varied = entry["varied"]
    key = PARAMETERS[varied]
    grid = expected_grid(experiment, scale).get(key, [])
    reported = {float(k): float(v) / 100.0 for k, v in (entry.get("results") or {}).items()}
    values = sorted(
        {*map(float, grid)} | {float(v) for v in (r.get(key) for r in recs) if v is not None}
    )
    rows, points, pairs = [], [], []
    for value in values:
        at = [r for r in recs if r.get(key) is not None and _same(float(r.get(key)), value)]
        done = [r for r in at if r.complete]
        summary = summarize(_values(done, UTILITY))
        paper = next((p for k, p in reported.items() if _same(k, value)), None)
        status = "ok" if done else _why_not(at)
        row = {
            varied: value,
            "paper accuracy (%)": None if paper is None else round(paper * 100, 2),
            "ours accuracy (%)": fmt(summary, percent=True),
            "difference (points)": None
            if paper is None or summary.n == 0
            else round((summary.mean - paper) * 100, 2),
            "seeds": summary.n,
            "epsilon spent": _max(_values(done, "privacy/epsilon_spent")),
            "noisy steps": _mean(_values(done, "privacy/noisy_steps")),
            "budget steps": _mean(_values(done, "privacy/budget_steps")),
            "capped": "yes" if any(r.metric("privacy/budget_capped") for r in done) else "no",
            "records of": ", ".join(sorted({r.experiment for r in done})) or None,
            "status": status,
        }
        rows.append(row)
        points.append((value, summary))
        if paper is not None:
            pairs.append((f"{varied} {value:g}", paper, summary))
    title = f"Tao 2020 Fig. {entry['figure']}: accuracy against {varied} ({scale} scale)"
    notes = [
        f"Fixed: {entry.get('fixed')}; "
        f"our runs: {_fixed_settings([r for r in recs if r.complete])}.",
        "Accuracy of a CNN trained on generated images, scored on the official MNIST test "
        "images (utility/downstream_accuracy); mean ± 95% t-interval half-width over seeds.",
        "capped = the compute cap (privacy.budget_max_epochs), not the budget, ended training: "
        "epsilon spent is then below the target.",
        f"Scale: {scale}. Records of experiment {experiment}"
        + (
            f"; a point it has no record of may come from {', '.join(entry['also_from'])}, "
            "from runs of the same protocol at the fixed settings above (records of)."
            if entry.get("also_from")
            else "."
        ),
    ]
    return Table(f"{eid}", title, pd.DataFrame(rows), notes), points, pairs


OURS_MNIST = "mnist_dpgan_epsilon"
OURS_MNIST_NONPRIVATE = "mnist_dpgan_nonprivate"


def _by_value(recs: Sequence[Record], key: str) -> dict[float, list[Record]]:
    out: dict[float, list[Record]] = {}
    for r in recs:
        value = r.get(key)
        if r.complete and value is not None:
            out.setdefault(float(value), []).append(r)
    return dict(sorted(out.items()))


def _ours_mnist(
    recs: Sequence[Record], scale: str, out_dir: Path, fig2: dict[str, Any] | None
) -> tuple[Table, Path | None]:
    """Our DP GAN configuration (method=dp_wgan_ours) against epsilon, beside Tao's protocol
    and the paper's Fig. 2 points, with the non-private references; table + figure."""
    ours = select(recs, [OURS_MNIST], scale)
    tao = [r for r in select(recs, ["tao2020_epsilon"], scale) if r.complete]
    nonprivate = [r for r in select(recs, [OURS_MNIST_NONPRIVATE], scale) if r.complete]
    reported = {float(k): float(v) for k, v in ((fig2 or {}).get("results") or {}).items()}
    grid = [float(v) for v in expected_grid(OURS_MNIST, scale).get("privacy.target_epsilon", [])]
    values = sorted({*grid, *_by_value(ours, "privacy.target_epsilon")})
    rows = []
    for eps in values:
        at = [r for r in ours if r.get("privacy.target_epsilon") is not None]
        at = [r for r in at if _same(float(r.get("privacy.target_epsilon")), eps)]
        done = [r for r in at if r.complete]
        summary = summarize(_values(done, UTILITY))
        paper = next((v for k, v in reported.items() if _same(k, eps)), None)
        rows.append(
            {
                "epsilon": eps,
                "ours accuracy (%)": fmt(summary, percent=True),
                "epsilon spent": _max(_values(done, "privacy/epsilon_spent")),
                "sigma": _mean(_values(done, "privacy/noise_multiplier_mean")),
                "noisy steps": _mean(_values(done, "privacy/noisy_steps")),
                "seeds": summary.n,
                "Tao 2020 reported (%)": paper,
                "status": "ok" if done else _why_not(at),
            }
        )
    np_acc = summarize(_values(nonprivate, UTILITY))
    trtr = summarize(_values([*ours, *nonprivate, *tao], "utility/trtr_accuracy"))
    title = f"MNIST: our DP GAN configuration against epsilon ({scale} scale)"
    notes = [
        "method=dp_wgan_ours (docs/dp_wgan.md 'Our configuration'): logistic loss, MLP critic, "
        "Adam, 2 critic steps per generator step, EMA generator, batch 512, C = 1, sigma "
        "calibrated so the run's fixed length spends the target epsilon; chosen on the "
        "validation split (experiment tune_dpgan_mnist), never on the test images.",
        "Accuracy: the CNN trained on generated images, scored on the official MNIST test "
        "images; mean ± 95% t-interval half-width over seeds.",
        f"Non-private references: the same GAN without DP {fmt(np_acc, percent=True)} % "
        f"(n = {np_acc.n}); a CNN trained on real images (TRTR) {fmt(trtr, percent=True)} %.",
        "Tao 2020 reported: their protocol's accuracy at that epsilon (sigma 6), for scale; "
        "our measurement of Tao's protocol is the Fig. 2 table.",
    ]
    table = Table("mnist_dpgan_epsilon", title, pd.DataFrame(rows), notes)
    if not any(r.complete for r in ours) and not tao:
        return table, None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    series = []
    for eps, group in _by_value(ours, "privacy.target_epsilon").items():
        s_ = summarize(_values(group, UTILITY))
        if s_.n:
            series.append((eps, s_))
    if series:
        ax.errorbar(
            [e for e, _ in series],
            [s_.mean * 100 for _, s_ in series],
            yerr=[0 if s_.ci != s_.ci else s_.ci * 100 for _, s_ in series],
            marker="o",
            capsize=3,
            label="ours: dp_wgan_ours (mean ± 95% CI)",
        )
    tao_points = []
    for _eps, group in _by_value(tao, "privacy.target_epsilon").items():
        s_ = summarize(_values(group, UTILITY))
        spent = _mean(_values(group, "privacy/epsilon_spent"))
        if s_.n and spent:
            tao_points.append((spent, s_))
    if tao_points:
        ax.errorbar(
            [e for e, _ in tao_points],
            [s_.mean * 100 for _, s_ in tao_points],
            yerr=[0 if s_.ci != s_.ci else s_.ci * 100 for _, s_ in tao_points],
            marker="^",
            capsize=3,
            label="Tao's protocol (sigma 6), at the epsilon SPENT",
        )
    if reported:
        ax.plot(
            list(reported),
            list(reported.values()),
            "s--",
            color="grey",
            label="Tao 2020 reported (Fig. 2)",
        )
    if np_acc.n:
        ax.axhline(np_acc.mean * 100, color="tab:green", ls=":", label="ours without DP")
    if trtr.n:
        ax.axhline(trtr.mean * 100, color="black", ls="-.", lw=0.8, label="CNN on real images")
    ax.set_xscale("log")
    ax.set_xlabel("epsilon (delta 1e-5)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return table, _save(fig, out_dir / "figures" / "mnist_accuracy_vs_epsilon.png", plt)


def _spent_note(done: Sequence[Record]) -> str:
    spent = _max(_values(done, "privacy/epsilon_spent"))
    capped = any(r.metric("privacy/budget_capped") for r in done)
    if spent is None:
        return ""
    return f"[eps {spent:.2f}{', capped' if capped else ''}]"


def _why_not(at: Sequence[Record]) -> str:
    failed = [r for r in at if not r.complete]
    if not failed:
        return NOT_RUN
    rec = failed[0]
    if rec.run.get("status") == "running" and not rec.run.get("error"):
        # run.json is written "running" at the start and replaced at the end: a record still
        # "running" is a run in progress or one stopped from outside (killed, machine gone)
        started = rec.run.get("started_at") or "an unknown time"
        # process_gone: seen on the host that ran it when the record was archived
        if rec.run.get("process_gone") is True or record_files.process_gone(rec.run):
            return (
                f"{NOT_RUN}: stopped from outside (its process {rec.run.get('pid')} on host "
                f"{rec.run.get('host')} is gone; started {started})"
            )
        return f"{NOT_RUN}: no result (started {started}; still running, or stopped from outside)"
    reason = (rec.error or "").split("\n")[0]
    kind = reason.partition(":")[0].strip()
    if kind in _STOP_SIGNALS:  # the run was stopped, not broken: say so, not "Exception: "
        started = rec.run.get("started_at") or "an unknown time"
        return f"{NOT_RUN}: stopped from outside ({_STOP_SIGNALS[kind]}; started {started})"
    return f"{NOT_RUN}: {reason[:160]}"


# exceptions a run records when it is stopped from outside (Lightning turns SIGTERM into
# SIGTERMException), and how the report names the stop
_STOP_SIGNALS = {"SIGTERMException": "SIGTERM", "KeyboardInterrupt": "interrupted"}


def _max(values: Sequence[float]) -> float | None:
    return max(values) if values else None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _tao_grid(
    eid: str, entry: dict[str, Any], experiment: str, recs: Sequence[Record], scale: str
) -> Table:
    p_row, p_col = entry["varied"]
    k_row, k_col = PARAMETERS[p_row], PARAMETERS[p_col]
    grid = expected_grid(experiment, scale)

    def axis(key: str) -> list[float]:
        # the sweep's own values and those of points taken from another sweep (also_from)
        found = {float(v) for v in (r.get(key) for r in recs if r.complete) if v is not None}
        return sorted({*map(float, grid.get(key, []))} | found)

    rows_v, cols_v = axis(k_row), axis(k_col)
    rows = []
    for rv in rows_v:
        row: dict[str, Any] = {p_row: rv}
        for cv in cols_v:
            at = [
                r
                for r in recs
                if r.get(k_row) is not None
                and r.get(k_col) is not None
                and _same(float(r.get(k_row)), rv)
                and _same(float(r.get(k_col)), cv)
            ]
            done = [r for r in at if r.complete]
            summary = summarize(_values(done, UTILITY))
            row[f"{p_col} {cv:g}"] = (
                f"{fmt(summary, percent=True)} {_spent_note(done)}" if done else _why_not(at)
            )
        rows.append(row)
    title = f"Tao 2020 Fig. {entry['figure']}: accuracy (%) over {p_row} x {p_col} ({scale} scale)"
    notes = [
        f"Fixed: {entry.get('fixed')}; the paper gives this figure as a plot only (no numbers).",
        "Cells: mean ± 95% t-interval half-width over seeds of utility/downstream_accuracy, "
        "then [the largest epsilon spent over the seeds; 'capped' when the compute cap "
        "(privacy.budget_max_epochs), not the budget, ended training, so less was spent than "
        "the target].",
        f"Scale: {scale}. Records of experiment {experiment}.",
    ]
    others = sorted(
        {(r.experiment, float(r.get(k_row))) for r in recs if r.complete}
        - {(experiment, v) for v in rows_v}
    )
    for source in sorted({name for name, _ in others}):
        values = ", ".join(f"{v:g}" for name, v in others if name == source)
        notes.append(
            f"{p_row} {values}: records of {source}, runs of the same protocol at the fixed "
            "settings above (also_from), where this sweep has no record of the point."
        )
    return Table(eid, title, pd.DataFrame(rows), notes)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_sweep(eid: str, entry: dict[str, Any], table: Table, out_dir: Path) -> Path:
    plt = _pyplot()
    varied = entry["varied"]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    frame = table.frame
    xs, ys, es = [], [], []
    for _, row in frame.iterrows():
        text = str(row["ours accuracy (%)"])
        if text.startswith(NOT_RUN):
            continue
        mean, _, ci = text.partition(" ± ")
        xs.append(row[varied])
        ys.append(float(mean))
        es.append(float(ci) if ci else 0.0)
    if xs:
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label="ours (mean ± 95% CI)")
    paper = frame.dropna(subset=["paper accuracy (%)"])
    if len(paper):
        ax.plot(paper[varied], paper["paper accuracy (%)"], "s--", label="Tao 2020 (reported)")
    if varied == "delta":
        ax.set_xscale("log")
    ax.set_xlabel(varied)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(table.title, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out_dir / "figures" / f"{eid}.png", plt)


def _plot_grid(
    eid: str, entry: dict[str, Any], recs: Sequence[Record], out_dir: Path
) -> Path | None:
    p_row, p_col = entry["varied"]
    k_row, k_col = PARAMETERS[p_row], PARAMETERS[p_col]
    done = [r for r in recs if r.complete]
    if not done:
        return None
    frame = pd.DataFrame(
        {"r": float(r.get(k_row)), "c": float(r.get(k_col)), "y": r.metric(UTILITY)} for r in done
    ).dropna()
    if frame.empty:
        return None
    pivot = frame.groupby(["r", "c"])["y"].mean().unstack("c")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.8))
    image = ax.imshow(pivot.to_numpy() * 100, vmin=0, vmax=100, cmap="viridis", origin="lower")
    ax.set_xticks(range(len(pivot.columns)), [f"{c:g}" for c in pivot.columns])
    ax.set_yticks(range(len(pivot.index)), [f"{r:g}" for r in pivot.index])
    ax.set_xlabel(p_col)
    ax.set_ylabel(p_row)
    for (i, j), y in np.ndenumerate(pivot.to_numpy()):
        if y == y:
            ax.text(j, i, f"{y * 100:.1f}", ha="center", va="center", color="w", fontsize=7)
    fig.colorbar(image, ax=ax, label="test accuracy (%)")
    ax.set_title(f"Tao 2020 Fig. {entry['figure']} (ours, mean over seeds)", fontsize=8)
    fig.tight_layout()
    return _save(fig, out_dir / "figures" / f"{eid}.png", plt)


def _plot_samples(recs: Sequence[Record], out_dir: Path) -> Path | None:
    settings: dict[tuple[Any, ...], Record] = {}
    for rec in sorted(recs, key=lambda r: str(r.run.get("started_at", ""))):
        preview = rec.run_dir / "synthetic_images_preview.npy"
        if rec.complete and preview.exists():
            key = tuple(
                rec.get(k)
                for k in (
                    "privacy.target_epsilon",
                    "privacy.noise_multiplier",
                    "privacy.target_delta",
                )
            )
            settings.setdefault(key, rec)
    if not settings:
        return None
    plt = _pyplot()
    keys = sorted(settings, key=lambda k: tuple(float(v or 0) for v in k))
    fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys), 2.9), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        images = np.load(settings[key].run_dir / "synthetic_images_preview.npy")
        images = images.reshape(-1, 28, 28)[:100]
        n = int(math.ceil(math.sqrt(len(images))))
        mosaic = np.zeros((n * 28, n * 28))
        for i, img in enumerate(images):
            mosaic[(i // n) * 28 : (i // n + 1) * 28, (i % n) * 28 : (i % n + 1) * 28] = img
        ax.imshow(mosaic, cmap="gray")
        ax.set_axis_off()
        ax.set_title(f"eps {key[0]}, sigma {key[1]}, delta {key[2]}", fontsize=7)
    fig.suptitle("Tao 2020 Fig. 8 (ours): one row per digit", fontsize=8)
    fig.tight_layout()
    return _save(fig, out_dir / "figures" / "fig8_samples.png", plt)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# -------------------------------------------------------------------------------- Deng 2026

SCENARIOS = {
    "financial": ("deng2026_financial", "deng2026_privacy_attacks"),
    "medical": ("deng2026_medical", "deng2026_privacy_attacks"),
    "medical_standin": ("deng2026_medical_standin",),
}


def deng_report(recs: Sequence[Record], scale: str, out_dir: Path) -> Output:
    spec = yaml.safe_load((EXPERIMENTS_DIR / "deng2026" / "reported.yaml").read_text("utf-8"))
    names = {v: k for k, v in spec["methods"].items()}  # ours -> paper's
    names["multidisc_gan+class_mix"] = "proposed_class_mix"
    out = Output()
    entries = {e["id"]: e for e in spec["experiments"]}

    def groups(selected: Sequence[Record]) -> dict[str, list[Record]]:
        by: dict[str, list[Record]] = {}
        for r in selected:
            if r.complete:
                by.setdefault(names.get(r.method_label, r.method_label), []).append(r)
        return by

    def failures(selected: Sequence[Record]) -> dict[str, str]:
        """Why a method has no complete record: the error of its newest failed run."""
        return {
            names.get(r.method_label, r.method_label): _why_not([r])
            for r in sorted(selected, key=lambda r: str(r.run.get("started_at", "")))
            if not r.complete
        }

    scenario_recs: dict[str, tuple[str, list[Record]]] = {}
    fin = [
        r
        for r in select(recs, SCENARIOS["financial"], scale)
        if r.get("dataset.name") == "bank_sim"
    ]
    scenario_recs["financial"] = ("bank_sim (simulated cross-bank transactions)", fin)
    med = [
        r for r in select(recs, SCENARIOS["medical"], scale) if r.get("dataset.name") == "mimic3"
    ]
    if med:
        scenario_recs["medical"] = ("MIMIC-III", med)
    else:
        standin = select(recs, SCENARIOS["medical_standin"], scale)
        dataset = standin[0].get("dataset.name") if standin else "diabetes130"
        scenario_recs["medical"] = (
            f"STAND-IN {dataset} (MIMIC-III not available: not run on MIMIC-III)",
            standin,
        )
        out.notes.append(
            "Medical scenario: not run on MIMIC-III (MIMIC3_ROOT not set / no mimic3 records); "
            f"the medical rows are a clearly labelled stand-in on {dataset}."
        )

    for eid, scenario in (("financial", "financial"), ("medical", "medical")):
        entry = entries[eid]
        label, selected = scenario_recs[scenario]
        table, claims = _deng_scenario(entry, label, groups(selected), scale)
        out.tables.append(table)
        out.claims.extend(claims)
    out.tables.append(
        _deng_table4(entries["privacy_attacks"], scenario_recs, groups, failures, scale)
    )
    for claim in entries["privacy_attacks"].get("claims", []):
        label, selected = scenario_recs[claim["scenario"]]
        out.claims.append(compare_claim(claim, groups(selected), f"Deng 2026 Table 4 ({label})"))
    stages = select(recs, ["deng2026_noise_stages"], scale)
    table, claims = _deng_noise_stages(entries["noise_stages"], stages, scale)
    out.tables.append(table)
    out.claims.extend(claims)
    table, path = _bank_sim_epsilon(recs, scale, out_dir, entries["financial"], names)
    out.tables.append(table)
    if path is not None:
        out.figures.append((table.title, path))
    return out


BANK_SIM_EPSILON = "bank_sim_epsilon"
BANK_SIM_AUC = "utility/downstream_auc"


def _bank_sim_epsilon(
    recs: Sequence[Record],
    scale: str,
    out_dir: Path,
    financial: dict[str, Any],
    names: dict[str, str],
) -> tuple[Table, Path | None]:
    """TSTR AUC against epsilon on bank_sim: the Deng framework and the standard GAN at every
    epsilon run (deng2026_financial at 1, bank_sim_epsilon elsewhere), the classifier baselines
    at 1, the paper's points, and the non-private references (TRTR, the non-private GAN of the
    main job)."""
    chosen = [
        r
        for r in select(recs, ["deng2026_financial", BANK_SIM_EPSILON], scale)
        if r.complete and r.get("dataset.name") == "bank_sim"
    ]
    by: dict[str, dict[float, list[Record]]] = {}
    for r in chosen:
        eps = r.get("privacy.target_epsilon")
        if eps is None:
            continue
        label = names.get(r.method_label, r.method_label)
        by.setdefault(label, {}).setdefault(float(eps), []).append(r)
    main = [r for r in select(recs, ["bank_sim_standard_gan"], scale) if r.complete]
    nonprivate = summarize(_values(main, BANK_SIM_AUC))
    trtr = summarize(_values([*chosen, *main], "utility/trtr_auc"))
    rows = []
    for label in [m for m in DENG_ORDER if m in by] + sorted(set(by) - set(DENG_ORDER)):
        for eps, group in sorted(by[label].items()):
            auc = summarize(_values(group, BANK_SIM_AUC))
            rows.append(
                {
                    "method": label,
                    "epsilon": eps,
                    "seeds": auc.n,
                    "TSTR AUC": fmt(auc),
                    "minority recall (val. threshold)": fmt(
                        summarize(_values(group, "utility/downstream_minority_recall_valthr"))
                    ),
                    "epsilon spent": _max(_values(group, "privacy/epsilon_spent")),
                    "gap to TRTR": None
                    if not (auc.n and trtr.n)
                    else round(trtr.mean - auc.mean, 3),
                }
            )
    title = f"bank_sim: downstream AUC against epsilon ({scale} scale)"
    notes = [
        "Generators: TSTR with gradient boosting on the real test split; dp_lr / fl: the "
        "released classifier. Mean ± 95% t-interval half-width over seeds. Records of "
        "deng2026_financial (epsilon 1) and bank_sim_epsilon. In the figure the methods' "
        "points at one epsilon are drawn a few per cent apart on the epsilon axis, so that "
        "their intervals do not hide each other.",
        f"Non-private references: real-data model (TRTR) AUC {fmt(trtr)}; the non-private "
        f"standard GAN of the main job {fmt(nonprivate)} (n = {nonprivate.n}).",
        "Paper (Deng 2026 Sec. 4.4, epsilon 1): proposed 0.912, standard GAN 0.875, FL 0.889.",
    ]
    table = Table("bank_sim_auc_vs_epsilon", title, pd.DataFrame(rows), notes)
    if not by:
        return table, None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for i, (label, points) in enumerate(by.items()):
        _errorbar_over_epsilon(
            ax, points, BANK_SIM_AUC, label=label, single_marker="D", dodge=_dodge(i, len(by))
        )
    paper = [
        (v["method"], float(v["value"]))
        for v in financial.get("values", [])
        if v.get("quantity") == "AUC"
    ]
    for i, (method, value) in enumerate(paper):
        ax.plot(
            [float(financial.get("epsilon", 1.0))],
            [value],
            "s",
            mfc="none",
            color="grey",
            label="Deng 2026 reported" if i == 0 else None,
        )
        ax.annotate(method, (float(financial.get("epsilon", 1.0)), value), fontsize=5)
    if trtr.n:
        ax.axhline(trtr.mean, color="black", ls="-.", lw=0.8, label="model on real data (TRTR)")
    if nonprivate.n:
        ax.axhline(nonprivate.mean, color="tab:green", ls=":", label="standard GAN without DP")
    ax.set_xscale("log")
    ax.set_xlabel("epsilon (delta 1e-5)")
    ax.set_ylabel("downstream AUC")
    ax.set_ylim(0.4, 1.0)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return table, _save(fig, out_dir / "figures" / "bank_sim_auc_vs_epsilon.png", plt)


DENG_COLUMNS = (
    ("accuracy", "utility/downstream_accuracy"),
    ("AUC", "utility/downstream_auc"),
    ("minority F1 (val. threshold)", "utility/downstream_minority_f1_valthr"),
    ("minority recall (val. threshold)", "utility/downstream_minority_recall_valthr"),
    ("minority recall at 0.5", "utility/downstream_minority_recall"),
    ("FD (encoder)", "fidelity/fd_encoder"),
    ("precision", "fidelity/precision"),
    ("recall", "fidelity/recall"),
    ("MIA DCR AUC", "attack/mia_dcr/auc"),
    ("epsilon spent", "privacy/epsilon_spent"),
)
DENG_ORDER = ("proposed", "proposed_class_mix", "standard_gan", "dp_lr", "fl")


def _deng_scenario(
    entry: dict[str, Any], label: str, by: dict[str, list[Record]], scale: str
) -> tuple[Table, list[Claim]]:
    rows = []
    for method in [m for m in DENG_ORDER if m in by] + [m for m in by if m not in DENG_ORDER]:
        row: dict[str, Any] = {"method": method, "seeds": len(by[method])}
        for name, key in DENG_COLUMNS:
            summary = summarize(_values(by[method], key))
            # a method that ran but has no such metric (a released model has no synthetic table)
            row[name] = fmt(summary) if summary.n else "n/a"
        rows.append(row)
    every = [r for rs in by.values() for r in rs]
    if every:
        row = {"method": "real data (TRTR)", "seeds": len(every)}
        for name, key in DENG_COLUMNS:
            trtr = key.replace("downstream_", "trtr_") if key.startswith("utility/") else None
            row[name] = fmt(summarize(_values(every, trtr))) if trtr else "n/a"
        rows.append(row)
    value_rows = []
    for v in entry.get("values", []):
        group = every if v["method"] == "real_data" else by.get(v["method"], [])
        summary = summarize(_values(group, v["ours"]))
        percent = bool(v.get("percent"))
        paper = float(v["value"])
        diff = None
        if summary.n and v.get("comparable"):
            diff = round((summary.mean * (100 if percent else 1)) - paper, 3)
        value_rows.append(
            {
                "quantity": v["quantity"],
                "method": v["method"],
                "paper": paper,
                "ours": fmt(summary, percent=percent),
                "our metric": v["ours"],
                "difference": diff if v.get("comparable") else "not comparable",
            }
        )
    frame = pd.DataFrame(rows) if rows else pd.DataFrame({"status": [f"{NOT_RUN}: no records"]})
    title = (
        f"Deng 2026 Sec. {entry['section']} ({entry['id']}): methods at epsilon "
        f"{entry.get('epsilon')} on {label} ({scale} scale)"
    )
    notes = [
        "Downstream scores on the held-out real test split (generators: TSTR with gradient "
        "boosting; DP-LR and FL: the released model); mean ± 95% t-interval half-width over "
        "seeds. MIA DCR AUC: 0.5 = chance.",
        "Paper values beside ours:",
        "",
        Table("", "", pd.DataFrame(value_rows)).markdown().split("\n", 2)[2]
        if value_rows
        else "(none)",
        f"Conditions in the paper: {entry.get('conditions')}. Scale: {scale}.",
    ]
    claims = [
        compare_claim(c, by, f"Deng 2026 Sec. {entry['section']} ({label})")
        for c in entry.get("claims", [])
    ]
    return Table(f"deng_{entry['id']}", title, frame, notes), claims


def _deng_table4(
    entry: dict[str, Any],
    scenario_recs: dict[str, tuple[str, list[Record]]],
    groups: Any,
    failures: Any,
    scale: str,
) -> Table:
    columns = entry["columns"]
    reported = {(v["method"], v["scenario"], v["column"]): v for v in entry.get("values", [])}
    not_applicable = {(n["scenario"], n["column"]) for n in entry.get("not_applicable", [])}
    rows = []
    for scenario in ("medical", "financial"):
        label, selected = scenario_recs[scenario]
        by, why = groups(selected), failures(selected)
        for method in ("proposed", "standard_gan", "dp_lr", "fl"):
            recs = by.get(method, [])
            artifact = "model" if method in ("dp_lr", "fl") else "synthetic"
            row: dict[str, Any] = {"method": method, "scenario": label}
            for column, keys in columns.items():
                key = keys.get(artifact)
                percent = "%" in column
                value = reported.get((method, scenario, column))
                paper = (
                    "-"
                    if (scenario, column) in not_applicable
                    else (value["value"] if value else "(Fill)")
                )
                if key is None:
                    ours = "n/a (no synthetic table)"
                elif not recs:
                    ours = why.get(method, NOT_RUN)
                else:
                    ours = fmt(summarize(_values(recs, key)), percent=percent)
                row[f"{column} paper"] = paper
                row[f"{column} ours"] = ours
            row["seeds"] = len(recs)
            rows.append(row)
    title = f"Deng 2026 Table 4: privacy attacks at epsilon {entry.get('epsilon')} ({scale} scale)"
    notes = [
        "Paper cells marked (Fill) are left empty in the paper; ours fill them with measured "
        "numbers. MIA success rate: balanced accuracy of the membership attack at the median "
        "cut (mia_dcr on synthetic tables, offline LiRA on released models); 50% = chance, so "
        "the paper's 10.8-21.8% are below chance for any balanced test and are not the same "
        "quantity (docs/evaluation.md).",
        "AIA success rate: share of member targets whose secret (the label) the attacker guesses "
        "from the closest synthetic record; it includes what the population alone reveals "
        "(compare attack/aia/control_success_rate and attack/aia/risk in the records). Model "
        "inversion accuracy: attribute match rate of black-box reconstructions against the "
        "closest member (docs/evaluation.md); the paper's 0.28 is undefined there.",
        f"Mean ± 95% t-interval half-width over seeds. Scale: {scale}.",
    ]
    return Table("deng_table4_privacy_attacks", title, pd.DataFrame(rows), notes)


STAGES = {4.0: "high (early)", 2.0: "medium (mid)", 1.0: "low (late)"}


def _deng_noise_stages(
    entry: dict[str, Any], recs: Sequence[Record], scale: str
) -> tuple[Table, list[Claim]]:
    done = [r for r in recs if r.complete]
    sigmas = sorted(
        {
            float(r.get("privacy.noise_multiplier"))
            for r in recs
            if r.get("privacy.noise_multiplier") is not None
        },
        reverse=True,
    )
    if not sigmas:
        sigmas = sorted(STAGES, reverse=True)
    rows: list[dict[str, Any]] = []
    series: dict[str, list[tuple[float, SeedSummary]]] = {
        q["ours"]: [] for q in entry["qualitative"]
    }
    for sigma in sigmas:
        at = [r for r in done if _same(float(r.get("privacy.noise_multiplier")), sigma)]
        row: dict[str, Any] = {"noise": STAGES.get(sigma, ""), "sigma": sigma, "seeds": len(at)}
        for q in entry["qualitative"]:
            summary = summarize(_values(at, q["ours"]))
            row[q["quantity"]] = fmt(summary)
            series[q["ours"]].append((sigma, summary))
        row["epsilon spent"] = fmt(summarize(_values(at, "privacy/epsilon_spent")))
        rows.append(row)
    claims = []
    for q in entry["qualitative"]:
        # Table 1 reads from high to low noise; as sigma grows the stated direction flips
        direction = "decreases" if q["direction"] == "increases" else "increases"
        spec = {
            "id": f"noise_stages_{q['ours'].replace('/', '_')}",
            "text": f"{q['quantity']} {q['direction']} from high to low noise (Table 1)",
            "direction": direction,
        }
        claims.append(_three_point_claim(spec, series[q["ours"]], "Deng 2026 Table 1"))
    title = f"Deng 2026 Table 1: noise stages, multidisc_gan on bank_sim ({scale} scale)"
    notes = [
        "The paper's Table 1 is qualitative (no numbers); we run fixed noise multipliers 4 / 2 / 1 "
        "(high / medium / low) for the same epochs with no target epsilon, so each stage spends "
        "what its sigma costs.",
        "Discriminator accuracy: the heads' accuracy on generated rows in the last epoch, a "
        "fraction (mean over heads, from csv/metrics.csv). Validation-set performance: TSTR AUC "
        "on the real "
        "test split. Privacy: mia_dcr AUC (higher = less protection).",
        f"Mean ± 95% t-interval half-width over seeds. Scale: {scale}.",
    ]
    return Table("deng_table1_noise_stages", title, pd.DataFrame(rows), notes), claims


def _three_point_claim(
    spec: dict[str, Any], points: Sequence[tuple[float, SeedSummary]], source: str
) -> Claim:
    """Strict direction over the (few) stages: every step between consecutive sigmas moves the
    mean the stated way."""
    run = sorted(((x, s) for x, s in points if s.n > 0), key=lambda p: p[0])
    if len(run) < 2:
        return Claim(spec["id"], spec["text"], source, NOT_RUN, f"{len(run)} stage(s) measured")
    sign = 1 if spec["direction"] == "increases" else -1
    steps = [_order(b, a) * sign for (_, a), (_, b) in zip(run, run[1:], strict=False)]
    if all(step > 0 for step in steps):
        status = HOLDS  # every consecutive stage moves the stated way, intervals disjoint
    elif any(step < 0 for step in steps):
        status = FAILS  # some stage moves the other way beyond its interval
    else:
        status = INCONCLUSIVE
    evidence = (
        f"by sigma ({_interval_note(*(s for _, s in run))}; a step counts when consecutive "
        "intervals are disjoint): " + ", ".join(f"{x:g} -> {fmt(s)}" for x, s in run)
    )
    return Claim(spec["id"], spec["text"], source, status, evidence)


# ---------------------------------------------------------------------- peer comparison

# experiment -> the dataset its records are on (conf/experiment/peers_*.yaml, docs/peers.md)
PEER_EXPERIMENTS = {
    "peers_bank_sim": "bank_sim",
    "peers_bank_marketing": "bank_marketing",
    "peers_diabetes130": "diabetes130",
}
PEER_METHODS = ("mst", "aim", "dpctgan", "patectgan")  # smartnoise-synth, its own accounting
# where rows of OUR methods may also come from: the same dataset, splits, target delta and
# evaluation keys (a superset) in the Deng 2026 sweeps, so that a peers sweep at cpu scale may
# run the four peers only (docs/peers.md); a row of the peers experiment itself always wins
PEER_FALLBACK = {"peers_bank_sim": ("deng2026_financial", "bank_sim_epsilon")}
PEER_ORDER = ("multidisc_gan", "standard_gan", *PEER_METHODS, "dp_lr", "fedavg")
PEER_FAMILY = {
    "multidisc_gan": "ours: Deng 2026 framework",
    "standard_gan": "ours: standard GAN",
    "dp_lr": "baseline: DP-LR (released model)",
    "fedavg": "baseline: FedAvg (released model)",
}
PEER_AUC = "utility/downstream_auc"
# table column -> metrics.json key (mean ± 95% t-interval over seeds)
PEER_COLUMNS = (
    ("TSTR AUC", PEER_AUC),
    ("minority recall (val. threshold)", "utility/downstream_minority_recall_valthr"),
    ("marginal TVD", "fidelity/marginal_tvd_mean"),
    ("marginal KS", "fidelity/marginal_ks_mean"),
    ("correlation distance", "fidelity/correlation_distance"),
    ("FD (encoder)", "fidelity/fd_encoder"),
    ("MIA AUC (DCR)", "attack/mia_dcr/auc"),
    ("DCR median", "attack/copies/dcr_median"),
    ("fit (s)", "runtime/fit_seconds"),
    ("peak memory (MiB)", "runtime/peak_memory_mb"),
)
# relative tolerance of the budget check (as the release gate's)
_BUDGET_TOLERANCE = 1e-6


def _peer_library(recs: Sequence[Record]) -> str | None:
    """``smartnoise-synth 1.0.8`` as a peer run's ledger recorded it (its external release)."""
    for rec in recs:
        path = rec.run_dir / record_files.LEDGER_FILE
        try:
            ledger = record_files.read_json(path)
        except (OSError, ValueError):
            continue
        for item in ledger.get("external_releases") or []:
            return f"{item.get('library')} {item.get('version')}"
    return None


def _budget_cell(group: Sequence[Record]) -> str:
    """Largest epsilon spent over seeds; "over target" when a seed spent more than its target
    (the release gate refuses such a run)."""
    spent = _values(group, "privacy/epsilon_spent")
    if not spent:
        return "n/a"
    over = sum(
        1
        for r in group
        if (eps := r.metric("privacy/epsilon_spent")) is not None
        and (target := r.metric("privacy/target_epsilon")) is not None
        and eps > target * (1.0 + _BUDGET_TOLERANCE)
    )
    text = f"{max(spent):.4g}"
    return f"{text} (over target in {over}/{len(group)}: release refused)" if over else text


def peer_not_run_reasons(experiment: str, scale: str) -> dict[tuple[str, float], str]:
    """(method, target epsilon) -> why that point of ``experiment`` was never started at
    ``scale``, from ``experiments/peers/not_run.yaml`` (a documented note, not a result: the peer
    table shows it only where no record exists). A malformed file is a UserInputError naming the
    entry and the fix."""
    path = EXPERIMENTS_DIR / "peers" / "not_run.yaml"
    if not path.is_file():
        return {}
    try:
        spec = yaml.safe_load(path.read_text("utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserInputError(f"{path} is not valid YAML ({exc}); fix the file") from None
    entries = spec.get("not_run") if isinstance(spec, dict) else None
    if not isinstance(entries, list):
        raise UserInputError(f"{path}: expected a top-level list 'not_run:'; fix the file")
    out: dict[tuple[str, float], str] = {}
    for i, entry in enumerate(entries):
        keys = {"experiment", "scale", "method", "epsilon", "reason"}
        eps = entry.get("epsilon") if isinstance(entry, dict) else None
        if (
            not isinstance(entry, dict)
            or set(entry) != keys
            or not isinstance(eps, list)
            or not eps
            or not all(isinstance(e, int | float) and not isinstance(e, bool) for e in eps)
            or not str(entry.get("reason") or "").strip()
        ):
            raise UserInputError(
                f"{path}: entry {i} must have exactly the keys {sorted(keys)}, with epsilon a "
                f"non-empty list of numbers and a non-empty one-line reason; got {entry!r}"
            )
        if entry["experiment"] == experiment and entry["scale"] == scale:
            for e in eps:
                out[(str(entry["method"]), float(e))] = " ".join(str(entry["reason"]).split())
    return out


def peers_report(recs: Sequence[Record], scale: str, out_dir: Path) -> Output:
    """The peer comparison (docs/peers.md): one table per tabular dataset of the
    ``peers_<dataset>`` experiments at ``scale``, every method at every target epsilon with
    utility, fidelity, attack, runtime and budget columns (mean ± 95% t-interval over seeds), a
    TRTR reference row, and one figure: downstream AUC against epsilon, one line per method and
    the TRTR level, a panel per dataset with records."""
    out = Output()
    panels: list[tuple[str, dict[str, dict[float, list[Record]]], SeedSummary]] = []
    for experiment, dataset in PEER_EXPERIMENTS.items():
        selected = [
            r for r in select(recs, [experiment], scale) if r.get("dataset.name") == dataset
        ]
        done = [r for r in selected if r.complete]
        by: dict[str, dict[float, list[Record]]] = {}
        for r in done:
            eps = r.get("privacy.target_epsilon")
            if eps is not None:
                by.setdefault(r.method_label, {}).setdefault(float(eps), []).append(r)
        try:
            grid = expected_grid(experiment, scale)
        except Exception as exc:  # a config that no longer composes: report what is on disk
            log.warning("peers: %s at %s scale does not compose: %s", experiment, scale, exc)
            grid = {}
        methods = [str(m) for m in grid.get("method", [])] or sorted(by)
        reasons = peer_not_run_reasons(experiment, scale)
        epsilons = sorted(
            {float(e) for e in grid.get("privacy.target_epsilon", [])}
            | {e for points in by.values() for e in points}
        )
        source: dict[tuple[str, float], str] = {}
        fallback = [
            r
            for r in select(recs, PEER_FALLBACK.get(experiment, ()), scale)
            if r.complete
            and r.get("dataset.name") == dataset
            and r.get("privacy.name") == "fixed"
            and r.method_label in methods
            and r.method_label not in PEER_METHODS
            and r.get("privacy.target_epsilon") is not None
            and float(r.get("privacy.target_epsilon")) in epsilons
            and _same(r.get("privacy.target_delta"), 1e-5)
        ]
        for r in fallback:
            key = (r.method_label, float(r.get("privacy.target_epsilon")))
            group = by.setdefault(key[0], {}).setdefault(key[1], [])
            if (group and key not in source) or any(g.get("seed") == r.get("seed") for g in group):
                continue  # the peers experiment's own records, or this seed already
            group.append(r)
            source[key] = r.experiment
        done = [*done, *fallback]
        trtr = summarize(_values(done, "utility/trtr_auc"))
        trtr_recall = summarize(_values(done, "utility/trtr_minority_recall_valthr"))
        rows: list[dict[str, Any]] = []
        ordered = [m for m in PEER_ORDER if m in methods or m in by]
        ordered += sorted((set(methods) | set(by)) - set(ordered))
        for eps in epsilons:
            for method in ordered:
                group = by.get(method, {}).get(eps, [])
                row: dict[str, Any] = {
                    "epsilon": eps,
                    "method": method,
                    "family": "peer: smartnoise-synth, its own accounting"
                    if method in PEER_METHODS
                    else PEER_FAMILY.get(method, method),
                    "seeds": len(group),
                }
                for column, metric in PEER_COLUMNS:
                    values = _values(group, metric)
                    # "n/a": the runs exist but do not record it (a released classifier has no
                    # fidelity; records older than the metric have no peak memory)
                    row[column] = (
                        fmt(summarize(values)) if values else ("n/a" if group else NOT_RUN)
                    )
                row["epsilon spent (max)"] = _budget_cell(group)
                if not group:
                    at = [
                        r
                        for r in selected
                        if r.method_label == method
                        and r.get("privacy.target_epsilon") is not None
                        and float(r.get("privacy.target_epsilon")) == eps
                    ]
                    # a record (failed, stopped) speaks for itself; a point never started
                    # gets its documented reason, if there is one
                    reason = None if at else reasons.get((method, eps))
                    row["status"] = f"{NOT_RUN}: {reason}" if reason else _why_not(at)
                else:
                    row["status"] = (
                        "ok"
                        if (method, eps) not in source
                        else (f"ok (records of {source[(method, eps)]})")
                    )
                rows.append(row)
        if done:
            reference = {
                "epsilon": math.inf,
                "method": "real data (TRTR)",
                "family": "reference, not private",
                "seeds": trtr.n,
                "TSTR AUC": fmt(trtr),
                "minority recall (val. threshold)": fmt(trtr_recall),
            }
            rows.append(reference)
        frame = pd.DataFrame(rows)
        library = _peer_library(done)
        title = f"{dataset}: DP synthesizers side by side ({scale} scale)"
        notes = [
            "Same real splits, target (epsilon, delta 1e-5) and evaluation for every row; "
            "mean ± 95% t-interval half-width over seeds (one seed: the value). Generators: "
            "TSTR with gradient boosting on the real test split; dp_lr / fedavg: the released "
            "classifier. Minority recall at the threshold chosen on the real validation split.",
            "Fidelity on the real test split: marginal TVD (categorical) and KS (continuous) "
            "means, correlation distance, Frechet distance in the train-fitted autoencoder; "
            "attacks: DCR membership AUC (0.5 = chance) and the median distance to the closest "
            "real train record. fit: wall seconds of the fit; peak memory: the run process's "
            "(or the library's child process's) peak resident memory up to the end of the fit.",
            "Peers ("
            + (library or "smartnoise-synth")
            + "): MST, AIM, DP-CTGAN, PATE-CTGAN from their documented defaults, MST's bins "
            "and scale and AIM's rounds chosen on bank_sim's validation split with the same "
            "tuning budget as our GANs (DP-CTGAN not tuned: compute; training length: the "
            "scale's epochs for DP-CTGAN), under their OWN accounting: 'epsilon "
            "spent' is what the library's accountant reports; a run over its target is refused "
            "by python -m dpshare.release (docs/peers.md).",
        ]
        if reasons:
            notes.append(
                "A status 'not run: <reason>' without a record is the documented reason that "
                "point was never started (experiments/peers/not_run.yaml), not a result."
            )
        if not done:
            notes.append(
                f"{NOT_RUN}: no complete record of experiment {experiment} at {scale} scale "
                f"(python -m dpshare.train -m experiment={experiment} scale={scale}; the peers "
                "need make install-peers)."
            )
        out.tables.append(Table(experiment, title, frame, notes))
        if by:
            panels.append((dataset, by, trtr))
    if panels:
        out.figures.append(
            ("Downstream AUC against epsilon: peers and ours", _plot_peers(panels, scale, out_dir))
        )
    return out


def _peer_style(method: str, others: Sequence[str] = ()) -> dict[str, Any]:
    """A method's colour, line style and x offset in the peer figure: fixed by its place in
    :data:`PEER_ORDER` (then among ``others``, the methods outside it), so that one method looks
    the same and sits at the same offset in every panel, whichever methods a panel has."""
    order = list(PEER_ORDER) + sorted(set(others) - set(PEER_ORDER))
    i = order.index(method) if method in order else len(order)
    return {
        "color": f"C{i % 10}",
        "ls": "--" if method in PEER_METHODS else "-",
        "dodge": _dodge(i, len(order)),
    }


def _plot_peers(
    panels: Sequence[tuple[str, dict[str, dict[float, list[Record]]], SeedSummary]],
    scale: str,
    out_dir: Path,
) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    everywhere = sorted({m for _, by, _ in panels for m in by})
    for ax, (dataset, by, trtr) in zip(axes[0], panels, strict=True):
        methods = [m for m in PEER_ORDER if m in by] + sorted(set(by) - set(PEER_ORDER))
        for method in methods:
            _errorbar_over_epsilon(
                ax,
                by[method],
                PEER_AUC,
                label=method + (" (smartnoise)" if method in PEER_METHODS else ""),
                **_peer_style(method, everywhere),
            )
        if trtr.n:
            ax.axhline(trtr.mean, color="black", ls="-.", lw=0.8, label="real data (TRTR)")
        ax.set_xscale("log")
        ax.set_xlabel("target epsilon (delta 1e-5)")
        ax.set_ylabel("downstream AUC (TSTR / released model)")
        ax.set_ylim(0.3, 1.0)
        ax.set_title(f"{dataset} ({scale} scale)", fontsize=8)
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return _save(fig, out_dir / "figures" / "peers_auc_vs_epsilon.png", plt)


# ------------------------------------------------------------------------------------ writing


def build(
    records_root: Path | Sequence[Path],
    results_dir: Path,
    scales: Sequence[str] = SCALES,
    *,
    archive_dir: Path | None = None,
) -> Path:
    """Rebuild every table and figure from the records under ``records_root`` (one directory or
    several) and, when given, the record archive ``archive_dir`` (:mod:`dpshare.reporting.archive`),
    into which the cpu- and paper-scale records read here are then archived; returns the index
    ``results_dir/README.md``."""
    roots = [Path(records_root)] if isinstance(records_root, str | Path) else list(records_root)
    if archive_dir is not None:
        roots.append(Path(archive_dir))
    _overrides.cache_clear()  # records may have changed since an earlier build in this process
    raw = load_all(roots)
    recs = deduplicate(raw)
    sections = []
    computes: list[tuple[str, Table]] = []
    for scale in scales:
        stale = settings_notes(recs, scale)
        for paper, builder in (
            ("deng2026", deng_report),
            ("tao2020", tao_report),
            ("peers", peers_report),
        ):
            out_dir = results_dir / paper / scale
            out = builder(recs, scale, out_dir)
            out.notes.extend(
                note
                for experiment, found in stale.items()
                if _paper_of(experiment) == paper
                for note in found
            )
            written = [p for t in out.tables for p in t.write(out_dir)]
            claims = pd.DataFrame([c.__dict__ for c in out.claims])
            if not claims.empty:
                Table("claims", f"{paper}: claims ({scale} scale)", claims).write(out_dir)
            sections.append((paper, scale, out, written, out_dir))
        compute = compute_table(raw, scale)  # every run cost time, reruns included
        compute.write(results_dir / "compute" / scale)
        computes.append((scale, compute))
    if archive_dir is not None:
        archive.archive_records(
            (
                (r.root, r.run_dir)
                for r in raw
                if r.root is not None
                and r.scale in archive.ARCHIVED_SCALES
                and r.scale in scales
                and "reused_from" not in r.run  # a copy: its source is the record
            ),
            archive_dir,
        )
    index = _index(recs, sections, [r for r in roots if r.is_dir()], results_dir, computes)
    path = results_dir / "README.md"
    kept = _sections_of_other_scales(path, scales)
    if kept:
        index += (
            "\n## Other scales, from an earlier build\n\n"
            f"This build covered {', '.join(scales)} only (`--scale`); the sections below are "
            "kept as the earlier report wrote them, from the records it read then.\n\n" + kept
        )
    _write_text(path, index)
    return path


def _paper_of(experiment: str) -> str:
    """The report section an experiment's tables are in."""
    if experiment.startswith("peers_"):
        return "peers"
    if experiment.startswith(("tao2020", "mnist_dpgan", "tune_dpgan")):
        return "tao2020"
    return "deng2026"


def _sections_of_other_scales(index: Path, scales: Sequence[str]) -> str:
    """The ``## <paper>, <scale> scale`` sections of an existing index whose scale is not being
    rebuilt (a ``--scale`` build must not drop the other scales' tables from the index)."""
    if not index.is_file():
        return ""
    others = [s for s in SCALES if s not in scales]
    kept: list[str] = []
    keep = False
    for line in index.read_text(encoding="utf-8").splitlines():
        heading = _SECTION.match(line)
        if heading:  # a section of the index, or one kept by an earlier --scale build
            keep = heading.group(2) in others
            line = f"### {heading.group(1)}, {heading.group(2)} scale"  # under "Other scales"
        elif line.startswith("## "):
            keep = False
        if keep:
            kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


def _parse_time(value: Any) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None


_SECTION = re.compile(r"^#{2,3} (\w+), (\w+) scale$")
_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}_")
_DERIVED_DIRS = ("variants", "snapshots")


def _invocation(run_dir: Path) -> Path:
    """The sweep invocation a record belongs to: its nearest time-stamped ancestor (a multirun
    directory, or a single run's own directory)."""
    for path in (run_dir, *run_dir.parents):
        if _STAMP.match(path.name):
            return path
    return run_dir


def _below(path: Path, roots: Iterable[Path]) -> Path:
    """``path`` below whichever of ``roots`` holds it (else as it is)."""
    for root in roots:
        try:
            return path.resolve().relative_to(root)
        except ValueError:
            continue
    return path


def _derived(run_dir: Path) -> bool:
    return any(part in _DERIVED_DIRS for part in run_dir.parts[-3:])


def compute_table(recs: Sequence[Record], scale: str) -> Table:
    """What each experiment cost at ``scale``, from the records' own clocks: the measured wall
    time of ``make reproduce SCALE=<scale>`` is the sum of its sweeps' walls (they run one after
    the other), so this table is where that number comes from, and which sweeps have no record.

    A sweep's wall is the span from its first run's start to its last run's end, per sweep
    invocation (one multirun directory, or one single run); runs reused from an earlier
    invocation count in that one's span."""
    # lazy: reproduce imports train
    from dpshare.reproduce import (
        COVERED_AT_SCALE,
        EXPERIMENTS,
        MAIN_EXPERIMENT,
        MEDICAL_STANDIN,
        sweeps,
    )

    at_scale = [r for r in recs if r.scale == scale]
    roots = {r.root.resolve() for r in recs if r.root is not None}
    by_experiment: dict[str, list[Record]] = {}
    for r in at_scale:
        by_experiment.setdefault(r.experiment, []).append(r)
    order = [MAIN_EXPERIMENT, *EXPERIMENTS]
    # without MIMIC-III, make reproduce runs the medical sweep on its stand-in data set
    runs_in_reproduce = {MAIN_EXPERIMENT, *sweeps(scale), MEDICAL_STANDIN}
    covered = COVERED_AT_SCALE.get(scale, {})
    names = order + sorted(set(by_experiment) - set(order))
    by_path = {_below_root(r): r for r in at_scale}

    def job_seconds(r: Record) -> float:
        # a reused point costs what its source's run cost
        source = r.run.get("reused_from")
        clock = by_path.get(_below(Path(source), roots), r) if source else r
        start = _parse_time(clock.run.get("started_at"))
        end = _parse_time(clock.run.get("finished_at"))
        return max(0.0, (end - start).total_seconds()) if start and end else 0.0

    rows: list[dict[str, Any]] = []
    total_wall = total_fit = reproduce_wall = one_pass = 0.0
    for name in names:
        group = by_experiment.get(name, [])
        # a release variant or budget snapshot is a record of its parent's training: its time
        # and fit are the parent's, so it counts neither as a run nor in the wall or fit sums
        trained = [r for r in group if not _derived(r.run_dir)]
        invocations: dict[Path, list[Record]] = {}
        for r in trained:
            # a reused point's clock is its source's: it counts in the sweep that ran it; a
            # sweep is named by its path below the records root, the same in the archive
            source = r.run.get("reused_from")
            ran_in = _below(Path(source), roots) if source else _below_root(r)
            invocations.setdefault(_invocation(ran_in), []).append(r)
        wall = 0.0
        for runs in invocations.values():
            starts = [t for t in (_parse_time(r.run.get("started_at")) for r in runs) if t]
            ends = [t for t in (_parse_time(r.run.get("finished_at")) for r in runs) if t]
            if starts and ends:
                wall += max(0.0, (max(ends) - min(starts)).total_seconds())
        fit = sum(float(r.metric("runtime/fit_seconds") or 0.0) for r in trained if r.complete)
        complete = sum(r.complete for r in trained)
        # one pass: the record each table uses for each point (the newest complete one)
        current = deduplicate([r for r in trained if r.complete])
        pass_seconds = sum(job_seconds(r) for r in current)
        if name in runs_in_reproduce:
            one_pass += pass_seconds
        total_wall += wall
        total_fit += fit
        reproduce_wall += wall if name in runs_in_reproduce else 0.0
        if name == MEDICAL_STANDIN:
            in_reproduce = "yes: deng2026_medical without MIMIC-III"
        elif name in runs_in_reproduce:
            in_reproduce = "yes"
        elif name in covered:
            in_reproduce = f"no: its points are {covered[name]}'s snapshots"
        else:
            in_reproduce = "no"
        rows.append(
            {
                "experiment": name,
                "in make reproduce": in_reproduce,
                "runs complete": complete,
                "runs failed or incomplete": len(trained) - complete,
                "wall (min)": round(wall / 60.0, 1) if group else NOT_RUN,
                "fit, summed over runs (min)": round(fit / 60.0, 1) if group else NOT_RUN,
                "one pass: job time (min)": round(pass_seconds / 60.0, 1) if group else NOT_RUN,
            }
        )
    missing = [row["experiment"] for row in rows if row["wall (min)"] == NOT_RUN]
    missing_in_reproduce = [
        m
        for m in missing
        if m in runs_in_reproduce
        and not (m == "deng2026_medical" and by_experiment.get(MEDICAL_STANDIN))
    ]
    notes = [
        "From the records' own clocks (run.json started_at / finished_at): a sweep's wall is "
        "the span of its runs, per sweep invocation; parallel jobs (joblib) overlap in it.",
        f"Total measured: {total_wall / 60.0:.1f} min of wall over the experiments that ran, "
        f"{total_fit / 60.0:.1f} min of fit summed over runs; {reproduce_wall / 60.0:.1f} min "
        f"of wall in the sweeps that `make reproduce` runs at this scale.",
    ]
    notes.append(
        f"One pass of `make reproduce` at this scale: {one_pass / 60.0:.1f} min of job time, "
        "summed over the record each table uses for each point (the newest complete one; a "
        "reused point counts its source's run); with 2 parallel jobs (joblib, the 2-core "
        f"machine the cpu scale is sized for) about {one_pass / 120.0:.1f} min of wall. An "
        "estimate from measured job times, not one uninterrupted run."
    )
    if missing_in_reproduce:
        notes.append(
            "Not run at this scale, so `make reproduce` at this scale would take longer than "
            f"the total above: {', '.join(missing_in_reproduce)}."
        )
    return Table(
        f"compute_{scale}",
        f"Compute: wall time of each experiment ({scale} scale)",
        pd.DataFrame(rows),
        notes,
    )


def _index(
    recs: Sequence[Record],
    sections: Sequence[tuple[str, str, Output, list[Path], Path]],
    roots: Sequence[Path],
    results_dir: Path,
    computes: Sequence[tuple[str, Table]] = (),
) -> str:
    complete = sum(r.complete for r in recs)
    lines = [
        "# Results",
        "",
        "Generated by `python -m dpshare.report` from run records on disk (never from a tracking "
        f"service): {complete} complete and {len(recs) - complete} failed/incomplete run "
        f"record(s) under {', '.join(f'`{_shown(r, results_dir)}`' for r in roots)}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}, code "
        f"{record_files.git_commit() or 'unknown'}. Every table states its scale: smoke-scale "
        "numbers check the plumbing on a 2-core CPU and are not claims about the methods.",
        "",
        "Other tables in this directory (from earlier recipes): `bank_sim_standard_gan/` "
        "(`make reproduce`'s main job), `baselines_eps1/`, `evaluation_bank_sim/`, "
        "`tao2020_feedback/` (Fig. 2 with the feedback controller and a calibrated sigma, "
        "docs/dp_wgan.md).",
        "",
    ]
    for paper, scale, out, _written, _dir in sections:
        # a section without claims (the peer comparison) ran when it drew its figure
        ran = any(not str(c.status).startswith(NOT_RUN) for c in out.claims) or (
            not out.claims and bool(out.figures)
        )
        lines += [f"## {paper}, {scale} scale", ""]
        if not ran:
            lines += [
                f"**{NOT_RUN}**: no complete record of these experiments at {scale} "
                "scale; every table below lists its points as not run"
                + (
                    " (paper scale: hours on a 2-core CPU, a GPU for MNIST: "
                    "`make reproduce SCALE=paper ARGS=trainer=gpu`)."
                    if scale == "paper"
                    else "."
                ),
                "",
            ]
        for table in out.tables:
            md = results_dir / paper / scale / f"{table.id}.md"
            lines.append(
                f"- [{table.title}]({md.relative_to(results_dir)}) "
                f"([csv]({md.with_suffix('.csv').relative_to(results_dir)}), "
                f"[tex]({md.with_suffix('.tex').relative_to(results_dir)}))"
            )
        for caption, fig in out.figures:
            lines.append(f"- figure: [{caption}]({fig.relative_to(results_dir)})")
        lines += [*(f"- note: {n}" for n in out.notes), ""]
        if out.claims:
            lines += ["| claim | source | status | evidence |", "|---|---|---|---|"]
            for c in out.claims:
                lines.append(f"| {c.text} | {c.source} | **{c.status}** | {c.evidence} |")
            lines.append("")
    for scale, table in computes:
        md = Path("compute") / scale / f"{table.id}.md"
        lines += [f"## compute, {scale} scale", "", f"- [{table.title}]({md})", ""]
        lines += [*(f"- {n}" for n in table.notes[1:]), ""]
    return "\n".join(lines)


def _shown(path: Path, results_dir: Path) -> str:
    """A records directory as the index names it: one inside the repository (the archive)
    relative to it, e.g. ``results/records``."""
    try:
        return str(Path(path).resolve().relative_to(Path(results_dir).resolve().parent))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dpshare.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--records",
        type=Path,
        action="append",
        help="where the run records are; repeatable (default: $DPSHARE_OUTPUT or outputs/)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results")
    parser.add_argument("--scale", choices=[*SCALES, "all"], default="all")
    parser.add_argument(
        "--archive",
        type=Path,
        default=None,
        help="the record archive, read as records too and into which the cpu- and paper-scale "
        "records read are archived (default: <out>/records; docs/crash_safety.md)",
    )
    parser.add_argument(
        "--no-archive",
        action="store_true",
        help="neither read nor write the record archive",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    given = args.records is not None
    roots = args.records or [Path(os.environ.get("DPSHARE_OUTPUT", REPO_ROOT / "outputs"))]
    archive_dir = None if args.no_archive else (args.archive or args.out / archive.ARCHIVE_DIR)
    missing = [r for r in roots if not r.is_dir()]
    if given and missing:
        print(f"error: no records directory at {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    if len(missing) == len(roots) and not (archive_dir is not None and archive_dir.is_dir()):
        print(
            f"error: no records directory at {roots[0]} and no record archive"
            + (f" at {archive_dir}" if archive_dir is not None else "")
            + ": run experiments first (make reproduce, or python -m dpshare.train -m "
            "experiment=...)",
            file=sys.stderr,
        )
        return 2
    scales = SCALES if args.scale == "all" else (args.scale,)
    index = build(roots, args.out, scales, archive_dir=archive_dir)
    print(f"report written: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
