"""Checkpoints, and resuming a run without ever resetting its privacy accounting.

* ``checkpoint_every_n_epochs`` (root key, default 1; 0 = no checkpoints): at the end of every
  n-th epoch Lightning's own ``save_checkpoint`` writes the whole training state (weights,
  optimizer moments, loop counters, the datamodule's and this callback's state) to
  ``<run_dir>/checkpoint.ckpt``, through a temporary file renamed into place. Everything in it
  is a tensor or a plain value, and it is read back with ``torch.load(weights_only=True)``
  (Lightning's ``trainer.fit(..., weights_only=True)``): loading it cannot run code.
* ``<run_dir>/ledger_journal.jsonl``: one line per charged noisy step (DP-SGD and subsampled
  signal entries), appended and flushed when the step is charged, i.e. before its update is
  applied. A crash between two checkpoints therefore loses no step's privacy cost.
* ``resume=<run dir>``: a new run with the SAME resolved config (checked by hash) continues from
  that run's checkpoint. Its ledger first replays the old run's whole journal, so epsilon
  continues from the last step the crashed process took (lost steps included), never from the
  checkpoint and never from zero; training then stops at the target as usual. Its own journal
  starts with the replayed lines, so a second crash is handled the same way.

What must be reproduced rather than redone: the data releases made before training (the DP
transformer's statistics, the class counts). A DP run with checkpoints draws a secret per-run
seed for them (:attr:`~dpshare.privacy.plan.PrivacyPlan.release_seed`) from OS entropy and keeps
it only in the checkpoint; the resumed run recomputes the identical releases from the same data
and seed (the same release, not a new one) and the ledger charges them once. Everything else
random in the resumed run (DP noise, Poisson sampling, monitor noise) gets FRESH OS entropy, so
no step reuses the noise or the sample of an earlier step. A checkpoint is therefore as
sensitive as the real data (with the seed the released statistics' noise could be recomputed):
it stays with the data holder, is deleted when the run completes, and ``dpshare.release`` never
exports it. A noise controller (``privacy=pid`` / ``wgan_feedback``) restarts its window on
resume; its steps are accounted at the floor sigma anyway, so the guarantee is unaffected.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any, TextIO

import pytorch_lightning as pl
import torch

from dpshare.errors import UserInputError
from dpshare.privacy.ledger import DP_SGD, SUBSAMPLED_GAUSSIAN, LedgerEntry, PrivacyLedger

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.ckpt"
JOURNAL_FILE = "ledger_journal.jsonl"
FORMAT = "dpshare-checkpoint/1"
STATE_KEY = "dpshare"
# training counters of the project's LightningModules, restored on resume
COUNTERS = ("discriminator_updates", "generator_updates", "updates")


def new_release_seed() -> int:
    return secrets.randbits(62)


class LedgerJournal:
    """Appends one JSON line per charged noisy step of ``ledger`` to ``path``."""

    def __init__(self, path: Path, ledger: PrivacyLedger, replayed: list[dict[str, Any]]) -> None:
        self.path = Path(path)
        self.ledger = ledger
        self._fh: TextIO | None = self.path.open("w", encoding="utf-8")
        for line in replayed:
            self._fh.write(json.dumps(line) + "\n")
        self._fh.flush()
        self.steps = len(replayed)  # lines in the file
        ledger.add_charge_hook(self._on_charge)

    def _on_charge(self, entry: LedgerEntry, noise_multiplier: float, sample_rate: float) -> None:
        if self._fh is None or entry.mechanism not in (DP_SGD, SUBSAMPLED_GAUSSIAN):
            return
        line = {
            "entry": self.ledger.entries.index(entry),
            "module": entry.module,
            "sigma": noise_multiplier,
            "q": sample_rate,
        }
        self._fh.write(json.dumps(line) + "\n")
        self._fh.flush()
        self.steps += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The journal's complete lines (a torn last line, from a crash while writing it, belongs
    to a step whose update was never applied, and is dropped)."""
    lines = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and {"entry", "module", "sigma", "q"} <= set(line):
            lines.append(line)
    return lines


def replay_journal(ledger: PrivacyLedger, lines: list[dict[str, Any]]) -> int:
    """Charge every journaled step to ``ledger`` (whose entries were rebuilt by the same
    config); returns the number of steps."""
    entries = ledger.entries
    for line in lines:
        index = int(line["entry"])
        if index >= len(entries) or entries[index].module != line["module"]:
            raise UserInputError(
                f"the ledger journal names entry {index} ({line['module']!r}), which this run's "
                "ledger does not have: the checkpoint was made by another config or version; "
                "start a new run instead of resuming"
            )
        ledger.charge_spent(entries[index], float(line["sigma"]), float(line["q"]))
    return len(lines)


