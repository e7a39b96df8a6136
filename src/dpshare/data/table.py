"""Real tables from files: a generic loader (``dataset=table``) and two public datasets.

:func:`load_table` reads a CSV, CSV.gz, TSV, Parquet file or a ``.zip`` holding one CSV, infers
each column's kind (``continuous`` | ``categorical`` | ``datetime``), applies the user's
corrections and returns a :class:`~dpshare.data.base.TabularData`. The inferred schema is logged
at load time; ``python -m dpshare.data.table <path> [--target col]`` prints it, with the
override snippet to paste, before any run. Every problem with the file or the config raises
:class:`~dpshare.errors.UserInputError` with one message that says what to fix.

Type inference (on the whole file, before ``max_records`` subsampling, so a smoke run and a full
run see the same schema):

* ``bool`` -> categorical; a text column of ``True``/``False`` with missing values becomes the
  nullable ``boolean`` dtype, categorical.
* integers -> categorical when they take at most ``categorical_max_unique`` distinct values,
  else continuous. A float column whose present values are all whole numbers and that has
  missing values (a CSV integer column with gaps) becomes the nullable ``Int64`` dtype and follows
  the integer rule, so synthetic values decode to whole numbers.
* other floats -> continuous.
* text -> datetime only when *every* present value parses as a date with one format and contains
  a digit; numbers are never read as dates. Otherwise categorical. A text column with more than
  ``max_categories`` distinct values is handled by ``high_cardinality``: ``error`` (default; the
  message names the column and the fixes), ``drop`` (with a warning) or ``other`` (keep the
  ``max_categories - 1`` most frequent values, the rest becomes ``"other"``; the kept set is read
  from the records, so this step is not differentially private: prefer a public grouping).
* ``column_types`` overrides any of this (``drop`` removes the column).

Decisions (documented in docs/datasets.md):

* ``na_values`` replaces pandas' default missing markers (which include ``"None"`` and
  ``"NA"``: words that are real categories in some tables, e.g. diabetes130's ``A1Cresult``).
* rows whose target is missing are dropped with a logged count (``drop_missing_target``); set it
  false to make that an error.
* a column with no present value is dropped with a warning (``drop_empty_columns``); set it false
  to make that an error.
* record identifiers: ``id_column`` (unique, no missing values) or the 0-based data row number in
  the file. Identifier and group columns never enter the released frame.
* ``max_records``: a seeded (``split_seed``) stratified subset, :meth:`TabularData.subsample`.

``public_domain`` (column bounds and categories for a DP fit of the transformer) comes from the
config only, never from the data; without it :attr:`TabularData.public_domain` is ``None`` and a
DP run says what to declare.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import io
import logging
import lzma
import re
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from pandas.api.types import (
    is_bool_dtype,
    is_datetime64_any_dtype,
    is_float_dtype,
    is_integer_dtype,
    is_numeric_dtype,
)
from pandas.tseries.api import guess_datetime_format

from dpshare.config.schema import DatasetConfig
from dpshare.data.base import TabularData
from dpshare.data.transformer import PublicDomain
from dpshare.errors import UserInputError

__all__ = [
    "BankMarketingConfig",
    "ColumnSchema",
    "Diabetes130Config",
    "TableConfig",
    "icd9_chapter",
    "infer_schema",
    "load_bank_marketing",
    "load_diabetes130",
    "load_table",
    "read_table",
]

log = logging.getLogger("dpshare.data.table")

KINDS: tuple[str, ...] = ("continuous", "categorical", "datetime")
COLUMN_TYPES: tuple[str, ...] = (*KINDS, "drop")
HIGH_CARDINALITY: tuple[str, ...] = ("error", "drop", "other")
DEFAULT_NA_VALUES: tuple[str, ...] = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "?")
OTHER_CATEGORY = "other"

_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".tab", ".dat")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_SNIFF_BYTES = 64 * 1024
_NUMBER = re.compile(r"[+-]?\d+([.,]\d+)?")


# ----------------------------------------------------------------------------------- configs


_EMPTY_FIX = "; point dataset.path at a table with a header row and at least one data row"


@dataclass
class TableConfig(DatasetConfig):
    """``dataset=table``: any CSV / TSV / Parquet / zipped CSV with a class label.

    Keys equal :func:`load_table`'s reading and typing options (docs/datasets.md).
    """

    name: str = "table"
    path: str = MISSING  # relative paths resolve against the current directory
    member: str | None = None  # the CSV inside a .zip (None: the only one)
    sep: str | None = None  # None: sniffed (',' ';' tab '|'); tab for .tsv
    encoding: str = "utf-8"
    na_values: list[str] = field(default_factory=lambda: list(DEFAULT_NA_VALUES))
    target: str = MISSING
    target_map: dict[str, Any] | None = None  # raw value (as text) -> label
    positive_label: Any = None  # None: the minority class
    drop_missing_target: bool = True  # False: rows with a missing target are an error
    id_column: str | None = None  # None: the data row number is the record id
    group_column: str | None = None  # sequence key (e.g. patient); never released
    time_column: str | None = None
    institution_column: str | None = None
    drop_columns: list[str] = field(default_factory=list)
    column_types: dict[str, str] = field(default_factory=dict)  # col -> kind | drop
    categorical_max_unique: int = 10  # integers with at most this many values: categorical
    max_categories: int = 100  # most distinct values of a text column
    high_cardinality: str = "error"  # error | drop | other
    drop_empty_columns: bool = True  # False: a column with no value is an error
    public_domain: dict[str, Any] | None = None  # col -> {bounds} | {categories} | {start, end}
    description: str = ""


@dataclass
class BankMarketingConfig(TableConfig):
    """UCI Bank Marketing, bank-additional-full (Moro, Cortez & Rita 2014); docs/datasets.md."""

    name: str = "bank_marketing"
    path: str = "../shared/datasets/bank-marketing/bank-additional-full.csv.gz"
    sep: str | None = ";"
    na_values: list[str] = field(default_factory=lambda: [""])  # "unknown" is a category
    target: str = "y"
    positive_label: Any = "yes"
    # `duration` is known only after the call that decides `y` (UCI names file, note 11).
    drop_columns: list[str] = field(default_factory=lambda: ["duration"])
    column_types: dict[str, str] = field(default_factory=lambda: {"previous": "continuous"})


@dataclass
class Diabetes130Config(TableConfig):
    """UCI Diabetes 130-US hospitals 1999-2008 (Strack et al. 2014); docs/datasets.md."""

    name: str = "diabetes130"
    path: str = "../shared/datasets/diabetes130/dataset_diabetes.zip"
    member: str | None = "diabetic_data.csv"
    sep: str | None = ","
    na_values: list[str] = field(default_factory=lambda: ["?"])
    target: str = "readmitted"
    target_map: dict[str, Any] | None = field(default_factory=lambda: {"<30": 1, ">30": 0, "NO": 0})
    positive_label: Any = 1
    target_name: str = "readmitted_30d"  # the label column after target_map
    id_column: str | None = "encounter_id"
    group_column: str | None = "patient_nbr"
    column_types: dict[str, str] = field(
        default_factory=lambda: {
            "admission_type_id": "categorical",
            "discharge_disposition_id": "categorical",
            "admission_source_id": "categorical",
            "time_in_hospital": "continuous",
            "num_procedures": "continuous",
        }
    )
    diagnosis_columns: list[str] = field(default_factory=lambda: ["diag_1", "diag_2", "diag_3"])
    diagnosis_grouping: str = "chapter"  # chapter | none (raw ICD-9 codes: ~700-800 values)


# ------------------------------------------------------------------------------------ reading


def resolve_path(path: str | Path) -> Path:
    """``path`` with ``~`` expanded, made absolute against the current directory."""
    return Path(path).expanduser().resolve()


def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    """A config value as a plain Python object (DictConfig, dataclass or mapping)."""
    if isinstance(cfg, DictConfig):
        if key not in cfg or OmegaConf.is_missing(cfg, key):
            return default
        value = cfg[key]
    elif isinstance(cfg, Mapping):
        value = cfg.get(key, default)
    else:
        value = getattr(cfg, key, default)
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    return value


def _compressed_opener(path: Path) -> Callable[..., Any] | None:
    return _COMPRESSED.get(path.suffix.lower())


def _text_kind(path: Path) -> str:
    """``parquet``, ``zip`` or ``text`` from the file name (compression suffixes skipped)."""
    name = path.name.lower()
    for suffix in _COMPRESSED:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(".zip"):
        return "zip"
    return "text"


def _zip_member(archive: zipfile.ZipFile, member: str | None, path: Path) -> str:
    names = [
        n
        for n in archive.namelist()
        if not n.endswith("/") and not n.startswith("__MACOSX/") and "/." not in f"/{n}"
    ]
    if member is not None:
        matches = [n for n in names if n == member or n.rsplit("/", 1)[-1] == member]
        if len(matches) != 1:
            raise UserInputError(
                f"{path}: the zip archive has no single member named {member!r}; its files are "
                f"{names}; set dataset.member to one of them"
            )
        return matches[0]
    tables = [n for n in names if n.lower().endswith(_TEXT_SUFFIXES)]
    if len(tables) != 1:
        raise UserInputError(
            f"{path}: the zip archive holds {len(tables)} CSV/TSV files ({tables or names}); "
            "set dataset.member to the one to load"
        )
    return tables[0]


def _read_bytes(path: Path, member: str | None) -> bytes:
    """The raw (decompressed) text bytes of a text table."""
    try:
        if _text_kind(path) == "zip":
            try:
                with zipfile.ZipFile(path) as archive:
                    return archive.read(_zip_member(archive, member, path))
            except zipfile.BadZipFile as err:
                raise UserInputError(f"{path}: not a readable zip archive ({err})") from err
        opener = _compressed_opener(path)
        if opener is not None:
            with opener(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, lzma.LZMAError) as err:
        raise UserInputError(
            f"{path}: could not read the file ({err}); is it really "
            f"{path.suffix or 'a CSV'} and not truncated?"
        ) from err


def _sniff_sep(sample: str, path: Path) -> str:
    lines = [line for line in sample.splitlines() if line.strip()][:50]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        # One column, or too few lines to tell: count candidates in the header.
        header = lines[0]
        counts = {d: header.count(d) for d in ",;\t|"}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] > 0 else ","


def read_table(
    path: str | Path,
    *,
    sep: str | None = None,
    member: str | None = None,
    na_values: Sequence[str] = DEFAULT_NA_VALUES,
    encoding: str = "utf-8",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a table file as pandas would, with clear errors.

    Args:
        path: CSV, TSV, CSV/TSV compressed with gzip/bz2/xz, Parquet, or a ``.zip`` holding a
            CSV. Relative paths resolve against the current directory.
        sep: field separator; ``None`` sniffs it from the first 64 KiB (tab for ``.tsv``).
        member: the file inside a ``.zip`` (full name or base name).
        na_values: the ONLY strings read as missing (pandas' defaults are switched off).
        encoding: text encoding.

    Returns:
        The frame (columns named as in the header, surrounding whitespace stripped) and facts
        about the read (``path``, ``format``, ``sep``).
    """
    resolved = resolve_path(path)
    if not resolved.is_file():
        where = "exists but is not a file" if resolved.exists() else "does not exist"
        raise UserInputError(
            f"data file {str(path)!r} {where} (resolved to {resolved}; relative paths resolve "
            f"against the current directory, {Path.cwd()}); set dataset.path to the file"
        )
    info: dict[str, Any] = {"path": str(resolved)}
    if resolved.stat().st_size == 0:
        raise UserInputError(f"data file {resolved} is empty (0 bytes){_EMPTY_FIX}")
    kind = _text_kind(resolved)
    if kind == "parquet":
        try:
            frame = pd.read_parquet(resolved)
        except Exception as err:  # pyarrow raises many error types for a bad file
            raise UserInputError(
                f"{resolved}: could not read it as Parquet ({type(err).__name__}: {err})"
            ) from err
        info.update(format="parquet", sep=None)
    else:
        raw = _read_bytes(resolved, member)
        if not raw.strip():
            raise UserInputError(f"data file {resolved} is empty (no header, no rows){_EMPTY_FIX}")
        head = raw[:_SNIFF_BYTES]
        if b"\x00" in head:
            raise UserInputError(
                f"{resolved}: this is not a text table (it holds binary data); give a CSV, TSV, "
                "Parquet or zipped CSV file"
            )
        try:
            sample = head.decode(
                encoding, errors="strict" if len(raw) <= _SNIFF_BYTES else "ignore"
            )
        except (UnicodeDecodeError, LookupError) as err:
            raise UserInputError(
                f"{resolved}: could not decode the text as {encoding!r} ({err}); set "
                "dataset.encoding (e.g. latin-1)"
            ) from err
        if sep is None:
            name = resolved.name.lower()
            sep = "\t" if ".tsv" in name or ".tab" in name else _sniff_sep(sample, resolved)
        try:
            frame = pd.read_csv(
                io.BytesIO(raw),
                sep=sep,
                encoding=encoding,
                na_values=list(na_values),
                keep_default_na=False,
                low_memory=False,
            )
        except pd.errors.EmptyDataError as err:
            raise UserInputError(
                f"data file {resolved} is empty (no header, no rows){_EMPTY_FIX}"
            ) from err
        except pd.errors.ParserError as err:
            raise UserInputError(
                f"{resolved}: could not parse it as a table with separator {sep!r}: "
                f"{str(err).strip()}. "
                "Rows must all have the header's number of fields; check the separator "
                "(dataset.sep) and quoting"
            ) from err
        except (UnicodeDecodeError, LookupError) as err:
            raise UserInputError(
                f"{resolved}: could not decode the text as {encoding!r} ({err}); set "
                "dataset.encoding (e.g. latin-1)"
            ) from err
        info.update(format="zip" if kind == "zip" else "text", sep=sep)
    frame.columns = pd.Index([str(c).strip() for c in frame.columns])
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise UserInputError(f"{resolved}: duplicate column names {duplicated}; rename them")
    if len(frame) == 0:
        raise UserInputError(
            f"data file {resolved} has a header ({list(frame.columns)}) but no data rows"
            f"{_EMPTY_FIX}"
        )
    if frame.shape[1] < 2:
        raise UserInputError(
            f"{resolved}: found a single column {list(frame.columns)} with separator "
            f"{info['sep']!r}; a table needs a target and at least one feature. Set dataset.sep "
            "to the file's separator"
        )
    return frame, info


