"""Footprints: the raster's bounds (tile footprint) and its valid-data outline (data footprint),
as GeoJSON in EPSG:4326 and EPSG:3857, cut at the antimeridian."""

import math

import numpy as np
import rasterio.features
from rasterio.warp import transform_geom
from shapely.geometry import Polygon, box, mapping, shape
from shapely.ops import unary_union

from rf_pipelines.errors import InvalidInput

# Longest side of the mask read for the data footprint; reads come from overviews.
MASK_SIZE = 1024
MIN_PART_FRACTION = 0.001
_EPSGS = ("4326", "3857")


def decimated_shape(dataset, max_size):
    """(rows, cols) no larger than ``max_size`` on the longest side, keeping the aspect ratio."""
    scale = max(dataset.width, dataset.height) / max_size
    if scale <= 1:
        return dataset.height, dataset.width
    return max(1, round(dataset.height / scale)), max(1, round(dataset.width / scale))


def _reproject(geometry, crs):
    """GeoJSON of a shapely geometry in 4326 and 3857; parts crossing ±180° are cut there."""
    return {
        epsg: transform_geom(
            crs, f"EPSG:{epsg}", mapping(geometry), antimeridian_cutting=True, precision=-1
        )
        for epsg in _EPSGS
    }


def tile_footprints(dataset):
    """The raster's bounds, densified so they follow the grid after reprojection.

    Returns:
        dict "4326" and "3857" -> GeoJSON geometry.

    Raises:
        InvalidInput: the dataset has no CRS.
    """
    _require_crs(dataset)
    left, bottom, right, top = dataset.bounds
    outline = box(left, bottom, right, top).segmentize(max(right - left, top - bottom) / 20)
    return _reproject(outline, dataset.crs)


def data_footprints(dataset, max_size=MASK_SIZE):
    """The outline of valid pixels, from the dataset mask read at a decimated size.

    Holes (nodata inside the image) are filled and specks dropped: a footprint says where the
    image is, not where each valid pixel is. The outline stays within one decimated pixel.

    Returns:
        dict "4326" and "3857" -> GeoJSON geometry, or None when no pixel is valid.
    """
    _require_crs(dataset)
    rows, cols = decimated_shape(dataset, max_size)
    mask = dataset.dataset_mask(out_shape=(rows, cols))
    if not mask.any():
        return None
    transform = dataset.transform @ dataset.transform.scale(
        dataset.width / cols, dataset.height / rows
    )
    polygons = [
        shape(geom)
        for geom, value in rasterio.features.shapes(
            (mask > 0).astype(np.uint8), mask=mask > 0, transform=transform
        )
        if value == 1
    ]
    pixel = math.hypot(transform.a, transform.e)
    return _reproject(_outline(polygons, pixel), dataset.crs)


def _outline(polygons, pixel):
    """Holes filled, specks under 0.1 % of the area dropped, simplified to one pixel."""
    merged = unary_union(polygons)
    parts = [Polygon(p.exterior) for p in getattr(merged, "geoms", [merged])]
    total = sum(p.area for p in parts)
    kept = [p for p in parts if p.area >= total * MIN_PART_FRACTION]
    return unary_union(kept).simplify(pixel, preserve_topology=True)


def _require_crs(dataset):
    if dataset.crs is None:
        raise InvalidInput(f"{dataset.name}: has no coordinate reference system")


def describe(dataset):
    """A JSON-ready summary of a raster: size, CRS, resolution, bands and tile footprints."""
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
