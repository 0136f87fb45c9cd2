"""Renders docs/configuration.md from the Settings model, so the documentation cannot drift from the code.

python -m ingest.config_docs > docs/configuration.md
"""

from __future__ import annotations

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ingest.config import Settings

HEADER = """# Configuration

Every setting, read from the environment or a `.env` file in the working directory. Names take the
`INGEST_` prefix, except the ones the ecosystem already names (`DATABASE_URL`, `REDIS_URL`,
`RABBITMQ_URL`) and the vendor SDKs' own variables (`OPENAI_API_KEY`, `OPENAI_BASE_URL`,
`LLAMA_CLOUD_API_KEY`, `LLAMA_CLOUD_BASE_URL`), which also work with the prefix.

This page is generated from `src/ingest/config/` (`python -m ingest.config_docs`); a test keeps it current.

| variable | default | what it does |
|---|---|---|
"""


def env_name(name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"INGEST_{name.upper()}"


def default_text(name: str, field: FieldInfo) -> str:
    if name == "home":
        return "the user's data folder (`~/.local/share/ingest` on Linux)"
    if field.default_factory is not None:
        return "computed"
    if field.default is PydanticUndefined or field.default is None:
        return "unset"
    value = getattr(field.default, "value", field.default)
    return f"`{value}`"


def render() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{env_name(name, field)}` | {default_text(name, field)} | {description} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(render(), end="")