# --------------------------------------------------------------------------- schema inference


@dataclass(frozen=True)
class ColumnSchema:
    """One row of the inferred schema: what a user reads and corrects."""

    column: str
    dtype: str
    kind: str  # continuous | categorical | datetime | drop | target
    n_unique: int
    missing_share: float
    note: str = ""


def _digits_everywhere(values: np.ndarray) -> bool:
    return all(re.search(r"\d", str(v)) is not None for v in values)


def _parse_datetimes(series: pd.Series) -> pd.Series | None:
    """``series`` as tz-naive datetime64 if every present value parses with one date format.

    The format is guessed from the first present value (``guess_datetime_format``); values
    without a digit or that are plain numbers never count as dates.
    """
    present = series.dropna()
    if present.empty:
        return None
    uniques = [str(v) for v in present.unique()]
    sample = uniques[:1000]
    if not _digits_everywhere(sample) or any(_NUMBER.fullmatch(str(v)) for v in sample):
        return None
    fmt = guess_datetime_format(str(uniques[0]))
    if fmt is None:
        return None
    parsed = pd.to_datetime(series.astype(object), format=fmt, errors="coerce", utc=None)
    if parsed.notna().sum() != len(present):
        return None
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed


def _as_boolean(series: pd.Series) -> pd.Series | None:
    """A text/object column of True/False (any case) with gaps as nullable ``boolean``."""
    present = series.dropna()
    if present.empty:
        return None
    values = {str(v).strip().lower() for v in present.unique()}
    if not values <= {"true", "false"}:
        return None
    mapped = series.map(
        lambda v: pd.NA if pd.isna(v) else str(v).strip().lower() == "true", na_action=None
    )
    return mapped.astype("boolean")


