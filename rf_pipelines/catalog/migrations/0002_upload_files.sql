-- One row per file of an upload: its own status, error, scene and outputs, so a failed file
-- is visible by name and a rerun redoes only the files that are not SUCCESS.
CREATE TABLE upload_files (
  upload_id   uuid NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
  filename    text NOT NULL,
  source_uri  text NOT NULL,
  size_bytes  bigint NOT NULL,
  status      job_status NOT NULL DEFAULT 'QUEUED',
  error       text,
  scene_id    uuid REFERENCES scenes (id) ON DELETE SET NULL,
  outputs     jsonb NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now(),
  modified_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (upload_id, filename)
);
