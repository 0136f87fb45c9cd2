"""The one settings object. Every knob of the product lives here, read from the environment and `.env`.

Names take the `INGEST_` prefix, except those the ecosystem already names (`DATABASE_URL`, `REDIS_URL`,
`RABBITMQ_URL`) and the vendor SDKs' own variables (`OPENAI_API_KEY`, `OPENAI_BASE_URL`,
`LLAMA_CLOUD_API_KEY`, `LLAMA_CLOUD_BASE_URL`).

The settings are grouped by concern, a module a group; `Settings` joins them into one object, and
docs/configuration.md lists them in the order of the groups below.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.config.api import ApiSettings
from ingest.config.costs import CostSettings
from ingest.config.infrastructure import InfrastructureSettings
from ingest.config.pipeline import OPENAI_MAX_TOKENS_PER_REQUEST, PipelineSettings
from ingest.config.vectors import VectorSettings
from ingest.config.vendors import VendorSettings
from ingest.config.workers import WorkerSettings

__all__ = ["OPENAI_MAX_TOKENS_PER_REQUEST", "Settings"]


# Pydantic takes the fields of the bases in reverse order of inheritance: the last base's come first.
class Settings(
    CostSettings,
    ApiSettings,
    VectorSettings,
    PipelineSettings,
    WorkerSettings,
    VendorSettings,
    InfrastructureSettings,
    BaseSettings,
):
    model_config = SettingsConfigDict(
        env_prefix="INGEST_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )
