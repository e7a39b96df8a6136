"""Peer methods: the DP synthesizers a data-sharing team would try first, behind the same
``method=`` group, splits, budget, evaluation and record as ours (docs/peers.md).

``method=mst``, ``aim``, ``dpctgan``, ``patectgan`` wrap smartnoise-synth's synthesizers of the
same names (MST, McKenna et al. 2021; AIM, McKenna et al. 2022, both on private-pgm ``mbi``;
DP-CTGAN and PATE-CTGAN, Rosenblatt et al. 2020). They are wrapped, never re-implemented:
:mod:`dpshare.smartnoise` calls the library and reads its own accountant.

What is shared with every other method: the real train split (the test split never reaches the
library), the run's ``privacy.target_epsilon`` / ``privacy.target_delta`` (given to the library
exactly), the original schema of ``synthetic.parquet``, and the whole evaluation.

What is public, and how a table is encoded for the library (:class:`PeerEncoding`): every
released column needs its declared public domain (``dataset.public_domain``: bounds, category
lists, time ranges), as for our own DP transformer; nothing is read from the records to encode
them. Categories become codes in the declared order (plus one "missing" code for a dtype that can
hold a missing value). A bounded column is clipped to its bounds, optionally put on a
``log1p(x - lower)`` scale (``continuous_scale``: ``auto`` does so for columns declared
``[0, upper]`` with ``upper >= 1000``: amounts, balances, durations), then cut into ``bins``
equal-width bins for the marginal methods (MST, AIM), or min-max scaled on its declared bounds
for the CTGAN-type ones (with a 0/1 missing indicator column when the dtype can hold one).
Datetimes are seconds on their declared range. Decoding draws a value uniformly inside a bin
(seeded), inverts the scale, rounds integer columns and casts every column to its dtype.

Accounting: the library spends the budget; dpshare runs no DP mechanism of its own for a peer
(no transformer statistics, no class counts, no DP-SGD: the privacy plan is skipped,
:meth:`PeerSynthesizer.privacy_ledger`). The ledger holds ONE ``external`` entry: the library,
its version and the ``(epsilon, delta)`` its own accountant reports after the fit
(:meth:`dpshare.privacy.PrivacyLedger.record_external`). The release gate accepts the run only
when that epsilon is within the target.

Installation: the ``peers`` extra, whose pins conflict with ours (docs/peers.md, ``make
install-peers``); without it a peer stops at construction with one line naming the command.
``dpctgan`` needs Opacus 0.14 (smartnoise-synth's pin; ours is 1.x): it is fitted in a child
process that puts a side install of Opacus 0.14 first on its path.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from dpshare import smartnoise
from dpshare.data.base import TabularData
from dpshare.data.datamodule import TabularDataModule
from dpshare.data.transformer import check_continuous_scale, log_scaled
from dpshare.errors import UserInputError
from dpshare.models.base import SyntheticDataMethod
from dpshare.models.registry import METHODS
from dpshare.privacy import PrivacyLedger
from dpshare.privacy.plan import PrivacyPlan

log = logging.getLogger(__name__)

LIBRARY = smartnoise.LIBRARY
# the version this code was written and tested against (docs/peers.md)
TESTED_VERSION = "1.0.8"
INSTALL_COMMAND = (
    "make install-peers (or: .venv/bin/pip install -c constraints.txt -e '.[peers]' && "
    ".venv/bin/pip install --no-deps smartnoise-synth==1.0.8 smartnoise-sql==1.0.10 && "
    ".venv/bin/pip install --no-deps --target .venv/dpshare-peers/opacus-0.14 opacus==0.14.0; "
    "docs/peers.md)"
)
# where make install-peers puts Opacus 0.14 for dpctgan's child process
OPACUS014_ENV = "DPSHARE_OPACUS014"
MISSING_SUFFIX = "::missing"  # the 0/1 indicator column of a nullable continuous column
_EPOCH = pd.Timestamp("1970-01-01")


class MissingExtraError(UserInputError):
    """A peer method's library (the ``peers`` extra) is not installed."""


