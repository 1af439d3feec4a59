-- A day whose import run ended before the day was done (its worker failed on an outage, or
-- luigid went away) is INCOMPLETE, not RUNNING: nothing claims it, a rerun resumes it.
ALTER TYPE import_status ADD VALUE IF NOT EXISTS 'INCOMPLETE';
