-- Production: fair sharing between users, sweeps for lost messages, bounded redeliveries.

-- When the job's message was last sent to the broker. NULL while a queued job is held back in the
-- database because its user already has `user_active_jobs` jobs admitted (queued with a message, or
-- running); the sweeper re-sends admitted jobs that have not moved for `requeue_idle_s`.
ALTER TABLE jobs ADD COLUMN enqueued_at timestamptz;
UPDATE jobs SET enqueued_at = updated_at WHERE status IN ('queued', 'running', 'deferred');
CREATE INDEX jobs_held ON jobs (created_at) WHERE status = 'queued' AND enqueued_at IS NULL;
CREATE INDEX jobs_admitted ON jobs (document_id)
    WHERE status = 'running' OR (status = 'queued' AND enqueued_at IS NOT NULL);

-- How often each broker message of a job was taken up by a worker. Dramatiq's retries are bounded, but a
-- message whose worker dies with it (killed, out of memory) comes back without counting as a retry;
-- this count bounds those too. Rows are dropped by the sweeper a day after their last delivery.
CREATE TABLE message_deliveries (
    message_id  text PRIMARY KEY,
    deliveries  integer NOT NULL,
    last_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_deliveries_last_at ON message_deliveries (last_at);
