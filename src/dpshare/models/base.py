"""What every method offers the rest of the suite: fit on the real train split, then release an
artifact. Generators release synthetic tables in the original schema via :meth:`sample`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd
import pytorch_lightning as pl


class SyntheticDataMethod(ABC):
    """A generator method: ``fit`` reads the real train split (through its DataModule, with every
    access in the ledger); ``sample`` is post-processing and reads no real data."""

    name: ClassVar[str]

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
