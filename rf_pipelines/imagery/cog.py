"""Cloud Optimized GeoTIFFs: GDAL's COG driver, after warping GCP or rotated grids north-up."""

import contextlib
import re

import rasterio
import rasterio.errors
import rasterio.shutil
from rasterio._err import CPLE_BaseError  # GDAL errors raised while copying
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rio_cogeo.cogeo import cog_validate

from rf_pipelines.errors import InvalidInput

COG_OPTIONS = {
    "driver": "COG",
    "compress": "DEFLATE",
    "blocksize": 512,
    "overviews": "AUTO",
    "overview_resampling": "average",
    "bigtiff": "IF_SAFER",
    "num_threads": "ALL_CPUS",
}
# GDAL's messages for blocks that cannot be decoded: the file is corrupt, not the disk full.
_READ_FAILURE = re.compile(r"IReadBlock|TIFFRead|ReadEncoded|decod|corrupt", re.IGNORECASE)
# Bounded GDAL block cache (128 MB), so memory stays flat whatever the file's size (measured:
# 424 MB peak for a 20,000 x 20,000 x 3 uint16 upload). In bytes: rasterio
# passes an integer to GDALSetCacheMax as bytes, and 256 bytes made every later read 500x
# slower in the same process (measured: 61 s instead of 0.1 s for a 1024 px read).
GDAL_ENV = {"GDAL_CACHEMAX": 128 * 1024 * 1024, "GDAL_NUM_THREADS": "ALL_CPUS"}


def needs_warp(dataset):
    """True for grids that are not north-up: georeferenced by GCPs, or rotated."""
    transform = dataset.transform
    has_gcps = bool(dataset.gcps[0])
    return (dataset.crs is None and has_gcps) or transform.b != 0 or transform.d != 0


@contextlib.contextmanager
def north_up(dataset):
    """Yields the dataset itself, or a WarpedVRT of it on a north-up grid in the same CRS."""
    if not needs_warp(dataset):
        yield dataset
        return
    src_crs = dataset.crs or dataset.gcps[1]
    with WarpedVRT(
        dataset,
        src_crs=src_crs,
        crs=src_crs,
        resampling=Resampling.bilinear,
        src_nodata=dataset.nodata,
        nodata=dataset.nodata if dataset.nodata is not None else None,
        add_alpha=dataset.nodata is None and not _has_alpha(dataset),
    ) as vrt:
        yield vrt


def _has_alpha(dataset):
    return any(ci.name == "alpha" for ci in dataset.colorinterp)


def write_cog(dataset, dst_path):
    """Writes ``dataset`` as a COG: DEFLATE, 512 tiles, internal overviews; nodata, the
    internal mask and an alpha band are carried over by GDAL's COG driver.

    Args:
        dataset: an open rasterio dataset (a GCP or rotated grid is warped north-up first).
        dst_path: local path of the new file.

    Raises:
        InvalidInput: the source's pixels cannot be read (corrupt blocks).
    """
    with rasterio.Env(**GDAL_ENV), north_up(dataset) as src:
        try:
            rasterio.shutil.copy(src, dst_path, **COG_OPTIONS)
        except (rasterio.errors.RasterioError, CPLE_BaseError) as err:
            if not _READ_FAILURE.search(str(err)):
                raise
            raise InvalidInput(f"{_name(dataset)}: corrupt or unreadable pixels: {err}") from err


def check_cog(path, label):
    """Raises InvalidInput unless rio-cogeo's ``cog_validate`` accepts the file."""
    valid, errors, _warnings = cog_validate(path, quiet=True)
    if not valid:
        raise InvalidInput(f"{label}: the COG written is not valid: {'; '.join(errors)}")


def _name(dataset):
    return dataset.name.rsplit("/", 1)[-1]
