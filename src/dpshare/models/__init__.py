"""Methods (generators and released models). Importing this package registers them all;
a method whose import fails raises here instead of silently vanishing from the registry."""

from dpshare.models import (
    classifier,  # noqa: F401  (registers "dp_lr")
    dp_wgan,  # noqa: F401  (registers "dp_wgan")
    fedavg,  # noqa: F401  (registers "fedavg")
    multidisc,  # noqa: F401  (registers "multidisc_gan")
    peers,  # noqa: F401  (registers "mst", "aim", "dpctgan", "patectgan"; library imported lazily)
    standard_gan,  # noqa: F401  (registers "standard_gan")
)
from dpshare.models.registry import METHODS

__all__ = ["METHODS"]
