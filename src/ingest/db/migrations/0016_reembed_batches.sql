-- `ingest reembed --when-cheapest`: a run whose embeddings go through the Batch API (docs/costs.md,
-- "Half price: the batch route"; docs/operations.md, "Changing the embedding model").
--
-- reembeds.embed_route     'sync' (one endpoint call a step, as before) or 'batch' (the run's inputs wait
--                          in embedding_batch_items for the tender, at the Batch API's price)
-- reembeds.batch_fallback  what a batch run does with inputs a batch did not embed: 'batch' sends them
--                          in a later batch (up to INGEST_BATCH_MAX_ATTEMPTS, then the run fails),
--                          'sync' embeds the rest through the endpoint at the full price
-- reembeds.status 'failed' a batch run whose inputs no batch embedded (waiting_reason says why)
ALTER TABLE reembeds ADD COLUMN embed_route text NOT NULL DEFAULT 'sync'
    CHECK (embed_route IN ('sync', 'batch'));
ALTER TABLE reembeds ADD COLUMN batch_fallback text NOT NULL DEFAULT 'batch'
    CHECK (batch_fallback IN ('batch', 'sync'));
ALTER TABLE reembeds DROP CONSTRAINT reembeds_status_check;
ALTER TABLE reembeds ADD CONSTRAINT reembeds_status_check
    CHECK (status IN ('building', 'switched', 'cancelled', 'superseded', 'failed'));

-- An input on the batch route belongs to a job (a chunk without a vector yet) or to a reembed run (a
-- chunk of the run's source without a vector in its target): exactly one of the two.
ALTER TABLE embedding_batch_items ALTER COLUMN job_id DROP NOT NULL;
ALTER TABLE embedding_batch_items ADD COLUMN run_id bigint REFERENCES reembeds ON DELETE CASCADE;
ALTER TABLE embedding_batch_items ADD CONSTRAINT embedding_batch_items_one_owner
    CHECK ((job_id IS NULL) <> (run_id IS NULL));
CREATE INDEX embedding_batch_items_run ON embedding_batch_items (run_id) WHERE run_id IS NOT NULL;
