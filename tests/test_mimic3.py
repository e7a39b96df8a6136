"""MIMIC-III loader: the real demo, and small generated tables in the official schema."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from dpshare.config import register_configs
from dpshare.data import mimic3
from dpshare.data.base import TabularData
from dpshare.data.mimic3 import (
    DEFAULT_VARIABLES,
    MIMIC3Config,
    extract_mimic3,
    load_mimic3,
    mimic3_settings,
)
from dpshare.data.transformer import TabularTransformer
from dpshare.errors import UserInputError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mimic3-demo"
needs_demo = pytest.mark.skipif(
    not DEMO.is_dir(), reason=f"MIMIC-III demo not found at {DEMO} (shared datasets absent)"
)

# ------------------------------------------------------------------------- generated tables

SMALL_VARIABLES = ["heart_rate", "temperature", "creatinine", "urine_output"]
HR, TEMP, CREAT, URINE = range(4)


def _t(base: str, hours: float) -> str:
    return (pd.Timestamp(base) + pd.Timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S")


IN1, IN2, IN5 = "2160-06-01 12:00:00", "2150-03-10 08:00:00", "2170-01-01 00:00:00"


def mimic_tables() -> dict[str, pd.DataFrame]:
    """Five patients; stays 101 (subject 1), 201 (subject 2, age shifted to ~350), 501 pass the
    default cohort; 102 (subject 1's second stay), 301 (a child), 401 (10 h) do not."""
    patients = pd.DataFrame(
        {
            "ROW_ID": [1, 2, 3, 4, 5],
            "SUBJECT_ID": [1, 2, 3, 4, 5],
            "GENDER": ["F", "M", "F", "M", "M"],
            "DOB": [
                "2100-01-01 00:00:00",
                "1800-01-01 00:00:00",
                "2150-01-01 00:00:00",
                "2100-01-01 00:00:00",
                "2110-05-05 00:00:00",
            ],
        }
    )
    admissions = pd.DataFrame(
        {
            "ROW_ID": range(6),
            "SUBJECT_ID": [1, 1, 2, 3, 4, 5],
            "HADM_ID": [11, 12, 21, 31, 41, 51],
            "ADMISSION_TYPE": [
                "EMERGENCY",
                "URGENT",
                "ELECTIVE",
                "EMERGENCY",
                "EMERGENCY",
                "URGENT",
            ],
            "INSURANCE": ["Medicare", "Medicare", "Private", "Medicaid", "Self Pay", "Government"],
            "ETHNICITY": [
                "WHITE",
                "WHITE",
                "HISPANIC OR LATINO",
                "ASIAN - CHINESE",
                "UNABLE TO OBTAIN",
                "BLACK/AFRICAN AMERICAN",
            ],
            "HOSPITAL_EXPIRE_FLAG": [1, 0, 0, 0, 0, 0],
        }
    )
    stays = pd.DataFrame(
        {
            "ROW_ID": range(6),
            "SUBJECT_ID": [1, 1, 2, 3, 4, 5],
            "HADM_ID": [11, 12, 21, 31, 41, 51],
            "ICUSTAY_ID": [101, 102, 201, 301, 401, 501],
            "DBSOURCE": ["carevue"] * 6,
            "FIRST_CAREUNIT": ["MICU", "MICU", "CCU", "NICU", "SICU", "SICU"],
            "INTIME": [IN1, "2161-01-01 00:00:00", IN2, "2160-01-01 00:00:00", IN5, IN5],
            "OUTTIME": [
                _t(IN1, 72),
                "2161-01-04 00:00:00",
                _t(IN2, 60),
                "2160-01-05 00:00:00",
                _t(IN5, 10),
                _t(IN5, 96),
            ],
            "LOS": [3.0, 3.0, 2.5, 4.0, 10 / 24, 4.0],
        }
    )
    # Subject 4 and 5 share no stay: give subject 4 its own admission time far away.
    stays.loc[4, ["INTIME", "OUTTIME"]] = ["2180-01-01 00:00:00", "2180-01-01 10:00:00"]
    diagnoses = pd.DataFrame(
        {
            "ROW_ID": range(5),
            "SUBJECT_ID": [1, 1, 2, 5, 5],
            "HADM_ID": [11, 11, 21, 51, 51],
            "SEQ_NUM": [1, 2, 1, 1, 2],
            "ICD9_CODE": ["4280", "0389", "41401", "V4581", "42831"],
        }
    )
    d_items = pd.DataFrame(  # every id of the variables used, as in the full D_ITEMS
        [
            {"ITEMID": item, "LABEL": f"{name} ({item})", "LINKSTO": source}
            for name in SMALL_VARIABLES
            for source in ("chartevents", "outputevents")
            for item in getattr(DEFAULT_VARIABLES[name], source)
        ]
    ).assign(DBSOURCE="carevue")
    d_labitems = pd.DataFrame(
        {"ROW_ID": [1], "ITEMID": [50912], "LABEL": ["Creatinine"], "FLUID": ["Blood"]}
    )
    chart_rows = [
        # icustay, itemid, hour, valuenum, error
        (101, 211, 0.5, 80.0, 0),
        (101, 211, 0.75, 100.0, 0),  # hour 0: mean 90
        (101, 211, 5.0, 400.0, 0),  # outlier (> 300): dropped
        (101, 211, 6.0, 10.0, 1),  # flagged error: dropped
        (101, 211, 10.2, 70.0, 0),
        (101, 211, 50.0, 60.0, 0),  # after the 48 h window
        (101, 211, -1.0, 55.0, 0),  # before ICU admission
        (101, 678, 2.1, 98.6, 0),  # Fahrenheit -> 37.0 C
        (101, 223762, 3.0, 38.0, 0),
        (101, 678, 4.0, 200.0, 0),  # 93.3 C: outlier after conversion
        (201, 220045, 1.0, 120.0, 0),
        (201, 220045, 30.0, 0.0, 0),  # outlier (< 1)
        (102, 211, 1.0, 66.0, 0),  # second stay: not in the cohort
        (301, 211, 1.0, 140.0, 0),  # child: not in the cohort
        (501, 220045, 47.5, 95.0, 0),
    ]
    intimes = {101: IN1, 201: IN2, 102: "2161-01-01 00:00:00", 301: "2160-01-01 00:00:00"}
    intimes[501] = IN5
    subject = {101: 1, 102: 1, 201: 2, 301: 3, 501: 5}
    hadm = {101: 11, 102: 12, 201: 21, 301: 31, 501: 51}
    chart = pd.DataFrame(
        {
            "ROW_ID": range(len(chart_rows)),
            "SUBJECT_ID": [subject[r[0]] for r in chart_rows],
            "HADM_ID": [hadm[r[0]] for r in chart_rows],
            "ICUSTAY_ID": [r[0] for r in chart_rows],
            "ITEMID": [r[1] for r in chart_rows],
            "CHARTTIME": [_t(intimes[r[0]], r[2]) for r in chart_rows],
            "VALUE": [str(r[3]) for r in chart_rows],
            "VALUENUM": [r[3] for r in chart_rows],
            "ERROR": [r[4] for r in chart_rows],
        }
    )
    lab_rows = [  # subject, hadm (may be empty), hour after the stay's intime, value
        (1, 11, 1.0, 1.5, IN1),
        (1, None, -2.0, 9.0, IN1),  # before ICU admission
        (5, 51, 20.0, 200.0, IN5),  # outlier (> 150)
        (5, None, 30.0, 2.5, IN5),  # no hadm_id: matched by subject and time
    ]
    labs = pd.DataFrame(
        {
            "ROW_ID": range(len(lab_rows)),
            "SUBJECT_ID": [r[0] for r in lab_rows],
            "HADM_ID": pd.array([r[1] for r in lab_rows], dtype="Int64"),
            "ITEMID": [50912] * len(lab_rows),
            "CHARTTIME": [_t(r[4], r[2]) for r in lab_rows],
            "VALUE": [str(r[3]) for r in lab_rows],
            "VALUENUM": [r[3] for r in lab_rows],
            "FLAG": [""] * len(lab_rows),
        }
    )
    output = pd.DataFrame(
        {
            "ROW_ID": range(4),
            "SUBJECT_ID": [1, 1, 1, 1],
            "HADM_ID": [11] * 4,
            "ICUSTAY_ID": [101] * 4,
            "CHARTTIME": [_t(IN1, h) for h in (1.0, 1.5, 3.0, 4.0)],
            "ITEMID": [40055] * 4,
            "VALUE": [100.0, 50.0, 30.0, 9000.0],  # hour 1: 150 mL; 9000 mL: outlier
            "VALUEUOM": ["ml"] * 4,
            "ISERROR": [None] * 4,
        }
    )
    return {
        "PATIENTS": patients,
        "ADMISSIONS": admissions,
        "ICUSTAYS": stays,
        "DIAGNOSES_ICD": diagnoses,
        "D_ITEMS": d_items,
        "D_LABITEMS": d_labitems,
        "CHARTEVENTS": chart,
        "LABEVENTS": labs,
        "OUTPUTEVENTS": output,
    }


def write_tables(root: Path, *, lower: bool = False, gzip: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in mimic_tables().items():
        out = frame.rename(columns=str.lower) if lower else frame
        suffix = ".csv.gz" if gzip else ".csv"
        out.to_csv(root / f"{name}{suffix}", index=False)
    return root


def small_cfg(root: Path, **overrides: object) -> dict[str, object]:
    return {"root": str(root), "include_variables": SMALL_VARIABLES, **overrides}


@pytest.fixture
def tables_root(tmp_path: Path) -> Path:
    return write_tables(tmp_path / "mimic")


# ------------------------------------------------------------------------ generated: tests


def test_cohort_static_features_and_labels(tables_root: Path) -> None:
    data = load_mimic3(small_cfg(tables_root), max_records=None)
    frame = data.frame
    assert list(frame.index) == [101, 201, 501]
    assert frame.index.name == "record_id"
    assert frame["age"].tolist() == [60.0, 90.0, 59.0]  # shifted age ~350 capped at 90
    assert frame["gender"].tolist() == ["F", "M", "M"]
    assert frame["ethnicity"].tolist() == ["WHITE", "HISPANIC", "BLACK"]
    assert frame["first_careunit"].tolist() == ["MICU", "CCU", "SICU"]
    assert frame["los_days"].tolist() == pytest.approx([3.0, 2.5, 4.0])
    assert data.target == "hospital_mortality"
    assert frame["hospital_mortality"].tolist() == [1, 0, 0]
    assert "heart_failure" not in frame.columns  # the other label never is a feature
    assert data.group_ids.tolist() == [1, 2, 5]
    assert data.institution_column == "first_careunit"
    diagnosis = load_mimic3(small_cfg(tables_root, target="diagnosis"), max_records=None)
    assert diagnosis.frame["heart_failure"].tolist() == [1, 0, 1]  # 4280, 41401, 42831
    assert "hospital_mortality" not in diagnosis.frame.columns
    several = load_mimic3(
        small_cfg(tables_root, target="diagnosis", diagnosis_prefixes=["038", "414"]),
        max_records=None,
    )
    assert several.frame["heart_failure"].tolist() == [1, 1, 0]


def test_cohort_filters_are_configurable(tables_root: Path) -> None:
    all_stays = extract_mimic3(
        small_cfg(tables_root, first_stay_only=False, min_los_hours=0.0, min_age=0.0)
    )
    assert sorted(all_stays.samples["icustay_id"]) == [101, 102, 201, 301, 401, 501]
    assert all_stays.samples.loc[301, "age"] == 10.0


def test_values_filtered_converted_binned_and_imputed(tables_root: Path) -> None:
    extract = extract_mimic3(small_cfg(tables_root))
    assert extract.sequence_features == SMALL_VARIABLES
    seq = extract.sequences
    assert seq.shape == (3, 48, 4) and seq.dtype == np.float32
    s101 = seq[0]
    # heart rate: hour 0 mean of 80 and 100, carried forward; outlier and error rows dropped
    np.testing.assert_allclose(s101[:10, HR], 90.0)
    np.testing.assert_allclose(s101[10:, HR], 70.0)
    # temperature: normal 37 until the first value; 98.6 F -> 37 C; 200 F (93 C) dropped
    np.testing.assert_allclose(s101[:3, TEMP], 37.0, atol=1e-5)
    np.testing.assert_allclose(s101[3:, TEMP], 38.0)
    # creatinine (LABEVENTS, joined by subject and time): normal 1.0, then 1.5
    np.testing.assert_allclose(s101[:2, CREAT], [1.0, 1.5])
    np.testing.assert_allclose(s101[2:, CREAT], 1.5)
    # urine output: hourly sums, no carry-forward, empty hours 0 mL
    expected_urine = np.zeros(48)
    expected_urine[1], expected_urine[3] = 150.0, 30.0
    np.testing.assert_allclose(s101[:, URINE], expected_urine)
    # stay 201: MetaVision heart rate; the 0 bpm outlier dropped; normal 80 before hour 1
    np.testing.assert_allclose(seq[1][:, HR], [80.0] + [120.0] * 47)
    # stay 501: lab with no hadm_id matched; the 200 mg/dL outlier dropped
    np.testing.assert_allclose(seq[2][:30, CREAT], 1.0)
    np.testing.assert_allclose(seq[2][30:, CREAT], 2.5)
    np.testing.assert_allclose(seq[2][:, HR], [80.0] * 47 + [95.0])

    row = extract.samples.loc[101]
    assert row["heart_rate_n_obs"] == 2
    assert row["temperature_n_obs"] == 2
    assert row["urine_output_n_obs"] == 2
    assert row["heart_rate_min"] == 70.0 and row["heart_rate_max"] == 90.0
    assert row["heart_rate_last"] == 70.0
    assert row["heart_rate_mean"] == pytest.approx((10 * 90 + 38 * 70) / 48)
    assert extract.info["outliers_dropped"] == {
        "heart_rate": 2,
        "temperature": 1,
        "creatinine": 1,
        "urine_output": 1,
    }


def test_dtypes_and_tabular_data_validity(tables_root: Path) -> None:
    data = load_mimic3(small_cfg(tables_root), max_records=None)
    frame = data.frame
    dtypes = frame.dtypes.astype(str)
    assert dtypes["age"] == "float64" and dtypes["los_days"] == "float64"
    for col in ("gender", "admission_type", "insurance", "ethnicity", "first_careunit"):
        assert dtypes[col] == "category"
    assert frame["insurance"].cat.categories.tolist() == list(mimic3.INSURANCES)
    for name in SMALL_VARIABLES:
        assert dtypes[f"{name}_n_obs"] == "int64"
        for stat in ("mean", "min", "max", "last"):
            assert dtypes[f"{name}_{stat}"] == "float64"
    assert dtypes["hospital_mortality"] == "int64"
    assert not frame.isna().any().any()
    assert frame.index.is_unique
    assert data.sequences.shape == (len(frame), 48, len(SMALL_VARIABLES))
    assert data.sequence_features == SMALL_VARIABLES
    assert not np.isnan(data.sequences).any()
    # the public domain covers exactly the released columns, and every value lies inside it
    assert set(data.public_domain.columns) == set(frame.columns)
    for col, (lo, hi) in data.public_domain.bounds.items():
        assert frame[col].between(lo, hi).all(), col
    for col, cats in data.public_domain.categories.items():
        assert frame[col].isin(cats).all(), col


def test_upper_lower_case_headers_and_gzip_give_the_same_samples(tmp_path: Path) -> None:
    upper = extract_mimic3(small_cfg(write_tables(tmp_path / "upper")))
    lower = extract_mimic3(small_cfg(write_tables(tmp_path / "lower", lower=True)))
    gz = extract_mimic3(small_cfg(write_tables(tmp_path / "gz", lower=True, gzip=True)))
    for other in (lower, gz):
        pd.testing.assert_frame_equal(upper.samples, other.samples)
        np.testing.assert_array_equal(upper.sequences, other.sequences)


def test_chunked_reading_equals_unchunked(tables_root: Path) -> None:
    whole = extract_mimic3(small_cfg(tables_root, chunksize=1_000_000))
    chunked = extract_mimic3(small_cfg(tables_root, chunksize=2))
    pd.testing.assert_frame_equal(whole.samples, chunked.samples)
    np.testing.assert_allclose(whole.sequences, chunked.sequences, rtol=1e-6)


def test_chunks_are_filtered_as_they_are_read(
    tables_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No chunk larger than ``chunksize`` is ever handed to the aggregation."""
    seen: list[int] = []
    original = mimic3._read

    def spy(path: Path, columns: object, **kwargs: object) -> object:
        out = original(path, columns, **kwargs)
        if "chunksize" not in kwargs:
            return out
        return (seen.append(len(chunk)) or chunk for chunk in out)

    monkeypatch.setattr(mimic3, "_read", spy)
    extract_mimic3(small_cfg(tables_root, chunksize=3))
    assert seen and max(seen) <= 3
    assert sum(seen) == sum(
        len(mimic_tables()[t]) for t in ("CHARTEVENTS", "LABEVENTS", "OUTPUTEVENTS")
    )


def test_missing_tables_are_listed_in_one_error(tables_root: Path) -> None:
    (tables_root / "LABEVENTS.csv").unlink()
    (tables_root / "PATIENTS.csv").unlink()
    with pytest.raises(UserInputError) as err:
        load_mimic3(small_cfg(tables_root), max_records=None)
    message = str(err.value)
    assert "PATIENTS" in message and "LABEVENTS" in message
    assert str(tables_root) in message
    assert "MIMIC3_ROOT" in message and "dataset.root" in message
    # the tables a configuration does not need are not required
    assert "OUTPUTEVENTS" not in message


def test_missing_root_and_relative_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserInputError, match="does not exist"):
        extract_mimic3(small_cfg(tmp_path / "nowhere"))
    write_tables(tmp_path / "rel")
    monkeypatch.chdir(tmp_path)
    assert len(extract_mimic3(small_cfg(Path("rel"))).samples) == 3


def test_unknown_item_ids_and_bad_settings_raise(tables_root: Path) -> None:
    cfg = small_cfg(tables_root, include_variables=["heart_rate", "sbp"])
    with pytest.raises(UserInputError, match="D_ITEMS"):
        extract_mimic3(cfg)
    for bad in (
        {"target": "los"},
        {"summaries": ["median"]},
        {"include_variables": ["nope"]},
        {"window_hours": 0},
        {"no_such_key": 1},
    ):
        with pytest.raises(UserInputError):
            mimic3_settings(small_cfg(tables_root, **bad))


def test_strided_windows(tables_root: Path) -> None:
    cfg = small_cfg(tables_root, window_hours=24, window_stride_hours=12)
    data = load_mimic3(cfg, max_records=None)
    # stays of 72, 60 and 96 hours: 5, 4 and 7 full 24 h windows 12 h apart
    assert data.sequences.shape == (16, 24, 4)
    assert list(data.frame.index[:5]) == ["101:0", "101:12", "101:24", "101:36", "101:48"]
    assert data.frame["window_start_hour"].tolist()[:6] == [0, 12, 24, 36, 48, 0]
    assert data.group_ids.tolist() == [1] * 5 + [2] * 4 + [5] * 7
    extract = extract_mimic3(cfg)
    first = extract_mimic3(small_cfg(tables_root)).sequences[0]
    np.testing.assert_allclose(extract.sequences[1], first[12:36])  # window 12..36 of stay 101
    capped = load_mimic3({**cfg, "max_windows_per_stay": 2}, max_records=None)
    assert capped.sequences.shape == (6, 24, 4)


def test_cache_is_written_then_read(tables_root: Path, tmp_path: Path) -> None:
    cfg = small_cfg(tables_root, cache_dir=str(tmp_path / "cache"))
    first = extract_mimic3(cfg)
    second = extract_mimic3(cfg)
    assert first.info["cache_hit"] is False and second.info["cache_hit"] is True
    pd.testing.assert_frame_equal(first.samples, second.samples)
    np.testing.assert_array_equal(first.sequences, second.sequences)
    assert second.sequence_features == first.sequence_features
    assert len(list((tmp_path / "cache").iterdir())) == 1
    # the target choice and chunk size do not change the extraction: same cache entry
    assert extract_mimic3({**cfg, "target": "diagnosis", "chunksize": 5}).info["cache_hit"]
    # another window length, or a changed input file, is a different entry
    assert not extract_mimic3({**cfg, "window_hours": 24}).info["cache_hit"]
    labs = tables_root / "LABEVENTS.csv"
    os.utime(labs, ns=(labs.stat().st_atime_ns, labs.stat().st_mtime_ns + 10**9))
    assert not extract_mimic3(cfg).info["cache_hit"]
    # cached strided windows keep their string ids
    strided = {**cfg, "window_hours": 24, "window_stride_hours": 12}
    extract_mimic3(strided)
    cached = load_mimic3(strided, max_records=None)
    assert cached.frame.index[1] == "101:12"


def test_max_records_takes_a_stratified_subset(tables_root: Path) -> None:
    cfg = small_cfg(tables_root, window_hours=24, window_stride_hours=12)
    data = load_mimic3(cfg, max_records=8)
    assert len(data.frame) == 8 == len(data.sequences) == len(data.group_ids)
    assert data.frame["hospital_mortality"].sum() in (2, 3)  # 5 of 16 windows are positive
    again = load_mimic3(cfg, max_records=8)
    assert list(again.frame.index) == list(data.frame.index)


# ------------------------------------------------------------------------------- real demo


@pytest.fixture(scope="module")
def demo() -> TabularData:
    return load_mimic3({"root": str(DEMO)}, max_records=None)


@needs_demo
def test_demo_cohort_and_shapes(demo: TabularData) -> None:
    n_vars = len(DEFAULT_VARIABLES)
    assert n_vars >= 30
    assert len(demo.frame) == 51  # first adult stays of >= 48 h among the 100 demo patients
    assert demo.sequences.shape == (51, 48, n_vars)
    assert demo.sequences.dtype == np.float32 and not np.isnan(demo.sequences).any()
    assert demo.sequence_features == list(DEFAULT_VARIABLES)
    assert len(demo.feature_columns) == 7 + 5 * n_vars
    assert not demo.frame.isna().any().any()
    assert len(set(demo.group_ids)) == 51
    assert demo.frame["age"].between(18, 90).all()
    assert set(demo.frame["first_careunit"]) <= set(mimic3.CARE_UNITS)
    # vitals are charted most hours; every variable's hourly values stay in its valid range
    for j, (name, var) in enumerate(DEFAULT_VARIABLES.items()):
        values = demo.sequences[:, :, j]
        assert values.min() >= var.lower - 1e-4 and values.max() <= var.upper + 1e-4, name
    assert (demo.frame["heart_rate_n_obs"] > 24).mean() > 0.9


@needs_demo
def test_demo_labels_and_dp_fit(demo: TabularData) -> None:
    mortality = demo.frame["hospital_mortality"].mean()
    assert 0.0 < mortality < 1.0
    assert mortality == pytest.approx(17 / 51)
    diagnosis = load_mimic3({"root": str(DEMO), "target": "diagnosis"}, max_records=None)
    assert diagnosis.frame["heart_failure"].mean() == pytest.approx(24 / 51)
    transformer = TabularTransformer().fit_dp(
        demo.frame, domain=demo.public_domain, noise_multiplier=10.0, seed=0
    )
    assert transformer.transform(demo.frame).shape[0] == 51


@needs_demo
def test_demo_composes_from_the_repository_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.delenv("MIMIC3_ROOT", raising=False)
    register_configs()
    ConfigStore.instance().store(group="schema/dataset", name="mimic3", node=MIMIC3Config)
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config", overrides=["dataset=mimic3", "run_dir=unused", "dataset.cache_dir=null"]
        )
    settings = mimic3_settings(cfg.dataset)
    assert mimic3.resolve_root(settings.root) == REPO_ROOT / "../shared/datasets/mimic3-demo"
    # the YAML sets every key, and its variable table equals the documented defaults
    raw = yaml.safe_load((REPO_ROOT / "conf" / "dataset" / "mimic3.yaml").read_text())
    assert {f.name for f in fields(MIMIC3Config)} <= set(raw)
    default = OmegaConf.to_container(OmegaConf.structured(MIMIC3Config()).variables)
    assert OmegaConf.to_container(cfg.dataset.variables) == default
    data = load_mimic3(cfg.dataset, max_records=20)
    assert len(data.frame) == 20 and data.sequences.shape[0] == 20
