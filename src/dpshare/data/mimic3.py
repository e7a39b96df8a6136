"""MIMIC-III v1.4 ICU stays as fixed-length hourly windows (Deng 2026, Sec. 4.1 / Table 2).

Reads the official MIMIC-III v1.4 CSV tables (``.csv`` or ``.csv.gz``; upper- or lower-case
column names) from ``dataset.root`` (default: ``$MIMIC3_ROOT``, else the open demo in
``../shared/datasets/mimic3-demo``) and builds one sample per ICU stay (or per window of a stay):

1. **Cohort** (ICUSTAYS + ADMISSIONS + PATIENTS): adult stays (``min_age``; MIMIC shifts ages
   above 89 to about 300, so ages are capped at ``age_cap``), at least ``min_los_hours`` long,
   optionally each patient's first ICU stay only.
2. **Hourly time series** from CHARTEVENTS, LABEVENTS and OUTPUTEVENTS: each variable lists its
   item ids per table, CareVue and MetaVision ids alike (:data:`DEFAULT_VARIABLES`); the ids are
   checked against D_ITEMS / D_LABITEMS. The two large tables are read in chunks of ``chunksize``
   rows, keeping only the configured items and cohort stays, so memory does not grow with the
   size of CHARTEVENTS.
3. **Preprocessing** (Deng 2026 Sec. 4.1): temperatures in Fahrenheit are converted to Celsius;
   values outside a variable's documented physiologic range are dropped (outlier removal);
   values are averaged (summed for urine output) per hour since ICU admission; each stay's
   series is forward-filled and the hours still empty get the variable's documented normal
   value. Nothing written to disk depends on statistics of the data. Standardization and one-hot
   encoding are left to :class:`~dpshare.data.transformer.TabularTransformer`.
4. **Samples**: the first ``window_hours`` hours of each stay, or with ``window_stride_hours``
   every full window of the stay. The flat table holds static features plus per-variable window
   summaries (``<var>_mean`` ... ``<var>_last``) and, with ``missing_counts``, ``<var>_n_obs``
   (hours with a measurement); ``sequences`` holds the imputed hourly values, shape
   ``(n, window_hours, V)``.
5. **Labels**: in-hospital mortality (ADMISSIONS.HOSPITAL_EXPIRE_FLAG) and a diagnosis group
   (any DIAGNOSES_ICD code of the admission starting with one of ``diagnosis_prefixes``,
   default ``428`` heart failure). ``target`` picks the one released as the TabularData target;
   the other is never a feature (it would leak), only reported in the description and kept by
   :func:`extract_mimic3`.

The extracted samples are cached as Parquet + ``.npy`` under ``cache_dir``, keyed by a hash of the
extraction settings and the sizes / modification times of the input files. Every constant
(ranges, normal values, vocabularies) is documented in ``docs/mimic3.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import MISSING, DictConfig, OmegaConf

from dpshare.config.schema import DatasetConfig
from dpshare.data.base import TabularData
from dpshare.errors import UserInputError

log = logging.getLogger("dpshare.data.mimic3")

#: Bump when the extraction logic changes, so old caches are not reused.
EXTRACTION_VERSION = 1

ROOT_ENV = "MIMIC3_ROOT"
DEFAULT_ROOT = "../shared/datasets/mimic3-demo"

ID_COLUMN = "record_id"
GROUP_COLUMN = "subject_id"
STAY_COLUMN = "icustay_id"
INSTITUTION_COLUMN = "first_careunit"
WINDOW_COLUMN = "window_start_hour"

SUMMARIES = ("mean", "min", "max", "last")
SOURCES = ("chartevents", "labevents", "outputevents")
TARGETS = ("mortality", "diagnosis")

# Public vocabularies of MIMIC-III v1.4 (the documented values of each column, not read from
# the data). A value outside them becomes missing.
GENDERS = ("F", "M")
ADMISSION_TYPES = ("ELECTIVE", "EMERGENCY", "NEWBORN", "URGENT")
INSURANCES = ("Government", "Medicaid", "Medicare", "Private", "Self Pay")
ETHNICITY_GROUPS = ("ASIAN", "BLACK", "HISPANIC", "OTHER", "UNKNOWN", "WHITE")
CARE_UNITS = ("CCU", "CSRU", "MICU", "NICU", "SICU", "TSICU")

STATIC_CATEGORIES: dict[str, tuple[str, ...]] = {
    "gender": GENDERS,
    "admission_type": ADMISSION_TYPES,
    "insurance": INSURANCES,
    "ethnicity": ETHNICITY_GROUPS,
    INSTITUTION_COLUMN: CARE_UNITS,
}


# ----------------------------------------------------------------------------------- config


@dataclass
class MIMIC3Variable:
    """One hourly time-series variable.

    Attributes:
        chartevents / labevents / outputevents: item ids of the variable in each table (CareVue
            and MetaVision ids both; lab ids are shared by the two systems).
        fahrenheit_itemids: ids whose values are in degrees Fahrenheit, converted to Celsius
            before the range check.
        lower, upper: documented physiologic valid range (inclusive, in ``unit``); values outside
            it are dropped as outliers. Also the public bounds of the variable's columns.
        normal: the value of an hour with nothing to carry forward (a documented normal value,
            never a statistic of the data).
        unit: unit after conversion.
        aggregate: ``mean`` (several values in an hour are averaged, gaps forward-filled) or
            ``sum`` (hourly total, e.g. urine output, clipped to ``upper``; an hour without an
            entry is ``normal``, never forward-filled).
    """

    chartevents: list[int] = field(default_factory=list)
    labevents: list[int] = field(default_factory=list)
    outputevents: list[int] = field(default_factory=list)
    fahrenheit_itemids: list[int] = field(default_factory=list)
    lower: float = MISSING
    upper: float = MISSING
    normal: float = MISSING
    unit: str = ""
    aggregate: str = "mean"


def _var(
    *,
    lower: float,
    upper: float,
    normal: float,
    unit: str,
    chart: Iterable[int] = (),
    lab: Iterable[int] = (),
    output: Iterable[int] = (),
    fahrenheit: Iterable[int] = (),
    aggregate: str = "mean",
) -> MIMIC3Variable:
    return MIMIC3Variable(
        chartevents=list(chart),
        labevents=list(lab),
        outputevents=list(output),
        fahrenheit_itemids=list(fahrenheit),
        lower=float(lower),
        upper=float(upper),
        normal=float(normal),
        unit=unit,
        aggregate=aggregate,
    )


# Item ids follow the MIT-LCP mimic-code concepts (pivoted vitals / labs / GCS / urine output);
# valid ranges follow the same code's filters; normal values are adult reference values (see
# docs/mimic3.md for the table and sources).
DEFAULT_VARIABLES: dict[str, MIMIC3Variable] = {
    # --- vital signs (CHARTEVENTS) ---
    "heart_rate": _var(chart=[211, 220045], lower=1, upper=300, normal=80, unit="bpm"),
    "sbp": _var(
        chart=[51, 442, 455, 6701, 220179, 220050], lower=1, upper=400, normal=120, unit="mmHg"
    ),
    "dbp": _var(
        chart=[8368, 8440, 8441, 8555, 220180, 220051], lower=1, upper=300, normal=70, unit="mmHg"
    ),
    "mbp": _var(
        chart=[456, 52, 6702, 443, 220052, 220181, 225312],
        lower=1,
        upper=300,
        normal=85,
        unit="mmHg",
    ),
    "resp_rate": _var(
        chart=[615, 618, 220210, 224690], lower=1, upper=70, normal=16, unit="breaths/min"
    ),
    "temperature": _var(
        chart=[223761, 678, 223762, 676],
        fahrenheit=[223761, 678],
        lower=25,
        upper=45,
        normal=37,
        unit="degC",
    ),
    "spo2": _var(chart=[646, 220277], lower=1, upper=100, normal=98, unit="%"),
    "glucose": _var(
        chart=[807, 811, 1529, 3745, 3744, 225664, 220621, 226537],
        lab=[50809, 50931],
        lower=1,
        upper=2000,
        normal=100,
        unit="mg/dL",
    ),
    "gcs_eye": _var(chart=[184, 220739], lower=1, upper=4, normal=4, unit="score"),
    "gcs_verbal": _var(chart=[723, 223900], lower=1, upper=5, normal=5, unit="score"),
    "gcs_motor": _var(chart=[454, 223901], lower=1, upper=6, normal=6, unit="score"),
    "weight": _var(chart=[762, 763, 224639, 226512], lower=20, upper=300, normal=80, unit="kg"),
    # --- laboratory values (LABEVENTS) ---
    "creatinine": _var(lab=[50912], lower=0.1, upper=150, normal=1.0, unit="mg/dL"),
    "bun": _var(lab=[51006], lower=1, upper=300, normal=15, unit="mg/dL"),
    "sodium": _var(lab=[50983, 50824], lower=50, upper=200, normal=140, unit="mEq/L"),
    "potassium": _var(lab=[50971, 50822], lower=0.5, upper=30, normal=4.2, unit="mEq/L"),
    "chloride": _var(lab=[50902, 50806], lower=50, upper=200, normal=102, unit="mEq/L"),
    "bicarbonate": _var(lab=[50882], lower=1, upper=100, normal=24, unit="mEq/L"),
    "anion_gap": _var(lab=[50868], lower=1, upper=100, normal=12, unit="mEq/L"),
    "calcium": _var(lab=[50893], lower=1, upper=30, normal=9.5, unit="mg/dL"),
    "magnesium": _var(lab=[50960], lower=0.1, upper=20, normal=2.0, unit="mg/dL"),
    "phosphate": _var(lab=[50970], lower=0.1, upper=30, normal=3.5, unit="mg/dL"),
    "hemoglobin": _var(lab=[51222, 50811], lower=1, upper=50, normal=13, unit="g/dL"),
    "hematocrit": _var(lab=[51221, 50810], lower=1, upper=100, normal=40, unit="%"),
    "wbc": _var(lab=[51300, 51301], lower=0.01, upper=1000, normal=7.5, unit="K/uL"),
    "platelets": _var(lab=[51265], lower=1, upper=10000, normal=250, unit="K/uL"),
    "lactate": _var(lab=[50813], lower=0.1, upper=50, normal=1.0, unit="mmol/L"),
    "bilirubin": _var(lab=[50885], lower=0.01, upper=150, normal=0.7, unit="mg/dL"),
    "albumin": _var(lab=[50862], lower=0.1, upper=10, normal=4.0, unit="g/dL"),
    "inr": _var(lab=[51237], lower=0.1, upper=50, normal=1.0, unit="ratio"),
    "pt": _var(lab=[51274], lower=1, upper=150, normal=12, unit="s"),
    "ptt": _var(lab=[51275], lower=1, upper=150, normal=30, unit="s"),
    "ph": _var(chart=[780, 1126, 223830], lab=[50820], lower=6.3, upper=8.4, normal=7.4, unit="pH"),
    "pao2": _var(lab=[50821], lower=1, upper=800, normal=90, unit="mmHg"),
    "paco2": _var(lab=[50818], lower=1, upper=200, normal=40, unit="mmHg"),
    # --- output (OUTPUTEVENTS) ---
    "urine_output": _var(
        output=[
            40055, 43175, 40069, 40094, 40715, 40473, 40085, 40057, 40056, 40405, 40428,
            40096, 40651, 226559, 226560, 226561, 226584, 226563, 226564, 226565, 226567,
            226557, 226558,
        ],
        lower=0,
        upper=5000,
        normal=0,
        unit="mL/h",
        aggregate="sum",
    ),
}  # fmt: skip


@dataclass
class MIMIC3Config(DatasetConfig):
    """MIMIC-III v1.4 ICU stays as hourly windows (docs/mimic3.md).

    Attributes (beyond :class:`~dpshare.config.schema.DatasetConfig`):
        root: folder with the MIMIC-III CSV tables; relative paths are resolved against the
            current directory.
        cache_dir: where extracted samples are cached (``null``: no cache).
        chunksize: rows per chunk when reading CHARTEVENTS / LABEVENTS / OUTPUTEVENTS.
        min_age: youngest age (years) at ICU admission in the cohort.
        age_cap: ages above it (MIMIC shifts ages > 89 to ~300) are set to it.
        min_los_hours: shortest ICU stay in the cohort.
        los_cap_days: ICU length of stay is capped here (feature ``los_days`` and the span that
            strided windows cover).
        first_stay_only: keep each patient's first ICU stay only (before the other filters).
        include_los: release ``los_days`` (known only at discharge: leaky for early prediction).
        window_hours: hours per sample (T).
        window_stride_hours: ``null``: one window per stay (its first ``window_hours`` hours);
            a number: every full window starting at 0, stride, 2 * stride, ...
        max_windows_per_stay: cap on windows per stay (``null``: no cap).
        variables: name -> :class:`MIMIC3Variable` (item ids, valid range, normal value).
        include_variables: names of ``variables`` to use (``null``: all).
        summaries: per-variable window summaries in the flat table (mean | min | max | last).
        missing_counts: add ``<var>_n_obs`` (hours of the window with a measurement).
        target: ``mortality`` | ``diagnosis``: which label is the TabularData target.
        mortality_column: name of the in-hospital mortality label column.
        diagnosis_column: name of the diagnosis label column.
        diagnosis_prefixes: ICD-9 code prefixes (strings; quote them in YAML) of the diagnosis
            group, e.g. ``["428"]`` heart failure.
    """

    name: str = "mimic3"
    root: str = DEFAULT_ROOT
    cache_dir: str | None = None
    chunksize: int = 1_000_000
    min_age: float = 18.0
    age_cap: float = 90.0
    min_los_hours: float = 48.0
    los_cap_days: float = 30.0
    first_stay_only: bool = True
    include_los: bool = True
    window_hours: int = 48
    window_stride_hours: int | None = None
    max_windows_per_stay: int | None = None
    variables: dict[str, MIMIC3Variable] = field(
        default_factory=lambda: {
            k: MIMIC3Variable(**asdict(v)) for k, v in DEFAULT_VARIABLES.items()
        }
    )
    include_variables: list[str] | None = None
    summaries: list[str] = field(default_factory=lambda: list(SUMMARIES))
    missing_counts: bool = True
    target: str = "mortality"
    mortality_column: str = "hospital_mortality"
    diagnosis_column: str = "heart_failure"
    diagnosis_prefixes: list[str] = field(default_factory=lambda: ["428"])


def mimic3_settings(cfg: Any) -> MIMIC3Config:
    """A validated :class:`MIMIC3Config` from a config node, a mapping or a MIMIC3Config."""
    if isinstance(cfg, MIMIC3Config):
        node = OmegaConf.structured(cfg)
    else:
        given = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
        if not isinstance(given, Mapping):
            raise UserInputError(f"dataset config must be a mapping, got {type(cfg).__name__}")
        known = {f.name for f in fields(MIMIC3Config)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise UserInputError(
                f"dataset.mimic3: unknown keys {unknown}; valid keys are {sorted(known)}"
            )
        try:
            node = OmegaConf.merge(OmegaConf.structured(MIMIC3Config), dict(given))
        except Exception as err:  # omegaconf ValidationError and friends
            raise UserInputError(f"dataset.mimic3: invalid config: {err}") from err
    try:
        settings = OmegaConf.to_object(node)
    except Exception as err:
        raise UserInputError(f"dataset.mimic3: invalid config: {err}") from err
    assert isinstance(settings, MIMIC3Config)
    _validate(settings)
    return settings


def _validate(s: MIMIC3Config) -> None:
    def bad(key: str, message: str) -> UserInputError:
        return UserInputError(f"dataset.{key}: {message}")

    if s.target not in TARGETS:
        raise bad("target", f"must be one of {list(TARGETS)}, got {s.target!r}")
    if s.window_hours < 1:
        raise bad("window_hours", f"must be >= 1, got {s.window_hours}")
    if s.window_stride_hours is not None and s.window_stride_hours < 1:
        raise bad("window_stride_hours", f"must be >= 1 or null, got {s.window_stride_hours}")
    if s.max_windows_per_stay is not None and s.max_windows_per_stay < 1:
        raise bad("max_windows_per_stay", f"must be >= 1 or null, got {s.max_windows_per_stay}")
    if s.chunksize < 1:
        raise bad("chunksize", f"must be >= 1, got {s.chunksize}")
    if not 0 <= s.min_age < s.age_cap:
        raise bad("min_age", f"need 0 <= min_age < age_cap, got {s.min_age} and {s.age_cap}")
    if not 0 <= s.min_los_hours < s.los_cap_days * 24:
        raise bad(
            "min_los_hours",
            f"need 0 <= min_los_hours < 24 * los_cap_days, got {s.min_los_hours} and "
            f"{s.los_cap_days}",
        )
    odd = sorted(set(s.summaries) - set(SUMMARIES))
    if odd or not s.summaries:
        raise bad(
            "summaries", f"must be a non-empty subset of {list(SUMMARIES)}, got {s.summaries}"
        )
    if s.mortality_column == s.diagnosis_column:
        raise bad("diagnosis_column", "must differ from dataset.mortality_column")
    if not s.diagnosis_prefixes or not all(str(p).strip() for p in s.diagnosis_prefixes):
        raise bad("diagnosis_prefixes", "must be a non-empty list of ICD-9 prefixes (strings)")
    if not s.variables:
        raise bad("variables", "must name at least one variable")
    if s.include_variables is not None:
        unknown = sorted(set(s.include_variables) - set(s.variables))
        if unknown or not s.include_variables:
            raise bad(
                "include_variables",
                f"unknown variables {unknown} (or empty list); known: {sorted(s.variables)}",
            )
    for name, v in s.variables.items():
        key = f"variables.{name}"
        if not (v.chartevents or v.labevents or v.outputevents):
            raise bad(key, "lists no item ids (chartevents / labevents / outputevents)")
        if not (math.isfinite(v.lower) and math.isfinite(v.upper) and v.lower < v.upper):
            raise bad(key, f"needs finite lower < upper, got {v.lower}, {v.upper}")
        if not v.lower <= v.normal <= v.upper:
            raise bad(key, f"normal {v.normal} lies outside [{v.lower}, {v.upper}]")
        if v.aggregate not in ("mean", "sum"):
            raise bad(key, f"aggregate must be 'mean' or 'sum', got {v.aggregate!r}")
        stray = sorted(set(v.fahrenheit_itemids) - set(v.chartevents))
        if stray:
            raise bad(key, f"fahrenheit_itemids {stray} are not among its chartevents ids")


def _selected_variables(s: MIMIC3Config) -> dict[str, MIMIC3Variable]:
    names = s.include_variables if s.include_variables is not None else list(s.variables)
    return {name: s.variables[name] for name in names}


# ----------------------------------------------------------------------------------- tables


def resolve_root(root: str | os.PathLike[str]) -> Path:
    """``root`` expanded (``~``) and made absolute against the current directory."""
    path = Path(os.path.expanduser(str(root)))
    return path if path.is_absolute() else Path.cwd() / path


def required_tables(s: MIMIC3Config) -> list[str]:
    """The MIMIC-III tables the configuration needs (decided from the config alone)."""
    tables = ["ADMISSIONS", "PATIENTS", "ICUSTAYS", "DIAGNOSES_ICD"]
    variables = _selected_variables(s).values()
    if any(v.chartevents or v.outputevents for v in variables):
        tables.append("D_ITEMS")
    if any(v.labevents for v in variables):
        tables.append("D_LABITEMS")
    for source in SOURCES:
        if any(getattr(v, source) for v in variables):
            tables.append(source.upper())
    return tables


def find_tables(root: Path, tables: Iterable[str]) -> dict[str, Path]:
    """Path of each table (``NAME.csv``, ``NAME.csv.gz``, lower-case names too).

    Raises one :class:`UserInputError` naming every missing table and the folder searched.
    """
    if not root.is_dir():
        raise UserInputError(
            f"MIMIC-III folder {root} does not exist; point dataset.root (or the "
            f"{ROOT_ENV} environment variable) at a folder with the MIMIC-III v1.4 CSV tables"
        )
    found: dict[str, Path] = {}
    missing: list[str] = []
    for table in tables:
        for name in (table, table.lower()):
            hits = [root / f"{name}{ext}" for ext in (".csv", ".csv.gz")]
            hit = next((p for p in hits if p.is_file()), None)
            if hit is not None:
                found[table] = hit
                break
        else:
            missing.append(table)
    if missing:
        raise UserInputError(
            f"MIMIC-III tables missing in {root}: {', '.join(missing)} (looked for "
            "NAME.csv / NAME.csv.gz, upper or lower case); set dataset.root (or the "
            f"{ROOT_ENV} environment variable) to a complete MIMIC-III v1.4 copy"
        )
    return found


def _read(path: Path, columns: Iterable[str], **kwargs: Any) -> Any:
    """``pd.read_csv`` of the wanted columns, matched case-insensitively, renamed to lower case.

    With ``chunksize`` in ``kwargs`` returns an iterator of chunks.
    """
    wanted = {c.lower() for c in columns}
    header = pd.read_csv(path, nrows=0)
    present = {c.lower() for c in header.columns}
    absent = sorted(wanted - present - {"error", "iserror"})  # error flags are optional
    if absent:
        raise UserInputError(
            f"{path} lacks columns {absent}; is it a MIMIC-III v1.4 table? "
            f"(columns found: {list(header.columns)})"
        )
    actual = {c.lower(): c for c in header.columns}
    if "dtype" in kwargs:  # dtype keys given in lower case: map them to the file's spelling
        kwargs["dtype"] = {actual[k]: v for k, v in kwargs["dtype"].items() if k in actual}
    reader = pd.read_csv(path, usecols=lambda c: c.lower() in wanted, low_memory=False, **kwargs)
    if "chunksize" in kwargs:
        return (chunk.rename(columns=str.lower) for chunk in reader)
    return reader.rename(columns=str.lower)


def _times(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, format="%Y-%m-%d %H:%M:%S", errors="coerce")


def _group_ethnicity(raw: pd.Series) -> pd.Series:
    """MIMIC-III's ~40 ETHNICITY strings in six groups (docs/mimic3.md)."""
    text = raw.fillna("").astype(str).str.upper()
    out = pd.Series("OTHER", index=raw.index, dtype=object)
    out[text.str.startswith("WHITE") | text.str.startswith("PORTUGUESE")] = "WHITE"
    out[text.str.startswith("BLACK")] = "BLACK"
    out[text.str.startswith("HISPANIC") | text.str.startswith("SOUTH AMERICAN")] = "HISPANIC"
    out[text.str.startswith("ASIAN")] = "ASIAN"
    unknown = ("UNKNOWN", "UNABLE TO OBTAIN", "PATIENT DECLINED TO ANSWER", "")
    out[text.isin(unknown) | text.str.startswith("UNKNOWN")] = "UNKNOWN"
    return out


