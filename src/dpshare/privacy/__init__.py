"""Privacy core (pure; no Lightning, no wandb): accountants and noise calibration, the ledger of
every access to real records, the noise controllers, and the empirical audit's statistics."""

from dpshare.privacy.accounting import (
    ACCOUNTANTS,
    calibrate_noise_multiplier,
    compose_epsilon,
)
from dpshare.privacy.ledger import BudgetExceededError, LedgerEntry, PrivacyLedger

__all__ = [
    "ACCOUNTANTS",
    "BudgetExceededError",
    "LedgerEntry",
    "PrivacyLedger",
    "calibrate_noise_multiplier",
    "compose_epsilon",
]
