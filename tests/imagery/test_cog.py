"""write_cog: valid COGs that keep nodata, masks and alpha; north-up grids from GCPs/rotation."""

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rio_cogeo.cogeo import cog_validate

from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery import cog
from tests import rasters

HRO = rasters.GEOTIFF / "hro"


def _convert(src_path, tmp_path):
    out = tmp_path / "out.tif"
    with rasterio.open(src_path) as dataset:
        cog.write_cog(dataset, out)
    assert cog_validate(out, quiet=True)[0]
    return out


def test_cog_is_tiled_deflate_with_overviews(tmp_path):
    out = _convert(rasters.GEOTIFF / "cog.tif", tmp_path)
    with rasterio.open(out) as dst, rasterio.open(rasters.GEOTIFF / "cog.tif") as src:
        assert dst.block_shapes[0] == (512, 512)
        assert dst.compression.name == "deflate"
        assert dst.overviews(1)
        assert np.array_equal(dst.read(1), src.read(1))


def test_nodata_is_kept(tmp_path):
    out = _convert(rasters.GEOTIFF / "RGB.byte.tif", tmp_path)
    with rasterio.open(out) as dst:
        assert dst.nodata == 0


def test_internal_mask_is_kept(tmp_path):
    source = HRO / "201404_13SED190110_201404_0x1500m_CL_1_mask.tif"
    out = _convert(source, tmp_path)
    with rasterio.open(out) as dst, rasterio.open(source) as src:
        assert MaskFlags.per_dataset in dst.mask_flag_enums[0]
        assert np.array_equal(dst.dataset_mask(), src.dataset_mask())


def test_alpha_band_is_kept(tmp_path):
    out = _convert(HRO / "201404_13SED190110_201404_0x1500m_CL_1_alpha.tif", tmp_path)
    with rasterio.open(out) as dst:
        assert dst.colorinterp[3] == ColorInterp.alpha


def test_gcp_raster_is_warped_to_a_north_up_grid(tmp_path):
    out = _convert(rasters.gcp_tif(tmp_path / "gcp.tif"), tmp_path)
    with rasterio.open(out) as dst:
        assert dst.crs.to_epsg() == 4326
        assert dst.transform.b == 0 and dst.transform.d == 0
        left, bottom, right, top = dst.bounds
        assert 9.9 < left < 10.0 and 10.0 < right < 10.2 and 49.8 < bottom < top < 50.1


def test_rotated_raster_is_warped_north_up(tmp_path):
    out = _convert(rasters.rotated_tif(tmp_path / "rot.tif"), tmp_path)
    with rasterio.open(out) as dst:
        assert dst.transform.b == 0 and dst.transform.d == 0
        assert dst.width > 64  # the rotated square needs a wider north-up grid


def test_corrupt_blocks_are_bad_input(tmp_path):
    with rasterio.open(rasters.GEOTIFF / "odd" / "corrupt.tif") as dataset:
        with pytest.raises(InvalidInput, match="corrupt.tif: corrupt or unreadable pixels"):
            cog.write_cog(dataset, tmp_path / "out.tif")
