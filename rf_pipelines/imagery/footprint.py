"""Footprints: the raster's bounds (tile footprint) and its valid-data outline (data footprint),
as GeoJSON in EPSG:4326 and EPSG:3857, cut at the antimeridian.

A raster that reaches off the planet (a geostationary full disk, whose corners are in space)
keeps only its pixels on the Earth, so both footprints are the visible disk. A footprint around
a pole runs to ±90° in EPSG:4326 and stops at Web Mercator's ±85.05° in EPSG:3857.
"""

import math

import numpy as np
import rasterio.features
import shapely
from pyproj.exceptions import ProjError
from rasterio.errors import CRSError
from rasterio.warp import transform_geom
from shapely.geometry import Polygon, box, mapping, shape
from shapely.ops import unary_union

from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery import geometry

# Longest side of the mask read for the data footprint; reads come from overviews.
MASK_SIZE = 1024
MIN_PART_FRACTION = 0.001
# Before reprojection, outlines are cut into pieces no longer than this share of the raster's
# longest side, so that they follow the curves the projection makes of straight grid edges;
# after it, points within a pixel of a straight line are dropped again.
DENSIFY_PARTS = 64
_METRES_PER_DEGREE = 111_320


def decimated_shape(dataset, max_size):
    """(rows, cols) no larger than ``max_size`` on the longest side, keeping the aspect ratio."""
    scale = max(dataset.width, dataset.height) / max_size
    if scale <= 1:
        return dataset.height, dataset.width
    return max(1, round(dataset.height / scale)), max(1, round(dataset.width / scale))


def tile_footprints(dataset, max_size=MASK_SIZE):
    """The raster's bounds; for a raster that reaches off the planet, the part of them on the
    Earth, outlined on a grid no larger than ``max_size``.

    Returns:
        dict "4326" and "3857" -> GeoJSON geometry.

    Raises:
        InvalidInput: the dataset has no CRS, or none of its pixels is on the Earth.
    """
    _require_crs(dataset)
    transform, shape_ = _decimated_grid(dataset, max_size)
    outline = box(*dataset.bounds)
    if _reaches_off_planet(dataset):
        on_planet = _on_planet(dataset, transform, shape_)
        if not on_planet.any():
            raise InvalidInput(f"{dataset.name}: no pixel of the raster is on the Earth")
        outline = _outline(_polygons(on_planet, transform), _pixel(transform))
    return _reproject(outline, dataset, _pixel(transform))


def data_footprints(dataset, max_size=MASK_SIZE):
    """The outline of valid pixels, from the dataset mask read at a decimated size.

    Holes (nodata inside the image) are filled and specks dropped: a footprint says where the
    image is, not where each valid pixel is. The outline stays within one decimated pixel.
    Pixels off the planet are not valid, whatever their values.

    Returns:
        dict "4326" and "3857" -> GeoJSON geometry, or None when no pixel is valid.
    """
    _require_crs(dataset)
    transform, shape_ = _decimated_grid(dataset, max_size)
    valid = dataset.dataset_mask(out_shape=shape_) > 0
    if _reaches_off_planet(dataset):
        valid &= _on_planet(dataset, transform, shape_)
    if not valid.any():
        return None
    pixel = _pixel(transform)
    return _reproject(_outline(_polygons(valid, transform), pixel), dataset, pixel)


def _decimated_grid(dataset, max_size):
    """(transform, (rows, cols)) of the dataset's grid read at ``decimated_shape``."""
    rows, cols = decimated_shape(dataset, max_size)
    scale = dataset.transform.scale(dataset.width / cols, dataset.height / rows)
    return dataset.transform @ scale, (rows, cols)


def _pixel(transform):
    return math.hypot(transform.a, transform.e)


def _reaches_off_planet(dataset):
    """True when a point of the raster's densified bounds has no longitude and latitude.

    The part of a projection's plane on the Earth is convex for the views that have an edge
    (geostationary, orthographic), so bounds on the Earth hold a raster on the Earth."""
    edge = box(*dataset.bounds).segmentize(_densify_step(dataset)).exterior
    lon, lat = _to_lonlat(dataset).transform(*edge.xy)
    return not (np.isfinite(lon).all() and np.isfinite(lat).all())


def _on_planet(dataset, transform, shape_):
    """Mask of the pixels whose four corners have a longitude and latitude: the outline of
    such pixels has every vertex on the Earth, so it can be reprojected."""
    rows, cols = shape_
    xs, ys = transform * np.meshgrid(np.arange(cols + 1), np.arange(rows + 1))
    lon, lat = _to_lonlat(dataset).transform(xs, ys)
    corner = np.isfinite(lon) & np.isfinite(lat)
    return corner[:-1, :-1] & corner[:-1, 1:] & corner[1:, :-1] & corner[1:, 1:]


def _to_lonlat(dataset):
    try:
        return geometry.transformer(dataset.crs.to_wkt(), "EPSG:4326")
    except ProjError as err:  # another planet's CRS, or a local one
        raise InvalidInput(
            f"{dataset.name}: its CRS cannot be transformed to longitude and latitude ({err})"
        ) from err


def _polygons(mask, transform):
    return [
        shape(geom)
        for geom, value in rasterio.features.shapes(
            mask.astype(np.uint8), mask=mask, transform=transform
        )
        if value == 1
    ]


def _outline(polygons, pixel):
    """Holes filled, specks under 0.1 % of the area dropped, simplified to one pixel."""
    merged = unary_union(polygons)
    parts = [Polygon(p.exterior) for p in getattr(merged, "geoms", [merged])]
    total = sum(p.area for p in parts)
    kept = [p for p in parts if p.area >= total * MIN_PART_FRACTION]
    return unary_union(kept).simplify(pixel, preserve_topology=True)


def _reproject(outline, dataset, pixel):
    """GeoJSON in 4326 and 3857 of an outline in the dataset's CRS: densified, reprojected
    with GDAL, which cuts it at ±180° and runs a ring around a pole to ±90°, and simplified
    back to about a pixel."""
    densified = outline.segmentize(_densify_step(dataset))
    lonlat = shape(
        transform_geom(
            dataset.crs, "EPSG:4326", mapping(densified), antimeridian_cutting=True, precision=-1
        )
    ).simplify(_in_degrees(dataset.crs, pixel), preserve_topology=True)
    if not lonlat.is_valid:
        # An outline along a limb can fold on itself once reprojected; its area stands.
        lonlat = geometry.polygons_only(shapely.make_valid(lonlat))
    return {"4326": mapping(lonlat), "3857": geometry.to_3857(lonlat)}


def _densify_step(dataset):
    left, bottom, right, top = dataset.bounds
    return max(right - left, top - bottom) / DENSIFY_PARTS


def _in_degrees(crs, length):
    """A length in the CRS's units as degrees of latitude, roughly."""
    if crs.is_geographic:
        return length
    try:
        return length * crs.linear_units_factor[1] / _METRES_PER_DEGREE
    except CRSError:
        return length / _METRES_PER_DEGREE


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
