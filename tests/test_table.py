"""Real tables from files: bank_marketing, diabetes130 and the generic `dataset=table` loader."""

from __future__ import annotations

import gzip
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from dpshare.config import register_configs
from dpshare.data.base import TabularData
from dpshare.data.table import (
    BankMarketingConfig,
    Diabetes130Config,
    TableConfig,
    icd9_chapter,
    load_bank_marketing,
    load_diabetes130,
    load_table,
)
from dpshare.data.transformer import PublicDomain, TabularTransformer
from dpshare.errors import UserInputError

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASETS = REPO_ROOT.parent / "shared" / "datasets"
BANK = DATASETS / "bank-marketing" / "bank-additional-full.csv.gz"
DIABETES = DATASETS / "diabetes130" / "dataset_diabetes.zip"

needs_bank = pytest.mark.skipif(not BANK.is_file(), reason=f"real data absent: {BANK}")
needs_diabetes = pytest.mark.skipif(not DIABETES.is_file(), reason=f"real data absent: {DIABETES}")


def table_cfg(path: Path, target: str = "label", **overrides: Any) -> Any:
    cfg = OmegaConf.structured(TableConfig)
    cfg.path = str(path)
    cfg.target = target
    return OmegaConf.merge(cfg, overrides)


def round_trip(data: TabularData, n: int = 3000) -> None:
    """Fit the project's transformer on a sample; categorical values and dtypes come back."""
    frame = data.frame[data.feature_columns]
    frame = frame.sample(min(n, len(frame)), random_state=0)
    transformer = TabularTransformer().fit(frame, data.column_kinds)
    back = transformer.inverse_transform(transformer.transform(frame))
    assert list(back.columns) == list(frame.columns)
    assert (back.dtypes == frame.dtypes).all()
    for col, kind in data.column_kinds.items():
        if kind == "categorical":
            pd.testing.assert_series_equal(
                back[col], frame[col].reset_index(drop=True), check_names=False
            )


# ------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def bank() -> TabularData:
    if not BANK.is_file():
        pytest.skip(f"real data absent: {BANK}")
    cfg = OmegaConf.structured(BankMarketingConfig)
    cfg.path = str(BANK)
    return load_bank_marketing(cfg, max_records=None)


@pytest.fixture(scope="module")
def diabetes() -> TabularData:
    if not DIABETES.is_file():
        pytest.skip(f"real data absent: {DIABETES}")
    cfg = OmegaConf.structured(Diabetes130Config)
    cfg.path = str(DIABETES)
    return load_diabetes130(cfg, max_records=None)


def test_bank_marketing_rows_label_and_leak_dropped(bank: TabularData) -> None:
    assert len(bank.frame) == 41_188
    assert "duration" not in bank.frame.columns
    assert bank.frame.index.name == "record_id" and bank.frame.index.is_unique
    assert bank.target == "y" and bank.positive_label == "yes"
    assert set(bank.frame["y"].unique()) == {"no", "yes"}
    assert (bank.frame["y"] == "yes").mean() == pytest.approx(0.1127, abs=0.001)
    assert bank.frame["age"].dtype == np.int64
    assert bank.frame["euribor3m"].dtype == np.float64
    assert bank.column_kinds["job"] == "categorical"
    assert bank.column_kinds["previous"] == "continuous"  # declared in the config
    assert "y" not in bank.column_kinds
    assert (bank.frame["default"] == "unknown").sum() > 0  # "unknown" is a category


def test_bank_marketing_public_domain_covers_released_columns(bank: TabularData) -> None:
    """The shipped YAML's domain declares every released column and supports a DP fit."""
    cfg = compose_dataset("bank_marketing", [f"dataset.path={BANK}"])
    data = load_bank_marketing(cfg, max_records=2000)
    assert isinstance(data.public_domain, PublicDomain)
    assert set(data.public_domain.columns) == set(data.frame.columns)
    frame = data.frame[data.feature_columns]
    transformer = TabularTransformer().fit_dp(
        frame, domain=data.public_domain, noise_multiplier=5.0, seed=0
    )
    assert transformer.inverse_transform(transformer.transform(frame)).shape == frame.shape
    assert bank.public_domain is None  # the dataclass default declares none


