"""Scene ingest end to end: upload scene -> scene COG -> tiles rendered by Spark (local[2])
-> INGESTED, through luigid, on both data roots; a scene whose band is missing fails alone."""

import datetime
import json
import os

from click.testing import CliRunner
from rasterio.io import MemoryFile

from rf_pipelines import clients, config, uploading
from rf_pipelines.catalog import db, imports, scenes, uploads
from rf_pipelines.cli import cli
from rf_pipelines.imagery import geometry
from rf_pipelines.targets import files
from rf_pipelines.tasks import ProcessUpload
from rf_pipelines.tasks.runner import build
from tests import rasters


def _uploaded_scene(database_url):
    upload_id = uploading.create_upload([str(rasters.GEOTIFF / "RGB.byte.tif")], "ingest")
    build([ProcessUpload(upload_id=str(upload_id))])
    with db.connect(database_url) as conn:
        return str(uploads.upload_summary(conn, upload_id)["files"][0]["scene_id"])


def _ingest(scene_id):
    result = CliRunner().invoke(cli, ["ingest", scene_id])
    start = result.output.rindex("{\n")
    report, _ = json.JSONDecoder().raw_decode(result.output[start:])
    return result.exit_code, report, result.output


def test_an_uploaded_scene_is_ingested_into_tiles(data_root, database_url):
    scene_id = _uploaded_scene(database_url)
    code, report, out = _ingest(scene_id)
    assert code == 0, out
    assert report["ingest_status"] == "INGESTED" and report["status_reason"] is None
    template = report["ingest_location"]
    assert template.startswith(data_root) and template.endswith("/{z}/{x}/{y}.png")
    folder = template[: -len("/{z}/{x}/{y}.png")]
    assert files.object_size(files.join(folder, "_SUCCESS")) == 0
    plan = json.loads(files.read_bytes(files.join(folder, "plan.json")))
    assert plan["written"] + plan["empty"] == plan["tiles"] == 30 and plan["written"] == 22
    written = files.list_files(folder, (".png",))
    assert len(written) == 22
    with MemoryFile(files.read_bytes(template.format(z=9, x=145, y=220))) as memory:
        with memory.open() as png:
            assert png.count == 4 and png.shape == (256, 256)

    _delete(written[0])
    code, report, out = _ingest(scene_id)  # done: nothing runs again, nothing is re-rendered
    assert code == 0 and report["ingest_status"] == "INGESTED"
    assert len(files.list_files(folder, (".png",))) == 21


def test_a_scene_with_a_missing_band_fails_alone(data_root, database_url, tmp_path):
    good = _uploaded_scene(database_url)
    band = rasters.utm_tif(tmp_path / "b1.tif")
    ring = [(-77.5, 24.0), (-77.0, 24.0), (-77.0, 24.5), (-77.5, 24.5), (-77.5, 24.0)]
    record = {  # an imported scene whose second band file is missing
        "product_id": "broken-product",
        "scene_key": "broken-scene",
        "datasource": "Test imports",
        "acquisition_date": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        "cloud_cover": 0.0,
        "sun_azimuth": None,
        "sun_elevation": None,
        "footprints": {
            "data": geometry.from_lonlat_ring(ring),
            "tile": geometry.from_lonlat_ring(ring),
        },
        "bands": [
            {"name": "b1", "url": str(band)},
            {"name": "b2", "url": str(tmp_path / "gone.tif")},
        ],
        "metadata_files": [],
        "thumbnails": {},
        "scene_metadata": {"import_source": "test"},
    }
    with db.transaction(database_url) as conn:
        imports.upsert_scenes(conn, [record], "test@v1")
    broken = str(imports.scene_id(record))
    code, report, out = _ingest(broken)
    assert code == 3, out
    assert report["ingest_status"] == "FAILED"
    assert (
        "SceneCog" in report["status_reason"] and "a band cannot be read" in report["status_reason"]
    )
    with db.connect(database_url) as conn:
        assert scenes.get_scene(conn, good)["ingest_status"] == "NOTINGESTED"
    bad = CliRunner().invoke(cli, ["ingest", "not-a-uuid"])
    assert bad.exit_code == 2 and "scene id" in bad.output


def _delete(url):
    if not files.is_s3(url):
        os.remove(url)
        return
    bucket, key = files.split_s3(url)
    clients.aws_client("s3", config.settings().s3_endpoint_url).delete_object(
        Bucket=bucket, Key=key
    )
