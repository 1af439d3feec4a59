"""Thumbnails (RGB choice, stretch, transparency), band statistics, STAC items."""

import datetime
import io

import numpy as np
import pystac
import rasterio
from rasterio.io import MemoryFile

from rf_pipelines.imagery import bands, footprint, stac, thumbnail
from tests import rasters


def test_rgb_from_colour_interpretation_in_bgra_order():
    with rasterio.open(rasters.GEOTIFF / "RGBA.uint16.tif") as dataset:
        assert thumbnail.choose_rgb(dataset) == (3, 2, 1)


def test_rgb_from_band_descriptions(tmp_path):
    path = rasters.utm_tif(tmp_path / "d.tif")
    with rasterio.open(path, "r+") as dataset:
        for index, name in zip((1, 2, 3), ("B2 blue", "B3 green", "B4 red"), strict=True):
            dataset.set_band_description(index, name)
    with rasterio.open(path) as dataset:
        assert thumbnail.choose_rgb(dataset) == (3, 2, 1)


def test_single_band_is_grey():
    with rasterio.open(rasters.GEOTIFF / "shade.tif") as dataset:
        assert thumbnail.choose_rgb(dataset) == (1,)


def test_thumbnail_size_and_transparent_nodata():
    with rasterio.open(rasters.GEOTIFF / "RGB.byte.tif") as dataset:
        png, width, height = thumbnail.render(dataset, 256)
        valid = dataset.dataset_mask(out_shape=(height, width)) > 0
    assert (width, height) == (256, 232)
    with MemoryFile(io.BytesIO(png).read()) as memfile, memfile.open() as image:
        assert image.driver == "PNG" and image.count == 4
        pixels = image.read()
    assert np.array_equal(pixels[3] == 255, valid)
    assert pixels[:3, valid].std() > 20  # stretched, not flat


def test_band_statistics_ignore_nodata():
    with rasterio.open(rasters.GEOTIFF / "RGB.byte.tif") as dataset:
        meta = bands.band_metadata(dataset)
    assert [b["name"] for b in meta] == ["red", "green", "blue"]
    stats = meta[0]["statistics"]
    assert stats["minimum"] >= 1 and 60 < stats["valid_percent"] < 75
    assert sum(meta[0]["histogram"]["buckets"]) > 0


def test_stac_item_has_projection_raster_and_eo():
    with rasterio.open(rasters.GEOTIFF / "RGB.byte.tif") as dataset:
        footprints = {
            "data": footprint.data_footprints(dataset),
            "tile": footprint.tile_footprints(dataset),
        }
        meta = bands.band_metadata(dataset)
        grid = {
            "crs": "EPSG:32618",
            "wkt": dataset.crs.to_wkt(),
            "width": dataset.width,
            "height": dataset.height,
            "transform": list(dataset.transform)[:6],
            "bounds": list(dataset.bounds),
        }
    acquired = datetime.datetime(2020, 1, 2, tzinfo=datetime.UTC)
    item_dict = stac.build_item(
        "scene-1", acquired, grid, footprints, meta, "s3://b/c.tif", "s3://b/t.png"
    )
    item = pystac.Item.from_dict(item_dict)
    assert item.id == "scene-1" and item.datetime == acquired
    schemas = " ".join(item.stac_extensions)
    assert "projection" in schemas and "raster" in schemas and "eo" in schemas
    assert item.properties["proj:code"] == "EPSG:32618"
    assert item.assets["data"].media_type == pystac.MediaType.COG
    assert item_dict["assets"]["data"]["eo:bands"][0]["common_name"] == "red"
    assert item.geometry == footprints["data"]["4326"]
