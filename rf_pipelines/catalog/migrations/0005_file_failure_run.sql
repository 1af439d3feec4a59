-- The run in which a file failed: a sibling step of the same run must not set it back to
-- PROCESSING (and clear its error); a new run may.
ALTER TABLE upload_files ADD COLUMN failed_in_run text;
