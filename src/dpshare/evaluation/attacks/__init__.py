"""Privacy attacks on released artifacts, each registered with its threat model.

Importing this package registers every attack in :data:`ATTACKS`.
"""

from dpshare.evaluation.attacks import aia, copies, inversion, mia_model, mia_synthetic  # noqa: F401
from dpshare.evaluation.attacks.base import (
    ATTACKS,
    AttackContext,
    AttackSpec,
    build_context,
    membership_summary,
    register_attack,
)

__all__ = [
    "ATTACKS",
    "AttackContext",
    "AttackSpec",
    "build_context",
    "membership_summary",
    "register_attack",
]
