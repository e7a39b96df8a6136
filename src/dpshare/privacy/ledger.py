"""The privacy ledger: one place that lists every access a run makes to real records.

Each entry says which module read real data, for what, how many records it could see, and under
which mechanism:

- ``non_private``: a raw read (a transformer fitted on raw statistics, an unclipped discriminator
  step, a feedback signal computed on real data without noise). One such entry makes the run's
  epsilon infinite, and the record says so.
- ``gaussian``: a one-off Gaussian release of statistics (e.g. the transformer's normalisation
  statistics): noise std = ``noise_multiplier * l2_sensitivity``.
- ``dp_sgd``: noisy steps of a named module's DP optimizer (per-sample clipping to
  ``max_grad_norm``, Gaussian noise ``noise_multiplier * max_grad_norm``) on Poisson-sampled
  batches; the per-step noise multipliers are kept as an Opacus-style run-length history, so a
  noise schedule (PID, WGAN feedback) is composed step by step.
- ``subsampled_gaussian``: a noisy signal computed on a Poisson-sampled batch (a controller's
  feedback signal), charged like a DP-SGD step.
- ``declared_public``: a read of records the config explicitly declares public (e.g. the
  validation split used for controller signals); those records get no protection, the protected
  train records are not touched, and the record says so.
- ``external``: a release made by another library under ITS OWN accounting (a peer synthesizer of
  smartnoise-synth, docs/peers.md): the library's name and version and the ``(epsilon, delta)``
  its own accountant reports for everything it did with the records. dpshare cannot re-derive
  that figure from noise parameters; it is recorded as the library's claim, never recomputed.

The total epsilon is the composition of every DP entry by one accountant
(:mod:`dpshare.privacy.accounting`); external entries are added by basic composition
(:func:`compose_entries`). Before each noisy step a training loop asks
:meth:`PrivacyLedger.allows`; the ledger refuses a step that would push the total past the target.

This module is pure: it imports neither Lightning nor wandb (STYLE.md rule 2).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dpshare.privacy.accounting import (
    RDPBudget,
    check_accountant,
    check_delta,
    compose_epsilon,
)

NON_PRIVATE = "non_private"
GAUSSIAN = "gaussian"
DP_SGD = "dp_sgd"
SUBSAMPLED_GAUSSIAN = "subsampled_gaussian"
DECLARED_PUBLIC = "declared_public"
EXTERNAL = "external"
# mechanisms the accountant composes from their noise history
DP_MECHANISMS = (GAUSSIAN, DP_SGD, SUBSAMPLED_GAUSSIAN)
# every mechanism a ledger may hold
MECHANISMS = (NON_PRIVATE, GAUSSIAN, DP_SGD, SUBSAMPLED_GAUSSIAN, DECLARED_PUBLIC, EXTERNAL)

log = logging.getLogger(__name__)


def _accounted(entry: LedgerEntry, noise_multiplier: float) -> float:
    floor = entry.adaptive_floor
    return float(noise_multiplier) if floor is None else min(float(noise_multiplier), floor)


class BudgetExceededError(RuntimeError):
    """A mechanism asked to spend more than the target epsilon allows."""


def external_budget(entries: Sequence[LedgerEntry]) -> tuple[float, float]:
    """The ``(epsilon, delta)`` the ``external`` entries claim together, by basic composition
    (Dwork & Roth 2014, Thm. 3.16: epsilons and deltas add up)."""
    epsilon = delta = 0.0
    for entry in entries:
        if entry.mechanism == EXTERNAL:
            epsilon += float(entry.parameters["epsilon"])
            delta += float(entry.parameters["delta"])
    return epsilon, delta


def compose_entries(
    entries: Sequence[LedgerEntry],
    *,
    delta: float,
    accountant: str,
    extra_runs: Sequence[tuple[float, float, int]] = (),
    realized: bool = False,
) -> float:
    """Total epsilon at ``delta`` of ``entries`` (plus ``extra_runs``, steps not yet charged).

    ``inf`` when an entry is not differentially private. The Gaussian-type entries (and
    ``extra_runs``) are composed by ``accountant`` (at the adaptive floor, or, with
    ``realized``, at the sigmas used); ``external`` entries, whose libraries report
    ``(epsilon_i, delta_i)``, are added by basic composition: the total is
    ``sum(epsilon_i) + epsilon_rest(delta - sum(delta_i))``. It is ``inf`` when the external
    deltas leave no delta for the rest (or exceed ``delta``), because nothing smaller can be
    certified. A ledger with only external entries spends ``sum(epsilon_i)`` at
    ``sum(delta_i) <= delta``."""
    if not all(e.differentially_private for e in entries):
        return math.inf
    runs: list[tuple[float, float, int]] = []
    for e in entries:
        if e.mechanism in DP_MECHANISMS:
            if realized:
                runs += [(float(r[0]), float(r[1]), int(r[2])) for r in e.history]
            else:
                runs += e.accounting_history()
    runs += [(float(r[0]), float(r[1]), int(r[2])) for r in extra_runs]
    ext_epsilon, ext_delta = external_budget(entries)
    if not any(e.mechanism == EXTERNAL for e in entries):
        return compose_epsilon(runs, delta=delta, accountant=accountant)
    if ext_delta > delta * (1.0 + 1e-9):
        return math.inf
    if not any(r[2] > 0 for r in runs):
        return ext_epsilon
    rest_delta = delta - ext_delta
    if rest_delta <= 0.0:
        return math.inf
    return ext_epsilon + compose_epsilon(runs, delta=rest_delta, accountant=accountant)


@dataclass
class LedgerEntry:
    """One mechanism that touched real records.

    Attributes:
        mechanism: one of :data:`MECHANISMS` (``non_private``, ``gaussian``, ``dp_sgd``,
            ``subsampled_gaussian``, ``declared_public``, ``external``).
        module: who read the data (e.g. ``transformer``, ``discriminator``).
        purpose: what the access was for, in words.
        records: how many real records the mechanism could read.
        differentially_private: whether the access is covered by a DP guarantee.
        parameters: mechanism parameters (clipping bound, sensitivity, Poisson sampling...).
        history: ``[noise_multiplier, sample_rate, steps]`` runs, in order (DP entries only).
    """

    mechanism: str
    module: str
    purpose: str
    records: int
    differentially_private: bool
    parameters: dict[str, Any] = field(default_factory=dict)
    history: list[list[float]] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return int(sum(run[2] for run in self.history))

    def noise_multipliers(self) -> list[float]:
        """The full per-step noise-multiplier series (expanded from the run-length history)."""
        return [float(run[0]) for run in self.history for _ in range(int(run[2]))]

    @property
    def adaptive_floor(self) -> float | None:
        """For an adaptively chosen noise schedule, the floor every step is accounted at."""
        floor = self.parameters.get("adaptive_noise_floor")
        return None if floor is None else float(floor)

    def accounting_history(self) -> list[tuple[float, float, int]]:
        """The runs the accountant composes.

        A noise schedule chosen adaptively (a controller reading earlier outputs) is NOT
        accounted at the sigmas it happened to use: composing the realised schedule is not a
        valid bound under adaptivity. A step at sigma >= floor is the step at the floor plus
        independent extra noise (post-processing), so the adaptive run is a post-processing of
        a fixed composition at the floor, and THAT is what is accounted.
        """
        floor = self.adaptive_floor
        return [
            (float(r[0]) if floor is None else min(float(r[0]), floor), float(r[1]), int(r[2]))
            for r in self.history
        ]

    def _append(self, noise_multiplier: float, sample_rate: float) -> None:
        if (
            self.history
            and self.history[-1][0] == noise_multiplier
            and (self.history[-1][1] == sample_rate)
        ):
            self.history[-1][2] += 1
        else:
            self.history.append([float(noise_multiplier), float(sample_rate), 1])

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> LedgerEntry:
        """An entry of a saved ledger (``privacy_ledger.json``'s ``entries``); raises
        ``KeyError`` / ``TypeError`` / ``ValueError`` / ``IndexError`` on a malformed one."""
        return cls(
            mechanism=str(record["mechanism"]),
            module=str(record["module"]),
            purpose=str(record.get("purpose", "")),
            records=int(record.get("records", 0)),
            differentially_private=bool(record["differentially_private"]),
            parameters=dict(record.get("parameters") or {}),
            history=[[float(r[0]), float(r[1]), int(r[2])] for r in record.get("history") or []],
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mechanism": self.mechanism,
            "module": self.module,
            "purpose": self.purpose,
            "records": self.records,
            "differentially_private": self.differentially_private,
            "parameters": dict(self.parameters),
        }
        if self.mechanism in DP_MECHANISMS:
            series = self.noise_multipliers()
            out["steps"] = self.steps
            out["history"] = [list(run) for run in self.history]
            if self.adaptive_floor is not None:
                out["accounted_at_noise_multiplier"] = self.adaptive_floor
            if series:
                out["noise_multiplier_min"] = min(series)
                out["noise_multiplier_mean"] = sum(series) / len(series)
                out["noise_multiplier_max"] = max(series)
        return out


class PrivacyLedger:
    """Every access to real records in one run, with one accountant and an optional budget.

    Args:
        accountant: ``rdp`` or ``prv`` (see :mod:`dpshare.privacy.accounting`).
        target_epsilon: the budget; ``None`` means no budget is enforced (still counted).
        target_delta: the delta every epsilon is computed at.
        n_records: size of the real train split, for the ``delta < 1/n`` check.
    """

    def __init__(
        self,
        *,
        accountant: str = "rdp",
        target_epsilon: float | None = None,
        target_delta: float = 1e-5,
        n_records: int | None = None,
    ) -> None:
        self.accountant = check_accountant(accountant)
        self.target_epsilon = None if target_epsilon is None else float(target_epsilon)
        self.target_delta = check_delta(target_delta)
        self._entries: list[LedgerEntry] = []
        self._budget = RDPBudget(target_epsilon=self.target_epsilon, target_delta=target_delta)
        self.refused_steps = 0
        self._charge_hooks: list[Callable[[LedgerEntry, float, float], None]] = []
        self.n_records: int | None = None
        self.delta_warning = False
        if n_records is not None:
            self.set_n_records(n_records)

    def set_n_records(self, n_records: int) -> None:
        """Remember the train size; flag (and warn) when delta >= 1/n, a meaningless guarantee."""
        self.n_records = int(n_records)
        self.delta_warning = self.target_delta >= 1.0 / max(self.n_records, 1)
        if self.delta_warning:
            message = (
                f"privacy.target_delta={self.target_delta:g} >= 1/n = {1 / self.n_records:.3g}: "
                "a mechanism that publishes a few records outright satisfies this guarantee; "
                f"use delta well below 1/n (e.g. {0.1 / self.n_records:.1e}); recorded as "
                "privacy/delta_ge_1_over_n in metrics.json"
            )
            log.warning("%s", message)  # into the run's log file too
            warnings.warn(message, stacklevel=2)

    # ------------------------------------------------------------------------------- entries
    @property
    def entries(self) -> list[LedgerEntry]:
        return list(self._entries)

    def record_non_private(
        self, *, module: str, purpose: str, records: int, **parameters: Any
    ) -> LedgerEntry:
        """Record a raw (non-DP) read of real records; the run's epsilon becomes infinite."""
        entry = LedgerEntry(NON_PRIVATE, module, purpose, int(records), False, dict(parameters))
        self._entries.append(entry)
        return entry

    def record_declared_public(
        self, *, module: str, purpose: str, records: int, **parameters: Any
    ) -> LedgerEntry:
        """Record a read of records the config declares public (costs no epsilon on the
        protected train records; those public records are not protected at all)."""
        entry = LedgerEntry(DECLARED_PUBLIC, module, purpose, int(records), True, dict(parameters))
        self._entries.append(entry)
        return entry

    def record_gaussian(
        self,
        *,
        module: str,
        purpose: str,
        records: int,
        noise_multiplier: float,
        l2_sensitivity: float,
        **parameters: Any,
    ) -> LedgerEntry:
        """Charge one Gaussian release (noise std = ``noise_multiplier * l2_sensitivity``).

        Raises :class:`BudgetExceededError` if the release alone would exceed the target.
        """
        run = [(float(noise_multiplier), 1.0, 1)]
        if not self._fits(run):
            raise BudgetExceededError(
                f"{module}: a Gaussian release with noise_multiplier {noise_multiplier:g} would "
                f"spend epsilon {self._epsilon_after(run):.3f} > target "
                f"{self.target_epsilon}; raise the release's noise multiplier or the target"
            )
        entry = LedgerEntry(
            GAUSSIAN,
            module,
            purpose,
            int(records),
            True,
            {"l2_sensitivity": float(l2_sensitivity), **parameters},
        )
        self._entries.append(entry)
        self._charge(entry, float(noise_multiplier), 1.0)
        return entry

    def record_external(
        self,
        *,
        module: str,
        purpose: str,
        records: int,
        library: str,
        version: str,
        epsilon: float,
        delta: float,
        **parameters: Any,
    ) -> LedgerEntry:
        """Record a release made by another library under its own accounting (``external``):
        ``library`` (its distribution name) at ``version`` read ``records`` real records and its
        own accountant reports ``(epsilon, delta)`` for everything it did with them.

        The release has already happened, so it is recorded even when it passes the target
        (never refused here): :meth:`epsilon_spent` then exceeds the target, the run's record
        says so, and the release gate refuses it. Raises ``ValueError`` for an epsilon that is
        not a finite number >= 0 or a delta outside [0, 1)."""
        eps, dlt = float(epsilon), float(delta)
        if not (math.isfinite(eps) and eps >= 0.0):
            raise ValueError(f"record_external: epsilon must be finite and >= 0, got {epsilon}")
        if not 0.0 <= dlt < 1.0:
            raise ValueError(f"record_external: delta must be in [0, 1), got {delta}")
        entry = LedgerEntry(
            EXTERNAL,
            module,
            purpose,
            int(records),
            True,
            {"library": str(library), "version": str(version), "epsilon": eps, "delta": dlt}
            | dict(parameters),
        )
        self._entries.append(entry)
        spent = self.epsilon_spent()
        if self.target_epsilon is not None and spent > self.target_epsilon:
            log.warning(
                "%s (%s %s) reports epsilon %.6g at delta %g: the run spent %.6g > "
                "privacy.target_epsilon=%g; the release gate will refuse it",
                module,
                library,
                version,
                eps,
                dlt,
                spent,
                self.target_epsilon,
            )
        return entry

    def open_dp_sgd(
        self,
        *,
        module: str,
        purpose: str,
        records: int,
        sample_rate: float,
        poisson_sampling: bool,
        mechanism: str = DP_SGD,
        **parameters: Any,
    ) -> LedgerEntry:
        """Open an entry whose noisy steps are charged one by one with :meth:`step`."""
        if mechanism not in (DP_SGD, SUBSAMPLED_GAUSSIAN):
            raise ValueError("open_dp_sgd: mechanism must be dp_sgd or subsampled_gaussian")
        entry = LedgerEntry(
            mechanism,
            module,
            purpose,
            int(records),
            True,
            {
                "sample_rate": float(sample_rate),
                "poisson_sampling": bool(poisson_sampling),
                **parameters,
            },
        )
        self._entries.append(entry)
        return entry

    def allows(self, steps: Sequence[tuple[LedgerEntry, float]]) -> bool:
        """Would charging one step of each ``(entry, noise_multiplier)`` stay within the target?"""
        runs = [
            (_accounted(entry, sigma), float(entry.parameters["sample_rate"]), 1)
            for entry, sigma in steps
        ]
        return self._fits(runs)

    def _fits(self, runs: Sequence[tuple[float, float, int]]) -> bool:
        """Would charging ``runs`` keep the whole ledger within the target?"""
        if not self.external_entries:  # the common case: one vector addition per step
            return self._budget.allows(runs)
        return self.target_epsilon is None or self._epsilon_after(runs) <= self.target_epsilon

    def _epsilon_after(self, runs: Sequence[tuple[float, float, int]]) -> float:
        if not self.external_entries:
            return self._budget.epsilon_after(runs)
        return compose_entries(
            self._entries,
            delta=self.target_delta,
            accountant=self.accountant,
            extra_runs=runs,
        )

    def step(self, entry: LedgerEntry, noise_multiplier: float) -> None:
        """Charge one noisy step of ``entry`` (DP-SGD or subsampled signal).

        Raises :class:`BudgetExceededError` if the step would exceed the target: callers ask
        :meth:`allows` first and stop instead.
        """
        if entry not in self._entries or entry.mechanism not in (DP_SGD, SUBSAMPLED_GAUSSIAN):
            raise ValueError("step() needs a DP-SGD or subsampled-signal entry of this ledger")
        if not self.allows([(entry, noise_multiplier)]):
            self.refused_steps += 1
            raise BudgetExceededError(
                f"{entry.module}: one more step at noise_multiplier {noise_multiplier:g} would "
                f"exceed privacy.target_epsilon={self.target_epsilon}"
            )
        self._charge(entry, float(noise_multiplier), float(entry.parameters["sample_rate"]))

    def _charge(self, entry: LedgerEntry, noise_multiplier: float, sample_rate: float) -> None:
        entry._append(noise_multiplier, sample_rate)
        self._budget.charge([(_accounted(entry, noise_multiplier), sample_rate, 1)])
        for hook in self._charge_hooks:
            hook(entry, noise_multiplier, sample_rate)

    def snapshot(self, *, target_epsilon: float, target_delta: float) -> PrivacyLedger:
        """A copy of everything charged so far, judged at another ``(target_epsilon,
        target_delta)``: the ledger of a model released at this point of training
        (``privacy.snapshots``). No charge hooks; later charges to this ledger do not reach it."""
        copy = PrivacyLedger(
            accountant=self.accountant,
            target_epsilon=target_epsilon,
            target_delta=target_delta,
        )
        if self.n_records is not None:
            copy.n_records = self.n_records
            copy.delta_warning = copy.target_delta >= 1.0 / max(self.n_records, 1)
        for entry in self._entries:
            twin = LedgerEntry.from_dict(entry.to_dict())
            copy._entries.append(twin)
            if twin.mechanism in DP_MECHANISMS:
                copy._budget.charge(twin.accounting_history())
        copy.refused_steps = self.refused_steps
        return copy

    def add_charge_hook(self, hook: Callable[[LedgerEntry, float, float], None]) -> None:
        """Call ``hook(entry, noise_multiplier, sample_rate)`` after every charge (the resume
        journal, :mod:`dpshare.checkpoint`)."""
        self._charge_hooks.append(hook)

    def charge_spent(self, entry: LedgerEntry, noise_multiplier: float, sample_rate: float) -> None:
        """Record a step that was ALREADY taken (a crashed run's journal, replayed on resume):
        never refused, even past the target; the budget check stops the next step instead."""
        if entry not in self._entries or entry.mechanism not in (DP_SGD, SUBSAMPLED_GAUSSIAN):
            raise ValueError("charge_spent() needs a DP-SGD or subsampled-signal entry")
        self._charge(entry, float(noise_multiplier), float(sample_rate))

    def update_parameters(self, entry: LedgerEntry, **parameters: Any) -> LedgerEntry:
        """Add or update parameters of ``entry`` (e.g. a final step count)."""
        entry.parameters.update(parameters)
        return entry

    # ------------------------------------------------------------------------------ queries
    @property
    def non_private_entries(self) -> list[LedgerEntry]:
        return [e for e in self._entries if not e.differentially_private]

    @property
    def dp_entries(self) -> list[LedgerEntry]:
        return [e for e in self._entries if e.mechanism in DP_MECHANISMS]

    @property
    def declared_public_entries(self) -> list[LedgerEntry]:
        return [e for e in self._entries if e.mechanism == DECLARED_PUBLIC]

    @property
    def external_entries(self) -> list[LedgerEntry]:
        """Releases made by other libraries under their own accounting (``external``)."""
        return [e for e in self._entries if e.mechanism == EXTERNAL]

    @property
    def is_private(self) -> bool:
        """True when every access is a DP mechanism (vacuously true for an empty ledger)."""
        return not self.non_private_entries

    @property
    def approximate(self) -> bool:
        """True if some subsampled mechanism did not use Poisson sampling: the accountant's
        analysis assumes Poisson sampling, so its epsilon is then only an approximation."""
        return any(
            e.mechanism in (DP_SGD, SUBSAMPLED_GAUSSIAN)
            and not e.parameters.get("poisson_sampling", True)
            for e in self._entries
        )

    def history(self) -> list[tuple[float, float, int]]:
        """Every accounted run of every DP entry (what the accountant composes)."""
        return [run for e in self.dp_entries for run in e.accounting_history()]

    def realized_epsilon(self) -> float:
        """Composition of the sigmas actually used, ignoring adaptivity: informative only (what
        the same schedule would cost had it been fixed in advance); not a guarantee."""
        return compose_entries(
            self._entries, delta=self.target_delta, accountant=self.accountant, realized=True
        )

    def epsilon_spent(self, delta: float | None = None) -> float:
        """Total epsilon at ``delta`` (default: the target delta) over the whole ledger;
        infinite as soon as one access is not differentially private. External releases are
        added by basic composition (:func:`compose_entries`)."""
        return compose_entries(
            self._entries,
            delta=self.target_delta if delta is None else delta,
            accountant=self.accountant,
        )

    def epsilon_breakdown(self) -> dict[str, float]:
        """Epsilon of each entry on its own (at the target delta). These do not add up to the
        total: composition is sub-additive. Non-private entries are ``inf``."""
        out: dict[str, float] = {}
        for e in self._entries:
            key = e.module if e.module not in out else f"{e.module}_{len(out)}"
            if not e.differentially_private:
                out[key] = math.inf
            elif e.mechanism == DECLARED_PUBLIC:
                continue
            elif e.mechanism == EXTERNAL:
                out[key] = float(e.parameters["epsilon"])  # the library's own, at its delta
            else:
                out[key] = compose_epsilon(
                    e.accounting_history(), delta=self.target_delta, accountant=self.accountant
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        epsilon = self.epsilon_spent()

        def num(x: float) -> float | str:
            return "inf" if math.isinf(x) else x

        return {
            "differentially_private": self.is_private,
            "epsilon_spent": num(epsilon),
            "epsilon_realized_schedule": num(self.realized_epsilon()),
            "target_epsilon": self.target_epsilon,
            "target_delta": self.target_delta,
            "accountant": self.accountant,
            "approximate": self.approximate,
            "n_records": self.n_records,
            "delta_ge_1_over_n": self.delta_warning,
            "refused_steps": self.refused_steps,
            "epsilon_by_mechanism": {k: num(v) for k, v in self.epsilon_breakdown().items()},
            "declared_public_reads": [e.module for e in self.declared_public_entries],
            "external_releases": [
                {k: e.parameters.get(k) for k in ("library", "version", "epsilon", "delta")}
                | {"module": e.module}
                for e in self.external_entries
            ],
            "n_entries": len(self._entries),
            "n_non_private_entries": len(self.non_private_entries),
            "entries": [e.to_dict() for e in self._entries],
        }
