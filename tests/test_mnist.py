"""MNIST IDX reader and loader: real files (checksums, shapes), generated IDX files (round trip,
truncation, wrong magic, checksum mismatch), offline errors, and the flat TabularData split."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from dpshare.config import register_configs
from dpshare.data import mnist
from dpshare.data.base import split_records
from dpshare.data.mnist import (
    FILES,
    GZ_MD5,
    PIXEL_COLUMNS,
    MNISTConfig,
    load_mnist,
    read_idx,
    read_mnist,
    write_idx,
)
from dpshare.data.transformer import PublicDomain
from dpshare.errors import UserInputError

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO_ROOT.parent / "shared" / "datasets" / "mnist"
HAVE_REAL = all((MNIST_DIR / f"{name}.gz").is_file() for name in FILES.values())
needs_real = pytest.mark.skipif(
    not HAVE_REAL, reason=f"the real MNIST files are not in {MNIST_DIR} (see docs/mnist.md)"
)

# Official class counts (train, t10k).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def fake_mnist(root: Path, *, n_train: int = 40, n_test: int = 20, gz: bool = True) -> dict:
    """Four small valid IDX files (random pixels, every digit present) in ``root``."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    suffix = ".gz" if gz else ""
    for role, array in arrays.items():
        write_idx(root / f"{FILES[role]}{suffix}", array)
    return arrays


# ------------------------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def real() -> mnist.MNISTArrays:
    if not HAVE_REAL:
        pytest.skip(f"the real MNIST files are not in {MNIST_DIR} (see docs/mnist.md)")
    return read_mnist(MNIST_DIR, verify=True)


@needs_real
def test_real_files_shapes_counts_and_checksums(real: mnist.MNISTArrays) -> None:
    assert real.verified
    assert real.train_images.shape == (60_000, 28, 28)
    assert real.test_images.shape == (10_000, 28, 28)
    assert real.train_images.dtype == np.uint8 and real.test_images.dtype == np.uint8
    assert real.train_labels.shape == (60_000,) and real.test_labels.shape == (10_000,)
    assert np.bincount(real.train_labels, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(real.test_labels, minlength=10).tolist() == TEST_COUNTS
    assert sum(TRAIN_COUNTS) + sum(TEST_COUNTS) == 70_000
    assert int(real.train_images.max()) == 255 and int(real.train_images.min()) == 0
    # First training label of MNIST is a 5, first test label a 7.
    assert (int(real.train_labels[0]), int(real.test_labels[0])) == (5, 7)
    assert {p.name for p in real.files.values()} == {f"{n}.gz" for n in FILES.values()}


@needs_real
def test_raw_md5s_match_the_decompressed_official_files(tmp_path: Path) -> None:
    """RAW_MD5 is derived from the (MD5-verified) .gz files: reading raw copies verifies."""
    for name in FILES.values():
        (tmp_path / name).write_bytes(gzip.decompress((MNIST_DIR / f"{name}.gz").read_bytes()))
    arrays = read_mnist(tmp_path, verify=True)
    assert {p.name for p in arrays.files.values()} == set(FILES.values())
    assert arrays.train_images.shape == (60_000, 28, 28)


# -------------------------------------------------------------------------- generated files


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_generated_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    arrays = fake_mnist(tmp_path, gz=gz)
    got = read_mnist(tmp_path, verify=False)
    assert not got.verified
    for role, expected in arrays.items():
        value = getattr(got, role)
        assert value.dtype == np.uint8
        np.testing.assert_array_equal(value, expected)
    suffix = ".gz" if gz else ""
    assert got.files["train_images"] == tmp_path / f"train-images-idx3-ubyte{suffix}"


def test_read_idx_other_dtypes_round_trip(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "x.idx.gz", array)), array)


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_truncated_file_names_file_and_expected_bytes(tmp_path: Path, gz: bool) -> None:
    fake_mnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    blob = path.read_bytes()
    expected = 16 + 40 * 28 * 28
    assert len(blob) == expected
    if gz:
        path.unlink()
        path = tmp_path / "train-images-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(blob[:-100]))  # a valid gzip of a short IDX file
    else:
        path.write_bytes(blob[:-100])
    with pytest.raises(UserInputError) as err:
        read_mnist(tmp_path, verify=False)
    message = str(err.value)
    assert str(path) in message and "truncated" in message
    assert f"{expected:,} bytes" in message and f"{expected - 100:,} bytes" in message


