-- Keyword search beside the vectors: every chunk carries its terms (a tsvector, GIN-indexed, to find the
-- chunks holding a word) and their BM25 term weights (a sparsevec over hashed terms, saturated term
-- frequency with length normalisation; the query brings the IDF). Both are computed from the chunk's own
-- text by a trigger, in the statement that writes (or changes) the chunk, so they never disagree with it. A chunk
-- is searched by keyword only in the space that holds its vector (`chunks.space_id`, set by the
-- transaction that writes the vector): never findable one way and not the other.
--   search_config  the text search configuration of the chunk's language ('simple' when unknown)
--   search_text    what the index reads when it differs from `text` (CJK as character bigrams); NULL: text
-- Existing chunks are back-filled below, read as English (the language most documents were in before
-- detection); re-ingesting a document (`ingest add --replace`) detects its language.

-- A lexeme's dimension in the weight vectors: 29 bits of its MD5 (stable across servers and versions).
CREATE FUNCTION ingest_term_id(lexeme text) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN (('x' || left(md5(lexeme), 8))::bit(32)::integer & 536870911) + 1;

-- BM25's document side, k1 = 1.2 and b = 0.75: tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl)), with dl
-- the chunk's count of indexed words and avgdl fixed at 200 (what a full 512-token chunk holds once its
-- stop words are gone), so a weight never changes when other chunks come and go.
CREATE FUNCTION ingest_bm25_weights(doc tsvector) RETURNS sparsevec
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
BEGIN ATOMIC
    WITH t AS (SELECT ingest_term_id(lexeme) AS id, coalesce(array_length(positions, 1), 1) AS tf FROM unnest(doc)),
         n AS (SELECT sum(tf) AS dl FROM t),
         w AS (SELECT id, sum(tf) AS tf FROM t GROUP BY id)
    SELECT coalesce(
        '{' || string_agg(
            w.id || ':' || round(w.tf * 2.2 / (w.tf + 1.2 * (0.25 + 0.75 * n.dl / 200.0)), 4), ',' ORDER BY w.id
        ) || '}/536870912',
        '{}/536870912'
    )::sparsevec
    FROM w, n;
END;

ALTER TABLE chunks
    ADD COLUMN search_config regconfig NOT NULL DEFAULT 'english',
    ADD COLUMN search_text text,
    ADD COLUMN search_terms tsvector,
    ADD COLUMN search_weights sparsevec;

-- One reading of the text for both columns (to_tsvector is most of the cost of writing a chunk).
CREATE FUNCTION ingest_chunk_search() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    doc tsvector := to_tsvector(NEW.search_config, coalesce(NEW.search_text, NEW.text));
BEGIN
    NEW.search_terms := strip(doc);
    NEW.search_weights := ingest_bm25_weights(doc);
    RETURN NEW;
END
$$;

CREATE TRIGGER chunks_search BEFORE INSERT OR UPDATE OF text, search_text, search_config ON chunks
    FOR EACH ROW EXECUTE FUNCTION ingest_chunk_search();

-- The back-fill: the trigger reads every existing chunk.
UPDATE chunks SET search_config = search_config;

ALTER TABLE chunks
    ALTER COLUMN search_terms SET NOT NULL,
    ALTER COLUMN search_weights SET NOT NULL;

CREATE INDEX chunks_search_terms ON chunks USING gin (search_terms);
