"""The one in-memory form every dataset takes, and the seeded train/validation/test split.

A :class:`TabularData` holds the *released schema*: the columns a synthetic table will have
(features and target, original dtypes). Record identifiers and sequence keys travel beside it,
never as modelled columns: they are kept for privacy attacks (membership needs record ids) and for
building sequences, and are never synthesized.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from dpshare.errors import UserInputError


@dataclass
class TabularData:
    """A real table ready for splitting.

    Attributes:
        name: registry name of the dataset.
        frame: released columns (features + target) with their original dtypes. The index holds
            the record identifiers (name ``record_id``).
        target: the label column (downstream prediction task, generator condition).
        positive_label: the class treated as positive for binary metrics (e.g. high risk).
        group_ids: optional sequence key per record (e.g. account id), aligned with ``frame``.
        time_column: optional time column inside ``frame``.
        institution_column: optional column naming the institution (bank, care unit) of a record.
        column_kinds: optional per-column overrides for the transformer
            (``continuous`` | ``categorical`` | ``datetime``).
        description: one line for records and reports.
    """

    name: str
    frame: pd.DataFrame
    target: str
    positive_label: Any = 1
    group_ids: np.ndarray | None = None
    time_column: str | None = None
    institution_column: str | None = None
    column_kinds: dict[str, str] = field(default_factory=dict)
    description: str = ""
    # Column bounds and categories known without looking at the records (a
    # ``dpshare.data.transformer.PublicDomain``); a DP fit of the transformer needs it.
    public_domain: Any = None

    def __post_init__(self) -> None:
        if self.target not in self.frame.columns:
            raise UserInputError(
                f"dataset {self.name!r}: target column {self.target!r} is not in the table; "
                f"columns are {list(self.frame.columns)}"
            )
        if self.frame[self.target].isna().any():
            raise UserInputError(
                f"dataset {self.name!r}: target column {self.target!r} has missing values; "
                "drop or impute those rows first"
            )
        n_classes = self.frame[self.target].nunique()
        if n_classes < 2:
            raise UserInputError(
                f"dataset {self.name!r}: target column {self.target!r} has a single class; "
                "a prediction task needs at least two"
            )
        if self.group_ids is not None and len(self.group_ids) != len(self.frame):
            raise UserInputError("group_ids must have one entry per record")

    @property
    def feature_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != self.target]

    @property
    def record_ids(self) -> np.ndarray:
        return self.frame.index.to_numpy()

    def subsample(self, max_records: int | None, *, seed: int) -> TabularData:
        """A stratified random subset of at most ``max_records`` records (self if smaller)."""
        if max_records is None or len(self.frame) <= max_records:
            return self
        positions = np.arange(len(self.frame))
        keep, _ = train_test_split(
            positions,
            train_size=max_records,
            random_state=seed,
            stratify=self.frame[self.target].to_numpy(),
        )
        keep = np.sort(keep)
        return TabularData(
            name=self.name,
            frame=self.frame.iloc[keep],
            target=self.target,
            positive_label=self.positive_label,
            group_ids=None if self.group_ids is None else self.group_ids[keep],
            time_column=self.time_column,
            institution_column=self.institution_column,
            column_kinds=dict(self.column_kinds),
            description=self.description,
        )


@dataclass
class DataSplits:
    """Real train / validation / test tables (index = record ids).

    ``test`` is for evaluation only: it is never passed to a generator, a noise controller or a
    model-selection step.
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def split_records(
    data: TabularData,
    *,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    stratify: bool = True,
) -> DataSplits:
    """Seeded record-level split; stratified by the target when ``stratify``."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise UserInputError(f"dataset.{name} must be in (0, 1), got {value}")
    if val_fraction + test_fraction >= 0.9:
        raise UserInputError(
            f"dataset.val_fraction + dataset.test_fraction = {val_fraction + test_fraction:.2f} "
            "leaves less than 10% of the records for training; lower them"
        )
    frame = data.frame
    labels = frame[data.target].to_numpy() if stratify else None
    rest, test = train_test_split(
        frame, test_size=test_fraction, random_state=split_seed, stratify=labels
    )
    rest_labels = rest[data.target].to_numpy() if stratify else None
    train, validation = train_test_split(
        rest,
        test_size=val_fraction / (1.0 - test_fraction),
        random_state=split_seed + 1,
        stratify=rest_labels,
    )
    return DataSplits(
        train=train.sort_index(), validation=validation.sort_index(), test=test.sort_index()
    )
