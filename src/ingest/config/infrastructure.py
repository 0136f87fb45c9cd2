"""Where things live: the data directory, the database, the broker, the blob store; and logging."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, Field, SecretStr

from ingest.config.names import env_alias


class InfrastructureSettings(BaseModel):
    """The services the product runs on, and where its own files go."""

    # --- where things live -------------------------------------------------------------------------
    home: Path = Field(
        default_factory=lambda: platformdirs.user_data_path("ingest"),
        description="Data directory: embedded PostgreSQL, raw files (local blob store).",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=env_alias("DATABASE_URL"),
        description="Any PostgreSQL with pgvector. Unset: an embedded PostgreSQL under INGEST_HOME.",
    )
    redis_url: str | None = Field(
        default=None, validation_alias=env_alias("REDIS_URL"), description="Dramatiq broker (preferred)."
    )
    rabbitmq_url: str | None = Field(
        default=None, validation_alias=env_alias("RABBITMQ_URL"), description="Dramatiq broker (alternative)."
    )
    broker_namespace: str = Field(default="ingest", description="Redis key prefix of the Dramatiq queues.")
    user: str = Field(
        default="local",
        min_length=1,
        description="Whose documents a CLI command acts on when it has no --user (no API key can see them"
        " unless a key is made for this user: `ingest keys create --user NAME`).",
    )
    broker_heartbeat_timeout_s: int = Field(
        default=60,
        ge=1,
        description="Redis: a worker silent this long is presumed dead; its messages return.",
    )
    db_pool_max: int = Field(default=10, description="Connections per process in the pool.")
    db_wait_s: float = Field(
        default=30,
        gt=0,
        description="How long a request or a stage waits for a database connection; past it the API answers"
        " 503 with Retry-After.",
    )
    blob_backend: Literal["local", "supabase"] = Field(default="local", description="Where raw files go.")

    # --- blob store: Supabase Storage ---------------------------------------------------------------
    supabase_url: str | None = Field(
        default=None,
        validation_alias=env_alias("SUPABASE_URL"),
        description="Supabase project URL (https://<ref>.supabase.co), for INGEST_BLOB_BACKEND=supabase.",
    )
    supabase_key: SecretStr | None = Field(
        default=None,
        validation_alias=env_alias("SUPABASE_KEY"),
        description="Supabase key that may read and write the bucket (the service-role key on a server).",
    )
    supabase_bucket: str = Field(
        default="ingest",
        min_length=1,
        description="Supabase Storage bucket of the raw files (create it first).",
    )

    # --- logging ------------------------------------------------------------------------------------
    log_level: str = Field(
        default="INFO", description="Log level (the CLI shows warnings unless this is set)."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: readable on a terminal, JSON otherwise."
    )

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def broker_url(self) -> str | None:
        return self.redis_url or self.rabbitmq_url

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def pgdata_dir(self) -> Path:
        return self.home / "pgdata"