def _whole_numbers(series: pd.Series) -> bool:
    values = series.dropna().to_numpy(dtype=np.float64)
    return bool(np.isfinite(values).all() and (np.floor(values) == values).all())


def _convert_and_kind(
    name: str, series: pd.Series, override: str | None, *, categorical_max_unique: int
) -> tuple[pd.Series, str, str]:
    """The column's released form, its kind and a note saying why."""
    dtype = series.dtype
    if override == "datetime":
        parsed = series if is_datetime64_any_dtype(dtype) else _parse_datetimes(series)
        if parsed is None:
            bad = series.dropna().astype(str).head(3).tolist()
            raise UserInputError(
                f"column {name!r} is declared datetime in dataset.column_types but its values "
                f"do not all parse as dates with one format (e.g. {bad}); fix the column or "
                "declare it categorical"
            )
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        return parsed, "datetime", "declared in column_types"
    if override == "continuous" and not (is_numeric_dtype(dtype) or is_bool_dtype(dtype)):
        numbers = pd.to_numeric(series, errors="coerce")
        bad = series[numbers.isna() & series.notna()]
        if len(bad):
            examples = bad.astype(str).unique()[:3].tolist()
            raise UserInputError(
                f"column {name!r} is declared continuous in dataset.column_types but "
                f"{len(bad)} value(s) are not numbers (e.g. {examples}); "
                "add them to dataset.na_values or declare the column categorical"
            )
        series, dtype = numbers, numbers.dtype
    if override is not None:
        if is_float_dtype(dtype) and series.isna().any() and _whole_numbers(series):
            series = series.astype("Int64")
        return series, override, "declared in column_types"

    if isinstance(dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC").dt.tz_localize(None), "datetime", "converted to UTC"
    if is_datetime64_any_dtype(dtype):
        return series, "datetime", "datetime dtype"
    if is_bool_dtype(dtype):
        return series, "categorical", "boolean"
    if is_float_dtype(dtype) and series.isna().any() and _whole_numbers(series):
        series, dtype = series.astype("Int64"), pd.Int64Dtype()
    if is_integer_dtype(dtype):
        n_unique = int(series.nunique(dropna=True))
        if n_unique <= categorical_max_unique:
            return series, "categorical", f"integer, {n_unique} values <= {categorical_max_unique}"
        return series, "continuous", f"integer, {n_unique} values > {categorical_max_unique}"
    if is_numeric_dtype(dtype):
        if np.issubdtype(np.dtype(getattr(dtype, "numpy_dtype", dtype)), np.complexfloating):
            raise UserInputError(f"column {name!r}: complex numbers are not supported; drop it")
        return series, "continuous", "float"
    boolean = _as_boolean(series)
    if boolean is not None:
        return boolean, "categorical", "true/false text"
    parsed = _parse_datetimes(series)
    if parsed is not None:
        return parsed, "datetime", "every value parses as a date"
    return series, "categorical", "text"


def infer_schema(
    frame: pd.DataFrame,
    *,
    column_types: Mapping[str, str] | None = None,
    categorical_max_unique: int = 10,
) -> tuple[pd.DataFrame, list[ColumnSchema]]:
    """Infer (and apply) each column's kind; ``column_types`` entries win.

    Returns:
        The frame with converted columns (dates parsed, integer columns with gaps as ``Int64``,
        true/false text as ``boolean``; ``drop`` columns removed) and one :class:`ColumnSchema`
        per input column, in order.
    """
    overrides = dict(column_types or {})
    out: dict[str, pd.Series] = {}
    rows: list[ColumnSchema] = []
    for col in frame.columns:
        series = frame[col]
        n_unique = int(series.nunique(dropna=True))
        missing = float(series.isna().mean())
        override = overrides.get(col)
        if override == "drop":
            rows.append(ColumnSchema(col, str(series.dtype), "drop", n_unique, missing, "declared"))
            continue
        converted, kind, note = _convert_and_kind(
            col, series, override, categorical_max_unique=categorical_max_unique
        )
        out[col] = converted
        rows.append(ColumnSchema(col, str(converted.dtype), kind, n_unique, missing, note))
    return pd.DataFrame(out, index=frame.index), rows


def format_schema(rows: Sequence[ColumnSchema]) -> str:
    """The schema as an aligned text table."""
    header = ("column", "dtype", "kind", "n_unique", "missing", "note")
    body = [
        (r.column, r.dtype, r.kind, str(r.n_unique), f"{r.missing_share:.1%}", r.note) for r in rows
    ]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    )


