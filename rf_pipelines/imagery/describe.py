"""A raster's grid, bands and tile footprint, read from an open dataset."""

from rasterio.warp import transform_geom
from shapely.geometry import box, mapping

from rf_pipelines.errors import InvalidInput

# Points per bounds edge, so the footprint follows the grid's curvature after reprojection.
_DENSIFY = 21


def tile_footprints(dataset):
    """The raster's bounds as GeoJSON polygons in EPSG:4326 and EPSG:3857.

    Args:
        dataset: an open rasterio dataset.

    Returns:
        dict with keys "4326" and "3857", each a GeoJSON Polygon.

    Raises:
        InvalidInput: the dataset has no CRS.
    """
    if dataset.crs is None:
        raise InvalidInput(f"{dataset.name}: has no coordinate reference system")
    outline = box(*dataset.bounds).segmentize(
        max(dataset.bounds[2] - dataset.bounds[0], dataset.bounds[3] - dataset.bounds[1]) / _DENSIFY
    )
    return {
        epsg: transform_geom(dataset.crs, f"EPSG:{epsg}", mapping(outline))
        for epsg in ("4326", "3857")
    }


def describe(dataset):
    """A JSON-ready summary of a raster: size, CRS, resolution, bands and tile footprints.

    Args:
        dataset: an open rasterio dataset.

    Returns:
        dict.
    """
    return {
        "name": dataset.name,
        "width": dataset.width,
        "height": dataset.height,
        "crs": dataset.crs.to_string() if dataset.crs else None,
        "resolution": list(dataset.res),
        "bands": [
            {
                "number": i,
                "dtype": dataset.dtypes[i - 1],
                "nodata": dataset.nodatavals[i - 1],
                "colorinterp": dataset.colorinterp[i - 1].name,
                "description": dataset.descriptions[i - 1],
            }
            for i in dataset.indexes
        ],
        "tile_footprints": tile_footprints(dataset),
    }