def _age_years(dob: pd.Series, intime: pd.Series) -> pd.Series:
    """Whole years between date of birth and ICU admission, from the date strings.

    Computed from year/month/day parts because MIMIC's shifted birth dates of patients older
    than 89 can fall outside the range of ``datetime64[ns]``.
    """
    d = dob.astype(str).str.slice(0, 10).str.split("-", expand=True).astype(float)
    t = intime.astype(str).str.slice(0, 10).str.split("-", expand=True).astype(float)
    before_birthday = (t[1] < d[1]) | ((t[1] == d[1]) & (t[2] < d[2]))
    return t[0] - d[0] - before_birthday.astype(float)


def build_cohort(s: MIMIC3Config, paths: Mapping[str, Path]) -> pd.DataFrame:
    """One row per cohort ICU stay: ids, times, static features and both labels."""
    stays = _read(
        paths["ICUSTAYS"],
        ["subject_id", "hadm_id", "icustay_id", "first_careunit", "intime", "outtime"],
        dtype={"intime": str, "outtime": str},
    )
    stays["intime_text"] = stays["intime"]  # raw string for the age (see _age_years)
    stays["intime"] = _times(stays["intime"])
    stays["outtime"] = _times(stays["outtime"])
    stays = stays.dropna(subset=["icustay_id", "hadm_id", "intime", "outtime"])
    stays = stays.sort_values(["subject_id", "intime", "icustay_id"], kind="stable")
    if s.first_stay_only:
        stays = stays.drop_duplicates("subject_id", keep="first")
    adm = _read(
        paths["ADMISSIONS"],
        ["hadm_id", "admission_type", "insurance", "ethnicity", "hospital_expire_flag"],
    )
    pat = _read(paths["PATIENTS"], ["subject_id", "gender", "dob"], dtype={"dob": str})
    cohort = stays.merge(adm, on="hadm_id", how="inner").merge(pat, on="subject_id", how="inner")
    age = _age_years(cohort["dob"], cohort["intime_text"])
    cohort["age"] = age.clip(upper=s.age_cap)
    cohort["los_hours"] = (cohort["outtime"] - cohort["intime"]) / pd.Timedelta(hours=1)
    keep = (cohort["age"] >= s.min_age) & (cohort["los_hours"] >= s.min_los_hours)
    cohort = cohort[keep].copy()

    dx = _read(paths["DIAGNOSES_ICD"], ["hadm_id", "icd9_code"], dtype={"icd9_code": str})
    prefixes = tuple(str(p).strip() for p in s.diagnosis_prefixes)
    codes = dx["icd9_code"].fillna("").astype(str).str.strip()
    positive = set(dx.loc[codes.str.startswith(prefixes), "hadm_id"])
    cohort[s.diagnosis_column] = cohort["hadm_id"].isin(positive).astype(np.int64)
    cohort[s.mortality_column] = (
        pd.to_numeric(cohort["hospital_expire_flag"], errors="coerce").fillna(0) > 0
    ).astype(np.int64)
    cohort["ethnicity"] = _group_ethnicity(cohort["ethnicity"])
    for col in ("icustay_id", "hadm_id", "subject_id"):
        cohort[col] = cohort[col].astype(np.int64)
    cohort = cohort.sort_values("icustay_id", kind="stable").reset_index(drop=True)
    return cohort


