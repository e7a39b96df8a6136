"""Budget snapshots (``privacy.snapshots``): several privacy points from ONE noisy trajectory.

With sigma and the sample rate fixed (``privacy=fixed``, ``training_length=budget``: Tao 2020's
setting), a point ``(epsilon, delta)`` only decides how many noisy steps fit. Every point of an
epsilon or delta sweep at one sigma is therefore a prefix of the same DP-SGD trajectory: the
model after ``T_k`` steps is exactly what a separate run with budget ``(epsilon_k, delta_k)``
would release (same algorithm, same sigma, same sample rate, ``T_k`` steps), and it is DP at
that point on its own. Releasing several prefixes together is covered by the longest one.

:class:`SnapshotCapture` (a Lightning callback) copies what sampling needs, and the ledger, the
moment the trajectory reaches each snapshot's step count; after training each snapshot gets a
complete run record of its own (``<run_dir>/snapshots/<name>/``) whose config names its own
target, whose ledger holds exactly the steps taken up to it, and whose metrics come from the
same evaluation as the run's. One training run thus fills a row of a figure at the cost of one
run plus one evaluation per point (docs/privacy.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl

from dpshare.errors import UserInputError
from dpshare.privacy.ledger import PrivacyLedger
from dpshare.privacy.plan import BudgetSnapshot

SNAPSHOT_DIR = "snapshots"


@dataclass
class CapturedSnapshot:
    """One snapshot as captured: the sampling state, the ledger at that step, the step count,
    and whether training ended before the snapshot's own budget was reached."""

    snapshot: BudgetSnapshot
    state: dict[str, Any] | None
    ledger: PrivacyLedger | None
    noisy_steps: int
    stopped_early: bool = False
    error: str | None = None


class SnapshotCapture(pl.Callback):
    """Capture each :class:`~dpshare.privacy.plan.BudgetSnapshot` when the number of noisy
    discriminator steps reaches its ``steps`` (each training batch takes exactly one)."""

    def __init__(self, method: Any, ledger: PrivacyLedger, snapshots: list[BudgetSnapshot]):
        self.method = method
        self.ledger = ledger
        self.pending = sorted(snapshots, key=lambda s: s.steps)
        self.captured: list[CapturedSnapshot] = []
        for snap in [s for s in self.pending if s.budget_steps < 1]:
            self.pending.remove(snap)
            self.captured.append(
                CapturedSnapshot(
                    snap,
                    None,
                    None,
                    0,
                    error=(
                        f"privacy.noise_multiplier is too small to take even one step within "
                        f"target_epsilon={snap.target_epsilon:g} at delta {snap.target_delta:g}"
                    ),
                )
            )

    def _take(self, snap: BudgetSnapshot, steps: int, *, stopped_early: bool) -> None:
        self.captured.append(
            CapturedSnapshot(
                snap,
                self.method.snapshot_state(),
                self.ledger.snapshot(
                    target_epsilon=snap.target_epsilon, target_delta=snap.target_delta
                ),
                steps,
                stopped_early=stopped_early,
            )
        )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        steps = int(pl_module.discriminator_updates)
        while self.pending and self.pending[0].steps <= steps:
            snap = self.pending.pop(0)
            if snap.steps != steps:  # a batch took several noisy steps: the prefix is lost
                raise UserInputError(
                    f"privacy.snapshots: the snapshot at {snap.steps} noisy steps was passed "
                    f"(now {steps}); snapshots need one noisy step per training batch"
                )
            self._take(snap, steps, stopped_early=False)

    def finish(self, steps: int) -> list[CapturedSnapshot]:
        """After training: the snapshots training never reached (it ended before their
        planned step) are the final model, with the steps actually taken."""
        for snap in self.pending:
            self._take(snap, steps, stopped_early=True)
        self.pending = []
        return sorted(self.captured, key=lambda c: c.snapshot.steps)
