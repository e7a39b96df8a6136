"""The method registry: each ``conf/method/<name>.yaml`` maps to one class here."""

from __future__ import annotations

from typing import Any

from dpshare.registry import Registry

METHODS: Registry[Any] = Registry("method")
