-- Raster Foundry's core tables, with the status enums of its data model.
CREATE TYPE upload_status AS ENUM (
  'CREATED', 'UPLOADING', 'UPLOADED', 'QUEUED', 'PROCESSING', 'COMPLETE', 'FAILED', 'ABORTED');
CREATE TYPE ingest_status AS ENUM (
  'NOTINGESTED', 'TOBEINGESTED', 'INGESTING', 'INGESTED', 'FAILED');
CREATE TYPE job_status AS ENUM (
  'UPLOADING', 'SUCCESS', 'FAILURE', 'PARTIALFAILURE', 'QUEUED', 'PROCESSING');
CREATE TYPE visibility AS ENUM ('PUBLIC', 'ORGANIZATION', 'PRIVATE');
CREATE TYPE thumbnail_size AS ENUM ('SMALL', 'LARGE', 'SQUARE');
CREATE TYPE upload_type AS ENUM ('LOCAL', 'S3', 'DROPBOX', 'PLANET');
CREATE TYPE file_type AS ENUM ('GEOTIFF', 'GEOTIFF_WITH_METADATA', 'NON_SPATIAL');

CREATE TABLE datasources (
  id          uuid PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  owner       text NOT NULL,
  visibility  visibility NOT NULL DEFAULT 'PRIVATE',
  bands       jsonb NOT NULL DEFAULT '[]',
  created_at  timestamptz NOT NULL DEFAULT now(),
  modified_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
  id          uuid PRIMARY KEY,
  name        text NOT NULL,
  owner       text NOT NULL,
  visibility  visibility NOT NULL DEFAULT 'PRIVATE',
  created_at  timestamptz NOT NULL DEFAULT now(),
  modified_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE uploads (
  id            uuid PRIMARY KEY,
  owner         text NOT NULL,
  upload_status upload_status NOT NULL DEFAULT 'CREATED',
  status_reason text,
  upload_type   upload_type NOT NULL,
  file_type     file_type NOT NULL DEFAULT 'GEOTIFF',
  files         jsonb NOT NULL DEFAULT '[]',
  datasource_id uuid REFERENCES datasources (id),
  project_id    uuid REFERENCES projects (id),
  metadata      jsonb NOT NULL DEFAULT '{}',
  created_at    timestamptz NOT NULL DEFAULT now(),
  modified_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_status_idx ON uploads (upload_status);

CREATE TABLE scenes (
  id                 uuid PRIMARY KEY,
  name               text NOT NULL,
  owner              text NOT NULL,
  datasource_id      uuid NOT NULL REFERENCES datasources (id),
  visibility         visibility NOT NULL DEFAULT 'PRIVATE',
  acquisition_date   timestamptz,
  cloud_cover        real,
  sun_azimuth        real,
  sun_elevation      real,
  tile_footprint_4326 jsonb,
  tile_footprint_3857 jsonb,
  data_footprint_4326 jsonb,
  data_footprint_3857 jsonb,
  scene_metadata     jsonb NOT NULL DEFAULT '{}',
  metadata_files     text[] NOT NULL DEFAULT '{}',
  ingest_location    text,
  ingest_status      ingest_status NOT NULL DEFAULT 'NOTINGESTED',
  status_reason      text,
  thumbnail_status   job_status NOT NULL DEFAULT 'PROCESSING',
  boundary_status    job_status NOT NULL DEFAULT 'PROCESSING',
  upload_id          uuid REFERENCES uploads (id),
  written_by         text NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now(),
  modified_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scenes_datasource_acquisition_idx ON scenes (datasource_id, acquisition_date);
CREATE INDEX scenes_ingest_status_idx ON scenes (ingest_status);

CREATE TABLE images (
  id                uuid PRIMARY KEY,
  scene_id          uuid NOT NULL REFERENCES scenes (id) ON DELETE CASCADE,
  source_uri        text NOT NULL,
  filename          text NOT NULL,
  raw_data_bytes    bigint NOT NULL,
  resolution_meters real NOT NULL,
  image_metadata    jsonb NOT NULL DEFAULT '{}',
  written_by        text NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now(),
  modified_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bands (
  id         uuid PRIMARY KEY,
  image_id   uuid NOT NULL REFERENCES images (id) ON DELETE CASCADE,
  name       text NOT NULL,
  number     integer NOT NULL,
  wavelength real[] NOT NULL DEFAULT '{}',
  metadata   jsonb NOT NULL DEFAULT '{}',
  UNIQUE (image_id, number)
);

CREATE TABLE thumbnails (
  id         uuid PRIMARY KEY,
  scene_id   uuid NOT NULL REFERENCES scenes (id) ON DELETE CASCADE,
  size       thumbnail_size NOT NULL,
  width      integer NOT NULL,
  height     integer NOT NULL,
  url        text NOT NULL,
  written_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (scene_id, size)
);

CREATE TABLE project_scenes (
  project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
  scene_id   uuid NOT NULL REFERENCES scenes (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, scene_id)
);

-- Completion markers of database steps, written in the step's own transaction.
CREATE TABLE task_markers (
  marker_id    text PRIMARY KEY,
  task_family  text NOT NULL,
  task_version integer NOT NULL,
  params       jsonb NOT NULL DEFAULT '{}',
  created_at   timestamptz NOT NULL DEFAULT now()
);