def override_snippet(rows: Sequence[ColumnSchema]) -> str:
    """Command-line overrides that flip the kinds a user is most likely to correct."""
    lines = []
    for r in rows:
        if r.kind not in KINDS:
            continue
        alternative = "continuous" if r.kind == "categorical" else "categorical"
        if r.kind == "categorical" and not r.dtype.lower().startswith(("int", "uint", "float")):
            continue  # text cannot become continuous
        key = f"++dataset.column_types.{r.column}={alternative}"
        if "." in r.column or " " in r.column:
            key = f"# {r.column!r}: set column_types in the dataset YAML (name has '.' or ' ')"
        lines.append(f"{key}    # now {r.kind}: {r.note}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ loading


def _check_columns(frame: pd.DataFrame, names: Sequence[str], key: str) -> None:
    unknown = [n for n in names if n not in frame.columns]
    if not unknown:
        return
    lower = {c.lower(): c for c in frame.columns}
    hints = [f"{n!r} -> did you mean {lower[n.lower()]!r}?" for n in unknown if n.lower() in lower]
    raise UserInputError(
        f"dataset.{key} names column(s) {unknown} that the table does not have"
        + (f" ({'; '.join(hints)})" if hints else "")
        + f"; the columns are {list(frame.columns)}"
    )


def _record_ids(frame: pd.DataFrame, id_column: str | None) -> pd.Index:
    if id_column is None:
        return pd.RangeIndex(len(frame), name="record_id")
    ids = frame[id_column]
    if ids.isna().any():
        raise UserInputError(
            f"id column {id_column!r} has {int(ids.isna().sum())} missing value(s); every record "
            "needs an id (or set dataset.id_column=null to number the rows)"
        )
    duplicated = ids[ids.duplicated(keep=False)]
    if len(duplicated):
        examples = pd.unique(duplicated.to_numpy())[:5].tolist()
        raise UserInputError(
            f"id column {id_column!r} is not unique: {duplicated.nunique()} value(s) repeat "
            f"(e.g. {examples}); give a unique id column, set dataset.id_column=null to number "
            "the rows, or, if it identifies a person with several records, set it as "
            "dataset.group_column"
        )
    return pd.Index(ids.to_numpy(), name="record_id")


def _map_target(labels: pd.Series, target_map: Mapping[Any, Any] | None, target: str) -> pd.Series:
    """``labels`` mapped through ``target_map`` (keys compared as text); missing stays missing."""
    if not target_map:
        return labels
    by_text = {str(k): v for k, v in target_map.items()}
    present = labels.dropna()
    unmapped = sorted({str(u) for u in present.unique()} - set(by_text))
    if unmapped:
        raise UserInputError(
            f"dataset.target_map does not cover the value(s) {unmapped[:10]} of target "
            f"{target!r}; map every value (keys: {sorted(by_text)}). In YAML quote keys like "
            "'NO' or 'yes', which YAML otherwise reads as booleans"
        )
    mapped = labels.astype(object).map({u: by_text[str(u)] for u in present.unique()})
    return _tidy_labels(mapped)


def _tidy_labels(labels: pd.Series) -> pd.Series:
    """Whole-number floats without gaps as int64, text as ``str``; otherwise as inferred."""
    labels = labels.infer_objects()
    if labels.isna().any():
        return labels
    if is_float_dtype(labels.dtype) and _whole_numbers(labels):
        return labels.astype(np.int64)
    if labels.dtype == object and all(isinstance(v, str) for v in labels):
        return labels.astype("str")
    return labels


def _positive_label(labels: pd.Series, requested: Any, target: str) -> Any:
    counts = labels.value_counts()
    classes = counts.index.tolist()
    if requested is None:
        minority = counts.sort_index(kind="stable").idxmin()
        return minority.item() if isinstance(minority, np.generic) else minority
    if requested in classes:
        return classes[classes.index(requested)]
    as_text = [c for c in classes if str(c) == str(requested)]
    if len(as_text) == 1:
        return as_text[0]
    raise UserInputError(
        f"dataset.positive_label={requested!r} is not a class of target {target!r}; the classes "
        f"are {classes}. In YAML quote 'yes'/'no', which YAML otherwise reads as booleans"
    )


def load_table(
    cfg: Any,
    *,
    max_records: int | None,
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    target_name: str | None = None,
) -> TabularData:
    """Load a table file as a :class:`TabularData` (``dataset=table``; docs/datasets.md).

    Args:
        cfg: a :class:`TableConfig` node (or a mapping with its keys).
        max_records: cap on the records returned: a seeded (``cfg.split_seed``) subset
            stratified by the target; ``None`` keeps all.
        prepare: optional dataset-specific step on the raw frame (after reading, before
            anything else), e.g. grouping codes; it must keep the column names used by ``cfg``.
        target_name: rename the target column to this after ``target_map`` (e.g.
            ``readmitted`` -> ``readmitted_30d``).

    Returns:
        Released columns with their dtypes, index ``record_id``, ``column_kinds`` for every
        feature column and ``public_domain`` from ``cfg.public_domain`` (or ``None``).
    """
    name = str(_cfg_get(cfg, "name", "table"))
    path = _cfg_get(cfg, "path")
    target = _cfg_get(cfg, "target")
    if path in (None, "", MISSING, "???"):
        raise UserInputError(
            "dataset.path is not set; give the table file, e.g. dataset.path=data.csv"
        )
    if target in (None, "", MISSING, "???"):
        raise UserInputError(
            "dataset.target is not set; name the label column (python -m dpshare.data.table "
            "<path> lists the columns)"
        )
    column_types = dict(_cfg_get(cfg, "column_types") or {})
    drop_columns = list(_cfg_get(cfg, "drop_columns") or [])
    high_cardinality = str(_cfg_get(cfg, "high_cardinality", "error"))
    max_categories = int(_cfg_get(cfg, "max_categories", 100))
    categorical_max_unique = int(_cfg_get(cfg, "categorical_max_unique", 10))
    bad_types = {c: k for c, k in column_types.items() if k not in COLUMN_TYPES}
    if bad_types:
        raise UserInputError(
            f"dataset.column_types has unknown kind(s) {bad_types}; valid: {list(COLUMN_TYPES)}"
        )
    if high_cardinality not in HIGH_CARDINALITY:
        raise UserInputError(
            f"dataset.high_cardinality must be one of {list(HIGH_CARDINALITY)}, got "
            f"{high_cardinality!r}"
        )
    if max_categories < 2:
        raise UserInputError(f"dataset.max_categories must be >= 2, got {max_categories}")

    na_values = _cfg_get(cfg, "na_values")
    raw, info = read_table(
        path,
        sep=_cfg_get(cfg, "sep"),
        member=_cfg_get(cfg, "member"),
        na_values=DEFAULT_NA_VALUES if na_values is None else [str(v) for v in na_values],
        encoding=str(_cfg_get(cfg, "encoding", "utf-8")),
    )
    n_read = len(raw)
    if prepare is not None:
        raw = prepare(raw)

    # Every column the config names must exist.
    _check_columns(raw, [target], "target")
    roles = {
        key: _cfg_get(cfg, key)
        for key in ("id_column", "group_column", "time_column", "institution_column")
    }
    for key, column in roles.items():
        if column is not None:
            _check_columns(raw, [column], key)
    _check_columns(raw, drop_columns, "drop_columns")
    _check_columns(raw, list(column_types), "column_types")
    if target in drop_columns or column_types.get(target) == "drop":
        raise UserInputError(f"the target {target!r} cannot be dropped; pick another target")
    for key in ("time_column", "institution_column"):
        column = roles[key]
        if column is not None and (column in drop_columns or column_types.get(column) == "drop"):
            raise UserInputError(f"dataset.{key}={column!r} is also dropped; keep it or unset it")

    record_ids = _record_ids(raw, roles["id_column"])
    raw = raw.set_axis(record_ids, axis=0)

    # Target: map, drop or refuse missing labels, check classes.
    labels = _map_target(raw[target], _cfg_get(cfg, "target_map"), target)
    missing_target = int(labels.isna().sum())
    if missing_target:
        if not bool(_cfg_get(cfg, "drop_missing_target", True)):
            raise UserInputError(
                f"target {target!r} is missing in {missing_target} of {len(raw)} rows; fill them, "
                "or set dataset.drop_missing_target=true to drop those rows"
            )
        log.warning(
            "%s: dropped %d of %d rows whose target %r is missing",
            name,
            missing_target,
            len(raw),
            target,
        )
        keep = labels.notna().to_numpy()
        raw, labels = raw[keep], _tidy_labels(labels[keep])
    n_classes = labels.nunique()
    if n_classes < 2:
        raise UserInputError(
            f"target {target!r} has a single class ({labels.unique().tolist()[:1]}) in "
            f"{len(labels)} rows; a prediction task needs at least two: pick another target or "
            "map the values with dataset.target_map"
        )
    if n_classes > max_categories:
        raise UserInputError(
            f"target {target!r} has {n_classes} distinct values: it looks continuous, but the "
            "target must be a class label; bin it with dataset.target_map or pick another target"
        )

    # Released frame: everything but identifiers and dropped columns.
    group_ids = None if roles["group_column"] is None else raw[roles["group_column"]].to_numpy()
    removed = {c for c in (roles["id_column"], roles["group_column"]) if c is not None}
    removed |= set(drop_columns)
    released = raw[[c for c in raw.columns if c not in removed and c != target]]

    empty = [c for c in released.columns if released[c].isna().all()]
    if empty:
        if not bool(_cfg_get(cfg, "drop_empty_columns", True)):
            raise UserInputError(
                f"column(s) {empty} have no value in any row; drop them with "
                f"dataset.drop_columns={empty} (or set dataset.drop_empty_columns=true)"
            )
        log.warning("%s: dropped column(s) %s: no value in any row", name, empty)
        for key in ("time_column", "institution_column"):
            if roles[key] in empty:
                raise UserInputError(f"dataset.{key}={roles[key]!r} has no value in any row")
        released = released.drop(columns=empty)

    features, schema = infer_schema(
        released,
        column_types={c: k for c, k in column_types.items() if c in released.columns},
        categorical_max_unique=categorical_max_unique,
    )
    kinds = {r.column: r.kind for r in schema if r.kind in KINDS}
    features, kinds, schema = _limit_cardinality(
        features, kinds, schema, max_categories=max_categories, policy=high_cardinality
    )
    for r in schema:
        if r.kind in KINDS and r.n_unique == len(raw) and len(raw) > 100 and r.kind != "datetime":
            log.warning(
                "%s: column %r has a different value in every row: if it identifies records, "
                "set dataset.id_column=%s or drop it (dataset.drop_columns)",
                name,
                r.column,
                r.column,
            )
    time_column = roles["time_column"]
    if time_column is not None and time_column in kinds and kinds[time_column] != "datetime":
        log.warning("%s: time column %r is %s, not a date", name, time_column, kinds[time_column])

    final_target = target_name or target
    if final_target != target and final_target in features.columns:
        raise UserInputError(
            f"target name {final_target!r} clashes with a feature column; choose another"
        )
    frame = features.assign(**{final_target: labels.to_numpy()})
    frame.index.name = "record_id"
    positive = _positive_label(frame[final_target], _cfg_get(cfg, "positive_label"), target)
    target_row = ColumnSchema(
        final_target,
        str(frame[final_target].dtype),
        "target",
        int(n_classes),
        0.0,
        f"positive class {positive!r}"
        + (f" (mapped from {target!r})" if _cfg_get(cfg, "target_map") else ""),
    )
    schema = [*schema, target_row]
    log.info(
        "%s: %d rows from %s (sep %r); inferred schema:\n%s",
        name,
        len(frame),
        info["path"],
        info["sep"],
        format_schema(schema),
    )

    public_domain = _public_domain(_cfg_get(cfg, "public_domain"), frame, name)
    rate = float((frame[final_target] == positive).mean())
    description = str(_cfg_get(cfg, "description", "") or "") or (
        f"table {Path(info['path']).name}"
    )
    data = TabularData(
        name=name,
        frame=frame,
        target=final_target,
        positive_label=positive,
        group_ids=group_ids,
        time_column=time_column,
        institution_column=roles["institution_column"],
        column_kinds=kinds,
        public_domain=public_domain,
        description=(
            f"{description}: {len(frame)} of {n_read} rows, {len(kinds)} features, target "
            f"{final_target} (positive {positive!r}, rate {rate:.3f})"
        ),
    )
    subset = data.subsample(max_records, seed=int(_cfg_get(cfg, "split_seed", 0)))
    if len(subset.frame) < len(frame):
        subset.description += f"; a stratified subset of {len(subset.frame)} (scale.max_records)"
    return subset


def _limit_cardinality(
    features: pd.DataFrame,
    kinds: dict[str, str],
    schema: list[ColumnSchema],
    *,
    max_categories: int,
    policy: str,
) -> tuple[pd.DataFrame, dict[str, str], list[ColumnSchema]]:
    too_many = {
        c: int(features[c].nunique())
        for c, k in kinds.items()
        if k == "categorical" and features[c].nunique() > max_categories
    }
    if not too_many:
        return features, kinds, schema
    if policy == "error":
        raise UserInputError(
            f"categorical column(s) with more than dataset.max_categories={max_categories} "
            f"distinct values: {too_many}. Free text or identifiers? Drop them "
            "(dataset.drop_columns=[...]); numbers? declare them continuous "
            "(dataset.column_types.<col>=continuous); else raise dataset.max_categories or set "
            "dataset.high_cardinality=other (keeps the most frequent values) or =drop"
        )
    features = features.copy()
    new_schema = []
    for r in schema:
        if r.column not in too_many:
            new_schema.append(r)
            continue
        if policy == "drop":
            log.warning(
                "dropped column %r: %d distinct values > max_categories=%d",
                r.column,
                too_many[r.column],
                max_categories,
            )
            features = features.drop(columns=[r.column])
            kinds.pop(r.column)
            new_schema.append(
                ColumnSchema(
                    r.column, r.dtype, "drop", r.n_unique, r.missing_share, "high cardinality"
                )
            )
            continue
        series = features[r.column]
        keep = series.value_counts().index[: max_categories - 1]
        lumped = series.astype(object).where(series.isna() | series.isin(keep), OTHER_CATEGORY)
        if isinstance(series.dtype, pd.StringDtype) or series.dtype == object:
            lumped = lumped.astype(series.dtype)
        features[r.column] = lumped
        log.warning(
            "column %r: kept the %d most frequent of %d values, the rest is %r (read from the "
            "records: not differentially private)",
            r.column,
            len(keep),
            too_many[r.column],
            OTHER_CATEGORY,
        )
        new_schema.append(
            ColumnSchema(
                r.column,
                str(lumped.dtype),
                r.kind,
                r.n_unique,
                r.missing_share,
                f"top {len(keep)} values + {OTHER_CATEGORY!r}",
            )
        )
    return features, kinds, new_schema


def _public_domain(spec: Any, frame: pd.DataFrame, name: str) -> PublicDomain | None:
    if not spec:
        return None
    if not isinstance(spec, Mapping):
        raise UserInputError(
            f"dataset.public_domain must map columns to {{bounds: [lo, hi]}}, "
            f"{{categories: [...]}} or {{start: ..., end: ...}}, got {spec!r}"
        )
    unknown = [c for c in spec if c not in frame.columns]
    if unknown:
        raise UserInputError(
            f"dataset.public_domain declares column(s) {unknown} that are not released; the "
            f"released columns are {list(frame.columns)}"
        )
    domain = PublicDomain.from_mapping(spec)
    undeclared = [c for c in frame.columns if c not in domain.columns]
    if undeclared:
        log.warning(
            "%s: dataset.public_domain does not declare %s; a DP fit will ask for them",
            name,
            undeclared,
        )
    return domain


# ------------------------------------------------------------------------- public datasets


def load_bank_marketing(cfg: Any, *, max_records: int | None) -> TabularData:
    """UCI Bank Marketing (bank-additional-full, 41,188 calls, Moro et al. 2014).

    One record is one phone contact of a client in a direct-marketing campaign of a Portuguese
    bank, May 2008 - Nov 2010; target ``y`` = the client subscribed a term deposit (positive
    ``"yes"``, ~11.3 %). ``duration`` is dropped by default: it is only known after the call that
    decides ``y`` (UCI's names file says to discard it for a realistic model).
    """
    return load_table(cfg, max_records=max_records)


# ICD-9-CM chapters (first three characters of the code); V = supplementary factors,
# E = external causes. Public classification (CDC/NCHS ICD-9-CM tabular list).
ICD9_CHAPTERS: tuple[tuple[int, int, str], ...] = (
    (1, 139, "infectious"),
    (140, 239, "neoplasms"),
    (240, 279, "endocrine_metabolic"),
    (280, 289, "blood"),
    (290, 319, "mental"),
    (320, 389, "nervous_sense"),
    (390, 459, "circulatory"),
    (460, 519, "respiratory"),
    (520, 579, "digestive"),
    (580, 629, "genitourinary"),
    (630, 679, "pregnancy"),
    (680, 709, "skin"),
    (710, 739, "musculoskeletal"),
    (740, 759, "congenital"),
    (760, 779, "perinatal"),
    (780, 799, "ill_defined"),
    (800, 999, "injury_poisoning"),
)
ICD9_GROUPS: tuple[str, ...] = (
    *(label for _, _, label in ICD9_CHAPTERS),
    "diabetes",
    "supplementary_v",
    "external_e",
)


def icd9_chapter(code: Any) -> Any:
    """The ICD-9-CM chapter of a diagnosis code (``"428"`` -> ``"circulatory"``).

    Diabetes (250.xx) is its own group, as in Strack et al. (2014), since it defines the cohort.
    ``V..`` codes -> ``"supplementary_v"``, ``E..`` -> ``"external_e"``; missing stays missing;
    an unparseable code raises :class:`UserInputError`.
    """
    if code is None or (isinstance(code, float) and np.isnan(code)) or code is pd.NA:
        return code
    text = str(code).strip().upper()
    if text.startswith("V"):
        return "supplementary_v"
    if text.startswith("E"):
        return "external_e"
    try:
        number = float(text)
    except ValueError:
        raise UserInputError(f"{code!r} is not an ICD-9 diagnosis code") from None
    if 250 <= number < 251:
        return "diabetes"
    major = int(number)
    for low, high, label in ICD9_CHAPTERS:
        if low <= major <= high:
            return label
    raise UserInputError(f"{code!r} is not an ICD-9 diagnosis code (outside 001-999)")


def _group_diagnoses(columns: Sequence[str]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def prepare(frame: pd.DataFrame) -> pd.DataFrame:
        _check_columns(frame, list(columns), "diagnosis_columns")
        frame = frame.copy()
        for col in columns:
            codes = frame[col]
            uniques = pd.unique(codes.dropna().astype(str).to_numpy())
            lookup = {u: icd9_chapter(u) for u in uniques}
            frame[col] = codes.astype(str).map(lookup).where(codes.notna()).astype("str")
        return frame

    return prepare


def load_diabetes130(cfg: Any, *, max_records: int | None) -> TabularData:
    """UCI Diabetes 130-US hospitals 1999-2008 (Strack et al. 2014): 101,766 encounters.

    Target ``readmitted_30d`` = 1 when ``readmitted`` is ``"<30"`` (readmitted within 30 days;
    ``">30"`` and ``"NO"`` -> 0; ``target_map`` changes it). ``encounter_id`` is the record id and
    ``patient_nbr`` the group id; neither is released. ``diag_1..3`` are grouped into ICD-9
    chapters (:func:`icd9_chapter`) unless ``diagnosis_grouping=none``.
    """
    grouping = str(_cfg_get(cfg, "diagnosis_grouping", "chapter"))
    if grouping not in ("chapter", "none"):
        raise UserInputError(
            f"dataset.diagnosis_grouping must be 'chapter' or 'none', got {grouping!r}"
        )
    columns = list(_cfg_get(cfg, "diagnosis_columns") or [])
    prepare = _group_diagnoses(columns) if grouping == "chapter" and columns else None
    return load_table(
        cfg,
        max_records=max_records,
        prepare=prepare,
        target_name=_cfg_get(cfg, "target_name") or None,
    )


# ---------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dpshare.data.table <path> [--target col]``: print the inferred schema."""
    parser = argparse.ArgumentParser(
        prog="python -m dpshare.data.table",
        description="Print the schema dpshare infers for a table file, and the overrides "
        "that correct it.",
    )
    parser.add_argument("path", help="CSV, CSV.gz, TSV, Parquet or .zip with one CSV")
    parser.add_argument("--target", help="the label column")
    parser.add_argument("--sep", help="field separator (default: sniffed)")
    parser.add_argument("--member", help="file inside a .zip")
    parser.add_argument("--encoding", default="utf-8")
    parser.add_argument(
        "--na-values",
        nargs="*",
        default=list(DEFAULT_NA_VALUES),
        help="strings read as missing (default: %(default)s)",
    )
    parser.add_argument("--categorical-max-unique", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        raw, info = read_table(
            args.path,
            sep=args.sep,
            member=args.member,
            na_values=args.na_values,
            encoding=args.encoding,
        )
        if args.target is not None:
            _check_columns(raw, [args.target], "target")
        features = raw.drop(columns=[args.target]) if args.target else raw
        _, schema = infer_schema(features, categorical_max_unique=args.categorical_max_unique)
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.target is not None:
        labels = raw[args.target]
        counts = labels.value_counts(dropna=False)
        schema.append(
            ColumnSchema(
                args.target,
                str(labels.dtype),
                "target",
                int(labels.nunique()),
                float(labels.isna().mean()),
                "classes: " + ", ".join(f"{k!r} {v}" for k, v in counts.head(8).items()),
            )
        )
    print(f"{info['path']}: {len(raw)} rows, {raw.shape[1]} columns, separator {info['sep']!r}")
    print()
    print(format_schema(schema))
    snippet = override_snippet(schema)
    print()
    print("Run it:")
    target = args.target or "<label column>"
    sep = f" dataset.sep='{info['sep']}'" if info["sep"] not in (None, ",") else ""
    print(
        "  python -m dpshare.train dataset=table "
        f"dataset.path={info['path']} dataset.target={target}{sep}"
    )
    if snippet:
        print()
        print("To correct a kind, add an override, e.g.:")
        print("\n".join(f"  {line}" for line in snippet.splitlines()))
    unique = [r.column for r in schema if r.kind != "target" and r.n_unique == len(raw)]
    if unique:
        print()
        print(
            f"A different value in every row (identifiers?): {unique}; set "
            f"dataset.id_column={unique[0]} or drop them (dataset.drop_columns)"
        )
    high = [r.column for r in schema if r.kind == "categorical" and r.n_unique > 100]
    if high:
        print()
        print(
            f"Columns with more than 100 values (dataset.max_categories): {high}; drop them "
            "(dataset.drop_columns) or set dataset.high_cardinality=other"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
