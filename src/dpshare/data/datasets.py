"""The dataset registry: each ``conf/dataset/<name>.yaml`` maps to one loader here.

A loader takes the dataset's config node and the scale's ``max_records`` cap and returns a
:class:`~dpshare.data.base.TabularData`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from dpshare.data.base import TabularData, check_max_records
from dpshare.registry import Registry


class DatasetLoader(Protocol):
    def __call__(self, cfg: Any, *, max_records: int | None) -> TabularData: ...


DATASETS: Registry[DatasetLoader] = Registry("dataset")


# name -> the public domain its config declares, for data sets whose domain is not spelled out
# in the config (``public_domain``) but follows from it: one entry beside each loader
DOMAINS: Registry[Callable[[Any], Any]] = Registry("dataset domain")


def declared_domain(cfg: Any) -> Any:
    """The public domain (:class:`~dpshare.data.transformer.PublicDomain`) a dataset config
    declares, built from the config alone without loading or simulating a record; ``None``
    where the config declares none (a table without ``public_domain``). The loaders attach the
    same domain to their :class:`TabularData`; the report reads it for saved runs."""
    name = cfg.get("name") if hasattr(cfg, "get") else None
    if name in DOMAINS:
        return DOMAINS.get(name)(cfg)
    spec = cfg.get("public_domain") if hasattr(cfg, "get") else None
    if not spec:
        return None
    from dpshare.data.transformer import PublicDomain

    return PublicDomain.from_mapping(spec)


@DOMAINS.register("bank_sim")
def _bank_sim_domain(cfg: Any) -> Any:
    from dpshare.data import bank_sim

    return bank_sim.public_domain(n_banks=cfg["n_banks"], days=cfg["days"], start=cfg["start"])


@DATASETS.register("bank_sim")
def load_bank_sim(cfg: Any, *, max_records: int | None) -> TabularData:
    """Simulate the cross-bank transaction table (docs/bank_sim.md).

    ``max_records`` caps the number of simulated transactions (smoke scale), so a smaller run
    simulates fewer records rather than simulating and discarding.
    """
    from dpshare.data import bank_sim

    check_max_records(max_records)
    n = int(cfg.n_transactions)
    if max_records is not None:
        n = min(n, int(max_records))
    table = bank_sim.simulate_bank_transactions(
        n_transactions=n,
        n_banks=cfg.n_banks,
        high_risk_rate=cfg.high_risk_rate,
        label_noise=cfg.label_noise,
        days=cfg.days,
        start=cfg.start,
        seed=cfg.seed,
    )
    group_ids = table[bank_sim.GROUP_COLUMN].to_numpy()
    frame = table.drop(columns=[bank_sim.GROUP_COLUMN]).set_index(bank_sim.ID_COLUMN)
    frame.index.name = "record_id"
    return TabularData(
        name="bank_sim",
        frame=frame,
        target=bank_sim.TARGET_COLUMN,
        positive_label=1,
        group_ids=group_ids,
        time_column=bank_sim.TIME_COLUMN,
        institution_column=bank_sim.INSTITUTION_COLUMN,
        public_domain=declared_domain(cfg),
        description=(
            f"simulated cross-bank transactions: {len(frame)} records, {cfg.n_banks} banks, "
            f"target {bank_sim.TARGET_COLUMN} (rate {cfg.high_risk_rate})"
        ),
    )


# The real-data loaders live in their own modules (imported on first use: pandas-heavy parsing
# code and the MNIST downloader are not needed for a bank_sim run).


@DOMAINS.register("mimic3")
def _mimic3_domain(cfg: Any) -> Any:
    from dpshare.data import mimic3

    return mimic3.public_domain(mimic3.mimic3_settings(cfg))


@DATASETS.register("mimic3")
def load_mimic3(cfg: Any, *, max_records: int | None) -> TabularData:
    """MIMIC-III v1.4 ICU stays as fixed-length hourly windows (docs/mimic3.md)."""
    from dpshare.data.mimic3 import load_mimic3 as load

    return load(cfg, max_records=max_records)


@DOMAINS.register("mnist")
def _mnist_domain(cfg: Any) -> Any:
    from dpshare.data import mnist

    return mnist.public_domain()


@DATASETS.register("mnist")
def load_mnist(cfg: Any, *, max_records: int | None) -> TabularData:
    """MNIST from its four IDX files, checksums verified (docs/mnist.md)."""
    from dpshare.data.mnist import load_mnist as load

    return load(cfg, max_records=max_records)


@DATASETS.register("table")
def load_table(cfg: Any, *, max_records: int | None) -> TabularData:
    """Any CSV/TSV/Parquet table with a label column (docs/datasets.md)."""
    from dpshare.data.table import load_table as load

    return load(cfg, max_records=max_records)


@DATASETS.register("bank_marketing")
def load_bank_marketing(cfg: Any, *, max_records: int | None) -> TabularData:
    """UCI Bank Marketing, bank-additional-full (docs/datasets.md)."""
    from dpshare.data.table import load_bank_marketing as load

    return load(cfg, max_records=max_records)


@DATASETS.register("diabetes130")
def load_diabetes130(cfg: Any, *, max_records: int | None) -> TabularData:
    """UCI Diabetes 130-US hospitals, readmission within 30 days (docs/datasets.md)."""
    from dpshare.data.table import load_diabetes130 as load

    return load(cfg, max_records=max_records)
