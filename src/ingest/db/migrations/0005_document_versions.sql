-- Document versions: a new upload can replace an owner's earlier document, matched by a caller-chosen
-- external id or by filename. The new version is built beside the old one; the transaction that marks
-- it completed deletes the old (chunks and vectors cascade), so a search sees one version or the other.
ALTER TABLE documents
    ADD COLUMN external_id text,
    -- how this document finds the versions it replaces; NULL: it replaces nothing
    ADD COLUMN replaces text CHECK (replaces IN ('external_id', 'filename')),
    ADD CONSTRAINT documents_replaces_external_id CHECK (replaces <> 'external_id' OR external_id IS NOT NULL);
CREATE INDEX documents_owner_external_id ON documents (owner_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX documents_owner_filename ON documents (owner_id, filename);
