-- The router: circuit breakers shared by every process (where Redis is not configured), chunks whose
-- vectors the mock made in hybrid mode (re-embedded by the real service later), and the one periodic
-- upgrade run every worker agrees is scheduled.

-- Times are epoch seconds (the circuit's clock, router.circuit); one row per service.
CREATE TABLE circuits (
    service      text PRIMARY KEY CHECK (service IN ('llamaparse', 'openai')),
    state        text NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half-open')),
    failures     integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    opened_at    double precision NOT NULL DEFAULT 0,
    probe_until  double precision NOT NULL DEFAULT 0,
    reason       text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO circuits (service) VALUES ('llamaparse'), ('openai');

-- A chunk embedded by the mock in hybrid mode: its vector is in a simulated space until the upgrade
-- re-embeds it with the real model, moves it to the real space and clears this.
ALTER TABLE chunks ADD COLUMN awaiting_upgrade boolean NOT NULL DEFAULT false;
CREATE INDEX chunks_awaiting_upgrade ON chunks (document_id, id) WHERE awaiting_upgrade;

-- When the next periodic upgrade run is due: whoever moves it forward sends that run's message, so
-- however many workers ask, one delayed message is pending at a time.
CREATE TABLE upgrade_schedule (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    due_at    timestamptz
);
INSERT INTO upgrade_schedule DEFAULT VALUES;
