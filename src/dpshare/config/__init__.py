"""Structured (dataclass) schemas behind every Hydra config group, and their registration."""

from dpshare.config.schema import register_configs

__all__ = ["register_configs"]