def test_diabetes130_rows_label_ids_and_missing(diabetes: TabularData) -> None:
    frame = diabetes.frame
    assert len(frame) == 101_766
    assert diabetes.target == "readmitted_30d" and diabetes.positive_label == 1
    assert "readmitted" not in frame.columns
    assert frame["readmitted_30d"].dtype == np.int64
    assert frame["readmitted_30d"].mean() == pytest.approx(0.1116, abs=0.001)
    # Identifiers: the index and the group ids, never released columns.
    assert "encounter_id" not in frame.columns and "patient_nbr" not in frame.columns
    assert frame.index.name == "record_id" and frame.index.is_unique
    assert diabetes.group_ids is not None and len(np.unique(diabetes.group_ids)) == 71_518
    # '?' is missing; "None" (not measured) is a value.
    assert frame["weight"].isna().mean() == pytest.approx(0.969, abs=0.001)
    assert frame["race"].isna().sum() == 2273
    assert (frame["A1Cresult"] == "None").sum() > 50_000
    # ICD-9 chapters instead of ~800 raw codes.
    assert frame["diag_1"].nunique() <= 20
    assert (frame["diag_1"] == "circulatory").mean() > 0.25
    assert diabetes.column_kinds["admission_type_id"] == "categorical"
    assert frame["admission_type_id"].dtype == np.int64
    assert diabetes.column_kinds["num_lab_procedures"] == "continuous"


@needs_diabetes
def test_diabetes130_capped_stratified_and_target_map_configurable() -> None:
    cfg = OmegaConf.structured(Diabetes130Config)
    cfg.path = str(DIABETES)
    cfg.target_map = {"<30": 1, ">30": 1, "NO": 0}  # any readmission
    cfg.target_name = "readmitted_any"
    data = load_diabetes130(cfg, max_records=4000)
    assert len(data.frame) == 4000
    assert data.frame["readmitted_any"].mean() == pytest.approx(0.461, abs=0.005)


def test_transformer_round_trip_bank(bank: TabularData) -> None:
    round_trip(bank)


def test_transformer_round_trip_diabetes(diabetes: TabularData) -> None:
    round_trip(diabetes)


def test_icd9_chapters() -> None:
    assert icd9_chapter("428") == "circulatory"
    assert icd9_chapter("250.83") == "diabetes"
    assert icd9_chapter("V57") == "supplementary_v"
    assert icd9_chapter("E909") == "external_e"
    assert icd9_chapter("008") == "infectious"
    assert icd9_chapter(np.nan) is np.nan
    with pytest.raises(UserInputError, match="not an ICD-9"):
        icd9_chapter("abc")


# ---------------------------------------------------------------------------- Hydra configs


def compose_dataset(name: str, overrides: list[str]) -> Any:
    register_configs()
    store = ConfigStore.instance()
    for option, node in (
        ("table", TableConfig),
        ("bank_marketing", BankMarketingConfig),
        ("diabetes130", Diabetes130Config),
    ):
        store.store(group="schema/dataset", name=option, node=node)
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"dataset={name}", "run_dir=unused", *overrides])
    return cfg.dataset


@pytest.mark.parametrize("name", ["table", "bank_marketing", "diabetes130"])
def test_yaml_sets_every_schema_key(name: str) -> None:
    node = {"table": TableConfig, "bank_marketing": BankMarketingConfig}.get(
        name, Diabetes130Config
    )
    text = (REPO_ROOT / "conf" / "dataset" / f"{name}.yaml").read_text()
    keys = {line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()}
    assert set(node.__dataclass_fields__) <= keys
    cfg = compose_dataset(
        name, ["dataset.path=x.csv", "dataset.target=y", "++dataset.column_types.a=drop"]
    )
    assert cfg.name == name and cfg.column_types.a == "drop"


def test_yaml_misspelt_key_fails_at_composition() -> None:
    with pytest.raises(Exception, match="drop_colums"):
        compose_dataset("table", ["dataset.drop_colums=[a]"])


# ------------------------------------------------------------------------- generated files


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def simple_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n).round(3),
            "count": rng.integers(0, 50, n),
            "code": rng.integers(1, 4, n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "label": np.where(rng.random(n) < 0.2, "bad", "good"),
        }
    )
    path = tmp_path / "simple.csv"
    frame.to_csv(path, index=False)
    return path


def test_inference_and_minority_positive(simple_csv: Path) -> None:
    data = load_table(table_cfg(simple_csv), max_records=None)
    assert data.column_kinds == {
        "x": "continuous",
        "count": "continuous",
        "code": "categorical",  # 3 integer values <= categorical_max_unique
        "colour": "categorical",
    }
    assert data.frame["code"].dtype == np.int64
    assert data.positive_label == "bad"
    assert list(data.frame.index) == list(range(200))


def test_overrides_drop_and_subsample(simple_csv: Path) -> None:
    cfg = table_cfg(
        simple_csv,
        column_types={"code": "continuous", "count": "categorical", "x": "drop"},
        drop_columns=["colour"],
        positive_label="good",
    )
    data = load_table(cfg, max_records=50)
    assert data.column_kinds == {"count": "categorical", "code": "continuous"}
    assert data.positive_label == "good"
    assert len(data.frame) == 50
    assert (data.frame["label"] == "bad").sum() == pytest.approx(10, abs=2)  # stratified
    again = load_table(cfg, max_records=50)
    assert data.frame.index.equals(again.frame.index)  # seeded


