"""The split contract every dataset shares: seeded, disjoint, stratified; an official test set
when the dataset has one; an optional reference split; the test split never reaches a
generator's DataModule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dpshare.data.base import TabularData, split_records
from dpshare.data.datamodule import TabularDataModule
from dpshare.errors import UserInputError
from dpshare.privacy import PrivacyLedger


def _data(n: int = 2000, predefined: bool = False) -> TabularData:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "c": rng.choice(["a", "b", "c"], size=n),
            "y": (rng.random(n) < 0.2).astype(np.int64),
        },
        index=pd.Index([f"r{i:05d}" for i in range(n)], name="record_id"),
    )
    mask = np.arange(n) >= n - 300 if predefined else None
    return TabularData(name="toy", frame=frame, target="y", predefined_test=mask)


def _ids(frame: pd.DataFrame) -> set:
    return set(frame.index)


@pytest.mark.parametrize("reference_fraction", [0.0, 0.15])
def test_splits_are_disjoint_cover_everything_and_are_seeded(reference_fraction: float) -> None:
    data = _data()
    a = split_records(
        data,
        val_fraction=0.1,
        test_fraction=0.2,
        split_seed=3,
        reference_fraction=reference_fraction,
    )
    b = split_records(
        data,
        val_fraction=0.1,
        test_fraction=0.2,
        split_seed=3,
        reference_fraction=reference_fraction,
    )
    parts = [a.train, a.validation, a.test, a.reference]
    ids = [_ids(p) for p in parts]
    assert sum(len(i) for i in ids) == len(data.frame)
    assert set().union(*ids) == _ids(data.frame)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not ids[i] & ids[j]
    assert all(
        x.index.equals(y.index)
        for x, y in zip(parts, [b.train, b.validation, b.test, b.reference], strict=True)
    )
    assert len(a.test) == 400 and len(a.validation) == 200
    assert len(a.reference) == (round(0.15 * 1600) if reference_fraction else 0)
    for part in (a.train, a.test):  # stratified
        assert part["y"].mean() == pytest.approx(data.frame["y"].mean(), abs=0.02)


def test_a_predefined_test_set_is_the_test_split() -> None:
    data = _data(predefined=True)
    splits = split_records(data, val_fraction=0.1, test_fraction=0.2, split_seed=0)
    assert _ids(splits.test) == set(data.frame.index[data.predefined_test])
    assert len(splits.validation) == 200


def test_bad_fractions_fail_clearly() -> None:
    with pytest.raises(UserInputError, match="reference_fraction"):
        split_records(
            _data(), val_fraction=0.1, test_fraction=0.2, split_seed=0, reference_fraction=1.5
        )
    with pytest.raises(UserInputError, match="less than 10%"):
        split_records(_data(), val_fraction=0.5, test_fraction=0.45, split_seed=0)


def test_duplicate_record_ids_are_refused() -> None:
    frame = _data().frame.reset_index(drop=True)
    frame.index = pd.Index(["same"] * len(frame), name="record_id")
    with pytest.raises(UserInputError, match="unique"):
        TabularData(name="dup", frame=frame, target="y")


def test_the_datamodule_never_holds_test_or_reference_records() -> None:
    data = _data()
    splits = split_records(
        data, val_fraction=0.1, test_fraction=0.2, split_seed=0, reference_fraction=0.1
    )
    dm = TabularDataModule(data, splits.train, batch_size=100, ledger=PrivacyLedger())
    dm.setup()
    assert len(dm.x_train) == len(splits.train)
    held = _ids(dm.train_frame)
    assert not held & _ids(splits.test) and not held & _ids(splits.reference)
    assert not any(
        isinstance(v, pd.DataFrame) and _ids(v) & _ids(splits.test) for v in vars(dm).values()
    )
