"""A small real pipeline for the demo: describe a GeoTIFF, then register it as a scene."""

import json
from pathlib import PurePosixPath

import luigi
import rasterio

from rf_pipelines import ids
from rf_pipelines.catalog import datasources, scenes
from rf_pipelines.imagery import footprint, records
from rf_pipelines.tasks.base import RfTask

DEMO_DATASOURCE = "rf_pipelines demo"
DEMO_OWNER = "rf_pipelines"


class _DemoTask(RfTask):
    workflow = "demo"
    path = luigi.Parameter(description="Local path or s3:// URL of a GeoTIFF.")

    def object_id(self):
        # Readable and unique: the file's stem plus a short hash of the full path.
        return f"{PurePosixPath(self.path).stem}-{ids.stable_id('raster', self.path).hex[:8]}"


class DescribeRaster(_DemoTask):
    """Writes the raster's grid, bands and footprints as JSON under the data root."""

    def output(self):
        return self.file_target("description.json")

    def run(self):
        with rasterio.open(self.path) as dataset:
            summary = footprint.describe(dataset)
        summary["written_by"] = self.written_by
        with self.output().open("w") as out:
            out.write(json.dumps(summary, indent=2).encode())


class RegisterRaster(_DemoTask):
    """Upserts the described raster as a scene of the demo datasource."""

    def requires(self):
        return DescribeRaster(path=self.path)

    def output(self):
        return self.marker_target()

    def scene_id(self):
        return ids.scene_id_for_product(DEMO_DATASOURCE, self.path)

    def run(self):
        with self.input().open("r") as src:
            summary = json.loads(src.read())
        with self.output().transaction() as conn:
            source = datasources.upsert_datasource(conn, DEMO_DATASOURCE, DEMO_OWNER)
            scene = records.scene_from_description(
                self.scene_id(), source["id"], summary, DEMO_OWNER, self.written_by
            )
            scenes.upsert_scene(conn, scene)