def test_cut_gzip_stream_is_reported_truncated(tmp_path: Path) -> None:
    fake_mnist(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(UserInputError, match=r"t10k-images-idx3-ubyte\.gz is truncated"):
        read_mnist(tmp_path, verify=False)


def test_wrong_magic_number(tmp_path: Path) -> None:
    fake_mnist(tmp_path, gz=True)
    # A labels file where the images file should be: magic 2049 instead of 2051.
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros(40, dtype=np.uint8))
    with pytest.raises(UserInputError, match=r"magic number 2049 .*expected 2051"):
        read_mnist(tmp_path, verify=False)
    with pytest.raises(UserInputError, match="not a valid IDX header"):
        (tmp_path / "junk").write_bytes(b"\x1f\x8b\x08\x00" + bytes(100))
        read_idx(tmp_path / "junk")


def test_checksum_mismatch_is_clear_and_can_be_turned_off(tmp_path: Path) -> None:
    fake_mnist(tmp_path, gz=True)
    with pytest.raises(UserInputError) as err:
        read_mnist(tmp_path, verify=True)
    message = str(err.value)
    assert "MD5 checksum mismatch" in message and "verify_checksums=false" in message
    assert any(GZ_MD5[name] in message for name in FILES.values())
    data = load_mnist(
        {"root": str(tmp_path), "verify_checksums": False, "positive_label": 3}, max_records=None
    )
    assert len(data.frame) == 60 and data.positive_label == 3


@needs_real
def test_modified_real_file_fails_its_checksum(tmp_path: Path) -> None:
    for name in FILES.values():
        shutil.copy(MNIST_DIR / f"{name}.gz", tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8] = (raw[8] + 1) % 10  # relabel the first test image: structure still valid
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(UserInputError, match=r"t10k-labels-idx1-ubyte\.gz: MD5 checksum mismatch"):
        read_mnist(tmp_path)
    assert read_mnist(tmp_path, verify=False).test_labels[0] == (7 + 1) % 10


def test_inconsistent_files_and_bad_labels(tmp_path: Path) -> None:
    fake_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(20, 12, dtype=np.uint8))
    with pytest.raises(UserInputError, match="label 12 is not a digit"):
        read_mnist(tmp_path, verify=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(19, dtype=np.uint8))
    with pytest.raises(UserInputError, match="20 images .* 19 labels"):
        read_mnist(tmp_path, verify=False)


# ------------------------------------------------------------------------- missing / offline


def _assert_lists_files_and_fix(message: str) -> None:
    for name in FILES.values():
        assert name in message
    assert "dataset.root" in message and "MNIST_ROOT" in message


def test_missing_files_offline_error_lists_the_four_names(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as err:
        read_mnist(tmp_path, verify=True)
    _assert_lists_files_and_fix(str(err.value))
    with pytest.raises(UserInputError, match="does not exist") as err:
        load_mnist({"root": str(tmp_path / "nowhere")}, max_records=None)
    _assert_lists_files_and_fix(str(err.value))


def test_download_from_unreachable_mirror_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mnist, "MIRRORS", ("http://127.0.0.1:9/",))
    root = tmp_path / "fresh"
    with pytest.raises(UserInputError) as err:
        load_mnist({"root": str(root), "download": True, "download_timeout_s": 5}, max_records=None)
    message = str(err.value)
    assert "could not download" in message and "http://127.0.0.1:9/" in message
    _assert_lists_files_and_fix(message)
    assert root.is_dir() and not any(root.iterdir())  # nothing half-written