def opacus014_dir() -> Path:
    """Where Opacus 0.14 for ``dpctgan`` is installed: ``$DPSHARE_OPACUS014``, else
    ``<venv>/dpshare-peers/opacus-0.14`` (``make install-peers``)."""
    configured = os.environ.get(OPACUS014_ENV)
    return Path(configured) if configured else Path(sys.prefix) / "dpshare-peers" / "opacus-0.14"


def require_library(method: str, modules: tuple[str, ...]) -> None:
    """Import ``modules`` or stop with one line naming the install command (no traceback)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or module
            raise MissingExtraError(
                f"method={method} needs {LIBRARY} (the 'peers' extra), and importing {module} "
                f"failed ({missing} is not installed); install it with {INSTALL_COMMAND}"
            ) from None


def _holds_missing(dtype: Any) -> bool:
    """Whether a column of this dtype can hold a missing value (numpy int / bool cannot)."""
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return True
    return np.dtype(dtype).kind not in "iub"


# --------------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class PeerColumn:
    """One released column and its public description.

    ``kind``: ``categorical`` (``categories``), ``continuous`` (``lower``, ``upper``) or
    ``datetime`` (``lower``, ``upper`` in seconds since 1970); ``log``: encoded as
    ``log1p(x - lower)``; ``nullable``: the dtype can hold a missing value, which then gets a
    code (or an indicator column) of its own."""

    name: str
    kind: str
    dtype: Any
    nullable: bool
    categories: tuple[Any, ...] = ()
    lower: float = 0.0
    upper: float = 1.0
    log: bool = False

    def scaled_bounds(self) -> tuple[float, float]:
        if self.log:
            return 0.0, float(np.log1p(self.upper - self.lower))
        return self.lower, self.upper

    def to_scale(self, values: np.ndarray) -> np.ndarray:
        clipped = np.clip(values, self.lower, self.upper)
        return np.log1p(clipped - self.lower) if self.log else clipped

    def from_scale(self, scaled: np.ndarray) -> np.ndarray:
        out = np.expm1(scaled) + self.lower if self.log else scaled
        return np.clip(out, self.lower, self.upper)

    def bin_codes(self, values: np.ndarray, bins: int) -> np.ndarray:
        """The equal-width bin (on the scaled range) of each value (clipped to the bounds)."""
        low, high = self.scaled_bounds()
        codes = np.floor((self.to_scale(values) - low) / ((high - low) / bins)).astype(np.int64)
        return np.clip(codes, 0, bins - 1)

    @property
    def whole_numbers(self) -> bool:
        """An integer (or boolean) column: decoded values are whole numbers in the bounds."""
        if self.kind != "continuous":
            return False
        if isinstance(self.dtype, pd.api.extensions.ExtensionDtype):
            return pd.api.types.is_integer_dtype(self.dtype)
        return np.dtype(self.dtype).kind in "iub"

    def whole_numbers_by_bin(self, bins: int) -> tuple[np.ndarray, np.ndarray] | None:
        """For a whole-number column: per bin, the smallest whole number in it and how many
        there are (bins are contiguous on a monotone scale); None for a range too wide."""
        first, last = math.ceil(self.lower), math.floor(self.upper)
        if not self.whole_numbers or last < first or last - first > 2_000_000:
            return None
        values = np.arange(first, last + 1, dtype=np.float64)
        codes = self.bin_codes(values, bins)
        count = np.bincount(codes, minlength=bins)
        start = values[np.minimum(np.searchsorted(codes, np.arange(bins)), len(values) - 1)]
        return start, count


@dataclass
class PeerEncoding:
    """The released table <-> the table a smartnoise synthesizer reads, from public knowledge
    only (the module docstring). ``bins`` set: every column becomes a category code (MST, AIM);
    ``bins`` None: categories become codes and bounded columns stay numbers (CTGAN types)."""

    data: TabularData
    bins: int | None
    continuous_scale: str = "auto"
    columns: list[PeerColumn] = field(init=False)

    def __post_init__(self) -> None:
        check_continuous_scale(self.continuous_scale, "method.continuous_scale")
        if self.bins is not None and int(self.bins) < 2:
            raise UserInputError(f"method.bins must be >= 2, got {self.bins}")
        data = self.data
        domain = data.public_domain
        names = [str(c) for c in data.frame.columns]
        undeclared = [c for c in names if domain is None or domain.kind(c) is None]
        if undeclared:
            raise UserInputError(
                f"dataset {data.name!r}: a peer synthesizer encodes every released column from "
                f"its public domain, and {undeclared} have none; declare "
                "dataset.public_domain.<column> from public knowledge (never from the data), or "
                f"leave them out: dataset.drop_columns=[{','.join(undeclared)}]"
            )
        assert domain is not None
        columns = []
        for name, dtype in zip(names, data.frame.dtypes, strict=True):
            kind = domain.kind(name)
            # the target is never missing (the loaders drop or refuse rows without one), so it
            # gets no missing code: a marginal method could otherwise release rows with no label
            nullable = _holds_missing(dtype) and name != data.target
            if kind == "categorical":
                columns.append(
                    PeerColumn(
                        name, kind, dtype, nullable, categories=tuple(domain.categories[name])
                    )
                )
            elif kind == "continuous":
                lower, upper = (float(v) for v in domain.bounds[name])
                log_scale = log_scaled(lower, upper, self.continuous_scale)
                columns.append(
                    PeerColumn(name, kind, dtype, nullable, lower=lower, upper=upper, log=log_scale)
                )
            else:
                start, end = domain.time_ranges[name]
                columns.append(
                    PeerColumn(
                        name,
                        "datetime",
                        dtype,
                        nullable,
                        lower=(start - _EPOCH).total_seconds(),
                        upper=(end - _EPOCH).total_seconds(),
                    )
                )
        self.columns = columns

    # ----------------------------------------------------------------- library's columns
    def library_columns(self) -> list[dict[str, Any]]:
        """The encoded columns as :func:`dpshare.smartnoise.build_transformer` reads them."""
        out: list[dict[str, Any]] = []
        for col in self.columns:
            if col.kind == "categorical":
                n = len(col.categories) + int(col.nullable)
                out.append({"name": col.name, "kind": "categorical", "n_codes": n})
            elif self.bins is not None:
                n = int(self.bins) + int(col.nullable)
                out.append({"name": col.name, "kind": "categorical", "n_codes": n})
            else:
                lower, upper = col.scaled_bounds()
                out.append({"name": col.name, "kind": "continuous", "lower": lower, "upper": upper})
                if col.nullable:
                    out.append(
                        {"name": col.name + MISSING_SUFFIX, "kind": "categorical", "n_codes": 2}
                    )
        return out

    @property
    def library_names(self) -> list[str]:
        return [c["name"] for c in self.library_columns()]

    # ------------------------------------------------------------------------ encode
    def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Real rows (released schema) -> the library's table (codes and scaled numbers)."""
        out: dict[str, np.ndarray] = {}
        for col in self.columns:
            values = frame[col.name]
            if col.kind == "categorical":
                declared = pd.Index(list(col.categories), dtype=object)
                codes = declared.get_indexer(pd.Index(values.astype(object))).astype(np.int64)
                outside = codes < 0
                if outside.any() and not col.nullable:
                    raise UserInputError(
                        f"column {col.name!r} ({values.dtype}) holds values outside its declared "
                        f"public categories {list(col.categories)[:20]}; declare every value in "
                        f"dataset.public_domain.{col.name}.categories, or drop the column"
                    )
                codes[outside] = len(col.categories)  # missing, or outside the declared list
                out[col.name] = codes
                continue
            if col.kind == "datetime":
                numbers = ((pd.to_datetime(values) - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(
                    dtype=float, na_value=np.nan
                )
            else:
                numbers = values.to_numpy(dtype=float, na_value=np.nan)
            missing = np.isnan(numbers)
            present = np.where(missing, col.lower, numbers)
            if self.bins is not None:
                codes = col.bin_codes(present, int(self.bins))
                codes[missing] = int(self.bins)  # only reachable for a nullable dtype
                out[col.name] = codes
            else:
                out[col.name] = col.to_scale(present).astype(np.float64)
                if col.nullable:
                    out[col.name + MISSING_SUFFIX] = missing.astype(np.int64)
        return pd.DataFrame(out, columns=self.library_names)

    # ------------------------------------------------------------------------ decode
    def decode(self, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """The library's rows -> the released schema (columns in order, original dtypes).
        ``rng`` draws the position of a value inside its bin (marginal methods)."""
        out: dict[str, pd.Series] = {}
        n = len(frame)
        for col in self.columns:
            raw = frame[col.name]
            if col.kind == "categorical":
                # the code after the declared categories is "missing" (nullable dtypes only)
                codes = _as_codes(raw, len(col.categories) + int(col.nullable))
                labels = np.empty(len(col.categories) + 1, dtype=object)
                labels[: len(col.categories)] = list(col.categories)
                labels[-1] = None
                out[col.name] = _cast(labels[codes], col.dtype, col.name)
                continue
            lower, upper = col.scaled_bounds()
            if self.bins is not None:
                bins = int(self.bins)
                codes = _as_codes(raw, bins + int(col.nullable))
                missing = codes >= bins
                b = np.minimum(codes, bins - 1)
                # uniform inside the bin; a whole-number column: uniform over its whole numbers
                # in the bin (the exact inverse of the binning), where it has any
                numbers = col.from_scale(lower + (b + rng.random(n)) * (upper - lower) / bins)
                whole = col.whole_numbers_by_bin(bins)
                if whole is not None:
                    start, count = whole
                    offset = np.floor(rng.random(n) * np.maximum(count[b], 1))
                    numbers = np.where(count[b] > 0, start[b] + offset, numbers)
            else:
                scaled = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
                numbers = col.from_scale(np.clip(np.nan_to_num(scaled, nan=lower), lower, upper))
                if col.nullable:
                    flag = _as_codes(frame[col.name + MISSING_SUFFIX], 2)
                    missing = flag == 1
                else:
                    missing = np.zeros(n, dtype=bool)
            if col.kind == "datetime":
                seconds = np.round(numbers)
                series = pd.Series(pd.to_datetime(seconds, unit="s"))
                series[missing] = pd.NaT
                out[col.name] = series.astype(col.dtype)
                continue
            if col.whole_numbers:  # whole numbers inside the declared bounds
                low, high = math.ceil(col.lower), math.floor(col.upper)
                numbers = np.clip(np.round(numbers), low, high)
            values: np.ndarray = numbers
            if missing.any():
                values = numbers.astype(object)
                values[missing] = None
            out[col.name] = _cast(values, col.dtype, col.name)
        return pd.DataFrame(out)[[c.name for c in self.columns]]


def _as_codes(raw: pd.Series, n_codes: int) -> np.ndarray:
    """The library's code column as integers in [0, n_codes) (it may return floats)."""
    codes = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    codes = np.nan_to_num(codes, nan=n_codes - 1)
    return np.clip(np.round(codes), 0, n_codes - 1).astype(np.int64)


def _cast(values: np.ndarray, dtype: Any, name: str) -> pd.Series:
    """``values`` as a Series of ``dtype`` (the released schema)."""
    if isinstance(dtype, pd.CategoricalDtype):
        return pd.Series(pd.Categorical(values, dtype=dtype), name=name)
    series = pd.Series(values, name=name)
    try:
        return series.astype(dtype)
    except (TypeError, ValueError):  # object -> bool / str: through the plain Python values
        return pd.Series(list(values), name=name, dtype=dtype)


# ---------------------------------------------------------------------------------- methods


class PeerSynthesizer(SyntheticDataMethod):
    """One smartnoise-synth synthesizer behind the method contract (the module docstring).

    Subclasses name the library's synthesizer, the modules it needs, whether it bins
    (``bins_columns``) and the method config keys passed to the library as they are."""

    library: ClassVar[str] = LIBRARY
    synthesizer: ClassVar[str]
    modules: ClassVar[tuple[str, ...]]
    option_keys: ClassVar[tuple[str, ...]] = ()
    bins_columns: ClassVar[bool] = False
    fits_in_child: ClassVar[bool] = False
    # the contract train.py reads: no plan of ours, no release of ours, no saved generator
    external_accounting: ClassVar[bool] = True
    releases_class_counts = False
    releases_transformer_stats = False
    saves_generator: ClassVar[bool] = False

    @classmethod
    def privacy_ledger(cls, privacy: Any, *, n_train: int) -> PrivacyLedger:
        """The run's ledger: the target ``(epsilon, delta)`` the library receives. Refuses a
        privacy config the library cannot honour (no target, a fixed sigma, budget snapshots,
        a noise controller, or no privacy at all)."""
        name = privacy.get("name")
        fix = (
            f"run method={cls.name} with privacy=fixed and privacy.target_epsilon / "
            "privacy.target_delta: the library receives them as they are and spends the budget "
            "under its own accounting (docs/peers.md)"
        )
        if name != "fixed":
            raise UserInputError(f"method={cls.name} got privacy={name}; {fix}")
        target = privacy.get("target_epsilon")
        if target is None or not (math.isfinite(float(target)) and float(target) > 0):
            raise UserInputError(
                f"method={cls.name} needs a positive privacy.target_epsilon, got {target}; {fix}"
            )
        for key, default in (
            ("noise_multiplier", None),
            ("snapshots", []),
            ("training_length", "epochs"),
        ):
            value = privacy.get(key, default)
            if (list(value) if key == "snapshots" else value) != default:
                raise UserInputError(
                    f"method={cls.name} ignores privacy.{key}={value} (the library sets its own "
                    f"noise and length from the budget): leave it at {default!r}; {fix}"
                )
        return PrivacyLedger(
            accountant=privacy.accountant,
            target_epsilon=float(target),
            target_delta=privacy.target_delta,
            n_records=n_train,
        )

    def __init__(
        self, cfg: Any, datamodule: TabularDataModule, *, plan: PrivacyPlan | None = None
    ) -> None:
        require_library(self.name, self.modules)
        if plan is not None or datamodule.ledger.target_epsilon is None:
            raise UserInputError(
                f"method={self.name} runs under its library's own accounting: train it with "
                "privacy=fixed and privacy.target_epsilon (dpshare.train sets it up)"
            )
        self.cfg = cfg
        self.datamodule = datamodule
        self.plan = None
        self.module = None  # no LightningModule: the library trains on its own
        self.encoding = PeerEncoding(
            datamodule.data,
            bins=int(cfg.bins) if self.bins_columns else None,
            continuous_scale=str(cfg.continuous_scale),
        )
        self.check_options(self.library_options())
        self.synth: Any = None
        self.accounting: dict[str, Any] = {}
        self.versions: dict[str, str] = {}
        self.ledger_entry: Any = None
        self.fit_child_peak_memory_mb = 0.0  # set when the library fits in a child process

    def library_options(self) -> dict[str, Any]:
        """The method config keys the library takes, under the library's own names."""
        cfg = self.cfg
        plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
        assert isinstance(plain, Mapping)
        return {key: plain[key] for key in self.option_keys}

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse settings the library would only reject with a bare assertion."""

    def fit(self, trainer: pl.Trainer) -> None:
        """Fit the library on the real train split at the run's ``(epsilon, delta)`` and record
        its release, with the epsilon its own accountant reports, in the ledger. The Lightning
        ``trainer`` is not used."""
        dm = self.datamodule
        ledger = dm.ledger
        assert ledger.target_epsilon is not None
        frame = self.encoding.encode(dm.train_frame)
        columns = self.encoding.library_columns()
        options = self.library_options()
        epsilon, delta = float(ledger.target_epsilon), float(ledger.target_delta)
        if self.fits_in_child:
            synth, accounting, versions = self._fit_in_child(
                frame, columns, epsilon=epsilon, delta=delta, options=options
            )
        else:
            synth, accounting = smartnoise.fit(
                self.synthesizer, frame, columns, epsilon=epsilon, delta=delta, options=options
            )
            versions = smartnoise.library_versions()
        version = versions.get(LIBRARY, "unknown")
        if version != TESTED_VERSION:
            log.warning(
                "%s %s: dpshare's peers were tested with %s", LIBRARY, version, TESTED_VERSION
            )
        self.synth, self.accounting, self.versions = synth, accounting, versions
        details = {k: v for k, v in accounting.items() if k not in ("epsilon", "delta")}
        self.ledger_entry = ledger.record_external(
            module=self.name,
            purpose=f"{LIBRARY} {self.synthesizer} fitted on the real train split; the budget "
            "is spent and accounted by the library itself",
            records=dm.n_train,
            library=LIBRARY,
            version=version,
            epsilon=float(accounting["epsilon"]),
            delta=float(accounting["delta"]),
            requested_epsilon=epsilon,
            requested_delta=delta,
            library_versions=versions,
            options=options,
            encoding={
                "bins": self.encoding.bins,
                "continuous_scale": self.encoding.continuous_scale,
                "log_columns": [c.name for c in self.encoding.columns if c.log],
                "source": "dataset.public_domain (declared bounds, categories, time ranges); "
                "nothing read from the records",
            },
            **details,
        )
        log.info(
            "%s: %s %s reports epsilon %.4g at delta %g (target %g)",
            self.name,
            LIBRARY,
            version,
            accounting["epsilon"],
            accounting["delta"],
            epsilon,
        )

    def _fit_in_child(
        self,
        frame: pd.DataFrame,
        columns: list[dict[str, Any]],
        *,
        epsilon: float,
        delta: float,
        options: dict[str, Any],
    ) -> tuple[Any, dict[str, Any], dict[str, str]]:
        """Fit in ``python -m dpshare.smartnoise`` with Opacus 0.14 first on the child's path
        (smartnoise-synth's DPCTGAN is written for Opacus 0.14; dpshare's own DP code runs on
        Opacus 1.x in this process). The fitted synthesizer comes back as a pickle written by
        that child into a private temporary directory, never a file from elsewhere."""
        side = opacus014_dir()
        if not (side / "opacus" / "__init__.py").is_file():
            raise MissingExtraError(
                f"method={self.name} needs Opacus 0.14 (smartnoise-synth's pin) beside the "
                f"project's Opacus 1.x, and {side} holds none; install it with "
                f"{INSTALL_COMMAND} (or set {OPACUS014_ENV} to its directory)"
            )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(side), env.get("PYTHONPATH", "")) if p)
        env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
        with tempfile.TemporaryDirectory(prefix=f"dpshare-{self.name}-") as tmp:
            workdir = Path(tmp)
            smartnoise.fit_in_child(
                workdir,
                frame,
                columns,
                synthesizer=self.synthesizer,
                epsilon=epsilon,
                delta=delta,
                options=options,
                seed=self.datamodule.seed,
            )
            proc = subprocess.run(
                [sys.executable, "-m", "dpshare.smartnoise", str(workdir)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                log.error("%s child process failed:\n%s", self.name, proc.stderr[-4000:])
                raise RuntimeError(
                    f"method={self.name}: the library's fit failed in its child process "
                    f"(exit {proc.returncode}): {tail[0]}"
                )
            result = json.loads((workdir / smartnoise.RESULT_FILE).read_text(encoding="utf-8"))
            with (workdir / smartnoise.MODEL_FILE).open("rb") as handle:
                synth = pickle.load(handle)  # written by our own child process, above
        versions = dict(result["versions"])
        # the child's own peak resident memory: dpshare.train reports it as the fit's
        self.fit_child_peak_memory_mb = float(result.get("peak_memory_mb") or 0.0)
        return synth, dict(result["accounting"]), versions

    def sample(
        self, n: int, *, seed: int, class_mix: Mapping[Any, float] | None = None
    ) -> pd.DataFrame:
        """``n`` rows in the released schema, drawn from the fitted library model
        (post-processing: nothing is charged). The libraries cannot be steered to a class mix."""
        if class_mix is not None:
            raise UserInputError(
                f"method={self.name} cannot sample a class mix: {LIBRARY}'s {self.synthesizer} "
                "has no label conditioning (use method=multidisc_gan for controllable generation)"
            )
        if n < 1:
            raise UserInputError(f"number of synthetic rows must be >= 1, got {n}")
        if self.synth is None:
            raise UserInputError(f"method={self.name} has not been fitted")
        rows = smartnoise.sample(self.synth, n, seed=seed, names=self.encoding.library_names)
        return self.encoding.decode(rows, np.random.default_rng([seed, 7]))


@METHODS.register("mst")
class MST(PeerSynthesizer):
    """smartnoise-synth's MST (McKenna et al. 2021): noisy 1-way marginals, a maximum spanning
    tree of 2-way marginals picked by the exponential mechanism, Private-PGM to sample."""

    name = "mst"
    synthesizer = "mst"
    modules = ("snsynth", "snsynth.mst.mst")
    bins_columns = True


@METHODS.register("aim")
class AIM(PeerSynthesizer):
    """smartnoise-synth's AIM (McKenna et al. 2022): adaptive, iterative selection of marginals
    of a workload, measured with Gaussian noise, Private-PGM to sample."""

    name = "aim"
    synthesizer = "aim"
    modules = ("snsynth", "snsynth.aim.aim")
    bins_columns = True
    option_keys = ("degree", "max_model_size", "max_cells", "rounds")

    def library_options(self) -> dict[str, Any]:
        """The library's options, with ``rounds`` from ``rounds_per_column`` x the number of
        columns when ``rounds`` is not given: a compute cap that scales with the table as the
        library's own default (16 x columns) does. smartnoise-synth takes only a round count."""
        options = super().library_options()
        per_column = self.cfg.get("rounds_per_column")
        if options.get("rounds") is not None or per_column is None:
            return options
        per = float(per_column)
        if not math.isfinite(per) or per < 1:
            raise UserInputError(
                f"method.rounds_per_column={per_column} must be >= 1: AIM spends a "
                "0.9 / rounds share of its budget on each 1-way marginal first (the library's "
                "default is 16; null uses it)"
            )
        options["rounds"] = math.ceil(per * len(self.encoding.columns))
        return options

    def check_options(self, options: Mapping[str, Any]) -> None:
        # AIM measures every 1-way marginal with a 0.9 / rounds share of rho first: with fewer
        # rounds than columns that overspends, and the library fails on a negative remainder
        rounds, columns = options.get("rounds"), len(self.encoding.columns)
        if rounds is not None and int(rounds) < columns:
            raise UserInputError(
                f"method.rounds={rounds} is below the number of columns ({columns}): AIM spends "
                "a 0.9 / rounds share of its budget on each 1-way marginal first; give "
                f"method.rounds >= {columns}, or null for the library's 16 x columns"
            )


_CTGAN_KEYS = (
    "embedding_dim",
    "generator_dim",
    "discriminator_dim",
    "generator_lr",
    "generator_decay",
    "discriminator_lr",
    "discriminator_decay",
    "batch_size",
    "discriminator_steps",
    "pac",
    "loss",
    "cuda",
)


class _CTGANPeer(PeerSynthesizer):
    def check_options(self, options: Mapping[str, Any]) -> None:
        batch, pac = int(options["batch_size"]), int(options["pac"])
        if batch < 2 or batch % 2 or batch % pac:
            raise UserInputError(
                f"method.batch_size={batch} must be an even number >= 2 divisible by "
                f"method.pac={pac} ({LIBRARY}'s {self.synthesizer} asserts it)"
            )
        if batch > self.datamodule.n_train:
            raise UserInputError(
                f"method.batch_size={batch} is larger than the real train split "
                f"({self.datamodule.n_train} records); lower method.batch_size"
            )


@METHODS.register("dpctgan")
class DPCTGAN(_CTGANPeer):
    """smartnoise-synth's DP-CTGAN (Rosenblatt et al. 2020): CTGAN whose discriminator is
    trained by DP-SGD (Opacus 0.14, in a child process); ``sigma`` null is calibrated so that
    every one of ``epochs`` fits the target by the library's own accountant."""

    name = "dpctgan"
    synthesizer = "dpctgan"
    modules = ("snsynth", "snsynth.pytorch.nn.dpctgan")
    fits_in_child = True
    option_keys = (*_CTGAN_KEYS, "epochs", "sigma", "max_per_sample_grad_norm")


@METHODS.register("patectgan")
class PATECTGAN(_CTGANPeer):
    """smartnoise-synth's PATE-CTGAN (Rosenblatt et al. 2020): CTGAN with a PATE student
    discriminator taught by teachers on disjoint partitions; trains until its own data-dependent
    accountant has passed the budget."""

    name = "patectgan"
    synthesizer = "patectgan"
    modules = ("snsynth", "snsynth.pytorch.nn.patectgan")
    option_keys = (
        *_CTGAN_KEYS,
        "teacher_iters",
        "student_iters",
        "sample_per_teacher",
        "noise_multiplier",
        "moments_order",
        "regularization",
    )
