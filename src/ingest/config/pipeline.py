"""The pipeline's tuning: parsing and chunking, embeddings, documents batched together, the batch route."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, Field, model_validator

# OpenAI's cap on the tokens of one embeddings request (router.openai_real.MAX_TOKENS_PER_REQUEST; that
# module imports this one, so the figure is repeated here and a test keeps the two equal).
OPENAI_MAX_TOKENS_PER_REQUEST = 300_000


class PipelineSettings(BaseModel):
    """How a document is parsed, chunked and embedded."""

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

    batch_documents_per_slot: int = Field(
        default=8,
        ge=1,
        le=64,
        description="How many small documents (those that travel together, see document_batch_tokens) count"
        " as one of a user's user_active_jobs slots, so batches are not capped at user_active_jobs spread"
        " over the worker threads; a document that goes alone is one slot. 1 counts every document as one.",
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

    @model_validator(mode="after")
    def _one_request_per_embed_batch(self) -> Self:
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