def test_download_writes_verified_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local file:// 'mirror' stands in for the network: only MD5-correct files are kept."""
    mirror = tmp_path / "mirror"
    fake_mnist(mirror, gz=True)
    monkeypatch.setattr(mnist, "MIRRORS", (mirror.as_uri() + "/",))
    with pytest.raises(UserInputError, match=r"MD5 [0-9a-f]{32}, expected"):
        read_mnist(tmp_path / "root", download=True)
    fake = {
        name: hashlib.md5((mirror / f"{name}.gz").read_bytes()).hexdigest()
        for name in FILES.values()
    }
    monkeypatch.setattr(mnist, "GZ_MD5", fake)
    got = read_mnist(tmp_path / "root", download=True, verify=True)
    assert got.train_images.shape == (40, 28, 28)
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == sorted(
        f"{n}.gz" for n in FILES.values()
    )


# ------------------------------------------------------------------------------ the table


@needs_real
def test_load_mnist_flat_table_and_predefined_test_split() -> None:
    data = load_mnist(MNISTConfig(root=str(MNIST_DIR)), max_records=7_000)
    frame = data.frame
    assert frame.shape == (7_000, 785)
    assert list(frame.columns) == [*PIXEL_COLUMNS, "label"]
    assert PIXEL_COLUMNS[0] == "px_000" and PIXEL_COLUMNS[-1] == "px_783"
    assert (frame.dtypes.iloc[:784] == np.uint8).all() and frame["label"].dtype == np.int64
    assert frame.index.name == "record_id"
    assert sorted(frame["label"].unique().tolist()) == list(range(10))
    # Stratified subset: class shares within one record of the full data's.
    counts = np.bincount(frame["label"], minlength=10)
    full = np.array(TRAIN_COUNTS) + np.array(TEST_COUNTS)
    assert np.abs(counts - full * 7_000 / 70_000).max() <= 1
    is_test = frame.index.str.startswith("test-")
    np.testing.assert_array_equal(data.predefined_test, is_test)
    assert 900 <= int(data.predefined_test.sum()) <= 1_100  # about 1/7 of 7,000
    assert data.sequences is None and data.positive_label == 0
    assert data.column_kinds["px_399"] == "continuous"
    assert "label" not in data.column_kinds  # the target is not a feature
    assert isinstance(data.public_domain, PublicDomain)
    assert data.public_domain.bounds["px_783"] == (0.0, 255.0)
    assert data.public_domain.categories["label"] == tuple(range(10))
    assert set(data.public_domain.bounds) | set(data.public_domain.categories) == set(frame.columns)

    splits = split_records(data, val_fraction=0.1, test_fraction=0.2, split_seed=0)
    assert set(splits.test.index) == set(frame.index[data.predefined_test])
    assert not (set(splits.train.index) | set(splits.validation.index)) & set(splits.test.index)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 7_000
    assert len(splits.validation) == 700

    # The same seed gives the same subset; a pixel survives the table intact.
    again = load_mnist(MNISTConfig(root=str(MNIST_DIR)), max_records=7_000)
    assert again.frame.index.equals(frame.index)
    real_first = read_mnist(MNIST_DIR, verify=False).test_images[0].reshape(-1)
    full_table = load_mnist(MNISTConfig(root=str(MNIST_DIR)), max_records=None)
    assert len(full_table.frame) == 70_000 and int(full_table.predefined_test.sum()) == 10_000
    np.testing.assert_array_equal(full_table.frame.loc["test-00000"].to_numpy()[:784], real_first)


def test_config_validation_and_yaml_composes() -> None:
    with pytest.raises(UserInputError, match="positive_label"):
        mnist.mnist_settings({"positive_label": 10})
    with pytest.raises(UserInputError, match="unknown keys"):
        mnist.mnist_settings({"pixel_scale": 1.0})
    register_configs()
    ConfigStore.instance().store(group="schema/dataset", name="mnist", node=MNISTConfig)
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["dataset=mnist", "run_dir=unused"])
    node = OmegaConf.to_container(cfg.dataset, resolve=False)
    assert isinstance(node, dict)
    assert set(node) == {f.name for f in fields(MNISTConfig)}  # YAML sets every key
    settings = mnist.mnist_settings(cfg.dataset)
    assert settings.name == "mnist" and not settings.download and settings.verify_checksums
    assert node["root"] == "${oc.env:MNIST_ROOT,../shared/datasets/mnist}"
