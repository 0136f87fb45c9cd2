-- Keyword search's document frequencies, per owner and space: how many of the owner's visible chunks
-- (document completed, vector in the space) hold each lexeme. Counted at query time through the GIN
-- index, each query word read its whole posting list, every user's, which was most of a keyword search at
-- 100,000 chunks; here a word costs one primary-key probe. Triggers keep the counts in step, in the
-- statements that write, move or delete chunks and that complete, un-complete or delete documents, so a
-- search's snapshot sees counts that match the chunks it sees. A lexeme no longer held keeps its row at 0.
CREATE TABLE keyword_terms (
    owner_id  bigint NOT NULL,
    space_id  integer NOT NULL,
    lexeme    text NOT NULL,
    chunks    integer NOT NULL,
    PRIMARY KEY (owner_id, space_id, lexeme)
);

-- One visible chunk's terms entering (+1) or leaving (-1) its owner's counts.
CREATE TYPE ingest_keyword_change AS (owner_id bigint, space_id integer, search_terms tsvector, delta integer);

-- Applies the changes of one statement, summed per lexeme (one row write a lexeme however many chunks
-- hold it). Writers of an owner first take a transaction-level advisory lock on it: two transactions that
-- each change counts in several statements (a re-ingest deletes the old version, then completes the new
-- one) would otherwise lock common lexemes in opposite orders and deadlock. Owners never wait on each other.
CREATE FUNCTION ingest_keyword_terms_apply(changes ingest_keyword_change[]) RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(15, (o.owner_id % 2147483647)::integer)
    FROM (SELECT DISTINCT c.owner_id FROM unnest(changes) c ORDER BY 1) o;
    INSERT INTO keyword_terms AS k (owner_id, space_id, lexeme, chunks)
    SELECT c.owner_id, c.space_id, t.lexeme, sum(c.delta)
    FROM unnest(changes) c CROSS JOIN LATERAL unnest(c.search_terms) t
    GROUP BY 1, 2, 3 HAVING sum(c.delta) <> 0
    ORDER BY 1, 2, 3
    ON CONFLICT (owner_id, space_id, lexeme) DO UPDATE SET chunks = k.chunks + EXCLUDED.chunks;
END
$$;

CREATE FUNCTION ingest_keyword_chunks_inserted() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM ingest_keyword_terms_apply(ARRAY(
        SELECT ROW(d.owner_id, n.space_id, n.search_terms, 1)::ingest_keyword_change
        FROM new_chunks n JOIN documents d ON d.id = n.document_id
        WHERE n.space_id IS NOT NULL AND d.status = 'completed'));
    RETURN NULL;
END
$$;

-- A chunk deleted with its document (the cascade) finds the document gone: the document's own trigger
-- has taken its chunks out already.
CREATE FUNCTION ingest_keyword_chunks_deleted() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM ingest_keyword_terms_apply(ARRAY(
        SELECT ROW(d.owner_id, o.space_id, o.search_terms, -1)::ingest_keyword_change
        FROM old_chunks o JOIN documents d ON d.id = o.document_id
        WHERE o.space_id IS NOT NULL AND d.status = 'completed'));
    RETURN NULL;
END
$$;

CREATE FUNCTION ingest_keyword_chunks_updated() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM ingest_keyword_terms_apply(ARRAY(
        SELECT ROW(d.owner_id, x.space_id, x.search_terms, x.delta)::ingest_keyword_change
        FROM old_chunks o JOIN new_chunks n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES (o.document_id, o.space_id, o.search_terms, -1),
                                   (n.document_id, n.space_id, n.search_terms, 1))
            AS x (document_id, space_id, search_terms, delta)
        JOIN documents d ON d.id = x.document_id
        WHERE (o.space_id, o.search_terms, o.document_id) IS DISTINCT FROM (n.space_id, n.search_terms, n.document_id)
          AND x.space_id IS NOT NULL AND d.status = 'completed'));
    RETURN NULL;
END
$$;

CREATE FUNCTION ingest_keyword_documents_updated() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM ingest_keyword_terms_apply(ARRAY(
        SELECT ROW(n.owner_id, c.space_id, c.search_terms, CASE WHEN n.status = 'completed' THEN 1 ELSE -1 END)
            ::ingest_keyword_change
        FROM old_documents o JOIN new_documents n ON n.id = o.id JOIN chunks c ON c.document_id = n.id
        WHERE (o.status = 'completed') <> (n.status = 'completed') AND c.space_id IS NOT NULL));
    RETURN NULL;
END
$$;

CREATE FUNCTION ingest_keyword_document_deleting() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF OLD.status = 'completed' THEN
        PERFORM ingest_keyword_terms_apply(ARRAY(
            SELECT ROW(OLD.owner_id, c.space_id, c.search_terms, -1)::ingest_keyword_change
            FROM chunks c WHERE c.document_id = OLD.id AND c.space_id IS NOT NULL));
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER chunks_keyword_inserted AFTER INSERT ON chunks REFERENCING NEW TABLE AS new_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION ingest_keyword_chunks_inserted();
CREATE TRIGGER chunks_keyword_deleted AFTER DELETE ON chunks REFERENCING OLD TABLE AS old_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION ingest_keyword_chunks_deleted();
CREATE TRIGGER chunks_keyword_updated AFTER UPDATE ON chunks
    REFERENCING OLD TABLE AS old_chunks NEW TABLE AS new_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION ingest_keyword_chunks_updated();
CREATE TRIGGER documents_keyword_updated AFTER UPDATE ON documents
    REFERENCING OLD TABLE AS old_documents NEW TABLE AS new_documents
    FOR EACH STATEMENT EXECUTE FUNCTION ingest_keyword_documents_updated();
CREATE TRIGGER documents_keyword_deleting BEFORE DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION ingest_keyword_document_deleting();

-- The back-fill: every visible chunk as it stands.
INSERT INTO keyword_terms (owner_id, space_id, lexeme, chunks)
SELECT d.owner_id, c.space_id, t.lexeme, count(*)
FROM chunks c JOIN documents d ON d.id = c.document_id CROSS JOIN LATERAL unnest(c.search_terms) t
WHERE c.space_id IS NOT NULL AND d.status = 'completed'
GROUP BY 1, 2, 3;