class ResumeState:
    """What ``resume=<run dir>`` found there, checked before anything is built."""

    def __init__(self, run_dir: Path, *, config_hash: str | None) -> None:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise UserInputError(
                f"resume={run_dir}: no such run directory; give the directory of the run to "
                "continue (it holds checkpoint.ckpt)"
            )
        self.run_dir = run_dir
        self.checkpoint = run_dir / CHECKPOINT_FILE
        if not self.checkpoint.is_file():
            raise UserInputError(
                f"resume={run_dir}: it holds no {CHECKPOINT_FILE} (checkpoints are written every "
                "checkpoint_every_n_epochs epochs and deleted when a run completes); start a "
                "new run instead"
            )
        state = load_checkpoint(self.checkpoint)
        saved = state.get(STATE_KEY)
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise UserInputError(
                f"{self.checkpoint} is not a dpshare checkpoint of format {FORMAT}; delete it "
                "and start a new run"
            )
        if config_hash is not None and saved.get("config_hash") != config_hash:
            raise UserInputError(
                f"resume={run_dir}: its checkpoint was made with another config (hash "
                f"{saved.get('config_hash')} vs {config_hash} now); resume with exactly the "
                "overrides of that run (its config_resolved.yaml), or start a new run"
            )
        self.release_seed: int | None = saved.get("release_seed")
        self.epoch = int(state.get("epoch", 0))
        journal = run_dir / JOURNAL_FILE
        self.journal = read_journal(journal) if journal.is_file() else []
        if saved.get("journaled_steps", 0) > len(self.journal):
            raise UserInputError(
                f"{journal} records {len(self.journal)} noisy steps but the checkpoint was "
                f"taken after {saved['journaled_steps']}: the journal is truncated, so the "
                "privacy spent so far is unknown; start a new run"
            )


def resume_fit_kwargs(method: Any) -> dict[str, Any]:
    """``trainer.fit`` arguments that continue from ``method.resume_checkpoint`` (set by
    :func:`dpshare.train.train_method` on resume), loading it with ``weights_only=True``."""
    path = getattr(method, "resume_checkpoint", None)
    return {} if path is None else {"ckpt_path": str(path), "weights_only": True}


def load_checkpoint(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with an error that says what to do."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same to a user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserInputError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {first[:100]}): it is "
            "corrupted, truncated or not a checkpoint of this tool; delete it and start a new run"
        ) from None
    if not isinstance(state, dict):
        raise UserInputError(f"checkpoint {path} holds no checkpoint dictionary; delete it")
    return state


class EpochCheckpoint(pl.Callback):
    """Writes ``<run_dir>/checkpoint.ckpt`` every ``every_n_epochs`` epochs (atomically) and
    carries the resume state: counters, the secret release seed, the journal length."""

    def __init__(
        self,
        run_dir: Path,
        *,
        every_n_epochs: int,
        config_hash: str | None,
        release_seed: int | None,
        journal: LedgerJournal | None,
    ) -> None:
        self.path = Path(run_dir) / CHECKPOINT_FILE
        self.every_n_epochs = every_n_epochs
        self.config_hash = config_hash
        self.release_seed = release_seed
        self.journal = journal
        self._restored: dict[str, Any] | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs <= 0 or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp)  # every rank calls it (collective); rank 0 writes the file
        if trainer.is_global_zero:  # under DDP the other ranks have no file to move
            os.replace(tmp, self.path)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        stepper = getattr(getattr(pl_module, "private", None), "stepper", None)
        checkpoint[STATE_KEY] = {
            "format": FORMAT,
            "config_hash": self.config_hash,
            "release_seed": self.release_seed,
            "journaled_steps": self.journal.steps if self.journal else 0,
            "counters": {k: int(getattr(pl_module, k)) for k in COUNTERS if hasattr(pl_module, k)},
            "noisy_steps": None if stepper is None else int(stepper.noisy_steps),
        }

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._restored = dict(checkpoint.get(STATE_KEY) or {})

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._restored:
            return
        for key, value in self._restored.get("counters", {}).items():
            setattr(pl_module, key, int(value))
        private = getattr(pl_module, "private", None)
        stepper = getattr(private, "stepper", None)
        if (
            private is not None
            and stepper is not None
            and self._restored.get("noisy_steps") is not None
        ):
            # noisy steps TAKEN (the replayed journal), so that the record's noisy_steps matches
            # the ledger; the ones after the checkpoint, whose progress was lost, are named
            taken = int(stepper.entry.steps)
            lost = taken - int(self._restored["noisy_steps"])
            stepper.noisy_steps = taken
            private.ledger.update_parameters(stepper.entry, steps_lost_in_crash=lost)
        log.info("resumed at epoch %d with counters %s", trainer.current_epoch, self._restored)

    def remove(self) -> None:
        """After a complete run: the checkpoint holds the secret release seed (module doc)."""
        self.path.unlink(missing_ok=True)
