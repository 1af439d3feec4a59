"""inspect_raster: what can become a scene, and the message for what cannot."""

import pytest
import rasterio

from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery.inspect import inspect_raster
from tests import rasters

LIMIT = 10_000_000_000


@pytest.mark.parametrize(
    "name",
    [
        "RGB.byte.tif",
        "RGBA.uint16.tif",
        "cog.tif",
        "world.byte.tif",
        "MCD43A4.A2017006.h21v11.006.2017018074804_B01.TIF",
    ],
)
def test_real_geotiffs_pass(name):
    with rasterio.open(rasters.GEOTIFF / name) as dataset:
        report = inspect_raster(dataset, name, LIMIT)
    assert report["georeferencing"] == "transform"
    assert report["width"] == dataset.width and not report["rotated"]


def test_png_named_jpg_is_not_a_geotiff():
    with rasterio.open(rasters.GEOTIFF / "odd" / "nontiff.jpg") as dataset:
        with pytest.raises(InvalidInput, match="nontiff.jpg: is a PNG file, not a GeoTIFF"):
            inspect_raster(dataset, "nontiff.jpg", LIMIT)


def test_no_crs(tmp_path):
    with rasterio.open(rasters.no_crs_tif(tmp_path / "plain.tif")) as dataset:
        with pytest.raises(InvalidInput, match="plain.tif: has no georeferencing"):
            inspect_raster(dataset, "plain.tif", LIMIT)


def test_header_claiming_a_trillion_pixels(tmp_path):
    with rasterio.open(rasters.huge_header_tif(tmp_path / "huge.tif")) as dataset:
        with pytest.raises(InvalidInput, match=r"1000000 x 1000000 = 1,000,000,000,000 pixels"):
            inspect_raster(dataset, "huge.tif", LIMIT)


def test_pixel_limit_is_configurable(tmp_path):
    with rasterio.open(rasters.utm_tif(tmp_path / "a.tif")) as dataset:
        with pytest.raises(InvalidInput, match="exceeds the limit of 1,000"):
            inspect_raster(dataset, "a.tif", 1000)


def test_complex_data_is_unsupported(tmp_path):
    with rasterio.open(rasters.complex_tif(tmp_path / "c.tif")) as dataset:
        with pytest.raises(InvalidInput, match="unsupported data type complex64"):
            inspect_raster(dataset, "c.tif", LIMIT)


def test_gcps_and_rotation_are_reported(tmp_path):
    with rasterio.open(rasters.gcp_tif(tmp_path / "g.tif")) as dataset:
        assert inspect_raster(dataset, "g.tif", LIMIT)["georeferencing"] == "gcps"
    with rasterio.open(rasters.rotated_tif(tmp_path / "r.tif")) as dataset:
        assert inspect_raster(dataset, "r.tif", LIMIT)["rotated"] is True
