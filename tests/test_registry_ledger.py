"""Registries fail with the list of valid names; the ledger never hides a non-private access."""

from __future__ import annotations

import math

import pytest

from dpshare.data.datasets import DATASETS
from dpshare.models import METHODS
from dpshare.privacy import PrivacyLedger
from dpshare.registry import Registry, UnknownNameError


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match=r"valid datasets: .*bank_sim.*mimic3"):
        DATASETS.get("nonexistent")
    with pytest.raises(UnknownNameError, match="standard_gan"):
        METHODS.get("gan9000")


def test_double_registration_is_an_error() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(2)


def test_config_options_match_registered_names() -> None:
    from conftest import CONF_DIR

    assert sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml")) == DATASETS.names()
    from test_config import VARIANTS

    stems = sorted(p.stem for p in (CONF_DIR / "method").glob("*.yaml"))
    assert sorted(s for s in stems if s not in VARIANTS) == METHODS.names()
    assert set(VARIANTS.values()) <= set(METHODS.names())


def test_empty_ledger_is_private_with_zero_epsilon() -> None:
    ledger = PrivacyLedger()
    assert ledger.is_private
    assert ledger.epsilon_spent() == 0.0


def test_non_private_access_makes_epsilon_infinite() -> None:
    ledger = PrivacyLedger()
    entry = ledger.record_non_private(module="transformer", purpose="fit", records=10)
    assert not ledger.is_private
    assert math.isinf(ledger.epsilon_spent())
    ledger.update_parameters(entry, steps=3)
    record = ledger.to_dict()
    assert record["epsilon_spent"] == "inf"
    assert record["entries"][0]["parameters"] == {"steps": 3}
    assert record["n_non_private_entries"] == 1


def test_ledger_entries_round_trip_through_their_saved_form() -> None:
    from dpshare.privacy.ledger import LedgerEntry, PrivacyLedger

    ledger = PrivacyLedger(target_epsilon=5.0, target_delta=1e-5)
    ledger.record_gaussian(
        module="transformer", purpose="stats", records=100, noise_multiplier=20, l2_sensitivity=1
    )
    sgd = ledger.open_dp_sgd(
        module="d", purpose="t", records=100, sample_rate=0.1, poisson_sampling=True
    )
    for sigma in (1.0, 1.0, 1.5):
        ledger.step(sgd, sigma)
    saved = ledger.to_dict()["entries"]
    rebuilt = [LedgerEntry.from_dict(e) for e in saved]
    assert [e.history for e in rebuilt] == [e.history for e in ledger.entries]
    assert [e.accounting_history() for e in rebuilt] == [
        e.accounting_history() for e in ledger.entries
    ]
    assert rebuilt[1].steps == 3 and rebuilt[1].parameters["sample_rate"] == 0.1
    with pytest.raises(KeyError):
        LedgerEntry.from_dict({"module": "d"})
