"""Privacy core: the ledger of every access to real records (pure; no Lightning, no wandb)."""

from dpshare.privacy.ledger import LedgerEntry, PrivacyLedger

__all__ = ["LedgerEntry", "PrivacyLedger"]
