-- The step a file failed in: only that step (run again) or a step upstream of it may set
-- the file back to PROCESSING; a sibling or downstream step, in this run or another one
-- sharing the work through luigid, leaves the failure and its reason as they are.
ALTER TABLE upload_files ADD COLUMN failed_step text;
