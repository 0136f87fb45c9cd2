-- Embedding reuse: a text embedded once in a space is never paid for again, whoever ingests it next.

-- One vector per (space, hash of the whitespace-normalised text), shared by every worker and owner.
-- Rows outlive the chunks that made them (a deleted or replaced document still saves its successor a
-- call); the space fixes the dimensions, so the column needs none. Looked up by key only: no HNSW here.
CREATE TABLE embedding_cache (
    space_id   integer NOT NULL REFERENCES embedding_spaces ON DELETE CASCADE,
    text_hash  bytea NOT NULL,
    embedding  halfvec NOT NULL,
    PRIMARY KEY (space_id, text_hash)
);

-- What reuse saved: one row per embedding batch that took vectors from the cache, priced like the call
-- it replaced (shadow-priced for a mock space). Kept beside the ledger, not in it: a saving holds no
-- budget and is never charged. The key is the batch's ledger key, so a redelivered batch counts once.
CREATE TABLE cost_savings (
    key            text PRIMARY KEY,
    service        text NOT NULL CHECK (service IN ('llamaparse', 'openai')),
    simulated      boolean NOT NULL,
    budget_day     date NOT NULL,
    chunks         integer NOT NULL CHECK (chunks > 0),
    tokens         bigint NOT NULL CHECK (tokens >= 0),
    saved_usd      numeric(20, 12) NOT NULL CHECK (saved_usd >= 0),
    price_version  text NOT NULL,
    document_id    uuid REFERENCES documents ON DELETE SET NULL,
    job_id         uuid REFERENCES jobs ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cost_savings_day ON cost_savings (budget_day, service);
