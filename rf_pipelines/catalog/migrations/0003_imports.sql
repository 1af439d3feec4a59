-- Scheduled imports: one row per source and day, and the scenes that failed with the reason,
-- so a day is COMPLETE or PARTIAL at a glance and a rerun retries only what failed.
CREATE TYPE import_status AS ENUM ('RUNNING', 'COMPLETE', 'PARTIAL');

CREATE TABLE import_days (
  source        text NOT NULL,
  day           date NOT NULL,
  status        import_status NOT NULL DEFAULT 'RUNNING',
  discovered    integer NOT NULL DEFAULT 0,
  manifest_url  text,
  checked_at    timestamptz NOT NULL DEFAULT now(),
  modified_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source, day)
);

CREATE TABLE import_failures (
  source      text NOT NULL,
  day         date NOT NULL,
  ref         text NOT NULL,
  reason      text NOT NULL,
  failed_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source, day, ref)
);

-- Imported scenes are found by datasource and natural key (product id without tier).
CREATE INDEX scenes_owner_name_idx ON scenes (owner, name);
