-- A delete asks whether any other document (of any user) still names the blob it would remove.
CREATE INDEX documents_sha256 ON documents (sha256);

-- The embedding cache becomes per user: a text's vector is reused only for the user who embedded it, so
-- neither what a user is charged nor how fast a document completes shows what another user ingested.
-- Rows are kept for every user who has a chunk of that text embedded in that space; the rest go.
CREATE TABLE embedding_cache_by_owner (
    space_id   integer NOT NULL REFERENCES embedding_spaces ON DELETE CASCADE,
    owner_id   bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    text_hash  bytea NOT NULL,
    embedding  halfvec NOT NULL,
    PRIMARY KEY (space_id, owner_id, text_hash)
);
INSERT INTO embedding_cache_by_owner (space_id, owner_id, text_hash, embedding)
SELECT DISTINCT ON (e.space_id, d.owner_id, e.text_hash) e.space_id, d.owner_id, e.text_hash, e.embedding
FROM embedding_cache e
JOIN chunks c ON c.text_hash = e.text_hash AND c.space_id = e.space_id
JOIN documents d ON d.id = c.document_id;
DROP TABLE embedding_cache;
ALTER TABLE embedding_cache_by_owner RENAME TO embedding_cache;
ALTER TABLE embedding_cache RENAME CONSTRAINT embedding_cache_by_owner_pkey TO embedding_cache_pkey;

-- A vendor call the vendor may have billed but whose answer we could not use (read timeout, an answer we
-- failed to read, an error of ours after the request left) is `unknown`: charged at its estimate (or
-- more, when several attempts may have been billed), with the reason, never released. It counts like a
-- charge, so the ledger never reads less than the vendor's bill. Its key gets the row's id appended, so
-- the retried call reserves and charges under the plain key as usual.
ALTER TABLE cost_entries DROP CONSTRAINT cost_entries_state_check;
ALTER TABLE cost_entries ADD CONSTRAINT cost_entries_state_check
    CHECK (state IN ('reserved', 'charged', 'released', 'expired', 'unknown'));
ALTER TABLE cost_entries ADD COLUMN unknown_reason text;
