"""Footprints: valid-data outline inside the bounds, both EPSGs, cut at the antimeridian."""

import rasterio
from shapely.geometry import shape

from rf_pipelines.imagery import footprint
from tests import rasters


def test_data_footprint_is_one_polygon_inside_the_tile_footprint():
    with rasterio.open(rasters.GEOTIFF / "RGB.byte.tif") as dataset:
        data = footprint.data_footprints(dataset)
        tile = footprint.tile_footprints(dataset)
    for epsg in ("4326", "3857"):
        data_shape, tile_shape = shape(data[epsg]), shape(tile[epsg])
        assert data[epsg]["type"] == "Polygon"
        assert tile_shape.buffer(tile_shape.length / 1000).contains(data_shape)
        # RGB.byte.tif's valid pixels are a tilted square inside a larger grid.
        assert 0.5 < data_shape.area / tile_shape.area < 0.8
    assert len(data["4326"]["coordinates"][0]) < 50


def test_internal_mask_shapes_the_data_footprint():
    path = rasters.GEOTIFF / "hro" / "201404_13SED190110_201404_0x1500m_CL_1_mask.tif"
    with rasterio.open(path) as dataset:
        data = shape(footprint.data_footprints(dataset)["4326"])
        tile = shape(footprint.tile_footprints(dataset)["4326"])
    assert data.area < 0.99 * tile.area


def test_footprint_crossing_the_antimeridian_is_cut(tmp_path):
    with rasterio.open(rasters.antimeridian_tif(tmp_path / "am.tif")) as dataset:
        for footprints in (footprint.tile_footprints(dataset), footprint.data_footprints(dataset)):
            geometry = footprints["4326"]
            assert geometry["type"] == "MultiPolygon"
            parts = [shape({"type": "Polygon", "coordinates": c}) for c in geometry["coordinates"]]
            west = [p for p in parts if p.bounds[2] <= -179.0]
            east = [p for p in parts if p.bounds[0] >= 179.0]
            assert west and east and len(west) + len(east) == len(parts)


def test_world_raster_spans_the_globe_without_wrapping():
    with rasterio.open(rasters.GEOTIFF / "world.byte.tif") as dataset:
        bounds = shape(footprint.tile_footprints(dataset)["4326"]).bounds
    assert bounds[0] == -180 and bounds[2] == 180
