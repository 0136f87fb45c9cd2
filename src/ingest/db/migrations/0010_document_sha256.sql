-- A delete asks whether any other document (of any user) still names the blob it would remove.
CREATE INDEX documents_sha256 ON documents (sha256);