# ---------------------------------------------------------------------------- time series


@dataclass
class _ItemPlan:
    """Item ids of every source mapped to variable positions, plus conversion sets."""

    variables: dict[str, MIMIC3Variable]
    item_var: dict[str, dict[int, int]]  # source -> itemid -> variable index
    fahrenheit: set[int]
    labels: dict[int, str]

    @property
    def lower(self) -> np.ndarray:
        return np.array([v.lower for v in self.variables.values()])

    @property
    def upper(self) -> np.ndarray:
        return np.array([v.upper for v in self.variables.values()])


def _plan_items(s: MIMIC3Config, paths: Mapping[str, Path]) -> _ItemPlan:
    """Map configured item ids to variables, checked against D_ITEMS / D_LABITEMS."""
    variables = _selected_variables(s)
    item_var: dict[str, dict[int, int]] = {src: {} for src in SOURCES}
    for index, (name, v) in enumerate(variables.items()):
        for src in SOURCES:
            for item in getattr(v, src):
                other = item_var[src].get(int(item))
                if other is not None and other != index:
                    raise UserInputError(
                        f"dataset.variables: item {item} is listed under both "
                        f"{list(variables)[other]!r} and {name!r}"
                    )
                item_var[src][int(item)] = index
    labels: dict[int, str] = {}
    problems: list[str] = []
    if "D_ITEMS" in paths:
        d_items = _read(paths["D_ITEMS"], ["itemid", "label", "linksto"])
        d_items["linksto"] = d_items["linksto"].fillna("").astype(str).str.lower()
        known = dict(zip(d_items["itemid"].astype(int), d_items["linksto"], strict=True))
        labels.update(zip(d_items["itemid"].astype(int), d_items["label"].astype(str), strict=True))
        for src in ("chartevents", "outputevents"):
            wrong = sorted(i for i in item_var[src] if known.get(i) != src)
            if wrong:
                problems.append(f"{src.upper()} ids not listed for {src} in D_ITEMS: {wrong}")
    if "D_LABITEMS" in paths:
        d_lab = _read(paths["D_LABITEMS"], ["itemid", "label"])
        labels.update(zip(d_lab["itemid"].astype(int), d_lab["label"].astype(str), strict=True))
        wrong = sorted(set(item_var["labevents"]) - set(d_lab["itemid"].astype(int)))
        if wrong:
            problems.append(f"LABEVENTS ids not in D_LABITEMS: {wrong}")
    if problems:
        raise UserInputError(
            "dataset.variables: " + "; ".join(problems) + "; fix the item ids in the config"
        )
    fahrenheit = {int(i) for v in variables.values() for i in v.fahrenheit_itemids}
    return _ItemPlan(variables, item_var, fahrenheit, labels)


