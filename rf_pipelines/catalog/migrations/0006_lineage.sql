-- The versions of the steps that made an upload COMPLETE, or a scene INGESTED
-- ("Step@v1,Other@v2,..."): a run whose steps have other versions does that work again.
ALTER TABLE uploads ADD COLUMN processed_by text;
ALTER TABLE scenes ADD COLUMN ingested_by text;
