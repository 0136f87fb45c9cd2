-- The LlamaParse job a parse stage made, recorded the moment it exists: a later delivery of the stage
-- (worker killed while waiting, time limit, a database or broker error after the job was made) resumes
-- that job instead of paying for another. The vendor bills every job that completes; our ledger's
-- `<document>:parse` key only keeps *our* books from counting twice.
--   vendor_parse_job_id   the job; NULL once the stage has committed its chunks (or none was made)
--   vendor_parse_file_id  the uploaded file it reads, reused by a resubmission
--   vendor_parse_jobs     jobs this round of the parse has made (at most two: one resubmission);
--                         `ingest retry` resets it, so a retried job may resubmit a file whose job failed
ALTER TABLE jobs
    ADD COLUMN vendor_parse_job_id text,
    ADD COLUMN vendor_parse_file_id text,
    ADD COLUMN vendor_parse_jobs integer NOT NULL DEFAULT 0;