def _event_cells(
    source: str,
    path: Path,
    plan: _ItemPlan,
    spans: pd.DataFrame,
    chunksize: int,
    outliers: np.ndarray,
) -> list[pd.DataFrame]:
    """Per-chunk partial hourly aggregates ``(icustay_id, var, hour) -> value_sum, n``.

    ``spans`` has ``icustay_id, subject_id, intime, horizon_hours``. Only rows of the
    configured items and cohort stays are kept, chunk by chunk. ``outliers`` counts the values
    dropped per variable (updated in place).
    """
    items = plan.item_var[source]
    if not items:
        return []
    value_col = "value" if source == "outputevents" else "valuenum"
    key = "subject_id" if source == "labevents" else "icustay_id"
    error_col = {"chartevents": "error", "outputevents": "iserror"}.get(source)
    columns = [key, "itemid", "charttime", value_col] + ([error_col] if error_col else [])
    item_ids = np.fromiter(items, dtype=np.int64)
    keys = set(spans[key])
    lookup = pd.Series(list(items.values()), index=list(items), dtype=np.int64)
    lower, upper = plan.lower, plan.upper
    fahrenheit = np.fromiter(plan.fahrenheit, dtype=np.int64)
    parts: list[pd.DataFrame] = []
    for chunk in _read(path, columns, chunksize=chunksize, dtype={"charttime": str}):
        chunk = chunk[chunk["itemid"].isin(item_ids) & chunk[key].isin(keys)]
        if error_col in chunk.columns:
            flag = pd.to_numeric(chunk[error_col], errors="coerce").fillna(0)
            chunk = chunk[flag != 1]
        if chunk.empty:
            continue
        value = pd.to_numeric(chunk[value_col], errors="coerce").to_numpy(dtype=np.float64)
        itemid = chunk["itemid"].to_numpy(dtype=np.int64)
        frame = pd.DataFrame(
            {
                key: chunk[key].to_numpy(dtype=np.int64),
                "var": lookup.reindex(itemid).to_numpy(dtype=np.int64),
                "charttime": _times(chunk["charttime"]).to_numpy(),
                "value": np.where(np.isin(itemid, fahrenheit), (value - 32.0) * 5.0 / 9.0, value),
            }
        ).dropna(subset=["value", "charttime"])
        frame = frame.merge(spans, on=key, how="inner")
        hours = (frame["charttime"] - frame["intime"]) / pd.Timedelta(hours=1)
        frame["hour"] = np.floor(hours.to_numpy()).astype(np.int64, copy=False)
        frame = frame[(hours >= 0).to_numpy() & (frame["hour"] < frame["horizon_hours"]).to_numpy()]
        var = frame["var"].to_numpy()
        valid = (frame["value"].to_numpy() >= lower[var]) & (
            frame["value"].to_numpy() <= upper[var]
        )
        np.add.at(outliers, var[~valid], 1)
        frame = frame[valid]
        parts.append(
            frame.groupby(["icustay_id", "var", "hour"], sort=False)["value"]
            .agg(value_sum="sum", n="count")
            .reset_index()
        )
    return parts


