"""Environment names of the settings that the ecosystem or a vendor's SDK already names."""

from __future__ import annotations

from pydantic import AliasChoices


def env_alias(name: str) -> AliasChoices:
    """The name as the ecosystem spells it (`DATABASE_URL`), and with the product's prefix."""
    return AliasChoices(name, f"INGEST_{name}")
