-- The Batch API route for embeddings (docs/costs.md, "Half price: the batch route").
--
-- jobs.embed_route     'sync' (the embeddings endpoint) or 'batch' (OpenAI's Batch API, half the price,
--                      within 24 hours); chosen per job at submission
-- jobs.batch_fallback  what a batch route job does with inputs a batch did not embed (an expired or
--                      cancelled batch, failed lines): 'batch' sends them in a later batch, 'sync'
--                      embeds them through the endpoint at the full price
-- jobs.stage 'batch'   the job's inputs wait for a batch (shown as "waiting for batch")
ALTER TABLE jobs ADD COLUMN embed_route text NOT NULL DEFAULT 'sync' CHECK (embed_route IN ('sync', 'batch'));
ALTER TABLE jobs ADD COLUMN batch_fallback text NOT NULL DEFAULT 'batch'
    CHECK (batch_fallback IN ('batch', 'sync'));
ALTER TABLE jobs DROP CONSTRAINT jobs_stage_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_stage_check
    CHECK (stage IN ('queued', 'parse', 'chunk', 'embed', 'batch', 'done'));

-- One batch we send. Its row (and its items) commit before the input file is uploaded; the vendor's ids
-- are recorded the moment they exist, and the batch carries our id in its metadata, so a process that
-- died between creating the batch and recording it finds the batch again instead of making a second.
--   client      'real' (the vendor through the SDK) or 'mock' (the mock embedder, answered at once)
--   status      ours: 'preparing' (no vendor batch yet), 'submitted', 'done' (its lines collected)
--   vendor_status  the vendor's last word (validating, in_progress, completed, expired, ...)
CREATE TABLE embedding_batches (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client           text NOT NULL CHECK (client IN ('real', 'mock', 'standin')),
    model            text NOT NULL,
    dimensions       integer NOT NULL,
    status           text NOT NULL DEFAULT 'preparing' CHECK (status IN ('preparing', 'submitted', 'done')),
    vendor_status    text,
    input_file_id    text,
    vendor_batch_id  text UNIQUE,
    requests         integer NOT NULL CHECK (requests > 0),
    input_bytes      bigint NOT NULL,
    expires_at       timestamptz,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX embedding_batches_open ON embedding_batches (status) WHERE status <> 'done';

-- One chunk's embedding input on the batch route: pending (batch_id NULL) until packed into a batch.
-- custom_id is the chunk id: an output line names the chunk it belongs to.
CREATE TABLE embedding_batch_items (
    chunk_id     bigint PRIMARY KEY REFERENCES chunks ON DELETE CASCADE,
    job_id       uuid NOT NULL REFERENCES jobs ON DELETE CASCADE,
    batch_id     uuid REFERENCES embedding_batches ON DELETE SET NULL,
    tokens       integer NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    queued_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX embedding_batch_items_batch ON embedding_batch_items (batch_id);
CREATE INDEX embedding_batch_items_job ON embedding_batch_items (job_id);

-- What a saving is: 'reuse' (vectors the cache served) or 'batch' (the Batch API's price below the
-- endpoint's).
ALTER TABLE cost_savings ADD COLUMN kind text NOT NULL DEFAULT 'reuse' CHECK (kind IN ('reuse', 'batch'));
