"""The one in-memory form every dataset takes, and the seeded train/validation/test split.

A :class:`TabularData` holds the *released schema*: the columns a synthetic table will have
(features and target, original dtypes). Record identifiers and sequence keys travel beside it,
never as modelled columns: they are kept for privacy attacks (membership needs record ids) and for
building sequences, and are never synthesized.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from dpshare.errors import UserInputError


def check_max_records(max_records: int | None) -> None:
    """Refuse a ``scale.max_records`` cap that is not a whole number >= 1 (``None``: no cap)."""
    if max_records is None:
        return
    if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
        raise UserInputError(
            f"scale.max_records={max_records!r}: give a whole number >= 1 (the most records "
            "to load; a run needs enough for its train/validation/test splits), or "
            "scale.max_records=null for every record"
        )


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
        public_domain: column bounds/categories known without reading the records
            (a ``dpshare.data.transformer.PublicDomain``); a DP transformer fit needs it.
        predefined_test: optional boolean mask aligned with ``frame``: the dataset's official
            test records (e.g. MNIST's t10k). When given, the test split is exactly these.
        sequences: optional per-record arrays aligned with ``frame`` (e.g. MIMIC-III windows,
            shape (n, T, V)) for temporal models; never part of the released flat schema.
        sequence_features: names of the V variables in ``sequences``.
        sequence_bounds: public ``(lo, hi)`` of each sequence variable (e.g. MIMIC-III's valid
            ranges), used to scale ``sequences`` without reading the records.
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
    predefined_test: np.ndarray | None = None
    sequences: np.ndarray | None = None
    sequence_features: list[str] = field(default_factory=list)
    sequence_bounds: dict[str, tuple[float, float]] | None = None

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
        for name in ("group_ids", "predefined_test", "sequences"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.frame):
                raise UserInputError(
                    f"dataset {self.name!r}: {name} must have one entry per record"
                )
        if not self.frame.index.is_unique:
            raise UserInputError(
                f"dataset {self.name!r}: record identifiers (the index) must be unique"
            )

    @property
    def feature_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != self.target]

    @property
    def record_ids(self) -> np.ndarray:
        return self.frame.index.to_numpy()

    def subsample(self, max_records: int | None, *, seed: int) -> TabularData:
        """A stratified random subset of at most ``max_records`` records (self if smaller)."""
        check_max_records(max_records)
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
        return replace(
            self,
            frame=self.frame.iloc[keep],
            group_ids=None if self.group_ids is None else self.group_ids[keep],
            predefined_test=None if self.predefined_test is None else self.predefined_test[keep],
            sequences=None if self.sequences is None else self.sequences[keep],
        )

    def sequences_for(self, index: pd.Index) -> np.ndarray | None:
        """The ``sequences`` rows of the records in ``index`` (e.g. one split)."""
        if self.sequences is None:
            return None
        positions = self.frame.index.get_indexer(index)
        if (positions < 0).any():
            raise KeyError("some records are not in this dataset")
        return self.sequences[positions]


@dataclass
class DataSplits:
    """Real train / validation / test tables (index = record ids).

    ``test`` is for evaluation only: it is never passed to a generator, a noise controller or a
    model-selection step.
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    # Population data disjoint from train and test, for attacks that need it (e.g. a membership
    # attack's reference model); empty unless ``dataset.reference_fraction > 0``. Generators
    # never see it.
    reference: pd.DataFrame = field(default_factory=pd.DataFrame)

    def sizes(self) -> dict[str, int]:
        out = {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }
        if len(self.reference):
            out["reference"] = len(self.reference)
        return out


def split_records(
    data: TabularData,
    *,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    stratify: bool = True,
    reference_fraction: float = 0.0,
) -> DataSplits:
    """Seeded record-level split; stratified by the target when ``stratify``.

    With ``data.predefined_test`` the test split is the dataset's official test set and
    ``test_fraction`` is ignored. ``reference_fraction`` of the non-test records form a reference
    split (population data for attacks), drawn before train and validation.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise UserInputError(f"dataset.{name} must be in (0, 1), got {value}")
    if not 0.0 <= reference_fraction < 1.0:
        raise UserInputError(
            f"dataset.reference_fraction must be in [0, 1), got {reference_fraction}"
        )
    frame = data.frame
    if data.predefined_test is not None:
        mask = np.asarray(data.predefined_test, dtype=bool)
        if mask.all() or not mask.any():
            raise UserInputError(
                f"dataset {data.name!r}: the predefined test set must be a proper subset"
            )
        rest, test = frame[~mask], frame[mask]
        test_fraction = len(test) / len(frame)
    else:
        labels = frame[data.target].to_numpy() if stratify else None
        rest, test = train_test_split(
            frame, test_size=test_fraction, random_state=split_seed, stratify=labels
        )
    train_share = (1.0 - test_fraction) * (1.0 - reference_fraction) - val_fraction
    if train_share < 0.1:
        raise UserInputError(
            f"dataset.val_fraction={val_fraction}, test share {test_fraction:.2f} and "
            f"dataset.reference_fraction={reference_fraction} leave {max(train_share, 0):.0%} "
            "of the records for training (less than 10%); lower them"
        )
    reference = frame.iloc[:0]
    if reference_fraction > 0:
        rest, reference = train_test_split(
            rest,
            test_size=reference_fraction,
            random_state=split_seed + 2,
            stratify=rest[data.target].to_numpy() if stratify else None,
        )
    val_share = val_fraction * len(frame) / len(rest)
    rest_labels = rest[data.target].to_numpy() if stratify else None
    train, validation = train_test_split(
        rest,
        test_size=val_share,
        random_state=split_seed + 1,
        stratify=rest_labels,
    )
    return DataSplits(
        train=train.sort_index(),
        validation=validation.sort_index(),
        test=test.sort_index(),
        reference=reference.sort_index(),
    )
