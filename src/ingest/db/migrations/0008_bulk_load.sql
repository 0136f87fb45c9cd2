-- Bulk loading, stable chunk boundaries, and binary-quantized indexes.

-- Set while a space's HNSW index is dropped for a large backlog to load (workers/indexing.py): since
-- when. The index is built again, in one pass, once the backlog has drained (or it has waited too long).
-- Searches stay exact meanwhile (a scan). NULL: the index is live.
ALTER TABLE embedding_spaces ADD COLUMN index_deferred_at timestamptz;

-- Where a chunk starts, as a hash of its first piece of text and the one before it: a new version of
-- the document ends its chunks at the same places, so an edit re-embeds only the chunks it touches.
ALTER TABLE chunks ADD COLUMN start_key bytea;

-- How a space's vectors are indexed: `halfvec`, HNSW over the vectors; `binary`, HNSW over their
-- binary quantization (one bit a dimension), whose candidates a search re-ranks by exact distance.
ALTER TABLE embedding_spaces
    ADD COLUMN index_kind text NOT NULL DEFAULT 'halfvec' CHECK (index_kind IN ('halfvec', 'binary'));
