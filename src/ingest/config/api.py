"""The API's limits and webhooks: uploads, searches, request bodies, event streams, signing secrets, and
the outbound callbacks with the addresses they may reach."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode


class ApiSettings(BaseModel):
    """What the API accepts and answers, and how webhooks go in and out."""

    # --- API ----------------------------------------------------------------------------------------
    max_upload_mb: int = Field(default=100, ge=1, description="Uploads larger than this answer 413.")
    uploads_per_minute: int = Field(default=10, ge=1, description="Uploads per user and minute (then 429).")
    searches_per_minute: int = Field(default=60, ge=1, description="Searches per user and minute (then 429).")
    max_json_body_kb: int = Field(
        default=256,
        ge=1,
        le=64 * 1024,
        description="Bodies of every route but uploads larger than this answer 413, before the key is"
        " checked and before anything is parsed.",
    )
    metrics_public: bool = Field(
        default=False,
        description="Serve GET /metrics without an admin key (for a Prometheus on a private network).",
    )
    public_url: str | None = Field(default=None, description="Where vendors can reach our webhooks.")
    llamaparse_webhook_secret: SecretStr | None = Field(
        default=None, description="Signing secret of LlamaParse webhook events (LC-Signature)."
    )
    callback_signing_secret: SecretStr | None = Field(
        default=None, description="Standard Webhooks secret for outbound callbacks (whsec_…)."
    )
    api_events_poll_s: float = Field(
        default=0.5, gt=0, le=10, description="How often GET /v1/jobs/{id}/events looks at the job."
    )
    api_events_keepalive_s: float = Field(
        default=15,
        gt=0,
        description="A comment line this often keeps idle event streams open through proxies.",
    )

    # --- outbound webhooks: callbacks and budget alerts ---------------------------------------------
    callback_max_attempts: int = Field(
        default=10,
        ge=1,
        le=30,
        description="Tries of one outbound callback (the first included) before it is given up.",
    )
    callback_timeout_s: float = Field(
        default=15,
        gt=0,
        le=120,
        description="Timeout of one outbound callback POST (the spec suggests 15-30 s).",
    )
    callback_backoff_s: float = Field(
        default=30,
        gt=0,
        description="Base wait between tries of a failed callback: retry n waits 1-2 × this × 2^(n-1)"
        " (random jitter), at most 6 hours.",
    )
    callback_worker_threads: int = Field(
        default=2,
        ge=0,
        le=64,
        description="Threads that deliver callbacks apart from the ingestion threads, so a slow receiver delays"
        " no document: in ingest serve and ingest add, and in the callbacks process of ingest worker (0: the"
        " process delivers none; ingest worker sets it for its ingestion processes).",
    )
    outbound_allow_networks: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list,
        description="Address ranges that callbacks and budget alerts may reach although they are not public"
        " (loopback, private, link-local…), comma-separated CIDRs, e.g. 10.20.0.0/16,fd00::/8. Unset: public"
        " addresses only.",
    )

    @field_validator("outbound_allow_networks", mode="before")
    @classmethod
    def _comma_separated_networks(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return [ip_network(part.strip()) for part in value.split(",") if part.strip()]
            except ValueError as exc:
                raise ValueError(f"not a list of CIDR ranges: {exc}") from None
        return value
