-- GDAL sidecars (external mask, overviews, .aux.xml, world file, .prj) travel with their
-- raster: each file lists those copied beside it, and an upload keeps its notes (a sidecar
-- whose raster was not in the upload, left out).
ALTER TABLE upload_files ADD COLUMN IF NOT EXISTS sidecars jsonb NOT NULL DEFAULT '[]';
ALTER TABLE uploads ADD COLUMN IF NOT EXISTS notes jsonb NOT NULL DEFAULT '[]';
