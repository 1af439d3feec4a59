"""Scene ingest without Spark: stacking bands of different resolutions, zooms, tiles."""

import numpy as np
import pytest
import rasterio
import rasterio.transform
from rasterio.io import MemoryFile
from rio_tiler.io import Reader

from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery import cog as cog_module
from rf_pipelines.imagery import pyramid
from tests import rasters


def _band(path, size, res, value):
    data = np.full((1, size, size), value, dtype="uint16")
    data[:, : size // 4, :] = 0  # a strip of nodata
    return rasters.write_tif(
        path,
        data,
        crs="EPSG:32618",
        transform=rasters.from_origin(500000, 2700000, res, res),
        nodata=0,
    )


def test_bands_of_different_resolutions_are_stacked_on_the_finest_grid(tmp_path):
    fine = _band(tmp_path / "b10.tif", 200, 10, 100)
    coarse = _band(tmp_path / "b20.tif", 100, 20, 300)
    out = str(tmp_path / "scene.tif")
    pyramid.stack_bands([(str(fine), 1, "red"), (str(coarse), 1, "nir")], out, "scene x")
    with rasterio.open(out) as cog:
        assert cog.count == 2 and cog.res == (10.0, 10.0) and cog.shape == (200, 200)
        assert cog.descriptions == ("red", "nir")
        data = cog.read()
    assert data[1, 150, 150] == 300 and data[0, 150, 150] == 100
    assert data[0, 10, 10] == 0  # nodata kept
    cog_module.check_cog(out, "scene x")  # rio-cogeo's validator


def test_plan_tiles_and_transparent_outside_the_data():
    source = str(rasters.GEOTIFF / "RGB.byte.tif")
    plan = pyramid.plan(source)
    # 300 m pixels: zoom 9 is the first whose pixels (~306 m at the equator) are as fine.
    assert (plan["minzoom"], plan["maxzoom"]) == (7, 9)
    assert plan["indexes"] == [1, 2, 3] and len(plan["ranges"]) == 3
    tiles = pyramid.tiles(plan)
    assert {z for z, _, _ in tiles} == {7, 8, 9}
    with Reader(source) as reader:
        rendered = {t: pyramid.render_tile(reader, *t, plan) for t in tiles}
    written = [png for png in rendered.values() if png]
    assert 0 < len(written) < len(tiles)  # corner tiles outside the rotated footprint are empty
    with MemoryFile(written[0]) as memory, memory.open() as png:
        assert png.driver == "PNG" and png.shape == (256, 256) and png.count == 4
        alpha = png.read(4)
    assert alpha.min() == 0 and alpha.max() == 255  # data and transparent surroundings


def test_no_bands_and_unreadable_bands_are_refused(tmp_path):
    with pytest.raises(InvalidInput, match="has no bands"):
        pyramid.stack_bands([], str(tmp_path / "x.tif"), "scene 1")
    with pytest.raises(InvalidInput, match="scene 2: a band cannot be read"):
        pyramid.stack_bands(
            [(str(tmp_path / "gone.tif"), 1, "b")], str(tmp_path / "y.tif"), "scene 2"
        )


def test_a_geostationary_view_is_planned_over_its_disk_only():
    plan = pyramid.plan(str(rasters.GEOTIFF / "image_geos.tif"))
    west, south, east, north = plan["bounds"]
    # The disk on the Earth (to about ±81.3°), cut at ±180° so it spans every longitude;
    # rio-tiler's bounds of the raster's corners, in space, had west > east.
    assert -81.3 < south < -78 and 78 < north < 81.3
    # Cut at ±180°: from about 59.5°E across the antimeridian to about 138.3°W, not the
    # whole width of the world.
    assert 55 < west < 65 and -142 < east < -134
    everything = pyramid.tiles({**plan, "bounds": [-180, south, 180, north]})
    assert 0 < len(pyramid.tiles(plan)) < len(everything)


def test_a_scene_across_the_antimeridian_is_planned_over_its_own_tiles(tmp_path):
    path = tmp_path / "fiji.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=256,
        height=256,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=rasterio.transform.from_origin(179.5, -17.0, 1 / 256, 1 / 256),
    ) as dst:
        dst.write(np.full((1, 256, 256), 7, dtype="uint8"))
    plan = pyramid.plan(str(path))
    west, _, east, _ = plan["bounds"]
    assert west > east  # 179.5 .. -179.5, across 180
    assert len(pyramid.tiles(plan)) < 50


def test_a_scene_beyond_web_mercator_is_refused_with_its_reason():
    with pytest.raises(InvalidInput, match="beyond Web Mercator"):
        pyramid.plan(str(rasters.GEOTIFF / "Copernicus_DSM_COG_30_S90_00_W164_00_DEM.tif"))