@pytest.mark.parametrize("sep", [";", ",", "\t", "|"])
def test_separator_sniffed(tmp_path: Path, sep: str) -> None:
    rows = [["a", "b", "label"], ["1", "2.5", "x"], ["2", "3.5", "y"], ["3", "4.5", "x"]]
    text = "\n".join(sep.join(row) for row in rows) + "\n"
    data = load_table(table_cfg(write(tmp_path / "t.txt", text)), max_records=None)
    assert list(data.frame.columns) == ["a", "b", "label"]
    assert data.frame["b"].tolist() == [2.5, 3.5, 4.5]


def test_compressed_parquet_and_zip_inputs(tmp_path: Path, simple_csv: Path) -> None:
    expected = load_table(table_cfg(simple_csv), max_records=None).frame
    gz = tmp_path / "simple.csv.gz"
    gz.write_bytes(gzip.compress(simple_csv.read_bytes()))
    parquet = tmp_path / "simple.parquet"
    pd.read_csv(simple_csv).to_parquet(parquet)
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(simple_csv, "data/simple.csv")
        z.writestr("data/readme.csv", "not,this\n1,2\n")
    for path, extra in ((gz, {}), (parquet, {}), (archive, {"member": "simple.csv"})):
        frame = load_table(table_cfg(path, **extra), max_records=None).frame
        pd.testing.assert_frame_equal(frame, expected)
    with pytest.raises(UserInputError, match=r"set dataset.member"):
        load_table(table_cfg(archive), max_records=None)


def test_odd_table_never_seen(tmp_path: Path) -> None:
    """Mixed-case headers with spaces, dates, booleans with gaps, integers as text with '?'."""
    n = 120
    rng = np.random.default_rng(1)
    dates = pd.date_range("2021-01-01", periods=n, freq="D").strftime("%Y-%m-%d")
    lines = [" Patient ID ,Visit_Date,IsSmoker,Num Visits,Ward,SCORE,Outcome"]
    for i in range(n):
        smoker = "" if i % 10 == 0 else ("TRUE" if rng.random() < 0.4 else "false")
        visits = "?" if i % 7 == 0 else str(int(rng.integers(0, 40)))
        ward = "?" if i % 11 == 0 else str(rng.choice(["A", "b", "C 2"]))
        outcome = "Died" if i % 5 == 0 else "Lived"
        lines.append(f"P{i:04d},{dates[i]},{smoker},{visits},{ward},{rng.normal():.4f},{outcome}")
    path = write(tmp_path / "odd.csv", "\n".join(lines) + "\n")
    cfg = table_cfg(path, target="Outcome", id_column="Patient ID", time_column="Visit_Date")
    data = load_table(cfg, max_records=None)
    frame = data.frame
    assert "Patient ID" not in frame.columns and frame.index[0] == "P0000"
    assert str(frame["Visit_Date"].dtype).startswith("datetime64")
    assert data.column_kinds["Visit_Date"] == "datetime"
    assert str(frame["IsSmoker"].dtype) == "boolean" and frame["IsSmoker"].isna().sum() == 12
    assert str(frame["Num Visits"].dtype) == "Int64" and frame["Num Visits"].isna().sum() == 18
    assert data.column_kinds["Num Visits"] == "continuous"
    assert frame["Ward"].isna().sum() == 11
    assert data.positive_label == "Died"
    round_trip(data)


def test_user_public_domain(tmp_path: Path, simple_csv: Path) -> None:
    domain = {
        "x": {"bounds": [-5, 5]},
        "count": {"bounds": [0, 100]},
        "code": {"categories": [1, 2, 3]},
        "colour": {"categories": ["red", "green", "blue"]},
    }
    data = load_table(table_cfg(simple_csv, public_domain=domain), max_records=None)
    assert data.public_domain.kind("code") == "categorical"
    with pytest.raises(UserInputError, match=r"public_domain declares column\(s\) \['nope'\]"):
        load_table(
            table_cfg(simple_csv, public_domain={"nope": {"bounds": [0, 1]}}), max_records=None
        )


def load_table_error(cfg: Any) -> str:
    with pytest.raises(UserInputError) as info:
        load_table(cfg, max_records=None)
    return str(info.value)


