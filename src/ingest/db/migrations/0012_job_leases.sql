-- Leases: the worker process that takes a unit of a job's work holds it while its heartbeat renews it.
--   unit        what is held: 'parse', 'embed:<first>-<last>' (one embedding batch), or 'queued' (an
--               in-process message, held by the process whose memory it lives in)
--   owner       'host:pid:token' of the holding process; NULL once a sweep has re-sent the unit
--   generation  bumped by every take and every re-send: the fencing token each write of the holder
--               compares, in its own transaction, with the row's
--   expires_at  renewed by the owner's heartbeat; past it the lease has lapsed and a sweep re-sends it
CREATE TABLE job_leases (
    job_id      uuid NOT NULL REFERENCES jobs ON DELETE CASCADE,
    unit        text NOT NULL,
    owner       text,
    generation  bigint NOT NULL DEFAULT 1,
    taken_at    timestamptz NOT NULL DEFAULT now(),
    renewed_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (job_id, unit)
);

-- Which job lease ('<generation>') holds a cost reservation. A later holder of the unit takes it over; a
-- frozen holder that wakes with a billed answer then finds it taken and charges a row of its own
-- ('<key>#<generation>'), so the ledger counts both calls the vendor billed.
ALTER TABLE cost_entries ADD COLUMN holder text;

-- jobs.claimed_by stays a record of who last claimed the parse; who may run a unit is the lease's to say.
