"""Footprint geometry from corner coordinates or geometries in any CRS: GeoJSON in EPSG:4326 and
EPSG:3857, split at the antimeridian instead of wrapping round the globe.

Uses pyproj directly: it is pure and fast (a few microseconds a point), where rasterio's
transform_geom sets up a GDAL environment (and an AWS session when AWS variables are set) on
every call, which cost 42 ms a call in an import worker.
"""

import functools
import itertools
import math
import numbers

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely.affinity import translate
from shapely.geometry import MultiPolygon, Polygon, box, mapping, shape
from shapely.ops import unary_union

from rf_pipelines.errors import InvalidInput

_EAST = box(-180, -90, 180, 90)
_BEYOND = box(180, -90, 540, 90)
# Web Mercator stops here (atan(sinh(pi)) in degrees): the poles are at infinity.
MERCATOR_LIMIT = 85.0511287798066
EARTH_RADIUS_M = 6378137.0  # Web Mercator's sphere (WGS 84's semi-major axis)
_MERCATOR_WORLD = box(-180, -MERCATOR_LIMIT, 180, MERCATOR_LIMIT)


@functools.lru_cache(maxsize=256)
def transformer(source, target):
    """A cached pyproj transformer, x/y in longitude/latitude order; a point it cannot
    transform (one in space, for a geostationary view) comes back as inf."""
    return Transformer.from_crs(source, target, always_xy=True)


def from_lonlat_ring(ring):
    """Footprints of a ring of (lon, lat) corners that may straddle ±180°.

    Returns:
        dict "4326" and "3857" -> GeoJSON.
    """
    simple = _simple_footprints(ring)
    if simple:
        return simple
    geometry = _split_at_antimeridian(ring)
    return {"4326": mapping(geometry), "3857": to_3857(geometry)}


def _simple_footprints(ring):
    """Footprints of one closed ring that stays within ±180° without crossing it, with plain
    coordinates (shapely costs about 0.4 ms a geometry, most of an import's time per scene);
    None for anything else."""
    lons, lats = [lon for lon, _ in ring], [lat for _, lat in ring]
    if len(ring) < 4 or ring[0] != ring[-1] or min(lons) < -180 or max(lons) > 180:
        return None
    if max(lons) - min(lons) > 180 or max(abs(lat) for lat in lats) > MERCATOR_LIMIT:
        return None
    if not all(math.isfinite(v) for v in (*lons, *lats)):
        return None
    x, y = mercator(lons, lats)
    return {
        "4326": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
        "3857": {"type": "Polygon", "coordinates": [[list(p) for p in zip(x, y, strict=True)]]},
    }


def mercator(lons, lats):
    """EPSG:3857 coordinates of points within Web Mercator's limits: its spherical formula,
    as PROJ computes it, without a pyproj call (about 40 us each, a tenth of an import's
    time per scene)."""
    x = [EARTH_RADIUS_M * math.radians(lon) for lon in lons]
    y = [EARTH_RADIUS_M * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) for lat in lats]
    return x, y


def _split_at_antimeridian(ring):
    lons = [lon for lon, _ in ring]
    if max(lons) - min(lons) > 180:  # corners on both sides of the antimeridian
        ring = [(lon + 360 if lon < 0 else lon, lat) for lon, lat in ring]
    polygon = Polygon(ring)
    parts = [polygon.intersection(_EAST), translate(polygon.intersection(_BEYOND), xoff=-360)]
    parts = [p for p in parts if not p.is_empty and p.area > 0]
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def from_geojson(geometry, crs, label):
    """Footprints of a GeoJSON (Multi)Polygon given in ``crs`` (an EPSG code, URN or WKT);
    holes are dropped, as a footprint only says where the image is.

    Raises:
        InvalidInput: an unknown CRS or a broken geometry.
    """
    return from_geojson_many([geometry], crs, [label])[0]