def test_error_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    message = load_table_error(table_cfg(Path("no/such.csv")))
    assert str(tmp_path / "no" / "such.csv") in message
    assert "relative paths resolve against the current directory" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (bytes(range(256)) * 40, "not a text table"),
        (b"a,b,label\n1,2,x\n3,4,y,5,6\n", "could not parse"),
        (b"a,b,label\n", "no data rows"),
    ],
    ids=["zero-bytes", "blank", "binary", "ragged", "header-only"],
)
def test_error_unreadable_files(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    assert expected in load_table_error(table_cfg(path))


def test_error_garbage_parquet(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    assert "could not read it as Parquet" in load_table_error(table_cfg(path))


def test_error_missing_target_lists_columns(simple_csv: Path) -> None:
    message = load_table_error(table_cfg(simple_csv, target="Label"))
    assert "['Label']" in message and "did you mean 'label'" in message
    assert "'colour'" in message


def test_error_single_class_target(tmp_path: Path) -> None:
    path = write(tmp_path / "one.csv", "a,label\n1,x\n2,x\n3,x\n")
    assert "single class" in load_table_error(table_cfg(path))


def test_missing_target_dropped_or_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "gaps.csv", "a,label\n1,x\n2,?\n3,y\n4,\n5,x\n6,y\n")
    data = load_table(table_cfg(path), max_records=None)
    assert list(data.frame.index) == [0, 2, 4, 5]  # record ids are the file's row numbers
    assert "dropped 2 of 6 rows" in caplog.text
    message = load_table_error(table_cfg(path, drop_missing_target=False))
    assert "missing in 2 of 6 rows" in message and "drop_missing_target" in message


def test_empty_column_dropped_or_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "empty.csv", "a,blank,label\n1,,x\n2,?,y\n3,,x\n4,NA,y\n")
    data = load_table(table_cfg(path), max_records=None)
    assert "blank" not in data.frame.columns and "['blank']" in caplog.text
    message = load_table_error(table_cfg(path, drop_empty_columns=False))
    assert "['blank']" in message and "dataset.drop_columns" in message


def test_error_duplicate_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.csv", "id,a,label\n1,1,x\n2,2,y\n2,3,x\n4,4,y\n")
    message = load_table_error(table_cfg(path, id_column="id"))
    assert "not unique" in message and "[2]" in message


def test_error_unknown_columns_in_config(simple_csv: Path) -> None:
    assert "drop_columns names column(s) ['nope']" in load_table_error(
        table_cfg(simple_csv, drop_columns=["nope"])
    )
    assert "column_types names column(s) ['Colour']" in load_table_error(
        table_cfg(simple_csv, column_types={"Colour": "categorical"})
    )
    assert "unknown kind" in load_table_error(
        table_cfg(simple_csv, column_types={"colour": "text"})
    )


def test_high_cardinality_error_drop_other(tmp_path: Path) -> None:
    n = 300
    names = [f"name{i}" for i in range(n)]
    frame = pd.DataFrame({"name": names, "a": range(n), "label": ["x", "y"] * (n // 2)})
    path = tmp_path / "names.csv"
    frame.to_csv(path, index=False)
    assert "max_categories=100" in load_table_error(table_cfg(path))
    dropped = load_table(table_cfg(path, high_cardinality="drop"), max_records=None)
    assert "name" not in dropped.frame.columns
    lumped = load_table(
        table_cfg(path, high_cardinality="other", max_categories=10), max_records=None
    )
    assert lumped.frame["name"].nunique() == 10 and (lumped.frame["name"] == "other").sum() == 291


def test_declared_types_that_do_not_fit(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "when,amount,label\n2020-01-01,1,x\nsoon,2,y\n")
    assert "declared datetime" in load_table_error(
        table_cfg(path, column_types={"when": "datetime"})
    )
    assert "declared continuous" in load_table_error(
        table_cfg(path, column_types={"when": "continuous"})
    )


def test_numbers_are_never_dates(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "year,code,label\n2020,20200101,x\n2021,20200102,y\n")
    data = load_table(table_cfg(path), max_records=None)
    assert set(data.column_kinds.values()) == {"categorical"}  # two integers each


def test_cli_prints_schema_and_overrides(simple_csv: Path) -> None:
    result = subprocess.run(
        [_python(), "-m", "dpshare.data.table", str(simple_csv), "--target", "label"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "200 rows, 5 columns" in out
    assert "code" in out and "categorical" in out and "target" in out
    assert "++dataset.column_types.code=continuous" in out
    assert "++dataset.column_types.count=categorical" in out
    assert "dataset.target=label" in out


def test_cli_error_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [_python(), "-m", "dpshare.data.table", str(tmp_path / "none.csv")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: data file") and "Traceback" not in result.stderr


def _python() -> str:
    import sys

    return sys.executable
