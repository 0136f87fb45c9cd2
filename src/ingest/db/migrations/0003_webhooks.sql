-- Webhooks: inbound LlamaParse events already handled (replays change nothing), and every attempt to
-- deliver an outbound callback (what a user asks when their receiver saw nothing).

CREATE TABLE webhook_events (
    event_id       text PRIMARY KEY,
    event_type     text NOT NULL,
    vendor_job_id  text NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE callback_attempts (
    id           bigserial PRIMARY KEY,
    document_id  uuid NOT NULL REFERENCES documents ON DELETE CASCADE,
    webhook_id   text NOT NULL,  -- the event's webhook-id header: the same on each retry of one event
    event_type   text NOT NULL CHECK (event_type IN ('document.completed', 'document.failed')),
    attempt      integer NOT NULL CHECK (attempt >= 1),
    status_code  integer,        -- the receiver's answer; NULL when none came (refused, timed out)
    error        text,           -- why the attempt failed; NULL when it was delivered
    at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (webhook_id, attempt)
);
CREATE INDEX callback_attempts_document ON callback_attempts (document_id);
