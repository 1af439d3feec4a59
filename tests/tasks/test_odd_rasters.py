"""Rasters that reach off the planet or over a pole go through the whole upload workflow and
become scenes whose footprints are the area on the Earth."""

import json

import shapely
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import Point, shape

from rf_pipelines import ids, uploading
from rf_pipelines.catalog import db, scenes
from rf_pipelines.targets import files
from tests import rasters
from tests.tasks.test_uploads import _process, _summary

GEOS = "image_geos.tif"  # Himawari view, +proj=geos +lon_0=140.7; its corners are in space
POLAR = "nt_20201024_f18_nrt_s.tif"  # NSIDC sea ice, south polar stereographic
MERCATOR_EDGE = 20037508.35


def test_geostationary_and_polar_rasters_become_scenes(data_root, database_url):
    sources = [str(rasters.GEOTIFF / name) for name in (GEOS, POLAR)]
    upload_id = uploading.create_upload(sources, "ines")
    _process(upload_id)

    summary = _summary(database_url, upload_id)
    assert summary["status"] == "COMPLETE", summary
    by_name = {f["name"]: f for f in summary["files"]}
    assert {n: f["status"] for n, f in by_name.items()} == {GEOS: "SUCCESS", POLAR: "SUCCESS"}

    geos = _registered(database_url, upload_id, by_name[GEOS])
    for key in ("tile_footprint_4326", "data_footprint_4326"):
        disk = shape(geos[key])
        assert disk.is_valid and disk.contains(Point(140.7, 0))  # the sub-satellite point
        assert not disk.intersects(Point(-39.3, 0))  # the far side of the Earth
        assert 78 < disk.bounds[3] < 81.3  # the view's northern limb

    polar = _registered(database_url, upload_id, by_name[POLAR])
    for key in ("tile_footprint_4326", "data_footprint_4326"):
        cap = shape(polar[key])
        assert cap.is_valid and cap.bounds[:3] == (-180, -90, 180)
        assert cap.contains(Point(0, -89.9)) and not cap.intersects(Point(0, -20))


def _registered(database_url, upload_id, entry):
    """The scene of a processed file, checked like any upload's: footprints valid and inside
    Web Mercator's world, thumbnails, bands, a valid COG and a STAC item with its footprint."""
    with db.connect(database_url) as conn:
        scene = scenes.scene_details(conn, ids.scene_id_for_upload(upload_id, entry["name"]))
    assert entry["scene_id"] == str(scene["id"])
    for key in ("tile_footprint", "data_footprint"):
        mercator = shape(scene[f"{key}_3857"])
        assert mercator.is_valid and not mercator.is_empty
        assert all(abs(v) <= MERCATOR_EDGE for v in shapely.get_coordinates(mercator).ravel())
    assert sorted(t["size"] for t in scene["thumbnails"]) == ["LARGE", "SMALL"]
    (image,) = scene["images"]
    assert image["bands"] and all(b["metadata"]["statistics"]["mean"] for b in image["bands"])
    with files.staged(entry["outputs"]["cog"]) as local:
        assert cog_validate(local, quiet=True)[0]
    with files.staged(entry["outputs"]["stac_item"]) as local:
        with open(local) as item:
            assert json.load(item)["geometry"] == scene["data_footprint_4326"]
    return scene


def test_a_scene_beyond_web_mercator_fails_its_ingest_with_the_reason(
    tmp_path, database_url, settings_env
):
    from click.testing import CliRunner

    from rf_pipelines.cli import cli

    settings_env.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    settings_env.setenv("RF_DATABASE_URL", database_url)
    upload_id = uploading.create_upload(
        [str(rasters.GEOTIFF / "Copernicus_DSM_COG_30_S90_00_W164_00_DEM.tif")], "ines"
    )
    _process(upload_id)
    with db.connect(settings_env_url()) as conn:
        scene_id = _summary_id(conn, upload_id)
    result = CliRunner().invoke(cli, ["ingest", scene_id])
    assert result.exit_code == 3, result.output
    with db.connect(settings_env_url()) as conn:
        scene = scenes.get_scene(conn, scene_id)
    assert scene["ingest_status"] == "FAILED"
    assert scene["status_reason"].startswith("RenderTiles: ")
    assert "beyond Web Mercator" in scene["status_reason"]
    assert "ENVIRONMENT" not in scene["status_reason"]


def settings_env_url():
    from rf_pipelines import config

    return config.settings().database_url


def _summary_id(conn, upload_id):
    from rf_pipelines.catalog import uploads

    return uploads.upload_summary(conn, upload_id)["files"][0]["scene_id"]
