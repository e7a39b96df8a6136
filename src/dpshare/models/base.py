"""What every method offers the rest of the suite: fit on the real train split, then release an
artifact. Generators (:class:`SyntheticDataMethod`) release synthetic tables in the original
schema via ``sample``; model methods (:class:`ReleasedModelMethod`: DP-LR, FedAvg) release a
trained classifier, which evaluation scores on the real test split through ``predict_proba``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytorch_lightning as pl
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier


class SyntheticDataMethod(ABC):
    """A generator method: ``fit`` reads the real train split (through its DataModule, with every
    access in the ledger); ``sample`` is post-processing and reads no real data."""

    name: ClassVar[str]
    artifact = "synthetic"
    # False for a method whose model cannot be saved as a dpshare generator artifact (a peer
    # library, docs/peers.md): its run keeps the synthetic table only
    saves_generator: ClassVar[bool] = True

    @abstractmethod
    def fit(self, trainer: pl.Trainer) -> None: ...

    @abstractmethod
    def sample(
        self, n: int, *, seed: int, class_mix: Mapping[Any, float] | None = None
    ) -> pd.DataFrame: ...

    def privacy_summary(self) -> dict[str, Any]:
        """Extra privacy facts for ``privacy_ledger.json`` (e.g. a noise controller's trace)."""
        return {}

    def artifacts(self) -> dict[str, Any]:
        """Arrays released with the table (e.g. generated windows), saved as ``<name>.npy``."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Weights of the released model (saved with the run)."""
        return {}

    def snapshot_state(self) -> dict[str, Any]:
        """A copy of what :meth:`sample` needs, taken now (``privacy.snapshots``)."""
        from dpshare.errors import UserInputError

        raise UserInputError(f"method={self.name} cannot release privacy.snapshots")

    def load_snapshot_state(self, state: dict[str, Any]) -> None:
        """Make :meth:`sample` draw from a state returned by :meth:`snapshot_state`."""
        raise NotImplementedError

    def sampling_state(self) -> dict[str, Any]:
        """JSON-able facts, beyond the method config, the released data description and the
        weights of :meth:`state_dict`, that :meth:`for_sampling` needs to rebuild this
        sampler from a saved run (:mod:`dpshare.artifact`). Only what was released and
        charged to the run's ledger (or is public) may go in here."""
        return {}

    @classmethod
    def for_sampling(cls, cfg: Any, datamodule: Any, state: Mapping[str, Any]) -> Any:
        """A method that only samples, rebuilt from a saved run around ``datamodule`` (a
        :class:`dpshare.artifact.SavedDataModule`: released statistics, no real record) and
        ``state`` (:meth:`sampling_state`); the caller then loads the generator weights with
        :meth:`load_snapshot_state`."""
        from dpshare.errors import UserInputError

        raise UserInputError(f"method={cls.name} cannot be rebuilt from a saved run")


class ReleasedModelMethod(ABC):
    """A method whose released artifact is a classifier of the dataset's target: ``fit`` reads
    the real train split (every access in the ledger); ``predict_proba`` takes rows in the
    released schema (features; a target column is ignored) and returns one column per entry of
    :attr:`classes`. Prediction is post-processing of the released model."""

    name: ClassVar[str]
    artifact = "model"
    releases_class_counts = False  # the privacy plan then budgets no class-count release
    classes: np.ndarray

    @abstractmethod
    def fit(self, trainer: pl.Trainer) -> None: ...

    @abstractmethod
    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray: ...

    def privacy_summary(self) -> dict[str, Any]:
        return {}

    def attack_surrogate(self, seed: int) -> Any:
        """An unfitted, NON-private scikit-learn model of the released model's family: the
        attacker's shadow models (LiRA) are trained with it. ``method.hidden_dims: []`` (a
        linear softmax) maps to logistic regression, hidden layers to an MLP of those widths."""
        hidden = list(getattr(getattr(self, "cfg", None), "hidden_dims", None) or [])
        if not hidden:
            return LogisticRegression(max_iter=2000, random_state=seed)
        return MLPClassifier(hidden_layer_sizes=tuple(hidden), max_iter=300, random_state=seed)

    def artifacts(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}