def _windows(s: MIMIC3Config, cohort: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per stay: number of windows and the hours they span (horizon)."""
    usable = np.minimum(cohort["los_hours"].to_numpy(), s.los_cap_days * 24.0)
    if s.window_stride_hours is None:
        n_windows = np.ones(len(cohort), dtype=np.int64)
    else:
        extra = np.floor((usable - s.window_hours) / s.window_stride_hours)
        n_windows = 1 + np.maximum(extra, 0).astype(np.int64)
        if s.max_windows_per_stay is not None:
            n_windows = np.minimum(n_windows, s.max_windows_per_stay)
    stride = s.window_stride_hours or 0
    horizon = (n_windows - 1) * stride + s.window_hours
    return n_windows, horizon.astype(np.int64)


# -------------------------------------------------------------------------------- extract


@dataclass
class MIMIC3Extract:
    """Every extracted sample, both labels and the ids (before target choice / subsampling).

    Attributes:
        samples: one row per sample; columns ``icustay_id``, ``subject_id``, ``hadm_id``,
            optional ``window_start_hour``, the static features, the window summaries and both
            label columns. Index: ``record_id``.
        sequences: float32 ``(n, window_hours, V)`` imputed hourly values.
        sequence_features: the V variable names.
        info: extraction facts (item labels, outliers dropped, cache key, timing).
    """

    samples: pd.DataFrame
    sequences: np.ndarray
    sequence_features: list[str]
    info: dict[str, Any]


def extract_mimic3(cfg: Any) -> MIMIC3Extract:
    """Extract (or read from the cache) every sample the configuration defines."""
    s = mimic3_settings(cfg)
    started = time.perf_counter()
    root = resolve_root(s.root)
    paths = find_tables(root, required_tables(s))
    key = cache_key(s, paths)
    cache = None if not s.cache_dir else resolve_root(s.cache_dir) / key
    if cache is not None and (cache / "meta.json").is_file():
        extract = _read_cache(s, cache)
        extract.info["cache_hit"] = True
        extract.info["seconds"] = time.perf_counter() - started
        log.info("MIMIC-III samples read from cache %s", cache)
        return extract
    extract = _extract(s, paths)
    extract.info.update(cache_key=key, root=str(root), cache_hit=False)
    if cache is not None:
        _write_cache(extract, cache)
    extract.info["seconds"] = time.perf_counter() - started
    log.info(
        "MIMIC-III: %d samples extracted from %s in %.1f s",
        len(extract.samples),
        root,
        extract.info["seconds"],
    )
    return extract


def _extract(s: MIMIC3Config, paths: Mapping[str, Path]) -> MIMIC3Extract:
    plan = _plan_items(s, paths)
    variables = plan.variables
    names = list(variables)
    cohort = build_cohort(s, paths)
    if cohort.empty:
        raise UserInputError(
            f"dataset.mimic3: no ICU stay in {resolve_root(s.root)} passes the cohort filters "
            f"(min_age={s.min_age}, min_los_hours={s.min_los_hours}, "
            f"first_stay_only={s.first_stay_only}); relax them"
        )
    n_windows, horizon = _windows(s, cohort)
    spans = cohort[["icustay_id", "subject_id", "intime"]].assign(horizon_hours=horizon)
    outliers = np.zeros(len(names), dtype=np.int64)
    parts: list[pd.DataFrame] = []
    for source in SOURCES:
        if source.upper() in paths:
            parts += _event_cells(source, paths[source.upper()], plan, spans, s.chunksize, outliers)

    # The hourly grid of every stay, stays stacked: row offset[i] + hour.
    n_vars = len(names)
    offset = np.concatenate([[0], np.cumsum(horizon)[:-1]])
    grid = np.full((int(horizon.sum()), n_vars), np.nan, dtype=np.float64)
    if parts:
        cells = (
            pd.concat(parts, ignore_index=True)
            .groupby(["icustay_id", "var", "hour"], sort=False)[["value_sum", "n"]]
            .sum()
            .reset_index()
        )
        stay_pos = pd.Series(np.arange(len(cohort)), index=cohort["icustay_id"].to_numpy())
        rows = offset[stay_pos.reindex(cells["icustay_id"].to_numpy()).to_numpy()] + cells["hour"]
        var = cells["var"].to_numpy()
        is_sum = np.array([v.aggregate == "sum" for v in variables.values()])
        values = np.where(
            is_sum[var],
            np.minimum(cells["value_sum"], plan.upper[var]),
            cells["value_sum"] / cells["n"],
        )
        grid[rows.to_numpy(), var] = values
    observed = ~np.isnan(grid)
    stay_of_row = np.repeat(np.arange(len(cohort)), horizon)
    mean_vars = [i for i, v in enumerate(variables.values()) if v.aggregate == "mean"]
    if mean_vars:
        filled = pd.DataFrame(grid[:, mean_vars]).groupby(stay_of_row).ffill()
        grid[:, mean_vars] = filled.to_numpy()
    normal = np.array([v.normal for v in variables.values()])
    grid = np.where(np.isnan(grid), normal[None, :], grid)

    # Windows: (n_samples, T) row indices into the grid.
    sample_stay = np.repeat(np.arange(len(cohort)), n_windows)
    first_window = np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    window_index = np.arange(len(sample_stay)) - first_window
    start_hour = window_index * (s.window_stride_hours or 0)
    rows = offset[sample_stay][:, None] + start_hour[:, None] + np.arange(s.window_hours)[None, :]
    sequences = grid[rows].astype(np.float32)
    n_obs = observed[rows].sum(axis=1)

    base = cohort.iloc[sample_stay].reset_index(drop=True)
    samples = pd.DataFrame(
        {
            STAY_COLUMN: base["icustay_id"].to_numpy(),
            GROUP_COLUMN: base["subject_id"].to_numpy(),
            "hadm_id": base["hadm_id"].to_numpy(),
        }
    )
    multi = s.window_stride_hours is not None
    if multi:
        samples[WINDOW_COLUMN] = start_hour.astype(np.int64)
    samples["age"] = base["age"].to_numpy(dtype=np.float64)
    for col in ("gender", "admission_type", "insurance", "ethnicity", INSTITUTION_COLUMN):
        samples[col] = base[col].to_numpy(dtype=object)
    if s.include_los:
        samples["los_days"] = np.minimum(base["los_hours"].to_numpy() / 24.0, s.los_cap_days)
    summary_columns: dict[str, np.ndarray] = {}
    as64 = sequences.astype(np.float64)
    stats = {
        "mean": lambda: as64.mean(axis=1),
        "min": lambda: as64.min(axis=1),
        "max": lambda: as64.max(axis=1),
        "last": lambda: as64[:, -1, :],
    }
    computed = {stat: stats[stat]() for stat in s.summaries}
    for j, name in enumerate(names):
        for stat in s.summaries:
            summary_columns[f"{name}_{stat}"] = computed[stat][:, j]
        if s.missing_counts:
            summary_columns[f"{name}_n_obs"] = n_obs[:, j].astype(np.int64)
    samples = pd.concat([samples, pd.DataFrame(summary_columns)], axis=1)
    samples[s.mortality_column] = base[s.mortality_column].to_numpy(dtype=np.int64)
    samples[s.diagnosis_column] = base[s.diagnosis_column].to_numpy(dtype=np.int64)
    if multi:
        ids = [f"{i}:{h}" for i, h in zip(samples[STAY_COLUMN], start_hour, strict=True)]
        samples.index = pd.Index(ids, dtype=object, name=ID_COLUMN)
    else:
        samples.index = pd.Index(samples[STAY_COLUMN].to_numpy(), name=ID_COLUMN)
    samples = _apply_dtypes(samples)
    used_items = {
        src: {str(i): plan.labels.get(i, "") for i in plan.item_var[src]} for src in SOURCES
    }
    info = {
        "n_stays": len(cohort),
        "n_samples": len(samples),
        "n_patients": int(cohort["subject_id"].nunique()),
        "outliers_dropped": dict(zip(names, outliers.tolist(), strict=True)),
        "observed_hour_fraction": dict(
            zip(names, observed.mean(axis=0).round(4).tolist(), strict=True)
        ),
        "items": used_items,
    }
    return MIMIC3Extract(samples, sequences, names, info)


def _apply_dtypes(samples: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns over their public vocabularies (other values become missing)."""
    out = samples.copy()
    for col, cats in STATIC_CATEGORIES.items():
        out[col] = pd.Categorical(out[col].astype(object), categories=list(cats))
    return out


# ---------------------------------------------------------------------------------- cache


def cache_key(s: MIMIC3Config, paths: Mapping[str, Path]) -> str:
    """Hash of the extraction settings and the input files' names, sizes and mtimes."""
    settings = asdict(s)
    for unused in (
        "name", "root", "cache_dir", "chunksize", "target", "val_fraction", "test_fraction",
        "split_seed", "stratify", "reference_fraction",
    ):  # fmt: skip
        settings.pop(unused, None)
    settings["variables"] = {k: asdict(v) for k, v in _selected_variables(s).items()}
    settings.pop("include_variables")
    files = {}
    for table, path in sorted(paths.items()):
        stat = path.stat()
        files[table] = [path.name, stat.st_size, stat.st_mtime_ns]
    payload = json.dumps(
        {"version": EXTRACTION_VERSION, "settings": settings, "files": files},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _write_cache(extract: MIMIC3Extract, cache: Path) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache.name}-", dir=cache.parent))
    try:
        frame = extract.samples.reset_index()
        frame.to_parquet(tmp / "samples.parquet", index=False)
        np.save(tmp / "sequences.npy", extract.sequences)
        meta = {
            "sequence_features": extract.sequence_features,
            "index_is_str": bool(extract.samples.index.dtype == object),
            "info": extract.info,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        try:
            tmp.rename(cache)
        except OSError:  # another process wrote it first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_cache(s: MIMIC3Config, cache: Path) -> MIMIC3Extract:
    meta = json.loads((cache / "meta.json").read_text())
    frame = pd.read_parquet(cache / "samples.parquet")
    index = frame.pop(ID_COLUMN)
    index = index.astype(object) if meta["index_is_str"] else index.astype(np.int64)
    frame.index = pd.Index(index.to_numpy(), name=ID_COLUMN)
    for col in frame.columns:
        if col not in STATIC_CATEGORIES and pd.api.types.is_string_dtype(frame[col].dtype):
            frame[col] = frame[col].astype(object)
    sequences = np.load(cache / "sequences.npy")
    return MIMIC3Extract(_apply_dtypes(frame), sequences, meta["sequence_features"], meta["info"])


# --------------------------------------------------------------------------------- public


def public_domain(cfg: Any) -> Any:
    """The public domain of every released column, from the configuration only.

    Window summaries: the variable's valid range (every hourly value, imputed ones included,
    lies in it). ``<var>_n_obs``: ``[0, window_hours]``. ``age``: ``[min_age, age_cap]``.
    ``los_days``: ``[min_los_hours / 24, los_cap_days]``. ``window_start_hour``:
    ``[0, 24 * los_cap_days]``. Categorical columns: the MIMIC-III vocabularies above. Both
    labels: ``[0, 1]``. Nothing is read from the records.
    """
    from dpshare.data.transformer import PublicDomain

    s = mimic3_settings(cfg)
    bounds: dict[str, tuple[float, float]] = {"age": (float(s.min_age), float(s.age_cap))}
    if s.window_stride_hours is not None:
        bounds[WINDOW_COLUMN] = (0.0, float(s.los_cap_days * 24))
    if s.include_los:
        bounds["los_days"] = (float(s.min_los_hours) / 24.0, float(s.los_cap_days))
    for name, v in _selected_variables(s).items():
        for stat in s.summaries:
            bounds[f"{name}_{stat}"] = (float(v.lower), float(v.upper))
        if s.missing_counts:
            bounds[f"{name}_n_obs"] = (0.0, float(s.window_hours))
    categories: dict[str, tuple[Any, ...]] = dict(STATIC_CATEGORIES)
    categories[s.mortality_column] = (0, 1)
    categories[s.diagnosis_column] = (0, 1)
    return PublicDomain(bounds=bounds, categories=categories)


def load_mimic3(cfg: Any, *, max_records: int | None) -> TabularData:
    """MIMIC-III ICU samples as a :class:`TabularData` (docs/mimic3.md).

    Args:
        cfg: a ``dataset`` config node (:class:`MIMIC3Config` fields).
        max_records: cap on the number of samples: a stratified subset seeded by
            ``split_seed`` (``None``: all).

    Returns:
        ``frame``: static features + window summaries + the target (the other label is left
        out: it would leak); index ``record_id`` (``icustay_id``, or ``"icustay_id:start_hour"``
        with strided windows); ``group_ids``: ``subject_id``; ``institution_column``:
        ``first_careunit``; ``sequences``: ``(n, window_hours, V)`` float32 imputed hourly
        values; ``public_domain`` from :func:`public_domain`.
    """
    s = mimic3_settings(cfg)
    extract = extract_mimic3(s)
    samples = extract.samples
    target = s.mortality_column if s.target == "mortality" else s.diagnosis_column
    other = s.diagnosis_column if s.target == "mortality" else s.mortality_column
    if samples[target].nunique() < 2:
        raise UserInputError(
            f"dataset.mimic3: target {target!r} has a single class in the "
            f"{len(samples)} extracted samples; choose another dataset.target or "
            "dataset.diagnosis_prefixes, or relax the cohort filters"
        )
    dropped = [STAY_COLUMN, GROUP_COLUMN, "hadm_id", other]
    frame = samples.drop(columns=dropped)
    domain = public_domain(s)
    domain = type(domain)(
        bounds={k: v for k, v in domain.bounds.items() if k in frame.columns},
        categories={k: v for k, v in domain.categories.items() if k in frame.columns},
    )
    windows = "first window" if s.window_stride_hours is None else "strided windows"
    data = TabularData(
        name="mimic3",
        frame=frame,
        target=target,
        positive_label=1,
        group_ids=samples[GROUP_COLUMN].to_numpy(dtype=np.int64),
        institution_column=INSTITUTION_COLUMN,
        public_domain=domain,
        sequences=extract.sequences,
        sequence_features=list(extract.sequence_features),
        sequence_bounds={
            name: (float(v.lower), float(v.upper)) for name, v in _selected_variables(s).items()
        },
        description=(
            f"MIMIC-III ICU stays: {len(samples)} samples ({windows} of {s.window_hours} h) "
            f"from {extract.info['n_stays']} stays, {len(extract.sequence_features)} hourly "
            f"variables; target {target} (rate {samples[target].mean():.3f}); "
            f"{other} rate {samples[other].mean():.3f} (not released)"
        ),
    )
    return data.subsample(max_records, seed=s.split_seed)
