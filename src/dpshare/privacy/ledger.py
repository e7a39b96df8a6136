"""The privacy ledger: one place that lists every access a run makes to real records.

Each entry says which module read real data, for what, how many records it could see, and under
which mechanism. A run is differentially private only if *every* entry is a DP mechanism; a single
non-private access (a transformer fitted on raw statistics, an unclipped discriminator step, a
feedback signal computed on real data) makes the run's epsilon infinite, and the record says so.

This module is pure Python: it imports neither Lightning nor wandb (STYLE.md rule 2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

NON_PRIVATE = "non_private"


@dataclass(frozen=True)
class LedgerEntry:
    """One mechanism that touched real records.

    Attributes:
        mechanism: ``non_private`` for a raw read; DP mechanisms name themselves.
        module: who read the data (e.g. ``transformer``, ``discriminator``).
        purpose: what the access was for, in words.
        records: how many real records the mechanism could read.
        differentially_private: whether the access is covered by a DP guarantee.
        parameters: mechanism parameters (counts, noise multipliers, sensitivities...).
    """

    mechanism: str
    module: str
    purpose: str
    records: int
    differentially_private: bool
    parameters: Mapping[str, Any] = field(default_factory=dict)


class PrivacyLedger:
    """Append-only list of accesses to real records, saved with every run."""

    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []

    @property
    def entries(self) -> list[LedgerEntry]:
        return list(self._entries)

    def record_non_private(
        self, *, module: str, purpose: str, records: int, **parameters: Any
    ) -> LedgerEntry:
        """Record a raw (non-DP) read of real records; the run's epsilon becomes infinite."""
        entry = LedgerEntry(
            mechanism=NON_PRIVATE,
            module=module,
            purpose=purpose,
            records=int(records),
            differentially_private=False,
            parameters=dict(parameters),
        )
        self._entries.append(entry)
        return entry

    def update_parameters(self, entry: LedgerEntry, **parameters: Any) -> LedgerEntry:
        """Replace ``entry`` by a copy with updated parameters (e.g. a final step count)."""
        index = self._entries.index(entry)
        updated = LedgerEntry(
            mechanism=entry.mechanism,
            module=entry.module,
            purpose=entry.purpose,
            records=entry.records,
            differentially_private=entry.differentially_private,
            parameters={**entry.parameters, **parameters},
        )
        self._entries[index] = updated
        return updated

    @property
    def non_private_entries(self) -> list[LedgerEntry]:
        return [e for e in self._entries if not e.differentially_private]

    @property
    def is_private(self) -> bool:
        """True when every access is a DP mechanism (vacuously true for an empty ledger)."""
        return not self.non_private_entries

    def epsilon_spent(self) -> float:
        """Total epsilon: infinite as soon as one access is not differentially private."""
        if not self.is_private:
            return math.inf
        # Only non-private entries can be recorded so far, so a private ledger is an empty one.
        return 0.0

    def to_dict(self) -> dict[str, Any]:
        epsilon = self.epsilon_spent()
        return {
            "differentially_private": self.is_private,
            "epsilon_spent": "inf" if math.isinf(epsilon) else epsilon,
            "n_entries": len(self._entries),
            "n_non_private_entries": len(self.non_private_entries),
            "entries": [asdict(e) for e in self._entries],
        }
