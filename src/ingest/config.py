"""The one settings object. Every knob of the product lives here, read from the environment and `.env`.

Names take the `INGEST_` prefix, except those the ecosystem already names (`DATABASE_URL`, `REDIS_URL`,
`RABBITMQ_URL`) and the vendor SDKs' own variables (`OPENAI_API_KEY`, `OPENAI_BASE_URL`,
`LLAMA_CLOUD_API_KEY`, `LLAMA_CLOUD_BASE_URL`).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# OpenAI's cap on the tokens of one embeddings request (router.openai_real.MAX_TOKENS_PER_REQUEST; that
# module imports this one, so the figure is repeated here and a test keeps the two equal).
OPENAI_MAX_TOKENS_PER_REQUEST = 300_000


def _alias(name: str) -> AliasChoices:
    return AliasChoices(name, f"INGEST_{name}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="INGEST_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- where things live -------------------------------------------------------------------------
    home: Path = Field(
        default_factory=lambda: platformdirs.user_data_path("ingest"),
        description="Data directory: embedded PostgreSQL, raw files (local blob store).",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=_alias("DATABASE_URL"),
        description="Any PostgreSQL with pgvector. Unset: an embedded PostgreSQL under INGEST_HOME.",
    )
    redis_url: str | None = Field(
        default=None, validation_alias=_alias("REDIS_URL"), description="Dramatiq broker (preferred)."
    )
    rabbitmq_url: str | None = Field(
        default=None, validation_alias=_alias("RABBITMQ_URL"), description="Dramatiq broker (alternative)."
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

    # --- vendor keys and endpoints (the SDKs' own variable names) ---------------------------------
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=_alias("OPENAI_API_KEY"),
        description="OpenAI key (real and hybrid modes).",
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=_alias("OPENAI_BASE_URL"),
        description="OpenAI endpoint; point it at `ingest mocks serve` (…/v1) to use the stand-in.",
    )
    llama_cloud_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=_alias("LLAMA_CLOUD_API_KEY"),
        description="LlamaCloud key for LlamaParse.",
    )
    llama_cloud_base_url: str | None = Field(
        default=None,
        validation_alias=_alias("LLAMA_CLOUD_BASE_URL"),
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

    # --- embeddings --------------------------------------------------------------------------------
    openai_embedding_model: str = Field(
        default="text-embedding-3-small",
        description="Real embedding model of the first real space; after that the active space decides"
        " (`ingest reembed` moves it).",
    )
    openai_embedding_dimensions: int = Field(
        default=1536,
        ge=1,
        le=4000,
        description="Dimensions asked of the -3 models (a smaller space is cheaper): the first real space's,"
        " and `ingest reembed`'s default.",
    )
    mock_embedding_dimensions: int = Field(
        default=1536, ge=16, le=4000, description="Dimensions of the deterministic lexical mock embedder."
    )
    embed_batch_chunks: int = Field(
        default=256,
        ge=1,
        le=2048,
        description="Chunks per embedding message (one unit of work and retry). At most what one OpenAI"
        " request carries, 300,000 // chunk_tokens: the default is lowered to fit, a larger value refused.",
    )

    document_batch_tokens: int = Field(
        default=64_000,
        ge=0,
        le=300_000,
        description="Small documents travel together: one message parses, chunks and embeds admitted documents"
        " of one user up to about this many tokens (estimated from their size), and their chunks share"
        " embedding requests. A document estimated above half of it goes alone; 0 sends every document"
        " alone.",
    )

    # --- the batch route: OpenAI's Batch API at half the price (workers/batch_route.py) -----------
    when_cheapest: bool = Field(
        default=False,
        description="Default route of a new job's embeddings: true sends them through OpenAI's Batch API"
        " (half the price, done within 24 hours), as `ingest add --when-cheapest` and the upload field"
        " `when_cheapest` do for one job.",
    )
    batch_fallback: Literal["batch", "sync"] = Field(
        default="batch",
        description="What a batch route job does with inputs a batch did not embed (expired, cancelled,"
        " failed lines): `batch` sends them in a later batch, `sync` embeds them at the full price.",
    )
    batch_max_attempts: int = Field(
        default=3,
        ge=1,
        description="Batches an input may go through; an input still not embedded after that fails its job.",
    )
    batch_gather_s: float = Field(
        default=60.0,
        ge=0,
        description="How long waiting inputs gather before a batch is sent, so several jobs share one"
        " (sent at once when no batch route job is still being parsed, or a batch is full).",
    )
    batch_poll_s: float = Field(
        default=60.0,
        gt=0,
        description="How often a sent batch is asked for its status (by the sweep, one process at a time).",
    )
    batch_max_requests: int = Field(
        default=50_000,
        ge=1,
        le=50_000,
        description="Inputs per batch (one request each); the Batch API takes at most 50,000.",
    )
    batch_max_file_mb: int = Field(
        default=200,
        ge=1,
        le=200,
        description="Size cap of one batch's input file; the Batch API's is 200 MB.",
    )

    # --- vector storage: bulk loads (ingest/loading.py, workers/indexing.py) ----------------------
    bulk_min_chunks: int = Field(
        default=500,
        ge=0,
        description="A backlog of at least this many chunks still to embed loads without HNSW index"
        " maintenance: the space's index is dropped and built once the backlog is down to an eighth of"
        " this (searches scan exactly meanwhile). 0: always insert into the live index.",
    )
    bulk_table_ratio: float = Field(
        default=0.5,
        ge=0,
        description="…and only when that backlog is at least this many times the vectors the space already"
        " holds, so a large space keeps its index (a search would scan it all meanwhile).",
    )
    bulk_max_defer_s: float = Field(
        default=900,
        gt=0,
        description="A deferred index is built after this long even while work keeps arriving.",
    )
    vector_index: Literal["halfvec", "binary"] = Field(
        default="halfvec",
        description="How a new embedding space indexes its vectors: halfvec, HNSW over the vectors; binary,"
        " HNSW over their binary quantization (a bit a dimension: inserts and builds several times"
        " faster), whose search_candidates nearest a search re-ranks by exact distance. A space keeps"
        " the kind it was made with.",
    )
    index_build_memory_mb: int = Field(
        default=256,
        ge=16,
        description="maintenance_work_mem of an index build (a graph in memory builds faster).",
    )

    # --- parsing and chunking ----------------------------------------------------------------------
    llamaparse_tier: Literal["fast", "cost_effective", "agentic", "agentic_plus"] = Field(
        default="cost_effective", description="LlamaParse v2 tier (credits per page: 1, 3, 10, 45)."
    )
    llamaparse_version: str = Field(default="latest", description="LlamaParse v2 parser version.")
    chunk_tokens: int = Field(default=512, ge=32, le=8000, description="Target chunk size in tokens.")
    chunk_overlap: int = Field(default=64, ge=0, le=1000, description="Tokens repeated between chunks.")
    max_pages: int = Field(default=2000, ge=1, description="Documents with more pages are refused (bombs).")
    max_extracted_mb: int = Field(
        default=64, ge=1, description="Cap on text extracted from one document, and on unzipped DOCX parts."
    )

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

    # --- webhooks and storage -----------------------------------------------------------------------
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
    supabase_url: str | None = Field(
        default=None,
        validation_alias=_alias("SUPABASE_URL"),
        description="Supabase project URL (https://<ref>.supabase.co), for INGEST_BLOB_BACKEND=supabase.",
    )
    supabase_key: SecretStr | None = Field(
        default=None,
        validation_alias=_alias("SUPABASE_KEY"),
        description="Supabase key that may read and write the bucket (the service-role key on a server).",
    )
    supabase_bucket: str = Field(
        default="ingest",
        min_length=1,
        description="Supabase Storage bucket of the raw files (create it first).",
    )

    # --- search -------------------------------------------------------------------------------------
    search_ef: int = Field(
        default=400,
        ge=10,
        le=1000,
        description="HNSW candidates a search examines (hnsw.ef_search): recall against latency.",
    )
    search_exact_max_vectors: int = Field(
        default=50_000,
        ge=0,
        description="A space holding at most this many vectors (by its statistics) is searched by an exact"
        " scan, which at that size is about as fast as HNSW and finds the true nearest. 0: always HNSW.",
    )
    search_candidates: int = Field(
        default=800,
        ge=10,
        le=1000,
        description="Binary-indexed spaces: nearest candidates by Hamming distance that a search re-ranks by"
        " exact distance (the HNSW scan keeps at least as many): recall against latency.",
    )

    # --- workers ------------------------------------------------------------------------------------
    worker_threads: int = Field(default=4, ge=1, description="In-process worker threads (embedded mode).")
    job_max_retries: int = Field(default=5, ge=0, description="Dramatiq retries for a failing stage.")
    job_time_limit_s: int = Field(default=600, ge=1, description="Hard limit for one stage.")

    # --- production: many workers over a broker (docs/deploy.md, docs/operations.md) ---------------
    broker_maintenance_chance: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Redis: broker commands out of a million that also return the messages of workers"
        " silent for broker_heartbeat_timeout_s to their queue (and drop expired dead letters).",
    )
    broker_dead_message_ttl_s: int = Field(
        default=7 * 86400,
        ge=60,
        description="Redis: how long a given-up message stays in its dead-letter queue (<queue>.XQ).",
    )
    sweep_interval_s: float = Field(
        default=10,
        gt=0,
        description="How often one worker (under a PostgreSQL lock) re-sends jobs whose lease lapsed or whose"
        " message was lost, and admits jobs held back by user_active_jobs.",
    )
    lease_s: float = Field(
        default=20,
        gt=0,
        description="A worker holds each stage it runs under a lease its heartbeat renews; a lease not renewed"
        " this long (worker dead, frozen or cut off) has lapsed, and the next sweep re-sends the stage.",
    )
    lease_heartbeat_s: float = Field(
        default=5,
        gt=0,
        description="How often each worker process renews the leases it holds (one statement); at most half"
        " of lease_s.",
    )
    requeue_idle_s: int | None = Field(
        default=None,
        ge=1,
        description="A queued, running or due deferred job untouched this long has lost its message and"
        " is sent again. Must exceed job_time_limit_s, so a stage still at work is never doubled; unset,"
        " job_time_limit_s + 5 minutes.",
    )
    user_active_jobs: int = Field(
        default=32,
        ge=1,
        description="Jobs of one user in the broker's queue or running at once; the rest wait in the"
        " database, so one user's big upload cannot starve another's single file.",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="`ingest worker` serves Prometheus metrics of all its processes on this port"
        " (every interface). Unset: not served.",
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

    @model_validator(mode="after")
    def _requeue_after_the_time_limit(self) -> Settings:
        # Re-sending a job whose stage may still be running would call a paid vendor twice at once.
        if self.requeue_idle_s is not None and self.requeue_idle_s <= self.job_time_limit_s:
            raise ValueError(
                f"requeue_idle_s ({self.requeue_idle_s}) must exceed job_time_limit_s ({self.job_time_limit_s})"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat_within_the_lease(self) -> Settings:
        # One late heartbeat must not let a live worker's lease lapse.
        if self.lease_heartbeat_s * 2 > self.lease_s:
            raise ValueError(
                f"lease_heartbeat_s ({self.lease_heartbeat_s}) must be at most half of lease_s ({self.lease_s})"
            )
        return self

    @property
    def requeue_after_s(self) -> int:
        return self.requeue_idle_s or self.job_time_limit_s + 300

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

    # --- costs --------------------------------------------------------------------------------------
    budget_timezone: str = Field(default="UTC", description="Time zone of the budget day.")
    reservation_ttl_s: int = Field(
        default=900,
        ge=1,
        description="A budget reservation not settled this long is presumed abandoned (crashed worker) and"
        " stops counting; a stage's, once its job is final, is charged `unknown` at its estimate (its call"
        " may have been billed). Keep it above the longest vendor call (job_time_limit_s).",
    )
    budget_alert_url: str | None = Field(
        default=None,
        description="Webhook POSTed once a day per service as 50%, 80% and 100% of its budget is spent.",
    )
    price_llamaparse_usd_per_1k_credits: Decimal | None = Field(
        default=None, description="Override of the LlamaParse credit price (USD per 1,000 credits)."
    )
    price_llamaparse_credits_per_page: dict[str, int] = Field(
        default_factory=dict, description='Override of credits per page by tier, e.g. {"agentic": 10}.'
    )
    price_openai_usd_per_1m_tokens: dict[str, Decimal] = Field(
        default_factory=dict,
        description='Override of embedding prices (USD per 1M tokens), e.g. {"text-embedding-3-small": "0.02"}.',
    )
    price_openai_batch_usd_per_1m_tokens: dict[str, Decimal] = Field(
        default_factory=dict,
        description="Override of Batch API embedding prices (USD per 1M tokens), e.g."
        ' {"text-embedding-3-small": "0.01"}.',
    )
    prices_checked_on: date | None = Field(
        default=None, description="When the overridden prices were checked against the vendors' pages."
    )

    @field_validator("budget_timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        # Refused at start rather than at the first reservation of a worker.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
            ) from None
        return value

    @model_validator(mode="after")
    def _one_request_per_embed_batch(self) -> Settings:
        # The ledger charges a batch once, when its embed call returns. A batch sent as several requests
        # could fail for good after earlier ones were billed, and that spend would leave the ledger with
        # the released reservation; one request per batch makes each batch all-or-nothing. Chunks never
        # exceed chunk_tokens (chunking counts them exactly, as OpenAI does).
        fits = OPENAI_MAX_TOKENS_PER_REQUEST // self.chunk_tokens
        if self.embed_batch_chunks <= fits:
            return self
        if "embed_batch_chunks" in self.model_fields_set:
            raise ValueError(
                f"embed_batch_chunks={self.embed_batch_chunks} chunks of up to {self.chunk_tokens} tokens"
                f" exceed one OpenAI request ({OPENAI_MAX_TOKENS_PER_REQUEST:,} tokens): use at most {fits}"
            )
        self.embed_batch_chunks = fits
        return self

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
