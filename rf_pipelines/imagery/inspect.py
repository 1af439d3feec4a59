"""Checks that a file can become a scene: a readable, georeferenced raster of a supported kind."""

from rf_pipelines.errors import InvalidInput

SUPPORTED_DTYPES = frozenset(
    {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}
)
# Raster Foundry's uploads are GeoTIFFs; GDAL reports COGs with the GTiff driver too.
SUPPORTED_DRIVERS = frozenset({"GTiff"})


def inspect_raster(dataset, label, max_pixels, crs=None):
    """Validates an open dataset and summarises it.

    Args:
        dataset: an open rasterio dataset.
        label: the file's name, for messages.
        max_pixels: the largest accepted width x height.
        crs: the CRS of a ``.prj`` sidecar, for a dataset without one of its own.

    Returns:
        dict: driver, width, height, count, dtypes, crs, georeferencing ("transform" or
        "gcps"), rotated, nodata.

    Raises:
        InvalidInput: not a GeoTIFF, no georeferencing, too many pixels, unsupported type.
    """
    if dataset.driver not in SUPPORTED_DRIVERS:
        raise InvalidInput(f"{label}: is a {dataset.driver} file, not a GeoTIFF")
    pixels = dataset.width * dataset.height
    if pixels > max_pixels:
        raise InvalidInput(
            f"{label}: {dataset.width} x {dataset.height} = {pixels:,} pixels exceeds the "
            f"limit of {max_pixels:,} (RF_MAX_UPLOAD_PIXELS)"
        )
    unsupported = sorted(set(dataset.dtypes) - SUPPORTED_DTYPES)
    if unsupported:
        raise InvalidInput(f"{label}: unsupported data type {', '.join(unsupported)}")
    gcps, gcp_crs = dataset.gcps
    crs = dataset.crs or crs
    georeferencing = _georeferencing(crs, dataset.transform, gcps, gcp_crs)
    if georeferencing is None:
        raise InvalidInput(
            f"{label}: has no georeferencing (no CRS with a geotransform, and no GCPs)"
        )
    transform = dataset.transform
    return {
        "driver": dataset.driver,
        "width": dataset.width,
        "height": dataset.height,
        "count": dataset.count,
        "dtypes": list(dataset.dtypes),
        "crs": (crs or gcp_crs).to_string(),
        "georeferencing": georeferencing,
        "rotated": georeferencing == "transform" and (transform.b != 0 or transform.d != 0),
        "nodata": dataset.nodata,
    }


def _georeferencing(crs, transform, gcps, gcp_crs):
    if crs is not None and not transform.is_identity:
        return "transform"
    if gcps and gcp_crs is not None:
        return "gcps"
    return None
