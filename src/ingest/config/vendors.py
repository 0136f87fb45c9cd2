"""The vendors: keys and endpoints of LlamaParse and OpenAI, the real clients' retries and limits, and the
router's modes and circuit breakers."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from ingest.config.names import env_alias


class VendorSettings(BaseModel):
    """How the real clients reach the vendors, and when the router stops calling them."""

    # --- vendor keys and endpoints (the SDKs' own variable names) ---------------------------------
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=env_alias("OPENAI_API_KEY"),
        description="OpenAI key (real and hybrid modes).",
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=env_alias("OPENAI_BASE_URL"),
        description="OpenAI endpoint; point it at `ingest mocks serve` (…/v1) to use the stand-in.",
    )
    llama_cloud_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=env_alias("LLAMA_CLOUD_API_KEY"),
        description="LlamaCloud key for LlamaParse.",
    )
    llama_cloud_base_url: str | None = Field(
        default=None,
        validation_alias=env_alias("LLAMA_CLOUD_BASE_URL"),
        description="LlamaCloud endpoint (region, or the stand-in of `ingest mocks serve`).",
    )

    # --- vendors: retries, limits and waits of the real clients ------------------------------------
    vendor_max_attempts: int = Field(
        default=6, ge=1, description="Tries of one vendor request; 429s, 5xx and timeouts are tried again."
    )
    vendor_max_retry_s: float = Field(
        default=300,
        gt=0,
        description="Time one vendor request may spend retrying, waits included; capped at half of"
        " job_time_limit_s. Then the stage is retried later.",
    )
    vendor_initial_backoff_s: float = Field(
        default=1.0,
        gt=0,
        description="Window of the first jittered wait after a 5xx or timeout; it doubles each try.",
    )
    vendor_max_backoff_s: float = Field(default=30.0, gt=0, description="Cap on one jittered wait.")
    vendor_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one vendor request.")
    openai_requests_per_minute: int = Field(
        default=3000,
        ge=1,
        description="Client-side cap on embedding requests per minute, shared by all workers (default:"
        " OpenAI's usage tier 1 for text-embedding-3-small).",
    )
    openai_tokens_per_minute: int = Field(
        default=1_000_000,
        ge=1,
        description="Client-side cap on embedded tokens per minute, shared by all workers (default: tier 1).",
    )
    llamaparse_job_deadline_s: float | None = Field(
        default=None,
        gt=0,
        description="A parse job still unfinished this long is cancelled and submitted once more; at most,"
        " and when unset, a third of job_time_limit_s.",
    )
    llamaparse_poll_interval_s: float = Field(
        default=1.0, gt=0, description="First wait between looks at a parse job (without webhooks); doubles."
    )
    llamaparse_max_poll_interval_s: float = Field(
        default=15.0, gt=0, description="Longest wait between looks at a parse job."
    )

    # --- router: modes, circuit breakers, upgrades of mock vectors (src/router/) --------------------
    mode_cache_s: float = Field(
        default=2.0,
        ge=0,
        description="How long a process trusts its last read of the modes: a switch reaches every process"
        " within this time.",
    )
    circuit_failure_threshold: int = Field(
        default=5, ge=1, description="Failed vendor calls in a row that open a service's circuit."
    )
    circuit_cooldown_s: float = Field(
        default=30.0,
        gt=0,
        description="How long an open circuit refuses calls before one probe call may test the service.",
    )
    upgrade_interval_s: float = Field(
        default=300.0,
        gt=0,
        description="While chunks embedded by the mock in hybrid mode wait for the real service, how often"
        " the upgrade job tries again.",
    )