def from_geojson_many(geometries, crs, labels):
    """``from_geojson`` of each of ``geometries``, all given in ``crs``, labelled by
    ``labels``. The corners of the plain polygons are transformed in one pyproj call (a
    call costs about 40 us whatever its points: two footprints a scene, one call)."""
    try:
        to_lonlat = transformer(_crs_name(crs), "EPSG:4326")
    except CRSError as err:
        raise InvalidInput(f"{labels[0]}: unknown CRS {crs!r}") from err
    rings = [_plain_ring(g, label) for g, label in zip(geometries, labels, strict=True)]
    xs = [x for ring in rings if ring for x, _ in ring]
    ys = [y for ring in rings if ring for _, y in ring]
    lons, lats = to_lonlat.transform(xs, ys) if xs else ((), ())
    corners = iter(zip(lons, lats, strict=True))
    found = []
    for geom, label, ring in zip(geometries, labels, rings, strict=True):
        lonlat = list(itertools.islice(corners, len(ring))) if ring else None
        found.append((lonlat and _simple_footprints(lonlat)) or _general(geom, to_lonlat, label))
    return found


def _plain_ring(geometry, label):
    """The (x, y) corners of a Polygon's outer ring, or None for another kind of geometry."""
    if not isinstance(geometry, dict):
        raise InvalidInput(f"{label}: the geometry is not a GeoJSON object")
    if geometry.get("type") != "Polygon" or not geometry.get("coordinates"):
        return None
    try:
        ring = [(p[0], p[1]) for p in geometry["coordinates"][0]]
    except (TypeError, IndexError, KeyError) as err:
        raise InvalidInput(f"{label}: the geometry cannot be read ({err})") from err
    if not all(isinstance(v, numbers.Real) for corner in ring for v in corner):
        raise InvalidInput(f"{label}: the geometry cannot be read (a coordinate is not a number)")
    return ring


def _general(geometry, to_lonlat, label):
    """Footprints of any (Multi)Polygon, through shapely: cut at the antimeridian."""
    try:
        polygons = getattr(shape(geometry), "geoms", None) or [shape(geometry)]
        parts = [
            _split_at_antimeridian(list(zip(*to_lonlat.transform(*p.exterior.xy), strict=True)))
            for p in polygons
        ]
    except Exception as err:  # noqa: BLE001 - shapely and pyproj raise many kinds
        raise InvalidInput(f"{label}: the geometry cannot be read ({err})") from err
    merged = parts[0] if len(parts) == 1 else unary_union(parts)
    return {"4326": mapping(merged), "3857": to_3857(merged)}


def to_3857(geometry):
    """GeoJSON in EPSG:3857 of a (Multi)Polygon in longitude/latitude, cut at Web Mercator's
    ±85.05° limit; an empty Polygon when the geometry lies wholly beyond it (at a pole)."""
    inside = polygons_only(geometry.intersection(_MERCATOR_WORLD))
    to_mercator = transformer("EPSG:4326", "EPSG:3857")
    return mapping(
        shapely.transform(inside, lambda xy: np.column_stack(to_mercator.transform(*xy.T)))
    )


def polygons_only(geometry):
    """The polygons of a clipping's result, without the lines and points where it only
    touches the clipping edge."""
    polygons = [
        part
        for part in shapely.get_parts(geometry)
        if part.geom_type in ("Polygon", "MultiPolygon") and not part.is_empty
    ]
    return shapely.union_all(polygons) if polygons else Polygon()


@functools.lru_cache(maxsize=256)
def _crs_name(crs):
    """A canonical name for a CRS as written in metadata (parsed once per distinct value)."""
    return CRS.from_user_input(_urn_to_epsg(crs)).to_string()


def _urn_to_epsg(crs):
    """``urn:ogc:def:crs:EPSG:8.8.1:32619`` (as in tileInfo.json) -> ``EPSG:32619``."""
    if isinstance(crs, str) and crs.lower().startswith("urn:ogc:def:crs:epsg:"):
        return "EPSG:" + crs.rsplit(":", 1)[-1]
    return crs
