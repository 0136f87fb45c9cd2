CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    is_admin    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Keys are stored as SHA-256 of the key; the key itself is shown once and never stored.
CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    key_hash    bytea NOT NULL UNIQUE,
    prefix      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE documents (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id      bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    sha256        text NOT NULL,
    filename      text NOT NULL,
    media_type    text NOT NULL,
    bytes         bigint NOT NULL,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'completed', 'failed', 'deferred')),
    parser        text,
    pages         integer,
    partial       boolean NOT NULL DEFAULT false,
    error         text,
    metadata      jsonb NOT NULL DEFAULT '{}',
    callback_url  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, sha256)
);
CREATE INDEX documents_owner_created ON documents (owner_id, created_at DESC);

CREATE TABLE jobs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id     uuid NOT NULL REFERENCES documents ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'completed', 'failed', 'deferred')),
    stage           text NOT NULL DEFAULT 'queued'
                    CHECK (stage IN ('queued', 'parse', 'chunk', 'embed', 'done')),
    attempts        integer NOT NULL DEFAULT 0,
    error           text,
    chunks_total    integer,
    chunks_done     integer NOT NULL DEFAULT 0,
    deferred_until  timestamptz,
    -- host:pid of the worker running the parse stage; with updated_at, a lease others wait out
    claimed_by      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
CREATE INDEX jobs_document ON jobs (document_id);
CREATE INDEX jobs_status_updated ON jobs (status, updated_at);

-- An embedding space is one (model, dimensions). Each has its own vector table, so vectors of different
-- models can never be compared: a search reads exactly one table.
CREATE TABLE embedding_spaces (
    id          serial PRIMARY KEY,
    model       text NOT NULL,
    dimensions  integer NOT NULL CHECK (dimensions BETWEEN 1 AND 4000),
    simulated   boolean NOT NULL,
    table_name  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (model, dimensions)
);

CREATE TABLE chunks (
    id           bigserial PRIMARY KEY,
    document_id  uuid NOT NULL REFERENCES documents ON DELETE CASCADE,
    ordinal      integer NOT NULL,
    text         text NOT NULL,
    token_count  integer NOT NULL,
    text_hash    bytea NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}',
    -- the space holding this chunk's vector; NULL until it is embedded
    space_id     integer REFERENCES embedding_spaces,
    UNIQUE (document_id, ordinal)
);

CREATE TABLE router_modes (
    service     text PRIMARY KEY CHECK (service IN ('llamaparse', 'openai')),
    mode        text NOT NULL CHECK (mode IN ('real', 'mock', 'hybrid')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO router_modes (service, mode) VALUES ('llamaparse', 'mock'), ('openai', 'mock');
