"""GDAL's sidecar files: the files beside a raster that GDAL reads with it.

For ``x.tif`` (stem ``x``):

- ``x.tif.msk``: external mask (the per-dataset mask);
- ``x.tif.ovr``: external overviews;
- ``x.tif.aux.xml``: PAM metadata (nodata, statistics, georeferencing overrides);
- ``x.tfw``, ``x.tifw``, ``x.tiffw``, ``x.wld``: world file (the geotransform);
- ``x.prj``: the CRS in ESRI WKT, beside a world file. GDAL's GeoTIFF driver does not read
  it; ``prj_crs`` does, for a raster that has no CRS of its own.

GDAL finds each by name in the raster's folder, so a sidecar must travel with its raster
and keep its name. Suffixes are matched without regard to case (``X.TIF.MSK``, ``x.TFW``).
"""

import posixpath

from rasterio.crs import CRS
from rasterio.errors import CRSError

from rf_pipelines.errors import InvalidInput

# Appended to the raster's full name (the mask's own overviews and PAM files included).
_OF_NAME = (".msk", ".ovr", ".aux.xml", ".msk.ovr", ".msk.aux.xml", ".ovr.aux.xml")
_OF_STEM = (".tfw", ".tifw", ".tiffw", ".wld", ".prj")  # replace the raster's suffix
SUFFIXES = _OF_NAME + _OF_STEM


def candidates(raster_name):
    """The lower-cased names a sidecar of ``raster_name`` may have."""
    return list(_names(raster_name))


def _names(raster_name):
    """{lower-cased sidecar name: the name GDAL looks for beside ``raster_name``}."""
    stem = posixpath.splitext(raster_name)[0]
    names = [raster_name + s for s in _OF_NAME] + [stem + s for s in _OF_STEM]
    return {name.lower(): name for name in names}


def name_for(raster_name, sidecar_name):
    """The name to give a sidecar beside its raster: the raster's own name (or stem) with
    the sidecar's suffix, as GDAL looks for it (``X.TIF.MSK`` of ``x.tif`` is found by GDAL
    only as ``x.tif.msk``)."""
    return _names(raster_name).get(sidecar_name.lower(), sidecar_name)


def match(urls, is_raster):
    """Sorts files into rasters with their sidecars and orphan sidecars.

    Args:
        urls: file URLs or paths (local or ``s3://``).
        is_raster: ``url -> bool``.

    Returns:
        ``({raster url: [sidecar urls]}, [orphan sidecar urls])``; a sidecar belongs to the
        rasters in its own folder whose name it extends (a world file or .prj may serve
        two rasters of one stem, ``x.tif`` and ``x.tiff``, as GDAL would use it for both).
    """
    rasters = {url: [] for url in urls if is_raster(url)}
    owners = {}
    for raster in rasters:
        folder, name = posixpath.split(raster)
        for candidate in candidates(name):
            owners.setdefault((folder, candidate), []).append(raster)
    orphans = []
    for url in urls:
        if url in rasters or not url.lower().endswith(SUFFIXES):
            continue
        folder, name = posixpath.split(url)
        found = owners.get((folder, name.lower()))
        if not found:
            orphans.append(url)
        for raster in found or ():
            rasters[raster].append(url)
    return rasters, orphans


def prj_crs(text, label):
    """The CRS of a ``.prj`` file's content (ESRI or OGC WKT, PROJ string, EPSG code).

    Raises:
        InvalidInput: not a CRS GDAL can read; the message names ``label``.
    """
    try:
        return CRS.from_user_input(text.strip())
    except (CRSError, ValueError) as err:
        raise InvalidInput(f"{label}: not a CRS GDAL can read ({err})") from err
