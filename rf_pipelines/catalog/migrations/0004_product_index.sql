-- An import skips products already in the catalog by their product id (one query per
-- batch); a re-published product has a new id and updates its scene (same natural key).
CREATE INDEX scenes_import_product_idx ON scenes (owner, (scene_metadata->>'product_id'));
