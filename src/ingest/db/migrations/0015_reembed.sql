-- The active embedding space, as state: the one real space every search reads and every embedding
-- batch writes, so switching to a new model is one transaction (ingest reembed). Empty until the first
-- real vector is stored, which makes that vector's space active. `previous_space_id` is the space a
-- switch left, kept (with its vectors) until `ingest reembed --drop-previous`, so `--rollback` can return.
CREATE TABLE active_space (
    only_row           boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    space_id           bigint REFERENCES embedding_spaces,
    previous_space_id  bigint REFERENCES embedding_spaces,
    switched_at        timestamptz
);
INSERT INTO active_space DEFAULT VALUES;

-- One run of `ingest reembed`: builds `target_space_id` from the chunks of `source_space_id` (the active
-- space when it started) while searches read the source, then switches. `step` numbers the run's one
-- pending message: a message of another step is stale and does nothing.
CREATE TABLE reembeds (
    id               bigserial PRIMARY KEY,
    source_space_id  bigint NOT NULL REFERENCES embedding_spaces,
    target_space_id  bigint NOT NULL REFERENCES embedding_spaces,
    rollback         boolean NOT NULL DEFAULT false,
    status           text NOT NULL DEFAULT 'building'
                     CHECK (status IN ('building', 'switched', 'cancelled', 'superseded')),
    chunks_total     integer NOT NULL,
    quoted_usd       numeric(20, 12) NOT NULL,
    step             bigint NOT NULL DEFAULT 0,
    -- The last chunk a batch took: the next looks past it, so a run reads the source once, not once a
    -- batch; a pass that finds nothing past it looks once more from the start.
    cursor           bigint NOT NULL DEFAULT 0,
    waiting_reason   text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    touched_at       timestamptz NOT NULL DEFAULT now(),
    switched_at      timestamptz,
    CHECK (source_space_id <> target_space_id)
);
-- At most one run builds at a time.
CREATE UNIQUE INDEX reembeds_one_building ON reembeds ((true)) WHERE status = 'building';
