"""Cloud Optimized GeoTIFFs: GDAL's COG driver, after warping GCP or rotated grids north-up."""

import contextlib
import re

import rasterio
import rasterio.errors
import rasterio.shutil
from rasterio._err import CPLE_BaseError  # GDAL errors raised while copying
from rasterio.enums import MaskFlags, Resampling
from rasterio.session import DummySession
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
def north_up(dataset, crs=None):
    """Yields the dataset itself, or a WarpedVRT of it on a north-up grid in the same CRS.

    Args:
        crs: the CRS of a ``.prj`` sidecar, for a dataset without one of its own (a TIFF
            georeferenced by a world file): the VRT then carries it, on the same grid.
    """
    assigned = crs if dataset.crs is None and crs is not None else None
    if not needs_warp(dataset) and assigned is None:
        yield dataset
        return
    src_crs = assigned or dataset.crs or dataset.gcps[1]
    grid = {}
    if not needs_warp(dataset):  # only a CRS to assign: the very same grid, no resampling
        grid = {"transform": dataset.transform, "width": dataset.width, "height": dataset.height}
    with WarpedVRT(
        dataset,
        src_crs=src_crs,
        crs=src_crs,
        resampling=Resampling.bilinear if needs_warp(dataset) else Resampling.nearest,
        src_nodata=dataset.nodata,
        nodata=dataset.nodata if dataset.nodata is not None else None,
        add_alpha=(needs_warp(dataset) or _has_mask(dataset))
        and dataset.nodata is None
        and not _has_alpha(dataset),
        **grid,
    ) as vrt:
        yield vrt


def _has_mask(dataset):
    """True when the dataset has a mask of its own (internal, or a .msk sidecar)."""
    return any(MaskFlags.per_dataset in flags for flags in dataset.mask_flag_enums)


def _has_alpha(dataset):
    return any(ci.name == "alpha" for ci in dataset.colorinterp)


def write_cog(dataset, dst_path, threads="ALL_CPUS", crs=None):
    """Writes ``dataset`` as a COG: DEFLATE, 512 tiles, internal overviews; nodata, the
    internal mask and an alpha band are carried over by GDAL's COG driver.

    Args:
        dataset: an open rasterio dataset (a GCP or rotated grid is warped north-up first).
        dst_path: local path of the new file.
        threads: GDAL's threads for compression and overviews ("1" in a forked child:
            ``processes.gdal_threads``).
        crs: the CRS of a ``.prj`` sidecar, for a dataset without one of its own.

    Raises:
        InvalidInput: the source's pixels cannot be read (corrupt blocks).
    """
    env = {**GDAL_ENV, "GDAL_NUM_THREADS": threads}
    # A local file: no AWS session (rasterio would make a boto3 one for each Env).
    with rasterio.Env(session=DummySession(), **env), north_up(dataset, crs) as src:
        try:
            rasterio.shutil.copy(src, dst_path, **{**COG_OPTIONS, "num_threads": threads})
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
